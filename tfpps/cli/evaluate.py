"""Command line: ``python -m tfpps.evaluate --run=DIR [--split=test] [--set eval.ks=[5,10,20]] [--verbose]``.

Rebuilds the run's model from its saved ``config.yaml``, loads the best
weights (:meth:`tfpps.runs.RunDir.load`, as ``tfpps.serving`` does) and ranks ALL items for every example of the split (no sampled
metrics). Prints a table and writes ``metrics-<split>.json`` in the run dir.
Weights that do not fit the config (e.g. ``config.yaml`` edited after
training) stop it with one line.
"""
from __future__ import annotations

import sys
import time

import tfpps
from tfpps.cli.parser import OneLineParser
from tfpps.config import ConfigError, parse_set_args
from tfpps.runs.run_dir import RunDir

PROG = "tfpps.evaluate"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m tfpps.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run directory written by tfpps.train")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override eval settings, e.g. eval.ks=[1,5,10]")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines (hidden by default)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    tfpps.configure_logging(verbose=args.verbose)  # before TensorFlow is imported
    from tfpps.data.dataset_dir import DatasetError

    try:
        run_dir = RunDir(args.run)
        run_dir.require(f"--run={args.run}")  # before the --set values are read
        # the saved config with the --set values, its best weights (ConfigError when missing or not fitting
        # the config), or a non-neural model refitted on the training split
        loaded = run_dir.load(overrides=parse_set_args(args.set), label=f"--run={args.run}")
        run, data, model = loaded.run, loaded.data, loaded.model
        from tfpps.runs.validation import evaluate_split

        t0 = time.time()
        metrics = evaluate_split(model, data, args.split, run, progress=True)
        seconds = time.time() - t0
        from tfpps.evaluation import evaluator

        evaluator.write_metrics(run_dir.split_metrics(args.split), {"metrics": metrics, "eval_seconds": round(seconds, 3)})
    except (ConfigError, DatasetError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(evaluator.format_table(metrics, title=f"{run.model} on {run.data.dataset} ({args.split}, {seconds:.1f}s)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
