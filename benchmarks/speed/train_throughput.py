"""Training throughput of GRU4Rec and NARM on this machine's device (GPU if TensorFlow sees one, else CPU).

    python -m benchmarks.speed.train_throughput                 # ml-100k from ../shared/data, else the synthetic default
    python -m benchmarks.speed.train_throughput --epochs 5 --dataset synthetic --reuse

Each model trains ``--epochs`` epochs in its own process with the settings of ``benchmarks.references.compare_recbole``
(GRU4Rec: official session-parallel training, batch 64; NARM: batch 512, embedding 64, hidden 128).
Throughput is training examples (next-item targets) per second over the epochs after the first, whose
time includes tracing and the first pass through the input pipeline; validation time is not counted.

Prints a table and writes ``benchmarks/speed/results/train_throughput/train_throughput[_<device>].{json,png}``, naming the device
(``nvidia-smi`` / TensorFlow's device list), the CPU, and the load average while it ran: on a shared box,
load above the core count inflates the times.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from benchmarks.common import REPO, bar_plot, machine, results_dir, run_tfpps_cached, table, write_results
from benchmarks.references.compare_recbole import TFPPS_ARGS

RESULTS = results_dir(__file__)

MODELS = ("gru4rec", "narm")


def tensorflow_devices() -> list[str]:
    """What TensorFlow (the training processes' library) sees, e.g. ``['GPU:0 NVIDIA H100 80GB HBM3']``."""
    import subprocess

    code = (
        "import tfpps, tensorflow as tf\n"
        "for d in tf.config.list_physical_devices('GPU'):\n"
        "    print(d.name.split('device:')[-1], tf.config.experimental.get_device_details(d).get('device_name', ''))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def train_examples(dataset: str) -> int:
    """Next-item targets per epoch: interactions minus one per training sequence (from the job's stats)."""
    from tfpps.data.datasets import ensure_dataset

    path = ensure_dataset(dataset)
    stats = json.loads((path / "stats.json").read_text())
    train = stats["splits"]["train"]
    return train["interactions"] - train["records"]


def epoch_seconds(result: dict) -> list[float]:
    """Per-epoch training seconds from the run's ``validation.json``."""
    from tfpps.runs.run_dir import RunDir

    history = RunDir(REPO / result["run_dir"]).load_validation()["history"]
    return [h["train_seconds"] for h in history if "train_seconds" in h]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="auto", help="ml-100k, synthetic, or auto (ml-100k when ../shared/data has it)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per model (the first is reported apart)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--reuse", action="store_true", help="reuse finished runs made with the same arguments")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is not steady-state)")
    dataset = args.dataset
    if dataset == "auto":
        from tfpps.data.datasets import shared_data_dir

        dataset = "ml-100k" if (shared_data_dir() / "ml-100k" / "ml-100k.inter").exists() else "synthetic"

    info = machine()
    gpus = tensorflow_devices()
    device = gpus[0].split(" ", 1)[-1] if gpus else f"CPU ({info['cpu']}, {info['cores']} cores)"
    tag = "gpu" if gpus else "cpu"
    n_train = train_examples(dataset)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()[0]
    rows, raw = [], {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        argv_ = [f"--model={model}", f"--dataset={dataset}", f"--epochs={args.epochs}", "--patience=1000",
                 "--mask_history=false", "--max_len=50", "--verbose=2", *TFPPS_ARGS.get(model, []),
                 f"--run_dir=runs/throughput-{tag}-{dataset}-{model}"]
        result = run_tfpps_cached(RESULTS / "runs" / f"throughput-{tag}-{dataset}-{model}.json", argv_, args.reuse)
        secs = epoch_seconds(result)
        steady = statistics.median(secs[1:])
        rows.append({
            "model": model, "dataset": dataset, "device": device,
            "batch": result["config"]["train"]["batch_size"],
            "train examples/epoch": n_train,
            "first epoch s": round(secs[0], 2),
            "s/epoch (steady)": round(steady, 2),
            "examples/s": round(n_train / steady),
            "peak RSS MB": result.get("peak_rss_mb"),
        })
        raw[model] = {"argv": argv_, "epoch_seconds": secs, "metrics": result.get("metrics")}
    load_after = os.getloadavg()[0]
    cols = ["model", "dataset", "device", "batch", "train examples/epoch", "first epoch s", "s/epoch (steady)",
            "examples/s", "peak RSS MB"]
    print("\n" + table(rows, cols, f"Training throughput on {device}"))
    print(f"\nmachine: {info}\nTensorFlow GPUs: {gpus or 'none'}\nload average: {load_before:.1f} before, {load_after:.1f} after")
    name = f"train_throughput_{tag}"
    write_results(RESULTS, name, {
        "started": started, "machine": info, "tensorflow_gpus": gpus, "device": device,
        "load_average": {"before": load_before, "after": load_after}, "rows": rows, "runs": raw,
        "command": "python -m benchmarks.speed.train_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
    })
    bar_plot(RESULTS, name, [r["model"] for r in rows], {"examples/s": [r["examples/s"] for r in rows]}, "training examples / s",
             f"Training throughput on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
