"""Latency of exported models on CPU: one request, and a batch of 256 requests (p50/p99).

    python -m benchmarks.speed.export_latency [--models gru4rec,narm,sknn,vsknn] [--dataset auto|synthetic|ml-100k|...]
        [--epochs 1] [--single 500] [--batched 60] [--reuse] [--name export_latency]

Trains each model briefly (``--epochs``; the KNN baselines are just fitted)
on MovieLens-100K when the shared data is there (RecBole's protocol,
``configs/datasets/ml-100k.yaml``), else on the synthetic default (the output
says which; ``--dataset`` picks one), exports it with
``tfpps.export`` (BruteForce, and ScaNN as well when the ``scann`` package
is installed, with the overlap of its top-10 with BruteForce's),
reloads the SavedModel with ``tf.saved_model.load`` and times its
``serving_default`` signature from Python, the way an in-process client
calls it: raw user and item ids in (the lookup runs in the graph), top-10
item ids and scores out, ``.numpy()`` included. Requests are real test-split
histories (most recent 50 items), a different one per call. The GPU is
hidden: these are CPU numbers. Prints a table and writes
``benchmarks/speed/results/export_latency/<name>.{json,png}`` (``--name``, default ``export_latency``).
"""
from __future__ import annotations

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU latency, even on a machine with a GPU

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, bar_plot, machine, peak_rss_mb, results_dir, table, write_results

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.config import build_run_config
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.examples.prefix import eval_examples
from tfpps.data.datasets import ensure_dataset, shared_data_dir
from tfpps.serving.export import export_run
from tfpps.runs.run_dir import RunDir
from tfpps.serving.exported import load_exported
from tfpps.serving.module import SCANN_MISSING, scann_available

RESULTS = results_dir(__file__)

BATCH = 256
K = 10


def pick_dataset(name: str = "auto") -> tuple[str, str]:
    if name == "synthetic" or (name == "auto" and not (shared_data_dir() / "ml-100k" / "ml-100k.inter").exists()):
        return "synthetic", "synthetic default" + (" (no ml-100k under the shared data folder)" if name == "auto" else "")
    if name in ("auto", "ml-100k"):
        return "ml-100k", "MovieLens-100K (ratings >= 3, 10-core, leave-one-out)"
    return name, name


def train_briefly(model: str, dataset: str, epochs: int, reuse: bool) -> Path:
    run_dir = REPO / "runs" / f"bench-export-{model}-{dataset}"
    if reuse and RunDir(run_dir).metrics.exists():
        return run_dir
    from tfpps.runs.trainer import train

    run = build_run_config(model, dataset=dataset, overrides={"epochs": str(epochs), "run_dir": str(run_dir), "verbose": "2"})
    train(run, fresh=True)
    return run_dir


def test_requests(data: DatasetDir, max_len: int, n: int) -> list[tuple[str, list[str]]]:
    """``n`` (user, history) pairs of raw ids from the test split (most recent ``max_len`` items)."""
    items, users = data.vocab("items"), data.vocab("users")
    out = []
    for ex in eval_examples(data.records("test"), max_len).take(n):
        length = int(ex["length"])
        out.append((users[int(ex["user_id"])], [items[int(i)] for i in ex["item_ids"].numpy()[:length]]))
    return out


def as_tensors(requests: list[tuple[str, list[str]]]) -> tuple[tf.Tensor, tf.Tensor]:
    width = max([1] + [len(h) for _, h in requests])
    return tf.constant([u for u, _ in requests]), tf.constant([h + [""] * (width - len(h)) for _, h in requests])


def time_calls(fn, inputs: list[tuple[tf.Tensor, tf.Tensor]], calls: int, warmup: int) -> np.ndarray:
    """Seconds per call of ``fn`` over ``calls`` calls cycling through ``inputs`` (after ``warmup`` calls)."""
    for i in range(warmup):
        u, h = inputs[i % len(inputs)]
        fn(user_id=u, history=h)["item_ids"].numpy()
    times = np.empty(calls)
    for i in range(calls):
        u, h = inputs[i % len(inputs)]
        start = time.perf_counter()
        out = fn(user_id=u, history=h)
        out["item_ids"].numpy(), out["scores"].numpy()
        times[i] = time.perf_counter() - start
    return times


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="gru4rec,narm,sknn,vsknn")
    p.add_argument("--dataset", default="auto", help="auto (default): ml-100k when the shared data is there, else synthetic")
    p.add_argument("--name", default="export_latency", help="results file name under benchmarks/speed/results/export_latency/")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per model (latency does not depend on them)")
    p.add_argument("--single", type=int, default=500, help="timed single-request calls")
    p.add_argument("--batched", type=int, default=60, help=f"timed calls with {BATCH} requests")
    p.add_argument("--reuse", action="store_true", help="reuse finished runs in runs/bench-export-*")
    p.add_argument("--index", default="both", choices=["both", "auto", "brute-force", "scann"],
                   help="both (default): BruteForce, and ScaNN too when the scann package is installed")
    args = p.parse_args(argv)

    dataset, described = pick_dataset(args.dataset)
    print(f"dataset: {described}", flush=True)
    data = DatasetDir(ensure_dataset(dataset))
    indexes = ["brute-force", "scann"] if args.index == "both" else [args.index]
    if "scann" in indexes and args.index == "both" and not scann_available():
        print(SCANN_MISSING, flush=True)
        indexes = ["brute-force"]
    rows, details = [], {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        run_dir = train_briefly(model, dataset, args.epochs, args.reuse)
        reference = None  # brute-force top-k of the request pool, to measure ScaNN's overlap with it
        for index in indexes:
            export_dir = run_dir / f"export-{index}"
            said = []
            manifest = export_run(run_dir, export_dir, k=K, index=index, overwrite=True, log=said.append)
            for line in said:
                print(line, flush=True)
            t0 = time.perf_counter()
            loaded, _ = load_exported(export_dir)
            load_s = time.perf_counter() - t0
            fn = loaded.signatures["serving_default"]
            pool = test_requests(data, manifest["max_len"], 4 * BATCH)
            singles = [as_tensors([r]) for r in pool]
            batches = [as_tensors(pool[i : i + BATCH]) for i in range(0, len(pool) - BATCH + 1, BATCH)]
            top = np.concatenate([fn(user_id=u, history=h)["item_ids"].numpy() for u, h in batches])
            overlap = None
            if manifest["retrieval"] == "brute-force":
                reference = top
            elif reference is not None:
                overlap = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(top, reference)]))
            size_mb = sum(f.stat().st_size for f in export_dir.rglob("*") if f.is_file()) / 2**20
            for label, inputs, calls, warmup, n in (
                ("1 request", singles, args.single, 30, 1),
                (f"batch of {BATCH}", batches, args.batched, 5, BATCH),
            ):
                t = time_calls(fn, inputs, calls, warmup) * 1000
                row = {
                    "model": model,
                    "index": manifest["retrieval"],
                    "request": label,
                    "p50 ms": round(float(np.percentile(t, 50)), 3),
                    "p99 ms": round(float(np.percentile(t, 99)), 3),
                    "mean ms": round(float(t.mean()), 3),
                    "requests/s": round(n * 1000 / float(np.percentile(t, 50))),
                    "calls": calls,
                    "top-10 overlap with brute-force": 1.0 if manifest["retrieval"] == "brute-force" else overlap,
                }
                rows.append(row)
                print(f"{model} {manifest['retrieval']} {label}: p50 {row['p50 ms']} ms, p99 {row['p99 ms']} ms", flush=True)
            details[f"{model}/{manifest['retrieval']}"] = {
                "run_dir": str(run_dir),
                "manifest": manifest,
                "load_seconds": round(load_s, 3),
                "savedmodel_mb": round(size_mb, 2),
            }

    info = machine()
    info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    info["tensorflow"] = tf.__version__
    info["scann"] = _version("scann") if scann_available() else None
    info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)"
    cols = ["model", "index", "request", "p50 ms", "p99 ms", "mean ms", "requests/s", "calls", "top-10 overlap with brute-force"]
    text = table(rows, cols, title=f"Exported model latency on CPU, top-{K} ({described})")
    print()
    print(text)
    for name, d in details.items():
        print(f"{name}: SavedModel {d['savedmodel_mb']} MB, loads in {d['load_seconds']} s")
    print(f"\nmachine: {info}  peak RSS {peak_rss_mb()} MB")
    write_results(RESULTS, args.name, {
        "command": "python -m benchmarks.speed.export_latency " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": described, "k": K, "batch": BATCH, "machine": info, "rows": rows, "models": details,
    })
    labels = [f"{r['model']} {r['index']}\n{r['request']}" for r in rows]
    bar_plot(RESULTS, args.name, labels, {"p50 ms": [r["p50 ms"] for r in rows], "p99 ms": [r["p99 ms"] for r in rows]},
             "milliseconds per call", f"exported top-{K} latency on CPU ({dataset})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
