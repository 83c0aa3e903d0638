"""Hyperparameter sweeps: ``python -m tfpps.tune --model=gru4rec --tuner=random --max-trials=8``.

Keras Tuner chooses the values (random search, Bayesian optimisation with a Gaussian process, or
Hyperband); every trial is an ordinary tfpps training run through :func:`tfpps.runs.trainer.train`
(:mod:`tfpps.tuning`: the search space, the trials, the results). The objective is a validation metric (default ``ndcg@10``): the best
value the run reached over its epochs, which is also the epoch whose weights the trainer keeps.

Search spaces live in ``configs/tune/<model>.yaml`` (or ``--space=FILE``)::

    model: gru4rec
    objective: ndcg@10            # optional; --objective overrides
    fixed:                        # optional overrides applied to every trial (the budget, ...)
      train.epochs: 5
    space:                        # any config key: dotted, alias (lr) or unique field name
      train.learning_rate: {type: log, min: 0.01, max: 0.3}             # log-uniform float
      train.momentum:      {type: float, min: 0.0, max: 0.5, step: 0.1}
      train.batch_size:    {type: choice, values: [32, 64, 128]}
      model_params.layers: {type: choice, values: [[64], [100], [200]]} # lists are fine in choices
      model_params.n_sample: {type: int, min: 256, max: 4096, sampling: log}

Types: ``choice`` (``values``), ``int`` and ``float`` (``min``, ``max``, optional ``step`` and
``sampling``: linear | log | reverse_log), ``log`` (= float with log sampling). Every key and every
end of every range is checked against the model's config before the first trial; a bad space stops
with one line naming the file, the key and the problem.

Precedence of a trial's config: model defaults -> configs/models -> dataset config -> ``--config`` ->
``fixed`` -> ``--set``/``--key=value`` -> the trial's values (a key may not be both set and tuned).

Everything goes into ``--dir`` (default ``runs/tune-<model>-<dataset>-<tuner>``)::

    sweep.json          what was asked (model, dataset, tuner, space, overrides): a resumed sweep must match
    oracle.json, tuner0.json, trial_<id>/trial.json    Keras Tuner's state
    trial_<id>/exec-<n>/  the trial's run dir(s) (config.yaml, history.csv, validation.json, metrics.json,
                        train.log with the trainer's output); trial_<id>/result.json  its summary
    trials.csv, trials.json   every trial: values, objective, epochs, seconds, test metrics
    best.yaml           the best trial's full config: python -m tfpps.train --config=DIR/best.yaml

A killed sweep resumes where it stopped when run again with the same arguments (finished trials
are kept; the interrupted one continues from its run dir's checkpoint); ``--overwrite`` starts over.
Selection uses validation metrics only; test metrics are recorded for reporting.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys

from tfpps.cli.parser import OneLineParser
from tfpps.config import ConfigError, build_run_config, parse_override_flags
from tfpps.tuning.results import collect_trials, format_value, results_table, write_best_yaml, write_results
from tfpps.tuning.space import DEFAULT_OBJECTIVE, canonical_key, check_objective, load_space, parse_space  # noqa: F401  (parse_space: re-exported)
from tfpps.tuning.trials import TUNERS, SweepSettings, make_oracle, make_tuner_class, objective_name, run_one


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        raise_errors=True,
        prog="python -m tfpps.tune",
        description="Hyperparameter sweep of a tfpps model with Keras Tuner; trials train with the tfpps trainer.",
        epilog="Other --key=value flags and --set key=value override the config of every trial (e.g. --epochs=3).",
        allow_abbrev=False,
    )
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--dataset", default="synthetic", help="configs/datasets/<name>.yaml (built if missing)")
    p.add_argument("--config", default=None, help="an extra YAML config merged over the model's")
    p.add_argument("--space", default=None, help="search-space YAML (default configs/tune/<model>.yaml)")
    p.add_argument("--tuner", default="random", help="random | bayesian | hyperband")
    p.add_argument("--max-trials", type=int, default=None, help="trials to run (default 10; Hyperband: as its brackets need)")
    p.add_argument("--executions-per-trial", type=int, default=1, help="trainings per trial (seeds seed, seed+1, ...); objective averaged")
    p.add_argument("--objective", default=None, help="validation metric to maximise (default: the space file's, else ndcg@10)")
    p.add_argument("--max-epochs", type=int, default=None, help="Hyperband: most epochs of one trial (default train.epochs)")
    p.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor")
    p.add_argument("--initial-points", type=int, default=None, help="Bayesian: random trials before the Gaussian process")
    p.add_argument("--seed", type=int, default=1, help="seed of the tuner's sampling (training uses train.seed)")
    p.add_argument("--dir", default=None, help="sweep directory (default runs/tune-<model>-<dataset>-<tuner>)")
    p.add_argument("--overwrite", action="store_true", help="delete the sweep directory first instead of resuming")
    p.add_argument("--top", type=int, default=10, help="rows in the printed table")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field of every trial")
    return p


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    args, extra = build_parser().parse_known_args(argv)
    overrides = parse_override_flags(args.set, extra)
    if args.tuner not in TUNERS:
        raise ConfigError(f"--tuner={args.tuner!r}: expected one of {', '.join(TUNERS)}")
    for name in ("max_trials", "executions_per_trial", "max_epochs", "initial_points", "top"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={value}: must be >= 1")
    if args.factor < 2:
        raise ConfigError(f"--factor={args.factor}: must be >= 2")
    return args, overrides


def sweep(argv: list[str]) -> dict:
    """Run (or resume) a sweep; returns {'dir', 'trials', 'best', 'table'}."""
    from tfpps.data.datasets import resolve_path

    args, cli_overrides = parse_args(argv)
    base = build_run_config(args.model, dataset=args.dataset, config_file=args.config, overrides=cli_overrides)
    space = load_space(args.model, base, args.space)
    cli_keys = {canonical_key(base, k): v for k, v in cli_overrides.items()}
    both = sorted(set(cli_keys) & {p.key for p in space.params})
    if both:
        raise ConfigError(f"{both[0]} is both set on the command line and tuned in {space.source}; drop one")
    overrides = {**space.fixed, **cli_keys}
    base = build_run_config(args.model, dataset=args.dataset, config_file=args.config, overrides=overrides)
    metric = check_objective(args.objective or space.objective or DEFAULT_OBJECTIVE, base)
    if args.tuner != "hyperband" and args.max_trials is None:
        args.max_trials = 10
    max_epochs = args.max_epochs or base.train.epochs

    directory = resolve_path(args.dir or f"runs/tune-{args.model}-{base.data.dataset}-{args.tuner}")
    request = {
        "model": args.model,
        "dataset": args.dataset,
        "config": args.config,
        "space": space.describe(),
        "space_file": space.source,
        "overrides": {k: format_value(v) if not isinstance(v, str) else v for k, v in overrides.items()},
        "tuner": args.tuner,
        "objective": metric,
        "executions_per_trial": args.executions_per_trial,
        "seed": args.seed,
        **({"max_epochs": max_epochs, "factor": args.factor} if args.tuner == "hyperband" else {}),
    }
    request = json.loads(json.dumps(request, default=str))
    sweep_file = directory / "sweep.json"
    if args.overwrite and directory.exists():
        shutil.rmtree(directory)
    if sweep_file.exists():
        previous = json.loads(sweep_file.read_text())
        changed = sorted(k for k in set(previous) | set(request) if previous.get(k) != request.get(k))
        if changed:
            raise ConfigError(
                f"{directory} holds a sweep with a different {changed[0]} ({previous.get(changed[0])!r} vs {request.get(changed[0])!r}); "
                "pass --overwrite to start over or --dir=NEW_DIR"
            )
    directory.mkdir(parents=True, exist_ok=True)
    sweep_file.write_text(json.dumps(request, indent=1) + "\n")

    import keras_tuner as kt

    objective = kt.Objective(objective_name(metric), direction="max")
    oracle = make_oracle(args.tuner, objective, args.max_trials, args.seed, space.declare(), max_epochs, args.factor, args.initial_points)
    settings = SweepSettings(args.model, args.dataset, args.config, overrides, metric, args.executions_per_trial)
    tuner_cls = make_tuner_class()
    tuner_obj = tuner_cls(oracle, space, settings, run_one=run_one, directory=str(directory.parent), project_name=directory.name, overwrite=False)
    done = sum(1 for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED"))
    if done:
        print(f"tfpps.tune: resuming {directory}: {done} trial(s) finished", flush=True)
    print(f"tfpps.tune: {args.tuner} search over {len(space.params)} hyperparameters of {args.model} on {base.data.dataset}, "
          f"objective val {metric} (max), {args.max_trials or 'Hyperband'} trials -> {directory}", flush=True)
    try:
        tuner_obj.search()
    except RuntimeError as exc:  # Keras Tuner: too many consecutive failed trials
        first = str(exc).strip().splitlines()
        raise ConfigError(f"sweep stopped: {first[0] if first else exc}; last trial error: {first[-1] if len(first) > 1 else '-'}") from None

    keys = [p.key for p in space.params]
    trials = collect_trials(directory, metric)
    write_results(directory, trials, metric, keys)
    completed = [t for t in trials if t["objective"] is not None]
    best = completed[0] if completed else None
    if best:
        write_best_yaml(directory, tuner_obj, best, metric)
    table = results_table(trials, metric, keys, args.top)
    print(f"\n=== {args.model} on {base.data.dataset}: {len(completed)} of {len(trials)} trials completed, best first ===")
    print(table)
    if best:
        print(f"\nbest: trial {best['trial_id']} val {metric} {best['objective']:.4f}; config: {directory / 'best.yaml'}")
    print(f"results: {directory / 'trials.csv'}, {directory / 'trials.json'}", flush=True)
    return {"dir": str(directory), "trials": trials, "best": best, "table": table, "objective": metric}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        build_parser().print_help()
        return 0
    try:
        sweep(argv)
    except ConfigError as exc:
        print(f"tfpps.tune: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
