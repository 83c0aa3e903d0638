"""tfpps on public session-recommendation benchmarks, beside the published numbers.

    python -m benchmarks.accuracy.public --dataset=diginetica-srgnn                 # pop, itemknn, sknn, vsknn, gru4rec, narm
    python -m benchmarks.accuracy.public --dataset=yoochoose-100k
    python -m benchmarks.accuracy.public --dataset=diginetica-srgnn --models=pop,gru4rec --epochs=1 --max-minutes=2
    python -m benchmarks.accuracy.public --dataset=diginetica-srgnn --seeds=3 --reuse   # mean +- sd over 3 seeds per neural model

Datasets (built on demand from ``configs/datasets/<name>.yaml``; ``python -m tfpps.data.build --dataset=NAME``
builds one ahead):

``diginetica-srgnn``: DIGINETICA as SR-GNN preprocessed it, its given split: 60,858 test (prefix, label)
records, all 43,097 items ranked. Training = every prefix of the training sessions, less the validation
sessions: the last "day" of training in the source's synthetic time (1,440 sessions, 4,977 prefixes), so the
models train on 714,493 of the papers' 719,470 prefixes. Published numbers: the SR-GNN paper (Wu et al.,
AAAI 2019, Table 2: POP, Item-KNN, a third-party GRU4Rec run, NARM, STAMP, SR-GNN) and the GCE-GNN paper
(Wang et al., SIGIR 2020), as re-printed widely; they are the papers' numbers as quoted in the project's
reference notes, not re-checked against the PDFs here. Papers in this line pick the epoch on the test
set; this script never does.

``yoochoose-100k``: the 100k-click YOOCHOOSE sample in GRU4Rec's format, official files as given
(10,152 scored test clicks, all training items ranked). Validation = the last day of ``train_full``, which
the neural models do not train on (the reference trains on all of ``train_full``). Published reference:
the official PyTorch GRU4Rec with the RSC15 BPR-max setting (``configs/models/gru4rec_bprmax.yaml``), one
run: R@20 59.06, MRR@20 29.65.

Protocol. Every model trains in its own process (``benchmarks.run_tfpps``, which calls
``tfpps.runs.trainer.train`` with ``--fresh``). The neural models (gru4rec, narm) validate after every
epoch on the validation split, keep the weights of the best validation epoch (``--valid-metric``, default
recall@20) and stop after ``--patience`` epochs without a gain (0: the config's fixed epochs, still
keeping the best-validation weights). The trainer then restores those best-validation weights and scores
the test split ONCE with them (``trainer.train``: ``model.load_weights(run_dir/weights/best)`` then one
``evaluate_split(..., "test")``): the test split plays no part in any choice. ``train.max_minutes``
(``--max-minutes``) ends training after the epoch that passes the budget; the best-validation weights are
tested as usual and the row says ``time-limited``. The non-neural models (pop, itemknn, sknn, vsknn) are
fitted once on the training split with their shipped configs. Metrics: Recall@20 and MRR@20 in %, every
item ranked, standard ties.

Model settings. GRU4Rec: ``configs/models/gru4rec_diginetica.yaml`` (the official PyTorch code's
DIGINETICA paramfile, BPR-max) on diginetica-srgnn, ``configs/models/gru4rec_bprmax.yaml`` on
yoochoose-100k; NARM: ``configs/models/narm.yaml`` (official code's settings) with ``--narm-softmax``
(``model_params.softmax``; default ``sampled`` on diginetica-srgnn, tfpps's catalogue-scale sampled softmax,
and ``full`` on yoochoose-100k).

Per model the table gives epochs run, the best (tested) epoch, training seconds per epoch, training
examples/s (the split's prefix -> next-item examples per epoch, or ``train.steps_per_epoch`` x batch when
capped, over the seconds per epoch; the non-neural fit counts as one epoch) and the seconds of the test
evaluation. With ``--seeds N > 1`` each neural model runs seeds 42 .. 42+N-1 and its metrics are mean +- sd.

Writes ``benchmarks/accuracy/results/public/<--out-name>.json`` and ``.png`` (default ``public_<dataset>``) and prints the
table. Per-run results go to ``benchmarks/accuracy/results/public/runs/public-<dataset>-*.json`` (``--reuse`` reuses those
made with exactly the same arguments).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, bar_plot, machine, mean_sd, model_list, results_dir, run_tfpps_cached, table, write_results

RESULTS = results_dir(__file__)

MODELS = ("pop", "itemknn", "sknn", "vsknn", "gru4rec", "narm")
NEURAL = ("gru4rec", "narm")
SEED0 = 42

# Published Recall@20 / MRR@20 in %: (label, tfpps counterpart or None, R@20, MRR@20, source).
PUBLISHED = {
    "diginetica-srgnn": [
        ("POP", "pop", 0.89, 0.20, "SR-GNN paper, Table 2"),
        ("Item-KNN", "itemknn", 35.75, 11.57, "SR-GNN paper, Table 2"),
        ("GRU4Rec (third-party run)", "gru4rec", 29.45, 8.33, "SR-GNN paper, Table 2 (not the official code)"),
        ("NARM", "narm", 49.70, 16.17, "SR-GNN paper, Table 2"),
        ("STAMP", None, 45.64, 14.32, "SR-GNN paper, Table 2"),
        ("SR-GNN", None, 50.73, 17.59, "SR-GNN paper, Table 2"),
        ("GCE-GNN", None, 54.22, 19.04, "GCE-GNN paper"),
    ],
    "yoochoose-100k": [
        ("GRU4Rec (official PyTorch, BPR-max)", "gru4rec", 59.06, 29.65,
         "official PyTorch GRU4Rec, rsc15_bpr-max_constrained setting, 1 run"),
    ],
}
DATASETS = {  # dataset -> GRU4Rec config and NARM's default softmax
    "diginetica-srgnn": {"gru4rec_config": "configs/models/gru4rec_diginetica.yaml", "narm_softmax": "sampled",
                         "title": "DIGINETICA (SR-GNN preprocessing, given split): 60,858 test prefixes, 43,097 items"},
    "yoochoose-100k": {"gru4rec_config": "configs/models/gru4rec_bprmax.yaml", "narm_softmax": "full",
                       "title": "YOOCHOOSE-100k (official files as given): 10,152 test clicks"},
}
COLUMNS = ["model", "setting", "R@20 %", "MRR@20 %", "published R@20", "published MRR@20", "epochs", "best epoch",
           "s/epoch", "train ex/s", "test eval s", "test points"]


# ---------------------------------------------------------------------------- runs
def model_argv(model: str, dataset: str, args: argparse.Namespace) -> tuple[str, list[str]]:
    """(setting label, tfpps.train arguments without seed, run dir and verbosity) of ``model`` on ``dataset``."""
    spec = DATASETS[dataset]
    argv = [f"--model={model}", f"--dataset={dataset}", "--set", "eval.ks=[5,10,20]"]
    setting = f"configs/models/{model}.yaml"
    if model == "gru4rec":
        argv.append(f"--config={spec['gru4rec_config']}")
        setting = Path(spec["gru4rec_config"]).name
    if model == "narm":
        softmax = args.narm_softmax or spec["narm_softmax"]
        argv += ["--set", f"model_params.softmax={softmax}"]
        setting = f"narm.yaml, {softmax} softmax"
    if model in NEURAL:
        argv += [f"--patience={args.patience}", f"--valid_metric={args.valid_metric}"]
        if args.epochs:
            argv.append(f"--epochs={args.epochs}")
        if args.max_minutes:
            argv += ["--set", f"train.max_minutes={args.max_minutes:g}"]
    for item in args.set:
        argv += ["--set", item]
    return setting, argv


def run_model(model: str, dataset: str, args: argparse.Namespace) -> tuple[str, list[dict]]:
    """Train ``model`` (every seed when neural) and return (setting, result dicts)."""
    setting, base = model_argv(model, dataset, args)
    seeds = [SEED0 + i for i in range(args.seeds)] if model in NEURAL else [None]
    results = []
    for seed in seeds:
        softmax = f"-{args.narm_softmax or DATASETS[dataset]['narm_softmax']}" if model == "narm" else ""
        tag = f"public-{dataset}-{model}{softmax}" + (f"-seed{seed}" if seed is not None else "")  # own run dir
        argv = [*base, *([f"--seed={seed}"] if seed is not None else []), f"--run_dir=runs/bench-{tag}", "--verbose=2"]
        results.append(run_tfpps_cached(RESULTS / "runs" / f"{tag}.json", argv, args.reuse))
    return setting, results


# ---------------------------------------------------------------------------- table
def train_examples(data_dir: str | Path) -> int | None:
    """Prefix -> next-item training examples of a dataset (training interactions - records), from its stats.json."""
    try:
        split = json.loads((Path(data_dir) / "stats.json").read_text())["splits"]["train"]
        return int(split["interactions"]) - int(split["records"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def examples_per_second(result: dict, examples: int | None) -> float | None:
    """Training examples/s of one run: the epoch's examples (capped by train.steps_per_epoch x batch) / s per epoch."""
    seconds = result.get("train_seconds_per_epoch") or 0
    if not examples or seconds <= 0:
        return None
    train = result.get("config", {}).get("train", {})
    cap = int(train.get("steps_per_epoch") or 0)
    if cap and result.get("model") in NEURAL:
        examples = min(examples, cap * int(train.get("batch_size") or 0))
    return examples / seconds


def tfpps_row(model: str, setting: str, results: list[dict], dataset: str, examples: int | None = None) -> dict:
    """One table row of a tfpps model (``results``: one result dict per seed), with its published counterpart."""
    published = next((p for p in PUBLISHED.get(dataset, []) if p[1] == model), None)
    neural = model in NEURAL
    limited = any(r.get("time_limited") for r in results)

    def joined(key):
        return ", ".join(str(r.get(key)) for r in results)

    rates = [x for x in (examples_per_second(r, examples) for r in results) if x]
    seconds = statistics.mean(r["train_seconds_per_epoch"] for r in results)
    eval_seconds = statistics.mean(r["test_eval_seconds"] for r in results)
    return {
        "model": model + (" (time-limited)" if limited else ""),
        "setting": setting + (f", {len(results)} seeds" if len(results) > 1 else ""),
        "R@20 %": mean_sd([r["metrics"]["recall@20"] for r in results], scale=100, digits=2),
        "MRR@20 %": mean_sd([r["metrics"]["mrr@20"] for r in results], scale=100, digits=2),
        "published R@20": f"{published[2]:.2f}" if published else "",
        "published MRR@20": f"{published[3]:.2f}" if published else "",
        "epochs": joined("epochs_run") if neural else "fit",
        "best epoch": joined("best_epoch") if neural else "",
        "s/epoch": f"{seconds:.1f}",
        "train ex/s": int(statistics.mean(rates)) if rates else None,
        "test eval s": f"{eval_seconds:.1f}",
        "test points": results[0]["metrics"].get("num_examples"),
        # numbers for the JSON and the plot
        "train_seconds_per_epoch": seconds,
        "test_eval_seconds": eval_seconds,
        "recall@20": statistics.mean(r["metrics"]["recall@20"] for r in results),
        "mrr@20": statistics.mean(r["metrics"]["mrr@20"] for r in results),
        "published_label": published[0] if published else None,
        "published_source": published[4] if published else None,
    }


def reference_rows(dataset: str, models: list[str]) -> list[dict]:
    """Published rows without a tfpps counterpart in this table (e.g. STAMP, SR-GNN)."""
    return [{"model": f"{label} (published)", "setting": source, "published R@20": f"{r20:.2f}",
             "published MRR@20": f"{mrr:.2f}", "published_recall@20": r20 / 100, "published_mrr@20": mrr / 100}
            for label, model, r20, mrr, source in PUBLISHED.get(dataset, []) if model is None or model not in models]


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="diginetica-srgnn")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--seeds", type=int, default=1, help="seeds per neural model (42, 43, ...); mean +- sd when > 1")
    p.add_argument("--epochs", type=int, default=0, help="epoch cap of the neural models (train.epochs; 0: the configs')")
    p.add_argument("--max-minutes", type=float, default=0.0, help="train.max_minutes per neural model (0: off)")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience of the neural models (0: fixed epochs)")
    p.add_argument("--valid-metric", default="recall@20", help="validation metric that picks the tested epoch")
    p.add_argument("--narm-softmax", choices=["full", "sampled"], default=None,
                   help="NARM's training softmax (default: sampled on diginetica-srgnn, full on yoochoose-100k)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every tfpps run")
    p.add_argument("--reuse", action="store_true", help="reuse per-model results made with the same arguments")
    p.add_argument("--out-name", default=None, help="results name (default public_<dataset>)")
    args = p.parse_args(argv)
    models = model_list(p, args.models, MODELS)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")

    from tfpps.data.datasets import shared_data_dir

    if not shared_data_dir().is_dir():
        print(f"skipped: {shared_data_dir()} not found (set TFPPS_SHARED_DATA)")
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = [round(x, 2) for x in os.getloadavg()]
    raw, rows = {}, []
    for model in models:
        setting, results = run_model(model, args.dataset, args)
        raw[model] = results
        examples = train_examples(results[0].get("config", {}).get("data", {}).get("dir", ""))
        rows.append(tfpps_row(model, setting, results, args.dataset, examples))
    rows += reference_rows(args.dataset, models)
    info = machine()
    load_after = [round(x, 2) for x in os.getloadavg()]
    title = DATASETS[args.dataset]["title"] + " (tfpps: best-validation epoch, tested once)"
    text = table(rows, COLUMNS, title)
    sources = sorted({source for *_, source in PUBLISHED.get(args.dataset, [])})
    print("\n" + text + "\n\npublished numbers: " + "; ".join(sources))
    print(f"machine: {info}; load average before {load_before}, after {load_after}")
    name = args.out_name or f"public_{args.dataset}"
    command = "python -m benchmarks.accuracy.public " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"started": started, "dataset": args.dataset, "machine": info, "load_average_before": load_before,
               "load_average_after": load_after, "command": command, "settings": vars(args), "rows": rows,
               "published": PUBLISHED.get(args.dataset, []), "raw": raw,
               "protocol": "neural models: best validation epoch (valid split carved from training), test scored once "
                           "with the restored best-validation weights; all items ranked; metrics in %"}
    print(f"wrote {write_results(RESULTS, name, payload)}")
    labels = [r["model"] for r in rows]
    series = {
        "tfpps R@20": [100 * r.get("recall@20", 0.0) for r in rows],
        "published R@20": [float(r["published R@20"] or 0) for r in rows],
        "tfpps MRR@20": [100 * r.get("mrr@20", 0.0) for r in rows],
        "published MRR@20": [float(r["published MRR@20"] or 0) for r in rows],
    }
    print(f"wrote {bar_plot(RESULTS, name, labels, series, '% (0: none)', f'{args.dataset}: tfpps vs published')}")
    print(f"per-run results: {(RESULTS / 'runs').relative_to(REPO)}/public-{args.dataset}-*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
