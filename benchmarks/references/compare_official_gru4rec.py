"""tfpps GRU4Rec against the official PyTorch GRU4Rec, same files, same settings, several seeds, one run.

    bash benchmarks/references/gru4rec_official/setup_env.sh
    git clone https://github.com/hidasib/GRU4Rec_PyTorch_Official /tmp/GRU4Rec_PyTorch_Official
    git -C /tmp/GRU4Rec_PyTorch_Official checkout d1fc31105577665d2f105de1c8d9a38d223a9a22
    python -m benchmarks.references.compare_official_gru4rec --official-dir /tmp/GRU4Rec_PyTorch_Official

Data: the YOOCHOOSE 100k-click sample in GRU4Rec's own files (``../shared/data/yoochoose-100k``),
``train_full`` for training and ``test`` for testing, exactly as the official ``run.py`` takes them:
every next click of every test session is scored against all training items (10,152 clicks),
standard ties, no masking of seen items. tfpps reads the same two files through its Beam job with
``--split=given`` and no validation carved out (``valid_days=0``), so both sides train on the same
70,278 clicks for a fixed number of epochs and test the last epoch, as the official code does.

Settings (``--settings``), both from the official code's own files:

* ``bprmax``: the RSC15 BPR-max constrained setting of the Theano original
  (``param_samples/rsc15_bpr-max_constrained.py``): layers [100], batch 32, lr 0.2, momentum 0.1,
  n_sample 2048, sample_alpha 0, bpreg 0.5, ELU 0.5, no dropout.
* ``xe``: ``paramfiles/rsc15_xe_shared_100_best.py``: cross-entropy, layers [100], batch 32, lr 0.2,
  momentum 0.2, dropout_p_hidden 0.4, n_sample 2048, sample_alpha 0.5, logq 1.

Each (setting, seed) trains once per side, each in its own process, one after the other (never in
parallel: the 2-core machine would slow both). The official side runs in its own venv
(``benchmarks/references/gru4rec_official/.venv``) with one torch thread; the seed moves torch's generator
(sampling, dropout; the official weight initialisation is always numpy seed 42). The table gives
the mean ± std over seeds of R@5/10/20 and MRR@5/10/20, seconds per epoch, test-evaluation seconds,
the tfpps/official ratios, and Welch's t-test p-value for R@20 and MRR@20.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO, bar_plot, machine, results_dir, run_tfpps_cached, table, welch_p, write_results

RESULTS = results_dir(__file__)

PINNED_COMMIT = "d1fc31105577665d2f105de1c8d9a38d223a9a22"
OFFICIAL_DIR = REPO / "benchmarks" / "references" / "gru4rec_official"
OFFICIAL_PY = OFFICIAL_DIR / ".venv" / "bin" / "python"
RUNNER = OFFICIAL_DIR / "run_official.py"
WORK = OFFICIAL_DIR / "work"

COMMON = {"constrained_embedding": True, "embedding": 0, "layers": [100], "batch_size": 32,
          "dropout_p_embed": 0.0, "n_sample": 2048}
SETTINGS = {
    "bprmax": {**COMMON, "loss": "bpr-max", "elu_param": 0.5, "dropout_p_hidden": 0.0, "learning_rate": 0.2,
               "momentum": 0.1, "sample_alpha": 0.0, "bpreg": 0.5, "logq": 0.0},
    "xe": {**COMMON, "loss": "cross-entropy", "elu_param": 0.0, "dropout_p_hidden": 0.4, "learning_rate": 0.2,
           "momentum": 0.2, "sample_alpha": 0.5, "bpreg": 0.0, "logq": 1.0},
}
TRAIN_KEYS = {"learning_rate", "momentum", "batch_size"}
CUTOFFS = (5, 10, 20)
METRICS = [f"{m}@{k}" for m in ("recall", "mrr") for k in CUTOFFS]


def official_params(setting: dict, epochs: int) -> str:
    """``run.py``'s ``-ps`` string (lists joined by ``/``)."""
    def fmt(v):
        return "/".join(map(str, v)) if isinstance(v, list) else str(v)
    return ",".join(f"{k}={fmt(v)}" for k, v in {**setting, "n_epochs": epochs}.items())


def tfpps_argv(setting: dict, epochs: int, seed: int, gru_cell: str, data_dir: str) -> list[str]:
    argv = ["--model=gru4rec", "--dataset=yoochoose-100k", "--config", "configs/models/gru4rec.yaml",
            "--set", f"data.dir={data_dir}",
            "--set", f"train.epochs={epochs}", "--set", f"train.seed={seed}", "--set", "train.patience=0",
            "--set", f"train.run_dir=runs/official-parity/{gru_cell}-{seed}",
            "--set", f"model_params.gru_cell={gru_cell}", "--set", "model_params.final_act=elu"]
    for key, value in setting.items():
        section = "train" if key in TRAIN_KEYS else "model_params"
        text = json.dumps(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["--set", f"{section}.{key}={text}"]
    return argv


def build_dataset(data_dir: Path, shared: Path) -> None:
    """The official files through tfpps's Beam job, kept as given, with no validation carved out."""
    if (data_dir / "dataset.json").exists():
        return
    cmd = [sys.executable, "-m", "beam_jobs.build_features", "--source=yoochoose", "--split=given",
           f"--train_input={shared / 'yoochoose-clicks-100k_train_full.txt'}",
           f"--test_input={shared / 'yoochoose-clicks-100k_test.txt'}",
           "--valid_days=0", "--min_session_length=2", "--dedup=none", f"--output={data_dir}"]
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def run_official(args, name: str, setting: dict, seed: int, shared: Path) -> dict:
    out = WORK / f"official-{name}-{args.epochs}ep-seed{seed}.json"
    params = official_params(setting, args.epochs)
    if args.reuse and out.exists() and json.loads(out.read_text()).get("params_string") == params:
        print(f"reusing {out.relative_to(REPO)}", flush=True)
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(args.official_python), str(RUNNER), "--official-dir", str(args.official_dir),
           "--train", str(shared / "yoochoose-clicks-100k_train_full.txt"),
           "--test", str(shared / "yoochoose-clicks-100k_test.txt"),
           "--params", params, "--seed", str(seed), "--threads", str(args.threads), "--out", str(out)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = json.loads(out.read_text())
    result["params_string"] = params
    out.write_text(json.dumps(result, indent=2))
    return result


def run_ours(args, name: str, setting: dict, seed: int, gru_cell: str) -> dict:
    out = WORK / f"tfpps-{name}-{gru_cell}-{args.epochs}ep-seed{seed}.json"
    argv = tfpps_argv(setting, args.epochs, seed, gru_cell, args.data_dir)
    os.environ["TFPPS_BENCH_THREADS"] = str(args.threads)
    return run_tfpps_cached(out, argv, args.reuse)


def mean_std(values: list[float], scale: float = 1.0, digits: int = 4) -> str:
    if not values:
        return "-"
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def summarise(runs: list[dict], side: str) -> dict:
    """Per-seed lists of metrics and timings from one side's results."""
    out: dict = {m: [] for m in METRICS}
    out.update(epoch_seconds=[], eval_seconds=[])
    for r in runs:
        for m in METRICS:
            out[m].append(float(r["metrics"][m]))
        if side == "official":
            out["epoch_seconds"].append(statistics.mean(r["epoch_seconds"]))
            out["eval_seconds"].append(float(r["eval_seconds"]))
        else:
            out["epoch_seconds"].append(float(r["train_seconds_per_epoch"]))
            out["eval_seconds"].append(float(r["test_eval_seconds"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="tfpps GRU4Rec vs the official PyTorch GRU4Rec (YOOCHOOSE-100k, official files)")
    p.add_argument("--official-dir", required=True, type=Path,
                   help=f"a checkout of hidasib/GRU4Rec_PyTorch_Official (pinned commit {PINNED_COMMIT[:12]})")
    p.add_argument("--official-python", type=Path, default=OFFICIAL_PY, help="python of the reference venv")
    p.add_argument("--settings", default="bprmax,xe", help="comma list of: " + ", ".join(SETTINGS))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--gru-cell", default="cho", help="tfpps model_params.gru_cell: cho, reset_after or both (comma list)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for each side (torch and TF intra-op)")
    p.add_argument("--data-dir", default="data_out/yoochoose-100k-novalid",
                   help="tfpps dataset dir for the official files without a validation carve-out")
    p.add_argument("--reuse", action="store_true", help="reuse per-run JSON results made with the same settings")
    p.add_argument("--out-name", default="compare_official_gru4rec")
    args = p.parse_args(argv)

    if not (args.official_dir / "gru4rec_pytorch.py").is_file():
        p.error(f"--official-dir={args.official_dir}: no gru4rec_pytorch.py there (clone hidasib/GRU4Rec_PyTorch_Official)")
    if not args.official_python.exists():
        p.error(f"--official-python={args.official_python}: missing; run bash benchmarks/references/gru4rec_official/setup_env.sh")
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"--settings: unknown {', '.join(unknown)} (expected {', '.join(SETTINGS)})")
    cells = [c.strip() for c in args.gru_cell.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    from tfpps.data.datasets import shared_data_dir

    shared = shared_data_dir() / "yoochoose-100k"
    if not shared.is_dir():
        p.error(f"{shared}: not found (set TFPPS_SHARED_DATA to the shared data dir)")
    commit = subprocess.run(["git", "-C", str(args.official_dir), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    build_dataset(REPO / args.data_dir, shared)
    load_before = os.getloadavg()
    raw: dict = {}
    for name in names:
        setting = SETTINGS[name]
        for seed in seeds:  # alternate the sides seed by seed so that a drift in machine load hits both
            raw.setdefault(name, {}).setdefault("official", []).append(run_official(args, name, setting, seed, shared))
            for cell in cells:
                raw[name].setdefault(f"tfpps-{cell}", []).append(run_ours(args, name, setting, seed, cell))

    rows, ratio_rows, payload = [], [], {"machine": machine(), "official_commit": commit, "epochs": args.epochs,
                                         "seeds": seeds, "settings": {n: SETTINGS[n] for n in names}, "runs": raw}
    for name in names:
        off = summarise(raw[name]["official"], "official")
        rows.append({"setting": name, "side": "official", "seeds": len(seeds),
                     **{m: mean_std(off[m]) for m in METRICS},
                     "s/epoch": mean_std(off["epoch_seconds"], digits=1), "eval s": mean_std(off["eval_seconds"], digits=2)})
        for cell in cells:
            ours = summarise(raw[name][f"tfpps-{cell}"], "tfpps")
            rows.append({"setting": name, "side": f"tfpps ({cell})", "seeds": len(seeds),
                         **{m: mean_std(ours[m]) for m in METRICS},
                         "s/epoch": mean_std(ours["epoch_seconds"], digits=1), "eval s": mean_std(ours["eval_seconds"], digits=2)})
            ratio = {"setting": name, "tfpps cell": cell}
            for m in ("recall@20", "mrr@20"):
                ratio[f"{m} ratio"] = f"{statistics.mean(ours[m]) / statistics.mean(off[m]):.3f}"
                pv = welch_p(ours[m], off[m])
                ratio[f"{m} Welch p"] = "-" if pv is None else f"{pv:.3f}"
            ratio["speed-up/epoch"] = f"{statistics.mean(off['epoch_seconds']) / statistics.mean(ours['epoch_seconds']):.2f}x"
            ratio["eval speed-up"] = f"{statistics.mean(off['eval_seconds']) / statistics.mean(ours['eval_seconds']):.2f}x"
            ratio_rows.append(ratio)
            payload.setdefault("summary", {}).setdefault(name, {})[f"tfpps-{cell}"] = ours
        payload.setdefault("summary", {}).setdefault(name, {})["official"] = off
    payload["ratios"] = ratio_rows
    payload["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print()
    print(table(rows, ["setting", "side", "seeds", *METRICS, "s/epoch", "eval s"],
                title=f"GRU4Rec on YOOCHOOSE-100k (official files), {args.epochs} epochs, mean ± std over seeds {seeds}"))
    print()
    print(table(ratio_rows, list(ratio_rows[0]), title="tfpps / official (speed-up = official seconds / tfpps seconds)"))
    path = write_results(RESULTS, args.out_name, payload)
    labels = [f"{r['setting']}\n{r['side']}" for r in rows]
    series = {}
    for m in ("recall@20", "mrr@20"):
        series[m] = [float(r[m].split(" ")[0]) for r in rows]
    bar_plot(RESULTS, args.out_name, labels, series, "score", "GRU4Rec: tfpps vs official (YOOCHOOSE-100k, mean of seeds)")
    print(f"\nwrote {path.relative_to(REPO)} and {path.with_suffix('.png').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
