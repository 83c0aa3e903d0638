"""Every model that trains under tf.distribute: one worker against ``--workers`` on 127.0.0.1, over seeds.

    python -m benchmarks.scale.distributed_models                          # narm + the search models, 3 seeds
    python -m benchmarks.scale.distributed_models --models=hem,qem --seeds=2 --epochs=2 --reuse

For each model and seed, the same command trains twice with the same GLOBAL batch (the model config's
``train.batch_size``), the same epochs and early stopping off: once as one process
(``python -m tfpps.train``, ``--strategy=default``) and once as ``--workers`` processes
(``python -m tfpps.launch --workers=N``: MultiWorkerMirroredStrategy, each worker reads its own file shard
and takes batches of global / N; gradients all-reduced). The test metric of the best validation epoch is
compared: the mean over seeds on each side, their difference, Welch's p, and the noise band = 2 x the
single-worker standard deviation over the seeds ("within noise" when the difference is inside it).

Data: GRU4Rec, HRNN, NARM, HRM, CML and HLRM on the synthetic default dataset (``synthetic``), the product-search models
(QEM, HEM, AEM, ZAM, HRNN-search) on ``synthetic-search``; both are built on first use.

``--models`` runs some of the models: the rows of the others are kept from the last results file when it was
made with the same workers, epochs and seeds (each row names the command that made it). Wall times include process start and,
for the workers, the cluster's set-up; on a 2-core machine the two workers share the cores, so this is a
correctness check of the distributed path, not a speed-up measurement.

Writes ``benchmarks/scale/results/distributed_models/distributed_models.json`` and ``.png`` and prints the table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from benchmarks.common import REPO, bar_plot, machine, mean_sd, model_list, results_dir, table, welch_p, write_results
from benchmarks.scale.distributed import run_recorded

RESULTS = results_dir(__file__)
MODELS = ("gru4rec", "hrnn", "narm", "hrm", "cml", "hlrm", "qem", "hem", "aem", "zam", "hrnn_search")
DATASET_OF = {m: "synthetic" for m in ("gru4rec", "hrnn", "narm", "hrm", "cml", "hlrm")}  # others: synthetic-search
METRIC = "ndcg@10"


def train_args(model: str, seed: int, epochs: int, run_dir) -> list[str]:
    dataset = DATASET_OF.get(model, "synthetic-search")
    return [f"--model={model}", f"--dataset={dataset}", f"--epochs={epochs}", "--patience=0", f"--seed={seed}",
            f"--valid_metric={METRIC}", "--set", "eval.ks=[10,20]", f"--run_dir={run_dir}", "--verbose=2", "--fresh"]


def one_model(model: str, seeds: list[int], workers: int, epochs: int, reuse: bool) -> dict:
    runs = REPO / "runs"
    sides: dict[str, list[dict]] = {"single": [], "multi": []}
    for seed in seeds:
        name = f"{model}-seed{seed}"
        single_dir, multi_dir = runs / f"bench-dist-{name}-single", runs / f"bench-dist-{name}-{workers}workers"
        single_cmd = [sys.executable, "-m", "tfpps.train", *train_args(model, seed, epochs, single_dir)]
        multi_cmd = [sys.executable, "-m", "tfpps.launch", f"--workers={workers}", "--",
                     *train_args(model, seed, epochs, multi_dir)]
        sides["single"].append(run_recorded(f"{name}-single", single_cmd, single_dir, reuse, RESULTS))
        sides["multi"].append(run_recorded(f"{name}-{workers}workers", multi_cmd, multi_dir, reuse, RESULTS))
    single = [r["metrics"]["metrics"][METRIC] for r in sides["single"]]
    multi = [r["metrics"]["metrics"][METRIC] for r in sides["multi"]]
    band = 2 * statistics.stdev(single) if len(single) > 1 else float("nan")
    diff = statistics.mean(multi) - statistics.mean(single)
    p = welch_p(multi, single)
    return {
        "model": model,
        "dataset": DATASET_OF.get(model, "synthetic-search"),
        f"1 worker {METRIC}": mean_sd(single),
        f"{workers} workers {METRIC}": mean_sd(multi),
        "difference": f"{diff:+.4f}",
        "noise band (2 sd, 1 worker)": f"±{band:.4f}",
        "within band": "yes" if abs(diff) <= band else "no",
        "Welch p": f"{p:.2f}" if p is not None else "",
        "wall s 1 / N workers": f"{statistics.mean(r['wall_seconds'] for r in sides['single']):.0f} / "
                                f"{statistics.mean(r['wall_seconds'] for r in sides['multi']):.0f}",
        "single": single,
        "multi": multi,
    }


def kept_rows(workers: int, epochs: int, seeds: list[int], exclude: set[str]) -> dict[str, dict]:
    """Rows of the last results file (same workers, epochs and seeds) for the models not in ``exclude``."""
    path = RESULTS / "distributed_models.json"
    if not path.exists():
        return {}
    last = json.loads(path.read_text())
    if (last.get("workers"), last.get("epochs"), last.get("seeds")) != (workers, epochs, seeds):
        return {}
    return {r["model"]: {**r, "command": r.get("command", last["command"])} for r in last["rows"]
            if r["model"] not in exclude}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3, help="seeds 1..N per model and side")
    p.add_argument("--reuse", action="store_true", help="reuse finished runs with identical commands")
    args = p.parse_args(argv)
    models = model_list(p, args.models, MODELS)
    if args.seeds < 1 or args.workers < 2:
        p.error("--seeds must be >= 1 and --workers >= 2")
    seeds = list(range(1, args.seeds + 1))
    cmd = "python -m benchmarks.scale.distributed_models " + " ".join(argv if argv is not None else sys.argv[1:])
    fresh = {m: {**one_model(m, seeds, args.workers, args.epochs, args.reuse), "command": cmd.strip()} for m in models}
    kept = kept_rows(args.workers, args.epochs, seeds, exclude=set(models))
    rows = [fresh.get(m) or kept[m] for m in MODELS if m in fresh or m in kept]
    columns = [c for c in rows[0] if c not in ("single", "multi", "command")]
    info = machine()
    title = (f"1 worker vs {args.workers} workers (tfpps.launch, MultiWorkerMirroredStrategy, same global batch), "
             f"{args.epochs} epochs, test {METRIC} of the best validation epoch, seeds {seeds[0]}..{seeds[-1]} "
             f"({info['cpu']}, {info['cores']} cores)")
    print(table(rows, columns, title))
    write_results(RESULTS, "distributed_models", {"command": cmd.strip(), "machine": info, "epochs": args.epochs,
                                                  "workers": args.workers, "seeds": seeds, "metric": METRIC, "rows": rows})
    bar_plot(RESULTS, "distributed_models", [r["model"] for r in rows],
             {"1 worker": [statistics.mean(r["single"]) for r in rows],
              f"{args.workers} workers": [statistics.mean(r["multi"]) for r in rows]},
             ylabel=f"test {METRIC}", title=f"1 vs {args.workers} workers, mean of {len(seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
