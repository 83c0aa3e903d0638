"""``make demo``: build the synthetic default with the Beam job, train models on it, compare.

    python -m tfpps.demo [--models pop,gru4rec,narm] [--epochs N]

1. generates the seeded synthetic logs and runs the Beam job on them (once;
   the dataset summary is printed),
2. trains each model with ``tfpps.train``'s own code path (fresh run dirs
   under ``runs/demo-*``),
3. prints one table of test metrics (full ranking over all items) and
   training time per epoch.
"""
from __future__ import annotations

import sys
import time

from tfpps.cli.parser import OneLineParser
from tfpps.config import ConfigError, build_run_config
from tfpps.data.datasets import ensure_dataset

DEMO_OVERRIDES = {
    "pop": {},
    "gru4rec": {"epochs": "5"},
    "narm": {"epochs": "5"},
}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m tfpps.demo", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="pop,gru4rec,narm")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs for every model")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from tfpps.runs.trainer import train

    start = time.time()
    path = ensure_dataset("synthetic")
    print(f"dataset: {path}\n", flush=True)
    results = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        overrides = dict(DEMO_OVERRIDES.get(model, {}))
        if args.epochs and model != "pop":
            overrides["epochs"] = str(args.epochs)
        overrides["run_dir"] = f"runs/demo-{model}"
        try:
            run = build_run_config(model, dataset="synthetic", overrides=overrides)
        except ConfigError as exc:
            print(f"tfpps.demo: error: {exc}", file=sys.stderr)
            return 2
        print(f"\n=== training {model} ===", flush=True)
        results.append(train(run, fresh=True))
    print("\n=== demo summary: synthetic default, test split, full ranking ===")
    header = f"{'model':<10} {'recall@10':>10} {'mrr@10':>8} {'ndcg@10':>8} {'recall@20':>10} {'s/epoch':>8} {'epochs':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        m = r["metrics"]
        print(
            f"{r['model']:<10} {m['recall@10']:>10.4f} {m['mrr@10']:>8.4f} {m['ndcg@10']:>8.4f} {m['recall@20']:>10.4f} "
            f"{r['train_seconds_per_epoch']:>8.2f} {r['epochs_run']:>7}"
        )
    print(f"\ntotal {time.time() - start:.0f} s; run dirs under runs/demo-*; evaluate again with "
          "python -m tfpps.evaluate --run=runs/demo-gru4rec")
    return 0


if __name__ == "__main__":
    sys.exit(main())
