"""HRM, tfpps vs RecBole over three seeds each (ml-100k, RecBole protocol): mean and sd per metric.

    python -m benchmarks.hrm_seeds            # trains what is missing (RecBole in its own venv)
    python -m benchmarks.hrm_seeds --reuse    # reuse finished runs with the same settings

One seed of HRM on 939 test users moves Recall@10 by about +-0.01, more than the difference between
the frameworks, so the single-seed comparison of ``compare_recbole`` is repeated here: tfpps with
``configs/models/hrm.yaml`` + batch 512 (the compare_recbole setting) for seeds 42, 43, 44; RecBole 1.2.1
with its benchmark settings (batch 4096, lr 1e-3, patience 10) for seeds 2020, 2021, 2022. Seeds 42
and 2020 are the runs of ``compare_recbole``.

Writes ``benchmarks/results/hrm_seeds.json`` and ``.png`` and prints the table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchmarks.common import RESULTS, bar_plot, machine, table, write_results
from benchmarks.compare_recbole import PROTOCOL, TFPPS_ARGS, run_recbole, run_tfpps

TFPPS_SEEDS = (42, 43, 44)
RECBOLE_SEEDS = (2020, 2021, 2022)
METRICS = ("recall@10", "mrr@10", "ndcg@10", "recall@20")


def tfpps_run(seed: int, reuse: bool) -> dict:
    extra = ["--dataset=ml-100k", *PROTOCOL, "--epochs=20", *TFPPS_ARGS["hrm"]]
    if seed == 42:  # compare_recbole's run (train.seed default 42)
        return run_tfpps("hrm", extra, "ml100k-hrm", reuse)
    return run_tfpps("hrm", [*extra, f"--seed={seed}"], f"ml100k-hrm-seed{seed}", reuse)


def recbole_run(seed: int, reuse: bool, data_dir) -> dict:
    """RecBole's HRM with its benchmark settings (batch 4096, lr 1e-3, patience 10); seed 2020 is
    compare_recbole's run."""
    out = None if seed == 2020 else RESULTS / "recbole" / f"HRM-seed{seed}.json"
    return run_recbole("hrm", data_dir, 300, 1e-3, reuse, threads=1, seed=None if seed == 2020 else seed, out=out)


def summary(label: str, values: list[dict], per_epoch: list[float]) -> dict:
    row = {"framework": label, "seeds": len(values)}
    for m in METRICS:
        vals = [v[m] for v in values]
        row[m] = round(statistics.mean(vals), 4)
        row[f"{m} sd"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
    row["s/epoch (mean)"] = round(statistics.mean(per_epoch), 2)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args(argv)
    from tfpps.data.datasets import shared_data_dir

    data_dir = shared_data_dir() / "ml-100k"
    if not (data_dir / "ml-100k.inter").exists():
        print(f"skipped: {data_dir} not found (set TFPPS_SHARED_DATA)")
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    tf_runs = {s: tfpps_run(s, args.reuse) for s in TFPPS_SEEDS}
    rb_runs = {s: recbole_run(s, args.reuse, data_dir) for s in RECBOLE_SEEDS}
    per_seed = [{"framework": "tfpps", "seed": s, **{m: r["metrics"][m] for m in METRICS}, "best epoch": r["best_epoch"]}
                for s, r in tf_runs.items()]
    per_seed += [{"framework": "RecBole", "seed": s, **{m: r["test"][m] for m in METRICS}, "best epoch": r["best_epoch"]}
                 for s, r in rb_runs.items()]
    rows = [
        summary("tfpps", [r["metrics"] for r in tf_runs.values()], [r["train_seconds_per_epoch"] for r in tf_runs.values()]),
        summary("RecBole", [r["test"] for r in rb_runs.values()],
                [r["timing"]["train_seconds_per_epoch_mean"] for r in rb_runs.values()]),
    ]
    info = machine()
    cols = ["framework", "seeds"] + [c for m in METRICS for c in (m, f"{m} sd")] + ["s/epoch (mean)"]
    print("\n" + table(rows, cols, "HRM on ml-100k, RecBole protocol: mean over seeds")
          + "\n\n" + table(per_seed, ["framework", "seed", *METRICS, "best epoch"], "per seed") + f"\n\nmachine: {info}")
    write_results("hrm_seeds", {"started": started, "machine": info, "rows": rows, "per_seed": per_seed,
                                "command": "python -m benchmarks.hrm_seeds " + " ".join(argv or sys.argv[1:])})
    bar_plot("hrm_seeds", [r["framework"] for r in rows], {m: [r[m] for r in rows] for m in METRICS[:3]},
             "mean over 3 seeds", "HRM on ml-100k: tfpps vs RecBole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
