"""Full-ranking test evaluation time on a public benchmark: every test example ranked against every item.

    python -m benchmarks.speed.full_eval                                    # DIGINETICA: 60,858 prefixes x 43,097 items
    python -m benchmarks.speed.full_eval --dataset=yoochoose-100k --models gru4rec

For each model it builds the model with its benchmark settings (GRU4Rec:
``configs/models/gru4rec_diginetica.yaml`` on DIGINETICA, 512 units; NARM: ``configs/models/narm.yaml``),
then times :func:`tfpps.runs.trainer.evaluate_split` on the whole test split, the call the trainer
makes for the test metrics: one untimed warm-up (tracing, first reads) and ``--repeats`` timed runs.
The weights are the untrained initial ones: the work of a full ranking does not depend on them, and
the metrics printed only show that every example was scored. The target of issue 18 is <= 20 s for
GRU4Rec and NARM on DIGINETICA's 60,858 test prefixes; the table states it as examples/s as well.
Run it with nothing else on the machine; the load average before and after is recorded.

The dataset is built on first use (``python -m tfpps.data.build --dataset=diginetica-srgnn``,
about a minute and a half on the 2-core VM; needs ``../shared/data``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import tfpps  # noqa: F401

from benchmarks.common import bar_plot, machine, results_dir, table, write_results
from tfpps.config import build_run_config
from tfpps.data.datasets import ensure_dataset
from tfpps.runs import trainer

RESULTS = results_dir(__file__)
TARGET_SECONDS = 20.0
MODEL_CONFIGS = {  # model -> its benchmark setting per dataset (None: configs/models/<model>.yaml)
    "gru4rec": {"diginetica-srgnn": "configs/models/gru4rec_diginetica.yaml", "yoochoose-100k": "configs/models/gru4rec_bprmax.yaml"},
    "narm": {},
}


def time_model(model_name: str, dataset: str, repeats: int) -> dict:
    config_file = MODEL_CONFIGS.get(model_name, {}).get(dataset)
    run = build_run_config(model=model_name, dataset=dataset, config_file=config_file)
    data = trainer.open_dataset(run)
    model = trainer.build_model(run, data)
    trainer.evaluate_split(model, data, "test", run)  # warm-up: tracing, first reads
    seconds, metrics = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        metrics = trainer.evaluate_split(model, data, "test", run)
        seconds.append(time.perf_counter() - start)
    best = statistics.median(seconds)
    examples = int(metrics["num_examples"])
    return {
        "model": model_name,
        "setting": config_file or f"configs/models/{model_name}.yaml",
        "examples": examples,
        "items": int(data.num_items),
        "seconds": [round(s, 2) for s in seconds],
        "median_seconds": round(best, 2),
        "examples_per_s": round(examples / best),
        "target_seconds": TARGET_SECONDS,
        "meets_target": "yes" if best <= TARGET_SECONDS else "no",
        "recall@20_untrained": round(float(metrics["recall@20"]), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed.full_eval", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="diginetica-srgnn")
    p.add_argument("--models", default="gru4rec,narm", help="comma list")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    ensure_dataset(args.dataset, quiet=True)
    load_before = os.getloadavg()
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows.append(time_model(name, args.dataset, args.repeats))
        print(f"{name}: {rows[-1]['median_seconds']} s for {rows[-1]['examples']} examples", flush=True)
    load_after = os.getloadavg()
    print(table(rows, ["model", "examples", "items", "median_seconds", "examples_per_s", "target_seconds", "meets_target"],
                title=f"Full-ranking test evaluation, {args.dataset} (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)"))
    name = f"full_eval_{args.dataset}"
    write_results(RESULTS, name, {"benchmark": "full_eval", "dataset": args.dataset, "machine": machine(), "rows": rows,
                                  "repeats": args.repeats, "load_average_before": load_before, "load_average_after": load_after,
                                  "argv": argv if argv is not None else []})
    bar_plot(RESULTS, name, [r["model"] for r in rows], {"seconds (median)": [r["median_seconds"] for r in rows]},
             ylabel="seconds", title=f"Full-ranking test evaluation, {args.dataset} (target <= {TARGET_SECONDS:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
