"""What the user part adds to the personalised search models, on seen and on unseen queries.

    python -m benchmarks.accuracy.search_user_ablation                  # after python -m benchmarks.accuracy.public_search
    python -m benchmarks.accuracy.search_user_ablation --models hem,zam --seeds 42

For each trained run of ``benchmarks.accuracy.public_search`` (``runs/bench-search-tuned-<model>-seed<N>``), the
best-validation weights are scored twice on the validation split (queries seen in training) and on the
test split (the 30 official queries never seen in training): as trained, M = lambda q + (1 - lambda) u,
and with the user part switched off at scoring time (``model_params.query_weight=1``: M = q). Same
weights, same items, same protocol (all items ranked, training purchases removed).

If the user part helps on validation but hurts on test, personalisation learned from a user's past
queries does not carry over to a query the user (and everyone) has never issued: the test query's items
lie in a category that the user's history does not describe.

Writes ``benchmarks/accuracy/results/search_user_ablation/search_user_ablation.json`` and ``.png``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

from benchmarks.common import REPO, bar_plot, machine, results_dir, table, write_results

RESULTS = results_dir(__file__)

MODELS = ("hem", "aem", "zam")
METRIC = "ndcg@10"


def scores(run_dir, split: str, user: bool) -> dict:
    from tfpps.runs.run_dir import RunDir
    from tfpps.runs.validation import evaluate_split

    overrides = {} if user else {"model_params.query_weight": "1.0"}
    loaded = RunDir(run_dir).load(overrides=overrides, label=str(run_dir))
    return evaluate_split(loaded.model, loaded.data, split, loaded.run, progress=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--recipe", default="tuned")
    args = p.parse_args(argv)
    import tfpps
    from tfpps.runs.run_dir import RunDir

    tfpps.configure_logging(verbose=False)
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        per = {(split, user): [] for split in ("valid", "test") for user in (True, False)}
        seeds = []
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            run_dir = REPO / "runs" / f"bench-search-{args.recipe}-{model}-seed{seed}"
            if not RunDir(run_dir).has_best_weights():
                print(f"skipped {run_dir.relative_to(REPO)}: not trained (run python -m benchmarks.accuracy.public_search)")
                continue
            seeds.append(seed)
            for split in ("valid", "test"):
                for user in (True, False):
                    m = scores(run_dir, split, user)
                    per[(split, user)].append(m)
                    print(f"{model} seed {seed} {split} {'M = lq + (1-l)u' if user else 'M = q'}: "
                          f"NDCG@10 {m['ndcg@10']:.4f} MAP {m['map@100']:.4f}", flush=True)
        if not seeds:
            continue

        def mean(split, user, key, per=per):
            return statistics.mean(m[key] for m in per[(split, user)])

        rows.append({
            "model": model, "seeds": len(seeds),
            "valid NDCG@10, with user": round(mean("valid", True, METRIC), 4),
            "valid NDCG@10, query only": round(mean("valid", False, METRIC), 4),
            "test NDCG@10, with user": round(mean("test", True, METRIC), 4),
            "test NDCG@10, query only": round(mean("test", False, METRIC), 4),
            "test MAP, with user": round(mean("test", True, "map@100"), 4),
            "test MAP, query only": round(mean("test", False, "map@100"), 4),
        })
    if not rows:
        print("nothing to compare: train the runs first (python -m benchmarks.accuracy.public_search)")
        return 0
    columns = list(rows[0])
    print("\n" + table(rows, columns, "The user part on and off at scoring time (same weights), HEM benchmark"))
    info = machine()
    payload = {"machine": info, "load_average": [round(x, 2) for x in os.getloadavg()],
               "command": "python -m benchmarks.accuracy.search_user_ablation " + " ".join(argv if argv is not None else sys.argv[1:]),
               "rows": rows}
    print(f"wrote {write_results(RESULTS, 'search_user_ablation', payload)}")
    series = {c: [r[c] for r in rows] for c in columns if "NDCG" in c}
    print(f"wrote {bar_plot(RESULTS, 'search_user_ablation', [r['model'] for r in rows], series, 'NDCG@10', 'user part on / off')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
