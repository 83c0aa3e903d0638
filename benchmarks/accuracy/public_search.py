"""tfpps product search on the official HEM benchmark (Amazon Cell Phones & Accessories, Ai et al. 2017), one table.

    python -m benchmarks.accuracy.public_search                                   # pop, bm25, qem, hem, aem, zam; 3 seeds
    python -m benchmarks.accuracy.public_search --models=pop,bm25,qem --seeds=1
    python -m benchmarks.accuracy.public_search --recipe=faithful --models=qem,hem --seeds=1 --epochs=2   # the paper's optimiser
    python -m benchmarks.accuracy.public_search --reuse                           # reuse per-run results made with the same args
    python -m benchmarks.accuracy.public_search --dataset=amazon-cellphones-hem-unseen-valid   # validation on held-out queries

Data: ``configs/datasets/amazon-cellphones-hem.yaml`` (built on demand by the Beam job's ``--source=hem_qrels``):
the official split kept exactly. Test = the 665 official (user, query) pairs with their 667 judgements over 30
queries that never occur in training; every one of the 10,428 items is ranked, the user's training purchases
removed, depth 100. Validation = a seeded 10% of each user's training purchases (training queries). There is no
review text in the benchmark: item text = the words of the item's training queries (no test query leaks into
it), so the item->word and user->word terms predict query words, not review words.

Recipes (``--recipe``):

``tuned`` (default): ``configs/models/<model>_cellphones.yaml``, the settings picked on VALIDATION NDCG@10 by
  the sweep in ``docs/product_search.md`` (softmax over all items as the item loss, Adam, one pass per record).
``faithful``: the shipped ``configs/models/<model>.yaml`` (HEM's own optimiser: SGD 0.5, 5 shared uniform
  negatives).

Protocol. Each run trains in its own process (``benchmarks.run_tfpps``), validates after every epoch, keeps the
weights of the best validation epoch (``--valid-metric``, default ndcg@10), stops after ``--patience`` epochs
without a gain, and scores the test pairs ONCE with the restored best-validation weights. The non-neural
models (pop, bm25) are fitted once. MAP and MRR at depth 100 and NDCG@10 are trec_eval's definitions
(:mod:`tfpps.evaluation.trec`; every run also writes its TREC run and qrels files). With ``--seeds N`` each
neural model runs seeds 42 .. 42+N-1 (mean +- sd), and every personalised model is compared with QEM (the same
network without the user) by Welch's t-test over the seeds' MAP.

Writes ``benchmarks/accuracy/results/public_search/<--out-name>.json`` and ``.png`` (default ``public_search_<recipe>``) and prints
the table; per-run results go to ``benchmarks/accuracy/results/public_search/runs/search-*.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, bar_plot, machine, mean_sd, model_list, results_dir, run_tfpps_cached, table, welch_p, write_results

RESULTS = results_dir(__file__)

DATASET = "amazon-cellphones-hem"
DATASETS = {  # --dataset: the same official split, with validation on training queries or on held-out ones
    "amazon-cellphones-hem": "validation = 10% of each user's training purchases (training queries)",
    "amazon-cellphones-hem-unseen-valid": "validation = the training purchases of 16 held-out training queries "
                                          "(unseen in training, as the test queries are)",
}
MODELS = ("pop", "bm25", "qem", "hem", "aem", "zam", "hrnn_search")
DEFAULT_MODELS = ("pop", "bm25", "qem", "hem", "aem", "zam")
NONNEURAL = ("pop", "bm25")
PERSONALISED = ("hem", "aem", "zam", "hrnn_search")
RECIPES = ("tuned", "faithful")
SEED0 = 42
COLUMNS = ["model", "recipe", "MAP", "MRR", "NDCG@10", "x pop (MAP)", "vs QEM (MAP, p)", "valid NDCG@10", "epochs",
           "best epoch", "s/epoch", "test eval s"]


def recipe_config(model: str, recipe: str) -> Path | None:
    """The config file of ``model`` under ``recipe`` (None: the model's shipped defaults only)."""
    if recipe == "tuned" and model not in NONNEURAL:
        path = REPO / "configs" / "models" / f"{model}_cellphones.yaml"
        return path if path.exists() else None
    return None


def model_argv(model: str, args: argparse.Namespace) -> tuple[str, list[str]]:
    """(setting label, tfpps.train arguments without seed, run dir and verbosity)."""
    argv = [f"--model={model}", f"--dataset={args.dataset}"]
    config = recipe_config(model, args.recipe)
    setting = config.name if config else f"{model}.yaml"
    if config:
        argv.append(f"--config={config.relative_to(REPO)}")
    if model not in NONNEURAL:
        argv += [f"--patience={args.patience}", f"--valid_metric={args.valid_metric}"]
        if args.epochs:
            argv.append(f"--epochs={args.epochs}")
        for item in args.set:  # model settings: the neural runs only
            argv += ["--set", item]
    return setting, argv


def run_model(model: str, args: argparse.Namespace) -> tuple[str, list[dict]]:
    setting, base = model_argv(model, args)
    seeds = [None] if model in NONNEURAL else [SEED0 + i for i in range(args.seeds)]
    results = []
    for seed in seeds:
        where = "" if args.dataset == DATASET else "-unseen" if args.dataset.endswith("unseen-valid") else f"-{args.dataset}"
        settings = "" if model in NONNEURAL else "".join(f"-{k.rsplit('.', 1)[-1]}{v}" for k, _, v in
                                                            (item.partition("=") for item in args.set))
        tag = f"search-{args.recipe}{where}-{model}{settings}"
        tag += f"-seed{seed}" if seed is not None else ""
        argv = [*base, *([f"--seed={seed}"] if seed is not None else []), f"--run_dir=runs/bench-{tag}", "--verbose=2"]
        results.append(run_tfpps_cached(RESULTS / "runs" / f"{tag}.json", argv, args.reuse))
    return setting, results


def best_valid(result: dict) -> float | None:
    return result.get("best_valid") if isinstance(result.get("best_valid"), (int, float)) else None


def row(model: str, setting: str, results: list[dict], recipe: str, pop_map: float | None,
        qem_maps: list[float] | None) -> dict:
    maps = [r["metrics"]["map@100"] for r in results]
    neural = model not in NONNEURAL
    valid = [v for v in (best_valid(r) for r in results) if v is not None]
    versus = ""
    if qem_maps and model in PERSONALISED:
        ratio = statistics.mean(maps) / statistics.mean(qem_maps) if statistics.mean(qem_maps) else float("nan")
        p = welch_p(maps, qem_maps)
        versus = f"{ratio:.2f}x" + (f", p={p:.3f}" if p is not None else "")
    return {
        "model": model,
        "recipe": (recipe if neural else "fit") + f" ({setting}" + (f", {len(results)} seeds)" if len(results) > 1 else ")"),
        "MAP": mean_sd(maps),
        "MRR": mean_sd([r["metrics"]["mrr@100"] for r in results]),
        "NDCG@10": mean_sd([r["metrics"]["ndcg@10"] for r in results]),
        "x pop (MAP)": f"{statistics.mean(maps) / pop_map:.1f}" if pop_map else "",
        "vs QEM (MAP, p)": versus,
        "valid NDCG@10": mean_sd(valid) if valid else "",
        "epochs": ", ".join(str(r.get("epochs_run")) for r in results) if neural else "fit",
        "best epoch": ", ".join(str(r.get("best_epoch")) for r in results) if neural else "",
        "s/epoch": f"{statistics.mean(r['train_seconds_per_epoch'] for r in results):.1f}",
        "test eval s": f"{statistics.mean(r['test_eval_seconds'] for r in results):.1f}",
        "map": statistics.mean(maps),
        "maps": maps,
        "ndcg@10": statistics.mean(r["metrics"]["ndcg@10"] for r in results),
        "mrr": statistics.mean(r["metrics"]["mrr@100"] for r in results),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--recipe", choices=RECIPES, default="tuned")
    p.add_argument("--dataset", choices=sorted(DATASETS), default=DATASET,
                   help="; ".join(f"{k}: {v}" for k, v in DATASETS.items()).replace("%", "%%"))
    p.add_argument("--seeds", type=int, default=3, help="seeds per neural model (42, 43, ...)")
    p.add_argument("--epochs", type=int, default=0, help="epoch cap (train.epochs; 0: the recipe's)")
    p.add_argument("--patience", type=int, default=2, help="early-stopping patience (0: fixed epochs)")
    p.add_argument("--valid-metric", default="ndcg@10", help="validation metric that picks the tested epoch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every neural run")
    p.add_argument("--reuse", action="store_true", help="reuse per-run results made with the same arguments")
    p.add_argument("--out-name", default=None, help="results name (default public_search_<recipe>)")
    args = p.parse_args(argv)
    models = model_list(p, args.models, MODELS)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")

    from tfpps.data.datasets import shared_data_dir

    if not (shared_data_dir() / DATASET).is_dir():
        print(f"skipped: {shared_data_dir() / DATASET} not found (set TFPPS_SHARED_DATA)")
        return 0
    started, load_before = time.strftime("%Y-%m-%d %H:%M:%S"), [round(x, 2) for x in os.getloadavg()]
    order = sorted(models, key=lambda m: (m not in NONNEURAL, m != "qem"))  # pop, bm25 and qem first: the baselines
    raw, settings = {}, {}
    for model in order:
        settings[model], raw[model] = run_model(model, args)
    pop_map = raw["pop"][0]["metrics"]["map@100"] if "pop" in raw else None
    qem_maps = [r["metrics"]["map@100"] for r in raw["qem"]] if "qem" in raw else None
    rows = [row(m, settings[m], raw[m], args.recipe, pop_map, qem_maps) for m in models]
    info, load_after = machine(), [round(x, 2) for x in os.getloadavg()]
    title = ("HEM benchmark, Amazon Cell Phones & Accessories, official split: 665 test (user, query) pairs, "
             "10,428 items, training purchases removed (tfpps: best-validation epoch, tested once)")
    print("\n" + table(rows, COLUMNS, title))
    print(f"machine: {info}; load average before {load_before}, after {load_after}")
    name = args.out_name or f"public_search_{args.recipe}"
    command = "python -m benchmarks.accuracy.public_search " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"started": started, "dataset": args.dataset, "validation": DATASETS[args.dataset], "machine": info, "load_average_before": load_before,
               "load_average_after": load_after, "command": command, "settings": vars(args), "rows": rows, "raw": raw,
               "protocol": "best validation epoch (validation carved from the training qrels), test scored once; "
                           "all items ranked, training purchases removed, depth 100, trec_eval definitions"}
    print(f"wrote {write_results(RESULTS, name, payload)}")
    series = {"MAP": [r["map"] for r in rows], "MRR": [r["mrr"] for r in rows], "NDCG@10": [r["ndcg@10"] for r in rows]}
    print(f"wrote {bar_plot(RESULTS, name, [r['model'] for r in rows], series, 'metric', f'{args.dataset} ({args.recipe})')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
