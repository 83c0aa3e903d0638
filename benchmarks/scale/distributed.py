"""Single-worker vs multi-worker (MultiWorkerMirroredStrategy) NARM training: speed and test metrics.

    python -m benchmarks.scale.distributed [--dataset=ml-100k] [--workers=2] [--epochs=5] [--reuse]

Both runs train NARM (configs/models/narm.yaml: Adam 1e-3, global batch 512, emb 50 / hidden 100) for the
same number of epochs with early stopping off and the same global batch: the single worker takes batches of
512; each of the ``--workers`` processes started by ``python -m tfpps.launch`` on 127.0.0.1 takes 512 /
workers of its own file shard per synchronous step (gradients all-reduced). Test metrics are those of the
best validation epoch (full ranking). The dataset is MovieLens-100K (RecBole's protocol) when
``../shared/data`` has it, else the synthetic default. ``--reuse`` re-reads finished runs' results.

Writes ``benchmarks/scale/results/distributed/distributed.json`` and ``distributed.png`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, bar_plot, machine, results_dir, table, write_results

RESULTS = results_dir(__file__)


def _dataset_default() -> str:
    shared = Path(os.environ.get("TFPPS_SHARED_DATA", REPO.parent / "shared" / "data"))
    return "ml-100k" if (shared / "ml-100k").exists() or (REPO / "data_out" / "ml-100k").exists() else "synthetic"


def _train_args(dataset: str, epochs: int, run_dir: Path) -> list[str]:
    return ["--model=narm", f"--dataset={dataset}", f"--epochs={epochs}", "--patience=0", "--valid_metric=ndcg@10",
            "--set", "eval.ks=[5,10,20]", f"--run_dir={run_dir}", "--verbose=2", "--fresh"]


def run_recorded(name: str, cmd: list[str], run_dir: Path, reuse: bool, results: Path = RESULTS) -> dict:
    """Run ``cmd`` (a training that writes ``run_dir``) unless ``reuse`` finds its record; the record and the
    log go to ``results/runs/distributed-<name>.{json,log}``."""
    out = results / "runs" / f"distributed-{name}.json"
    if reuse and out.exists() and json.loads(out.read_text()).get("cmd") == cmd:
        print(f"reusing {out}", flush=True)
        return json.loads(out.read_text())
    print("$ " + " ".join(cmd), flush=True)
    load_before = os.getloadavg()
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True, capture_output=True)
    wall = time.time() - start
    log = proc.stdout + proc.stderr
    (results / "runs").mkdir(parents=True, exist_ok=True)
    (results / "runs" / f"distributed-{name}.log").write_text(log)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{log[-4000:]}")
    from tfpps.runs.run_dir import RunDir

    metrics, history = RunDir(run_dir).load_metrics(), RunDir(run_dir).load_validation()["history"]
    record = {"cmd": cmd, "wall_seconds": round(wall, 1), "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "metrics": metrics, "history": history}
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _steps_per_epoch(log: str) -> int | None:
    """``N/N - ...s/epoch`` lines of Keras' verbose=2 output (the chief's, prefixed [w0] under the launcher)."""
    for line in log.splitlines():
        line = line.removeprefix("[w0] ")
        head = line.split(" - ", 1)[0]
        if "/" in head and head.replace("/", "").isdigit():
            return int(head.split("/")[0])
    return None


def _row(setup: str, workers: int, record: dict, global_batch: int, name: str) -> dict:
    epochs = [h for h in record["history"] if "train_seconds" in h]
    seconds = [h["train_seconds"] for h in epochs]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    log = (RESULTS / "runs" / f"distributed-{name}.log").read_text()
    steps = _steps_per_epoch(log)
    examples = steps * global_batch if steps else None  # trained per epoch (the last batch of an epoch may be short)
    m = record["metrics"]["metrics"]
    return {
        "setup": setup, "workers": workers, "global batch": global_batch, "per-replica batch": global_batch // workers,
        "steps/epoch": steps, "first epoch s": round(seconds[0], 1), "s/epoch": round(steady, 1),
        "examples/s": round(examples / steady) if examples else None, "wall s": record["wall_seconds"],
        "best epoch": record["metrics"]["best_epoch"],
        "recall@10": round(m["recall@10"], 4), "ndcg@10": round(m["ndcg@10"], 4), "mrr@10": round(m["mrr@10"], 4),
        "recall@20": round(m["recall@20"], 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=None, help="default: ml-100k when available, else synthetic")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--reuse", action="store_true", help="reuse finished runs with identical commands")
    args = p.parse_args(argv)
    dataset = args.dataset or _dataset_default()
    global_batch = 512  # configs/models/narm.yaml
    runs = REPO / "runs"
    single_dir, multi_dir = runs / "bench-distributed-single", runs / f"bench-distributed-{args.workers}workers"
    single_cmd = [sys.executable, "-m", "tfpps.train", *_train_args(dataset, args.epochs, single_dir)]
    multi_cmd = [sys.executable, "-m", "tfpps.launch", f"--workers={args.workers}", "--",
                 *_train_args(dataset, args.epochs, multi_dir)]
    single = run_recorded("single", single_cmd, single_dir, args.reuse)
    multi = run_recorded(f"{args.workers}workers", multi_cmd, multi_dir, args.reuse)
    rows = [
        _row("single worker (--strategy=default)", 1, single, global_batch, "single"),
        _row(f"tfpps.launch --workers={args.workers} (multiworker)", args.workers, multi, global_batch, f"{args.workers}workers"),
    ]
    columns = ["setup", "workers", "global batch", "per-replica batch", "steps/epoch", "first epoch s", "s/epoch",
               "examples/s", "wall s", "best epoch", "recall@10", "ndcg@10", "mrr@10", "recall@20"]
    info = machine()
    title = f"NARM on {dataset}, {args.epochs} epochs ({info['cpu']}, {info['cores']} cores)"
    text = table(rows, columns, title)
    print(text)
    cmd = "python -m benchmarks.scale.distributed " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(RESULTS, "distributed", {"command": cmd.strip(), "dataset": dataset, "epochs": args.epochs,
                                  "workers": args.workers, "machine": info, "rows": rows,
                                  "runs": {"single": single, "multi": multi}})
    labels = [r["setup"].split(" (")[0] for r in rows]
    bar_plot(RESULTS, "distributed", labels, {"s/epoch": [r["s/epoch"] for r in rows], "wall s / 10": [r["wall s"] / 10 for r in rows],
                                     "recall@10 x 100": [100 * r["recall@10"] for r in rows],
                                     "ndcg@10 x 100": [100 * r["ndcg@10"] for r in rows]},
             ylabel="value", title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
