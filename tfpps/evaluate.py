"""Command line: ``python -m tfpps.evaluate --run=DIR [--split=test] [--set eval.ks=[5,10,20]] [--verbose]``.

Rebuilds the run's model from its saved ``config.yaml``, loads the best
weights and ranks ALL items for every example of the split (no sampled
metrics). Prints a table and writes ``metrics-<split>.json`` in the run dir.
Weights that do not fit the config (e.g. ``config.yaml`` edited after
training) stop it with one line.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import tfpps
from tfpps.config import ConfigError, apply_overrides, load_yaml, parse_set_args, run_config_from_dict

PROG = "tfpps.evaluate"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfpps.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run directory written by tfpps.train")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override eval settings, e.g. eval.ks=[1,5,10]")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines (hidden by default)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    tfpps.configure_logging(verbose=args.verbose)  # before TensorFlow is imported
    from tfpps.data.pipeline import DatasetError

    try:
        run_dir = Path(args.run)
        if not (run_dir / "config.yaml").exists():
            raise ConfigError(f"--run={args.run}: no config.yaml there; is it a tfpps run directory?")
        run = run_config_from_dict(load_yaml(run_dir / "config.yaml"))
        apply_overrides(run, parse_set_args(args.set))
        run.validate()
        from tfpps import registry
        from tfpps.data.pipeline import DatasetDir
        from tfpps.training import trainer

        data = DatasetDir(run.data.dir)
        model = trainer.build_model(run, data)
        if registry.get(run.model).family == registry.NONNEURAL:
            model.fit_data(data)  # counts and neighbour tables are rebuilt from the training split
        else:
            trainer.load_best_weights(model, run_dir)  # ConfigError when missing or not fitting the config
        t0 = time.time()
        metrics = trainer.evaluate_split(model, data, args.split, run, progress=True)
        seconds = time.time() - t0
        from tfpps.evaluation import evaluator

        evaluator.write_metrics(run_dir / f"metrics-{args.split}.json", {"metrics": metrics, "eval_seconds": round(seconds, 3)})
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
