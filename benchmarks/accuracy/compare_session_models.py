"""Every sequential / session-aware model and the baselines on the same splits, one table per split.

    python -m benchmarks.accuracy.compare_session_models                    # both tables
    python -m benchmarks.accuracy.compare_session_models --only recbole     # ml-100k, RecBole protocol only
    python -m benchmarks.accuracy.compare_session_models --reuse-tfpps      # reuse runs with identical arguments

Tables:

``ml-100k`` (RecBole's protocol, as ``benchmarks/references/compare_recbole.py``): ratings >= 3, 10-core,
chronological leave-one-out, full ranking, history not masked, max history 50, early stopping on
valid NDCG@10 (patience 10). Models: most-popular, item-KNN, S-KNN, V-SKNN, GRU4Rec, NARM, HRM, HRNN.
GRU4Rec/NARM/HRM use exactly the arguments of compare_recbole (their runs are shared).

``ml-100k-sessions`` (Quadrana et al.'s session-aware protocol): sessions from a 30-minute gap,
last session of each user is the test session (the one before it validation), every event of the
test session after its first is a prediction point; HRNN streams the user's earlier sessions first,
GRU4Rec sees only the current session. HRNN (small, init and all; and with GRU4Rec's loss and
negatives), GRU4Rec (official defaults), most-popular and S-KNN.

``tafeng`` (next basket): Ta-Feng baskets (Sets2Sets' history file), items and users with >= 10
purchases, last basket of each user held out (the one before it for validation); every item of the
held-out basket is relevant (multi-target Recall/Precision/NDCG/MRR/Hit over a full ranking). HRM
(the previous basket + the user), most-popular and item-KNN.

Writes ``benchmarks/accuracy/results/compare_session_models/compare_session_models.json`` and ``.png`` and prints the tables.
"""
from __future__ import annotations

import argparse
import sys
import time

from benchmarks.common import bar_plot, machine, results_dir, table, write_results
from benchmarks.references.compare_recbole import PROTOCOL, TFPPS_ARGS, run_tfpps

RESULTS = results_dir(__file__)

RECBOLE_MODELS = ["pop", "itemknn", "sknn", "vsknn", "gru4rec", "narm", "hrm", "hrnn"]
SESSION_RUNS = {
    # tag: (model, extra args)
    "hrnn": ("hrnn", []),
    "hrnn (all)": ("hrnn", ["--config=configs/models/hrnn_all.yaml"]),
    # the same loss and negatives as GRU4Rec's default (cross-entropy over in-batch + 2,048 sampled items)
    "hrnn (XE, 2048 neg.)": ("hrnn", ["--set", "model_params.loss=cross-entropy", "--set", "model_params.n_sample=2048"]),
    "gru4rec": ("gru4rec", []),
    "pop": ("pop", []),
    "sknn": ("sknn", []),
}
BASKET_RUNS = {"pop": ("pop", []), "itemknn": ("itemknn", []), "hrm": ("hrm", ["--epochs=50", "--patience=5"])}
SESSION_PROTOCOL = ["--dataset=ml-100k-sessions", "--set", "eval.ks=[5,10,20]", "--valid_metric=recall@20", "--mask_history=false"]
COLUMNS = ["model", "recall@5", "recall@10", "recall@20", "mrr@5", "mrr@10", "mrr@20", "ndcg@10", "s/epoch", "epochs",
           "best epoch", "eval s", "test points"]


def row(label: str, r: dict) -> dict:
    m = r["metrics"]
    return {
        "model": label, **{k: m[k] for k in COLUMNS[1:8]}, "s/epoch": r["train_seconds_per_epoch"], "epochs": r["epochs_run"],
        "best epoch": r["best_epoch"], "eval s": r["test_eval_seconds"], "test points": m["num_examples"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["recbole", "sessions", "basket"], default=None)
    p.add_argument("--models", default=",".join(RECBOLE_MODELS), help="models of the ml-100k table")
    p.add_argument("--epochs", type=int, default=20, help="epoch cap of the neural models on ml-100k")
    p.add_argument("--reuse-tfpps", action="store_true")
    args = p.parse_args(argv)

    from tfpps.data.datasets import shared_data_dir

    if not (shared_data_dir() / "ml-100k" / "ml-100k.inter").exists():
        print(f"skipped: {shared_data_dir() / 'ml-100k'} not found (set TFPPS_SHARED_DATA)")
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    tables, raw, text = {}, {}, []
    recbole_runs = {
        m: (m, ["--dataset=ml-100k", *PROTOCOL, f"--epochs={args.epochs}", *TFPPS_ARGS.get(m, [])])
        for m in (m.strip() for m in args.models.split(",")) if m
    }
    plan = [  # (table, title, runs: label -> (model, args), tag prefix)
        ("ml-100k", "ml-100k, RecBole protocol (leave-one-out, full ranking, test split)", recbole_runs, "ml100k-"),
        ("ml-100k-sessions", "ml-100k-sessions: 30-minute sessions, last session out (every test-session event)",
         {k: (m, [*SESSION_PROTOCOL, *a]) for k, (m, a) in SESSION_RUNS.items()}, "ml100k-sessions-"),
        ("tafeng", "Ta-Feng, next basket (every item of the held-out basket relevant)",
         {k: (m, ["--dataset=tafeng", "--set", "eval.ks=[5,10,20]", *a]) for k, (m, a) in BASKET_RUNS.items()}, "tafeng-"),
    ]
    selected = {None: ("ml-100k", "ml-100k-sessions", "tafeng"), "recbole": ("ml-100k",),
                "sessions": ("ml-100k-sessions",), "basket": ("tafeng",)}[args.only]
    for name, title, runs, prefix in plan:
        if name not in selected:
            continue
        rows = []
        for label, (model, extra) in runs.items():
            tag = prefix + "".join(c for c in label.replace(" ", "-") if c.isalnum() or c == "-")
            r = run_tfpps(model, extra, tag, args.reuse_tfpps)
            raw[f"{name}/{label}"] = r
            rows.append(row(label, r))
        tables[name] = rows
        text.append(table(rows, COLUMNS, title))
    info = machine()
    print("\n" + "\n\n".join(text) + f"\n\nmachine: {info}")
    write_results(RESULTS, "compare_session_models", {"started": started, "machine": info, "tables": tables, "raw": raw,
                                             "command": "python -m benchmarks.accuracy.compare_session_models " + " ".join(argv or sys.argv[1:])})
    for name, rows in tables.items():
        bar_plot(RESULTS, f"compare_session_models_{name}", [r["model"] for r in rows],
                 {m: [r[m] for r in rows] for m in ("recall@10", "mrr@10", "ndcg@10")}, "metric @10", f"{name}: session models and baselines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
