"""tfpps vs RecBole on MovieLens-100K under RecBole's sequential protocol, plus GRU4Rec's own protocol.

    python -m benchmarks.references.compare_recbole                      # everything (RecBole venv set up on demand)
    python -m benchmarks.references.compare_recbole --models gru4rec     # one model pair
    python -m benchmarks.references.compare_recbole --reuse-reference    # reuse RecBole results cached for this protocol

RecBole protocol (its ml-1m sequential benchmark applied to ml-100k): ratings >= 3, 10-core users
and items, chronological leave-one-out (valid = second last, test = last), full ranking over all
items, history NOT masked, max history 50, embedding size 64, early stopping on valid NDCG@10 with
patience 10, test with the best-valid weights. Both sides read the same raw file; the tfpps side
goes through the Beam job (identical counts: 939 users, 1,016 items, 80,393 interactions).

RecBole runs in its own virtualenv (``benchmarks/references/recbole/setup_env.sh``; recbole 1.2.1 on the
CPU build of torch 2.13.0), never as a tfpps dependency.

GRU4Rec protocol (``--official``): session-parallel mini-batches, BPR-max, n_sample 2048 on the
YOOCHOOSE 100k-click sample with GRU4Rec's last-day test split; Recall@20 and MRR@20 over all items.

Outputs a table (stdout), ``benchmarks/references/results/compare_recbole/compare_recbole.json`` and ``.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, bar_plot, machine, results_dir, table, write_results

RESULTS = results_dir(__file__)

RECBOLE_DIR = REPO / "benchmarks" / "references" / "recbole"
RECBOLE_PY = RECBOLE_DIR / ".venv" / "bin" / "python"
RECBOLE_NAMES = {"gru4rec": "GRU4Rec", "narm": "NARM", "hrm": "HRM"}
PY = sys.executable

# tfpps settings under RecBole's protocol: embedding 64 everywhere, RecBole's max length and early stopping.
PROTOCOL = ["--max_len=50", "--patience=10", "--valid_metric=ndcg@10", "--set", "eval.ks=[5,10,20]", "--mask_history=false"]
TFPPS_ARGS = {
    # official GRU4Rec training (session-parallel, XE + logQ over in-batch + 2048 shared samples), hidden = embedding = 64
    "gru4rec": ["--set", "model_params.layers=[64]", "--set", "model_params.logq=1.0"],
    # NARM with embedding 64 and RecBole's hidden size 128; official code's masked-softmax attention
    "narm": ["--set", "model_params.embedding_size=64", "--set", "model_params.hidden_size=128"],
    # HRM: configs/models/hrm.yaml (RecBole's settings, the paper's untied output vectors) with batch 512,
    # the best of {tied, untied} x {512, 4096} on validation NDCG@10; long epoch cap, early stopping
    "hrm": ["--batch_size=512", "--epochs=300"],
}
# RecBole reference settings. "converged": trained until early stopping on valid NDCG@10 (batch 512 for the
# RNNs so they converge in tens of epochs on CPU; HRM's run with RecBole's benchmark batch 4096 converged in
# 53 epochs). "capped": the quick 8-epoch setting (lr 5e-3, RecBole's best on ml-1m), still rising at the cap.
REFERENCE_PROFILES = {
    "converged": {
        "gru4rec": {"epochs": 40, "lr": 1e-3, "batch": 512, "patience": 5},
        "narm": {"epochs": 40, "lr": 1e-3, "batch": 512, "patience": 5},
        "hrm": {"epochs": 300, "lr": 1e-3, "batch": 4096, "patience": 10},
    },
    "capped": {m: {"epochs": 8, "lr": 5e-3, "batch": 4096, "patience": 10} for m in ("gru4rec", "narm", "hrm")},
}
OFFICIAL_ARGS = [
    "--dataset=yoochoose-100k", "--set", "eval.ks=[5,10,20]", "--valid_metric=recall@20",
    "--set", "model_params.loss=bpr-max", "--set", "model_params.n_sample=2048", "--epochs=10",
]


def run_tfpps(model: str, extra: list[str], tag: str, reuse: bool = False) -> dict:
    out = RESULTS / "runs" / f"{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    train_argv = [f"--model={model}", *extra, f"--run_dir=runs/bench-{tag}", "--verbose=2"]
    if reuse and out.exists() and json.loads(out.read_text()).get("argv") == train_argv:
        print(f"reusing tfpps result {out.relative_to(REPO)}", flush=True)
        return json.loads(out.read_text())
    cmd = [PY, "-m", "benchmarks.run_tfpps", "--out", str(out), "--", *train_argv]
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return json.loads(out.read_text())


def protocol_key(model: str, epochs: int, lr: float, batch: int = 4096, patience: int = 10) -> str:
    """Identifies a reference run: the model, epoch cap, learning rate, train batch and early-stopping
    patience (the rest of the protocol is fixed in run_recbole.py)."""
    text = f"{model}|epochs={epochs}|lr={lr!r}|ml-100k|recbole-protocol-v1"
    if (batch, patience) != (4096, 10):
        text += f"|batch={batch}|patience={patience}"
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def recbole_result_path(name: str, epochs: int, lr: float, batch: int = 4096, patience: int = 10) -> Path:
    return RESULTS / "recbole" / f"{name}-{protocol_key(name, epochs, lr, batch, patience)}.json"


def run_recbole(model: str, data_dir: Path, epochs: int, lr: float, reuse: bool, threads: int,
                batch: int = 4096, patience: int = 10, seed: int | None = None, out: Path | None = None) -> dict:
    """Run (or reuse) one RecBole reference; ``seed``/``out`` for repeats with other seeds."""
    name = RECBOLE_NAMES[model]
    out = out or recbole_result_path(name, epochs, lr, batch, patience)
    if reuse and out.exists() and json.loads(out.read_text()).get("status") == "done":
        print(f"reusing RecBole result {out.relative_to(REPO)}", flush=True)
        return json.loads(out.read_text())
    if not RECBOLE_PY.exists():
        subprocess.run(["bash", str(RECBOLE_DIR / "setup_env.sh")], check=True, cwd=REPO)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(RECBOLE_PY), str(RECBOLE_DIR / "run_recbole.py"), "--model", name, "--data-dir", str(data_dir),
           "--epochs", str(epochs), "--lr", repr(lr), "--threads", str(threads), "--out", str(out),
           "--stopping-step", str(patience), "--set", f"train_batch_size={batch}"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return json.loads(out.read_text())


def tfpps_curve(r: dict) -> list[tuple[int, float, float]]:
    """(epoch, cumulative train seconds, val ndcg@10) from the run's validation.json."""
    from tfpps.runs.run_dir import RunDir

    state = RunDir(r["run_dir"]).load_validation()
    out, t = [], 0.0
    for h in state["history"]:
        t += h["train_seconds"]
        out.append((h["epoch"], t, h.get("val_ndcg@10")))
    return out


def recbole_curve(r: dict) -> list[tuple[int, float, float]]:
    secs = r.get("timing", {}).get("train_seconds_per_epoch", [])
    out, t = [], 0.0
    for i, v in enumerate(r.get("valid_history", [])):
        t += secs[i] if i < len(secs) else 0.0
        out.append((i + 1, t, v.get("ndcg@10") if isinstance(v, dict) else v))
    return out


def at_epoch(curve, epoch: int):
    vals = [v for e, _, v in curve if e <= epoch and v is not None]
    return max(vals) if vals else None


def tfpps_row(r: dict, label: str) -> dict:
    m = r["metrics"]
    n_train = r.get("train_examples_per_epoch")
    per_epoch = r["train_seconds_per_epoch"]
    return {
        "framework": "tfpps", "model": label, "recall@10": m["recall@10"], "mrr@10": m["mrr@10"], "ndcg@10": m["ndcg@10"],
        "recall@20": m["recall@20"], "mrr@20": m["mrr@20"], "s/epoch": per_epoch,
        "examples/s": round(n_train / per_epoch) if n_train and per_epoch else None,
        "epochs": r["epochs_run"], "best epoch": r["best_epoch"], "eval s": r["test_eval_seconds"], "peak MB": r["peak_rss_mb"],
    }


def recbole_row(r: dict, label: str) -> dict:
    t, timing = r["test"], r.get("timing", {})
    return {
        "framework": "RecBole", "model": label, "recall@10": t["recall@10"], "mrr@10": t["mrr@10"], "ndcg@10": t["ndcg@10"],
        "recall@20": t["recall@20"], "mrr@20": t["mrr@20"], "s/epoch": timing.get("train_seconds_per_epoch_mean"),
        "examples/s": round(timing["train_examples_per_second"]) if timing.get("train_examples_per_second") else None, "epochs": r.get("epochs_run"), "best epoch": r.get("best_epoch"),
        "eval s": timing.get("test_eval_seconds"), "peak MB": r.get("peak_rss_mb"),
    }


COLUMNS = ["framework", "model", "recall@10", "mrr@10", "ndcg@10", "recall@20", "mrr@20", "s/epoch", "examples/s",
           "epochs", "best epoch", "eval s", "peak MB", "val ndcg@10 at RecBole epochs"]


def curve_plot(curves: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, pts in curves.items():
        style = "-o" if label.startswith("tfpps") else "--s"
        axes[0].plot([e for e, _, _ in pts], [v for _, _, v in pts], style, label=label, markersize=3)
        axes[1].plot([t for _, t, _ in pts], [v for _, _, v in pts], style, label=label, markersize=3)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("cumulative training seconds")
    for ax in axes:
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
    axes[1].set_xscale("log")
    axes[0].legend()
    fig.suptitle("ml-100k, RecBole protocol: learning curves")
    fig.tight_layout()
    path = RESULTS / "compare_recbole_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="gru4rec,narm")
    p.add_argument("--epochs", type=int, default=20, help="tfpps epoch cap (early stopping: patience 10)")
    p.add_argument("--recbole-profile", choices=sorted(REFERENCE_PROFILES), default="converged",
                   help="RecBole settings per model (see REFERENCE_PROFILES); converged runs take hours on 2 CPU cores")
    p.add_argument("--recbole-epochs", type=int, default=None, help="override the profile's epoch cap")
    p.add_argument("--recbole-lr", type=float, default=None, help="override the profile's learning rate")
    p.add_argument("--recbole-threads", type=int, default=1, help="torch threads (1 was fastest on 2 shared cores)")
    p.add_argument("--reuse-reference", action="store_true", help="reuse cached RecBole results for this exact protocol")
    p.add_argument("--reuse-tfpps", action="store_true", help="reuse tfpps results of runs with identical arguments")
    p.add_argument("--tfpps-result", action="append", default=[], metavar="MODEL=PATH",
                   help="use this finished tfpps run (a benchmarks.run_tfpps JSON, which records its command) "
                        "for MODEL instead of training it, e.g. a run with a longer epoch cap")
    p.add_argument("--skip-recbole", action="store_true")
    p.add_argument("--official", action="store_true", help="also run GRU4Rec's own protocol on YOOCHOOSE-100k")
    p.add_argument("--only-official", action="store_true")
    args = p.parse_args(argv)

    from tfpps.data.datasets import ensure_dataset, shared_data_dir

    data_dir = shared_data_dir() / "ml-100k"
    if not (data_dir / "ml-100k.inter").exists():
        print(f"skipped: {data_dir} not found (set TFPPS_SHARED_DATA)")
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    rows, raw, curves = [], {}, {}
    if not args.only_official:
        ensure_dataset("ml-100k")
        stats = json.loads((REPO / "data_out" / "ml-100k" / "stats.json").read_text())
        n_train = stats["splits"]["train"]["interactions"] - stats["splits"]["train"]["records"]
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            given = dict(item.split("=", 1) for item in args.tfpps_result)
            if model in given:
                r = json.loads(Path(given[model]).read_text())
                r["result_file"] = given[model]
                print(f"using tfpps result {given[model]}: {' '.join(r.get('argv', []))}", flush=True)
            else:
                r = run_tfpps(model, ["--dataset=ml-100k", *PROTOCOL, f"--epochs={args.epochs}", *TFPPS_ARGS.get(model, [])], f"ml100k-{model}", args.reuse_tfpps)
            r["train_examples_per_epoch"] = n_train
            raw[f"tfpps/{model}"] = r
            rows.append(tfpps_row(r, model))
            curves[f"tfpps {model}"] = tfpps_curve(r)
            if not args.skip_recbole and model in RECBOLE_NAMES:
                ref = dict(REFERENCE_PROFILES[args.recbole_profile][model])
                ref["epochs"] = args.recbole_epochs or ref["epochs"]
                ref["lr"] = args.recbole_lr or ref["lr"]
                rb = run_recbole(model, data_dir, ref["epochs"], ref["lr"], args.reuse_reference, args.recbole_threads,
                                 batch=ref["batch"], patience=ref["patience"])
                rb["reference_settings"] = ref
                raw[f"recbole/{model}"] = rb
                rows.append(recbole_row(rb, model))
                curves[f"RecBole {model}"] = recbole_curve(rb)
    official = []
    if args.official or args.only_official:
        r = run_tfpps("gru4rec", OFFICIAL_ARGS, "yoochoose-gru4rec-bprmax", args.reuse_tfpps)
        raw["tfpps/gru4rec-official"] = r
        official.append({"model": "gru4rec (BPR-max, n_sample 2048)", "dataset": "yoochoose-100k, last day",
                         "recall@20": r["metrics"]["recall@20"], "mrr@20": r["metrics"]["mrr@20"],
                         "recall@10": r["metrics"]["recall@10"], "mrr@10": r["metrics"]["mrr@10"],
                         "s/epoch": r["train_seconds_per_epoch"], "epochs": r["epochs_run"],
                         "test examples": r["metrics"]["num_examples"]})
    for row in rows:  # equal epoch budget: best validation NDCG@10 within the epochs the RecBole run used
        budget = (raw.get(f"recbole/{row['model']}") or {}).get("epochs_run")
        row["val ndcg@10 at RecBole epochs"] = at_epoch(curves.get(f"{row['framework']} {row['model']}", []), budget) if budget else None
    info = machine()
    text = table(rows, COLUMNS, "ml-100k, RecBole protocol (test split, full ranking)") if rows else ""
    if official:
        text += "\n\n" + table(official, list(official[0]), "GRU4Rec's own protocol")
    print("\n" + text + f"\n\nmachine: {info}")
    for pair in {r["model"] for r in rows}:
        t = next((r for r in rows if r["model"] == pair and r["framework"] == "tfpps"), None)
        b = next((r for r in rows if r["model"] == pair and r["framework"] == "RecBole"), None)
        if t and b and b["s/epoch"]:
            print(f"{pair}: tfpps/RecBole  recall@10 x{t['recall@10'] / b['recall@10']:.2f}  ndcg@10 x{t['ndcg@10'] / b['ndcg@10']:.2f}"
                  f"  mrr@10 x{t['mrr@10'] / b['mrr@10']:.2f}  speed per epoch x{b['s/epoch'] / t['s/epoch']:.1f}")
    write_results(RESULTS, "compare_recbole", {"started": started, "machine": info, "rows": rows, "official": official, "raw": raw,
                                      "curves": curves, "recbole_profile": args.recbole_profile,
                                      "command": "python -m benchmarks.references.compare_recbole " + " ".join(argv or sys.argv[1:])})
    if rows:
        labels = [f"{r['framework']}\n{r['model']}" for r in rows]
        bar_plot(RESULTS, "compare_recbole", labels, {m: [r[m] for r in rows] for m in ("recall@10", "ndcg@10", "mrr@10")},
                 "metric @10", "ml-100k, RecBole protocol: tfpps vs RecBole")
    if curves:
        curve_plot(curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
