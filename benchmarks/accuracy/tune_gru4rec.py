"""A real GRU4Rec sweep on MovieLens-100K and the gain of its best config over the default one.

    python -m benchmarks.accuracy.tune_gru4rec                        # 16 random-search trials x 10 epochs, then the comparison
    python -m benchmarks.accuracy.tune_gru4rec --trials=8 --epochs=3 --seeds=42,43
    python -m benchmarks.accuracy.tune_gru4rec --fresh                # start the sweep and the comparison runs over

1. ``python -m tfpps.tune --model=gru4rec --dataset=ml-100k --tuner=random`` over the space of
   ``configs/tune/gru4rec.yaml`` (learning rate, momentum, batch size, layer size, negatives, their
   popularity exponent, logQ, dropout), every trial trained for the same epoch budget, selected on
   validation NDCG@10 (the best epoch's weights are kept, as in every tfpps run).
2. The default config (``configs/models/gru4rec.yaml``, the official GRU4Rec defaults) and the best
   trial's config (``best.yaml``) trained with the SAME epoch budget and seeds, scored on the test split
   (full ranking over all items). The best config's seed-42 run is the trial itself.

Both steps resume: finished trials and runs are reused (``--fresh`` deletes them first).
Outputs the tables (stdout), ``benchmarks/accuracy/results/tune_gru4rec/tune_gru4rec.json``, ``tune_gru4rec.png`` (trial vs
objective), ``tune_gru4rec_compare.png`` (best vs default, test), ``tune_gru4rec_trials.csv`` and
``tune_gru4rec_best.yaml``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, bar_plot, machine, results_dir, table, write_results

RESULTS = results_dir(__file__)

SWEEP_DIR = REPO / "runs" / "tune-gru4rec-ml-100k-bench"
COMPARE_DIR = REPO / "runs" / "tune-gru4rec-ml-100k-compare"
TRIAL_SEED = 42  # train.seed of every trial (TrainConfig default)
METRICS = ["recall@10", "mrr@10", "ndcg@10", "recall@20"]


def train_once(config_file: str | None, epochs: int, seed: int, run_dir: Path) -> dict:
    """One training run (reused when it finished before)."""
    from tfpps.runs.run_dir import RunDir

    files = RunDir(run_dir)
    if files.metrics.exists() and files.validation.exists():
        result = files.load_metrics()
    else:
        from tfpps.config import build_run_config
        from tfpps.runs.trainer import train

        overrides = {"train.epochs": epochs, "train.seed": seed, "train.run_dir": str(run_dir), "train.verbose": 2,
                     "train.valid_metric": "ndcg@10"}
        run = build_run_config("gru4rec", dataset="ml-100k", config_file=config_file, overrides=overrides)
        result = train(run, fresh=True)
    state = files.load_validation()
    return {"seed": seed, "run_dir": str(run_dir), "val_ndcg@10": state["best"], "best_epoch": state["best_epoch"],
            "test": result["metrics"], "s/epoch": result.get("train_seconds_per_epoch")}


def summarise(label: str, runs: list[dict]) -> dict:
    row = {"config": label, "seeds": len(runs)}
    for m in METRICS:
        values = [r["test"][m] for r in runs]
        row[m] = statistics.mean(values)
        row[f"{m} sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    row["val ndcg@10"] = statistics.mean(r["val_ndcg@10"] for r in runs)
    row["s/epoch"] = statistics.mean(r["s/epoch"] for r in runs if r["s/epoch"] is not None)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy.tune_gru4rec", description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=10, help="epoch budget of every trial and of the comparison runs")
    p.add_argument("--tuner", default="random")
    p.add_argument("--seeds", default="42,43,44", help="training seeds of the best-vs-default comparison (first = the sweep's)")
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.fresh:
        for d in (SWEEP_DIR, COMPARE_DIR):
            shutil.rmtree(d, ignore_errors=True)

    from tfpps.cli import tune
    from tfpps.reporting.figures import plot_sweep
    from tfpps.reporting.inputs import load_sweep
    from tfpps.runs.run_dir import RunDir

    sweep_argv = ["--model=gru4rec", "--dataset=ml-100k", f"--tuner={args.tuner}", f"--max-trials={args.trials}",
                  f"--dir={SWEEP_DIR}", f"--epochs={args.epochs}", "--seed=1", "--top=20"]  # trials train with seed 42
    result = tune.sweep(sweep_argv)
    sweep_seconds = sum(t["seconds"] or 0 for t in result["trials"])  # wall time of the trials, also when resumed
    best = result["best"]
    best_yaml = Path(result["dir"]) / "best.yaml"

    default_runs, best_runs = [], []
    for seed in seeds:
        default_runs.append(train_once(None, args.epochs, seed, COMPARE_DIR / f"default-seed{seed}"))
        if seed == TRIAL_SEED and best["run_dirs"]:  # the trial itself: same config, same seed
            run_dir = Path(best["run_dirs"][0])
            state, metrics = RunDir(run_dir).load_validation(), RunDir(run_dir).load_metrics()
            best_runs.append({"seed": seed, "run_dir": str(run_dir), "val_ndcg@10": state["best"], "best_epoch": state["best_epoch"],
                              "test": metrics["metrics"], "s/epoch": metrics.get("train_seconds_per_epoch")})
        else:
            best_runs.append(train_once(str(best_yaml), args.epochs, seed, COMPARE_DIR / f"best-seed{seed}"))
    rows = [summarise("default (configs/models/gru4rec.yaml)", default_runs), summarise(f"best (trial {best['trial_id']})", best_runs)]
    gain = {m: (rows[1][m] / rows[0][m] - 1.0) * 100 if rows[0][m] else None for m in METRICS}
    wins = sum(1 for d, b in zip(default_runs, best_runs) if b["test"]["ndcg@10"] > d["test"]["ndcg@10"])

    keys = list(best["hyperparameters"])
    cols = ["config", "seeds", *METRICS, "ndcg@10 sd", "val ndcg@10", "s/epoch"]
    print(f"\n=== sweep: {args.tuner} search, {len(result['trials'])} trials x {args.epochs} epochs, GRU4Rec on ml-100k "
          f"(selection on validation NDCG@10) ===")
    print(result["table"])
    print()
    print(table(rows, cols, title=f"test split, full ranking, mean over seeds {seeds}, {args.epochs} epochs each"))
    print("\ngain of best over default: " + ", ".join(f"{m} {g:+.1f}%" for m, g in gain.items())
          + f"; best > default on test NDCG@10 for {wins} of {len(seeds)} seeds")

    # outputs
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best_yaml, RESULTS / "tune_gru4rec_best.yaml")
    shutil.copyfile(Path(result["dir"]) / "trials.csv", RESULTS / "tune_gru4rec_trials.csv")
    sweep_data = load_sweep(Path(result["dir"]))
    plot_sweep(sweep_data, RESULTS / "tune_gru4rec.png", reference={"default config (seed 42)": default_runs[0]["val_ndcg@10"]})
    bar_plot("tune_gru4rec_compare", METRICS, {r["config"]: [r[m] for m in METRICS] for r in rows}, "test metric (mean over seeds)",
             f"GRU4Rec on ml-100k: best of {len(result['trials'])} trials vs default ({args.epochs} epochs)")
    payload = {
        "command": "python -m benchmarks.accuracy.tune_gru4rec " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "sweep": {"argv": sweep_argv, "dir": result["dir"], "seconds": round(sweep_seconds, 1), "tuned": keys,
                  "trials": result["trials"]},
        "comparison": {"epochs": args.epochs, "seeds": seeds, "rows": rows, "gain_percent": gain, "best_wins": wins,
                       "default_runs": default_runs, "best_runs": best_runs},
    }
    write_results(RESULTS, "tune_gru4rec", payload)
    print(f"\nwrote {RESULTS / 'tune_gru4rec.json'}, tune_gru4rec.png, tune_gru4rec_compare.png, tune_gru4rec_trials.csv, tune_gru4rec_best.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
