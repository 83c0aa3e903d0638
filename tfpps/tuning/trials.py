"""The trials of a sweep: Keras Tuner's oracles and a ``Tuner`` whose trials are tfpps training runs.

:class:`SweepTuner` (built by :func:`make_tuner_class`, so Keras Tuner is imported only when a sweep runs)
subclasses ``keras_tuner.Tuner`` and overrides ``run_trial``: no Keras 3 object ever touches a tf_keras
model. Each execution of a trial trains in its own run dir (:func:`run_one`); a Hyperband trial continued
from another starts from its parent's best weights. The objective is a validation metric: the best value
the run reached over its epochs, which is also the epoch whose weights the trainer keeps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from tfpps import registry
from tfpps.config import ConfigError, RunConfig, build_run_config
from tfpps.runs.run_dir import RunDir
from tfpps.tuning.space import SearchSpace

TUNERS = ("random", "bayesian", "hyperband")
HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


@dataclasses.dataclass
class SweepSettings:
    """What every trial of a sweep shares: the model, the dataset, the configs and the objective."""

    model: str
    dataset: str
    config_file: str | None
    overrides: dict[str, Any]  # fixed + --set, canonical keys
    objective: str
    executions_per_trial: int = 1


def _import_keras_tuner():
    import keras_tuner

    return keras_tuner


def make_tuner_class():
    """The ``SweepTuner`` class (a ``keras_tuner.Tuner``), defined when a sweep runs: Keras Tuner loads only then."""
    keras_tuner = _import_keras_tuner()

    class SweepTuner(keras_tuner.Tuner):
        """Runs each trial as a tfpps training run (tf_keras) in its own run dir."""

        def __init__(self, oracle, space: SearchSpace, settings: SweepSettings, run_one: Callable[..., dict] = run_one, **kwargs):
            """``run_one``: trains one execution of a trial (:func:`run_one`, or a stand-in that calls it)."""
            self.space, self.settings, self.run_execution = space, settings, run_one
            super().__init__(oracle=oracle, hypermodel=None, executions_per_trial=settings.executions_per_trial, **kwargs)

        # ------------------------------------------------------------------ configs
        def trial_config(self, overrides: Mapping[str, Any], epochs: int | None = None, execution: int = 0, run_dir: str = "") -> RunConfig:
            """The run config of a trial: the sweep's overrides, then the trial's (decoded) values."""
            s = self.settings
            values = {**s.overrides, **overrides, "train.valid_metric": s.objective}
            if epochs is not None:
                values["train.epochs"] = max(1, int(epochs))
            cfg = build_run_config(s.model, dataset=s.dataset, config_file=s.config_file, overrides=values)
            cfg.train.seed += execution
            cfg.train.run_dir = run_dir
            return cfg

        def run_trial(self, trial, *args, **kwargs):
            values = dict(trial.hyperparameters.values)
            trial_dir = Path(self.get_trial_dir(trial.trial_id))
            start = time.time()
            executions = []
            for execution in range(self.executions_per_trial):
                run_dir = trial_dir / f"exec-{execution}"
                epochs, parent = None, values.get("tuner/trial_id")
                if "tuner/epochs" in values:  # Hyperband: a continued trial trains only the remaining epochs
                    epochs = int(values["tuner/epochs"]) - (int(values.get("tuner/initial_epoch") or 0) if parent else 0)
                try:
                    cfg = self.trial_config(self.space.overrides(values), epochs, execution, str(run_dir))
                except ConfigError as exc:  # a combination of values the model rejects
                    raise keras_tuner.errors.FailedTrialError(f"invalid config: {exc}") from None
                init = None
                if parent:
                    init = RunDir(Path(self.get_trial_dir(parent)) / f"exec-{execution}").best_weights
                executions.append(self.run_execution(cfg, run_dir, init_weights=str(init) if init else None))
            result = summarise_trial(trial.trial_id, values, self.space, executions, self.settings.objective, time.time() - start)
            (trial_dir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
            print(
                f"trial {trial.trial_id}: val {self.settings.objective} {result['objective']:.4f}, "
                f"{result['epochs']} epochs, {result['seconds']:.0f} s -> {trial_dir}",
                flush=True,
            )
            return {objective_name(self.settings.objective): result["objective"]}

        def on_trial_end(self, trial):
            if trial.status in ("FAILED", "INVALID") and trial.message:
                last = [l for l in trial.message.strip().splitlines() if l.strip()]
                print(f"trial {trial.trial_id} failed: {last[-1] if last else trial.message}", flush=True)
            super().on_trial_end(trial)

        def save_model(self, trial_id, model, step=0):  # weights live in the trial's run dir
            pass

    return SweepTuner


def objective_name(metric: str) -> str:
    return f"val_{metric}"


def run_one(cfg: RunConfig, run_dir: Path, init_weights: str | None = None) -> dict:
    """Train one execution of a trial; its output goes to ``run_dir/train.log``. Reuses a finished run."""
    from tfpps.runs import trainer

    files = RunDir(run_dir)
    if files.metrics.exists():  # finished before the sweep was killed: do not train it again
        result = files.load_metrics()
    else:
        import gc

        import tensorflow as tf

        tf.keras.backend.clear_session()
        gc.collect()
        tf.get_logger()  # its handler binds stderr when first created: create it outside the redirection
        run_dir.mkdir(parents=True, exist_ok=True)
        # the trainer's printed output (config, per-epoch lines, tables) goes to the trial's log; warnings stay on stderr
        with open(files.train_log, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
            if registry.get(cfg.model).family == registry.NONNEURAL:
                result = _run_nonneural(cfg, run_dir)
            else:
                result = trainer.train(cfg, init_weights=init_weights)
    state = files.load_validation() or {}
    best = state.get("best")
    if best is None or (isinstance(best, float) and not math.isfinite(best)):
        raise RuntimeError(f"{run_dir}: no validation metric was computed (empty validation split?)")
    history = [h for h in state.get("history", []) if "train_seconds" in h]
    return {
        "run_dir": str(run_dir),
        "objective": float(best),
        "best_epoch": state.get("best_epoch"),
        "epochs": len(history),
        "test": {k: v for k, v in (result.get("metrics") or {}).items()},
        "train_seconds": result.get("train_seconds_total"),
    }


def _run_nonneural(cfg: RunConfig, run_dir: Path) -> dict:
    """Popularity/KNN models have no epochs: fit once, score the validation split, then the trainer's test."""
    from tfpps.runs import trainer
    from tfpps.runs.validation import evaluate_split

    data = trainer.open_dataset(cfg)
    model = trainer.build_model(cfg, data)
    model.fit_data(data)
    metrics = evaluate_split(model, data, "valid", cfg)
    value = metrics.get(cfg.train.valid_metric)
    row = {"epoch": 1, "train_seconds": 0.0, **{f"val_{k}": v for k, v in metrics.items() if k != "num_examples"}}
    RunDir(run_dir).write_validation({"best": value, "best_epoch": 1, "wait": 0, "history": [row]})
    return trainer.train(cfg)


def summarise_trial(trial_id: str, values: Mapping[str, Any], space: SearchSpace, executions: list[dict], metric: str, seconds: float) -> dict:
    n = len(executions)
    test_keys = set.intersection(*(set(e["test"]) for e in executions)) if executions else set()
    return {
        "trial_id": trial_id,
        "hyperparameters": space.overrides(values),
        "hyperband": {k: values[k] for k in HYPERBAND_KEYS if k in values} or None,
        "objective_name": objective_name(metric),
        "objective": sum(e["objective"] for e in executions) / n,
        "objective_per_execution": [e["objective"] for e in executions],
        "epochs": round(sum(e["epochs"] for e in executions) / n, 2) if n > 1 else executions[0]["epochs"],
        "best_epoch": executions[0]["best_epoch"],
        "seconds": round(seconds, 1),
        "test": {k: sum(e["test"][k] for e in executions) / n for k in sorted(test_keys)},
        "run_dirs": [e["run_dir"] for e in executions],
    }


def make_oracle(tuner: str, objective, max_trials: int | None, seed: int, hp, max_epochs: int, factor: int, initial_points: int | None):
    kt = _import_keras_tuner()
    common = dict(objective=objective, seed=seed, hyperparameters=hp, allow_new_entries=False, tune_new_entries=True)
    if tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if tuner == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, num_initial_points=initial_points, **common)
    oracle = kt.oracles.HyperbandOracle(max_epochs=max_epochs, factor=factor, hyperband_iterations=1, **common)
    oracle.max_trials = max_trials  # None: as many as the brackets need
    return oracle
