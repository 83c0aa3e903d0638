"""Throughput of the data path on MovieLens-100K: the Beam job (rows/s) and the tf.data reader (examples/s).

    python -m benchmarks.speed.pipeline_throughput [--shared ../shared/data] [--repeats 3]

Prints a table, writes ``benchmarks/speed/results/pipeline_throughput/pipeline_throughput.{json,png}``.
The Beam job runs with RecBole's ml-100k protocol flags (ratings >= 3,
10-core, leave-one-out) on the DirectRunner in both local modes.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Timer, bar_plot, machine, peak_rss_mb, results_dir, table, write_results

import tfpps  # noqa: F401
import tensorflow as tf

from beam_jobs import build_features
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.examples.prefix import eval_examples, prefix_examples
from tfpps.data.datasets import shared_data_dir

RESULTS = results_dir(__file__)


def beam_run(inter: Path, out: Path, mode: list[str]) -> dict:
    argv = [
        "--source=movielens",
        f"--input={inter}",
        f"--output={out}",
        "--min_rating=3",
        "--min_user_interactions=10",
        "--min_item_interactions=10",
        "--kcore_iterations=3",
        "--overwrite",
        *mode,
    ]
    with Timer() as t:
        stats = build_features.run(argv)
    rows = stats["stages"]["events_parsed"] + stats["stages"]["rows_dead_lettered"]
    return {"seconds": round(t.seconds, 2), "rows": rows, "rows_per_s": round(rows / t.seconds), "stats": stats}


def reader_rate(ds: tf.data.Dataset, repeats: int) -> tuple[int, float]:
    """Examples per second over ``repeats`` full passes (first pass included: file reads are cold)."""
    n = 0
    start = time.perf_counter()
    for _ in range(repeats):
        for batch in ds:
            n += int(tf.shape(batch["target_item"])[0])
    return n // repeats, n / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", default=str(shared_data_dir()))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    inter = Path(args.shared) / "ml-100k" / "ml-100k.inter"
    if not inter.exists():
        print(f"skipped: {inter} not found (set --shared or TFPPS_SHARED_DATA)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tfpps-bench-"))
    rows = []
    try:
        modes = {
            "beam multi_processing x2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
            "beam in_memory": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        }
        beam_results = {}
        for label, mode in modes.items():
            r = beam_run(inter, work / label.replace(" ", "_"), mode)
            beam_results[label] = r
            rows.append({"stage": label, "items": r["rows"], "unit": "raw rows", "seconds": r["seconds"], "per_second": r["rows_per_s"]})
            print(f"{label}: {r['rows']} rows in {r['seconds']} s", flush=True)
        data = DatasetDir(work / "beam_multi_processing_x2")
        train_prefix = pipeline.batch_padded(
            prefix_examples(data.records("train", shuffle=True, seed=1), max_len=50), 512
        )
        test_eval = pipeline.batch_padded(eval_examples(data.records("test"), max_len=50, with_seen=True), 512)
        for label, ds in (("tf.data train prefixes (batch 512)", train_prefix), ("tf.data eval examples (batch 512)", test_eval)):
            with Timer() as t:
                n, rate = reader_rate(ds, args.repeats)
            rows.append({"stage": label, "items": n, "unit": "examples/pass", "seconds": round(t.seconds / args.repeats, 3), "per_second": round(rate)})
            print(f"{label}: {rate:,.0f} examples/s", flush=True)
        st = beam_results["beam multi_processing x2"]["stats"]
        dataset_table = {
            "users": st["stages"]["users"],
            "items": st["num_items"] - 2,
            "interactions": st["stages"]["interactions"],
            "sessions (30 min gap)": st["stages"]["sessions"],
            **{f"{s} records": v["records"] for s, v in st["splits"].items()},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = machine()
    text = table(rows, ["stage", "items", "unit", "seconds", "per_second"], title="Data path throughput on ml-100k")
    print()
    print(text)
    print()
    print(table([dataset_table], list(dataset_table), title="ml-100k after the job (ratings >= 3, 10-core, LOO)"))
    print(f"\nmachine: {info}  peak RSS {peak_rss_mb()} MB")
    write_results(RESULTS, "pipeline_throughput", {"machine": info, "rows": rows, "dataset": dataset_table, "command": "python -m benchmarks.speed.pipeline_throughput"})
    bar_plot(RESULTS, "pipeline_throughput", [r["stage"] for r in rows], {"per second": [r["per_second"] for r in rows]}, "rows or examples / s", "tfpps data path on ml-100k")
    return 0


if __name__ == "__main__":
    sys.exit(main())
