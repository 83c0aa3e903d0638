"""Hyperparameter sweeps: ``python -m tfpps.tune --model=gru4rec --tuner=random --max-trials=8``.

Keras Tuner chooses the values (random search, Bayesian optimisation with a Gaussian process, or
Hyperband); every trial is an ordinary tfpps training run through :func:`tfpps.runs.trainer.train`
(:class:`SweepTuner` subclasses ``keras_tuner.Tuner`` and overrides ``run_trial``; no Keras 3 object
ever touches a tf_keras model). The objective is a validation metric (default ``ndcg@10``): the best
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
import contextlib
import copy
import csv
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

import tfpps  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfpps.cli import OneLineParser
from tfpps import registry
from tfpps.config import (
    CONFIG_DIR,
    ConfigError,
    RunConfig,
    _field_types,
    apply_overrides,
    build_run_config,
    load_yaml,
    parse_override_flags,
    resolve_key,
)
from tfpps.runs.run_dir import RunDir

TUNERS = ("random", "bayesian", "hyperband")
KINDS = ("choice", "int", "float", "log")
SAMPLINGS = ("linear", "log", "reverse_log")
SPEC_FIELDS = {
    "choice": {"type", "values"},
    "int": {"type", "min", "max", "step", "sampling"},
    "float": {"type", "min", "max", "step", "sampling"},
    "log": {"type", "min", "max"},
}
HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")
DEFAULT_OBJECTIVE = "ndcg@10"


def space_path(model: str) -> Path:
    return CONFIG_DIR / "tune" / f"{model}.yaml"


# --------------------------------------------------------------------------- search space
@dataclasses.dataclass
class Param:
    """One tuned config field."""

    key: str  # canonical dotted key, e.g. train.learning_rate
    kind: str  # choice | int | float (log is float with sampling=log)
    values: list | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    encoded: bool = False  # choice values that Keras Tuner cannot hold (lists) are stored as YAML text

    def declare(self, hp) -> None:
        if self.kind == "choice":
            values = [_encode(v) for v in self.values] if self.encoded else list(self.values)
            hp.Choice(self.key, values)
        elif self.kind == "int":
            hp.Int(self.key, int(self.min), int(self.max), step=int(self.step) if self.step else None, sampling=self.sampling)
        else:
            hp.Float(self.key, float(self.min), float(self.max), step=self.step, sampling=self.sampling)

    def decode(self, value: Any) -> Any:
        return yaml.safe_load(value) if self.encoded else value

    def corners(self) -> list:
        """Values checked against the config before the sweep starts."""
        return list(self.values) if self.kind == "choice" else [self.min, self.max]

    def describe(self) -> dict:
        if self.kind == "choice":
            return {"type": "choice", "values": self.values}
        out = {"type": self.kind, "min": self.min, "max": self.max, "sampling": self.sampling}
        if self.step:
            out["step"] = self.step
        return out


def _encode(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


@dataclasses.dataclass
class SearchSpace:
    model: str
    params: list[Param]
    fixed: dict[str, Any]
    objective: str | None
    source: str

    def declare(self):
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        for p in self.params:
            p.declare(hp)
        return hp

    def overrides(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The trial's values as config overrides (Hyperband's tuner/* entries left out)."""
        by_key = {p.key: p for p in self.params}
        return {k: by_key[k].decode(v) for k, v in values.items() if k in by_key}

    def describe(self) -> dict:
        return {p.key: p.describe() for p in self.params}


def _canonical_key(cfg: RunConfig, key: str) -> str:
    obj, leaf = resolve_key(cfg, key)
    section = next(name for name in RunConfig.SECTIONS if getattr(cfg, name) is obj)
    return f"{section}.{leaf}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}={value!r}: expected a number")
    return value


def parse_space(data: Mapping[str, Any], base: RunConfig, source: str) -> SearchSpace:
    """Validate a search-space mapping against ``base`` (the run config every trial starts from)."""
    known = {"model", "description", "objective", "fixed", "space"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown section {key!r}; expected {', '.join(sorted(known))}")
    if data.get("model") not in (None, base.model):
        raise ConfigError(f"{source}: says model {data['model']!r} but the sweep is for {base.model!r}")
    raw_space = data.get("space")
    if not isinstance(raw_space, Mapping) or not raw_space:
        raise ConfigError(f"{source}: 'space' must be a non-empty mapping of config key: {{type: ..., ...}}")
    fixed_raw = data.get("fixed") or {}
    if not isinstance(fixed_raw, Mapping):
        raise ConfigError(f"{source}: 'fixed' must be a mapping of config key: value")
    fixed = {}
    for key, value in fixed_raw.items():
        try:
            fixed[_canonical_key(base, str(key))] = value
        except ConfigError as exc:
            raise ConfigError(f"{source}: fixed: {exc}") from None
    objective = data.get("objective")
    if objective is not None and not isinstance(objective, str):
        raise ConfigError(f"{source}: objective={objective!r}: expected a metric name like ndcg@10")

    params: list[Param] = []
    for key, spec in raw_space.items():
        where = f"{source}: space.{key}"
        try:
            canonical = _canonical_key(base, str(key))
        except ConfigError as exc:
            raise ConfigError(f"{source}: space: {exc}") from None
        if canonical in {p.key for p in params}:
            raise ConfigError(f"{where}: {canonical} is listed twice")
        if canonical in fixed:
            raise ConfigError(f"{where}: {canonical} is both fixed and tuned")
        if canonical in ("train.run_dir", "data.dir", "data.dataset"):
            raise ConfigError(f"{where}: {canonical} cannot be tuned")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping like {{type: choice, values: [...]}}, got {spec!r}")
        kind = spec.get("type")
        if kind not in KINDS:
            raise ConfigError(f"{where}: type={kind!r}: expected one of {', '.join(KINDS)}")
        unknown = sorted(set(spec) - SPEC_FIELDS[kind])
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r} for type {kind}; expected {', '.join(sorted(SPEC_FIELDS[kind]))}")
        section, leaf = canonical.split(".", 1)
        annotation = _field_types(getattr(base, section))[leaf]
        ann = {"int": int, "float": float, "str": str, "bool": bool, "list": list}.get(annotation, annotation) if isinstance(annotation, str) else annotation
        if kind == "choice":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: values={values!r}: expected a non-empty list")
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise ConfigError(f"{where}: values={values!r}: contains duplicates")
            encoded = any(isinstance(v, (list, tuple, dict)) or v is None for v in values)
            if not encoded:
                types_ = {type(v) for v in values}
                if types_ <= {int, float} and float in types_:
                    values = [float(v) for v in values]
                elif len(types_) > 1:
                    encoded = True  # mixed types: Keras Tuner wants one type per Choice
            param = Param(canonical, "choice", values=values, encoded=encoded)
        else:
            if ann not in (int, float):
                raise ConfigError(f"{where}: type {kind} needs a numeric field; {canonical} is {getattr(ann, '__name__', ann)} (use type: choice)")
            if ann is int and kind != "int":
                raise ConfigError(f"{where}: {canonical} is an integer; use type: int (with sampling: log for a log range)")
            lo = _number(spec.get("min"), f"{where}.min")
            hi = _number(spec.get("max"), f"{where}.max")
            if not lo < hi:
                raise ConfigError(f"{where}: min={lo!r} must be < max={hi!r}")
            sampling = "log" if kind == "log" else spec.get("sampling", "linear")
            if sampling not in SAMPLINGS:
                raise ConfigError(f"{where}: sampling={sampling!r}: expected one of {', '.join(SAMPLINGS)}")
            if sampling != "linear" and lo <= 0:
                raise ConfigError(f"{where}: min={lo!r}: a {sampling} range needs min > 0")
            step = spec.get("step")
            if step is not None:
                step = _number(step, f"{where}.step")
                if step <= 0 or step > hi - lo:
                    raise ConfigError(f"{where}: step={step!r}: must be > 0 and <= max - min")
            if kind == "int":
                for name, value in (("min", lo), ("max", hi), ("step", step)):
                    if value is not None and not float(value).is_integer():
                        raise ConfigError(f"{where}: {name}={value!r}: expected an integer")
                lo, hi, step = int(lo), int(hi), int(step) if step is not None else None
            param = Param(canonical, "int" if kind == "int" else "float", min=lo, max=hi, step=step, sampling=sampling)
        for value in param.corners():
            probe = copy.deepcopy(base)
            try:
                apply_overrides(probe, {canonical: value})
                probe.validate()
            except ConfigError as exc:
                raise ConfigError(f"{where}: value {value!r} is invalid: {exc}") from None
        params.append(param)
    return SearchSpace(base.model, params, fixed, objective, source)


def load_space(model: str, base: RunConfig, path: str | None = None) -> SearchSpace:
    file = Path(path) if path else space_path(model)
    if not file.exists():
        if path:
            raise ConfigError(f"--space={path}: file not found")
        known = sorted(p.stem for p in (CONFIG_DIR / "tune").glob("*.yaml"))
        raise ConfigError(f"no search space for model {model!r} (configs/tune/{model}.yaml); have {', '.join(known)}; or pass --space=FILE")
    shown = str(file.relative_to(CONFIG_DIR.parent)) if CONFIG_DIR.parent in file.resolve().parents else str(file)
    return parse_space(load_yaml(file), base, shown)


def check_objective(name: str, base: RunConfig) -> str:
    from tfpps.evaluation.metrics import METRICS

    metric, _, k = name.partition("@")
    if metric not in METRICS or not k.isdigit():
        raise ConfigError(f"--objective={name!r}: expected <metric>@<k> with metric one of {', '.join(METRICS)}")
    if int(k) not in base.eval.ks:
        raise ConfigError(f"--objective={name!r}: k={k} is not in eval.ks={base.eval.ks} (add it with --set eval.ks=[...])")
    return name


# --------------------------------------------------------------------------- the tuner
@dataclasses.dataclass
class SweepSettings:
    model: str
    dataset: str
    config_file: str | None
    overrides: dict[str, Any]  # fixed + --set, canonical keys
    objective: str
    executions_per_trial: int = 1


def _import_keras_tuner():
    import keras_tuner

    return keras_tuner


def _make_tuner_class():
    keras_tuner = _import_keras_tuner()

    class SweepTuner(keras_tuner.Tuner):
        """Runs each trial as a tfpps training run (tf_keras) in its own run dir."""

        def __init__(self, oracle, space: SearchSpace, settings: SweepSettings, **kwargs):
            self.space, self.settings = space, settings
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
                executions.append(run_one(cfg, run_dir, init_weights=str(init) if init else None))
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

    data = trainer.open_dataset(cfg)
    model = trainer.build_model(cfg, data)
    model.fit_data(data)
    metrics = trainer.evaluate_split(model, data, "valid", cfg)
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


# --------------------------------------------------------------------------- results
def collect_trials(project_dir: Path, metric: str) -> list[dict]:
    """Every trial of the sweep (Keras Tuner's trial.json + our result.json), best first."""
    rows = []
    for trial_json in sorted(project_dir.glob("trial_*/trial.json")):
        state = json.loads(trial_json.read_text())
        result_path = trial_json.parent / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        row = {
            "trial_id": state["trial_id"],
            "status": state["status"],
            "objective": state.get("score") if state["status"] == "COMPLETED" else None,
            "objective_per_execution": result.get("objective_per_execution"),
            "hyperparameters": result.get("hyperparameters")
            or {k: v for k, v in (state.get("hyperparameters") or {}).get("values", {}).items() if not k.startswith("tuner/")},
            "hyperband": result.get("hyperband"),
            "epochs": result.get("epochs"),
            "best_epoch": result.get("best_epoch"),
            "seconds": result.get("seconds"),
            "test": result.get("test", {}),
            "run_dirs": result.get("run_dirs", []),
        }
        if state.get("message") and state["status"] != "COMPLETED":
            lines = [l for l in state["message"].strip().splitlines() if l.strip()]
            row["message"] = lines[-1] if lines else state["message"]
        rows.append(row)
    done = sorted((r for r in rows if r["objective"] is not None), key=lambda r: (-r["objective"], r["trial_id"]))
    rest = sorted((r for r in rows if r["objective"] is None), key=lambda r: r["trial_id"])
    for rank, row in enumerate(done, 1):
        row["rank"] = rank
    return done + rest


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    leaves = [k.split(".", 1)[-1] for k in keys]
    return {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves)}


def _epochs(trial: dict) -> str:
    """Epochs trained; a Hyperband trial continued from another shows 'inherited+trained'."""
    hb = trial.get("hyperband") or {}
    if hb.get("tuner/trial_id"):
        return f"{hb.get('tuner/initial_epoch', 0)}+{_fmt(trial['epochs'])}"
    return _fmt(trial["epochs"])


def results_table(trials: list[dict], metric: str, keys: list[str], top: int | None = 10) -> str:
    names = short_names(keys)
    shown = [t for t in trials if t["objective"] is not None][: top or None]
    failed = [t for t in trials if t["objective"] is None]
    header = ["rank", "trial", f"val {metric}"] + [names[k] for k in keys] + ["epochs", "best ep", "seconds"]
    rows = [
        [str(t.get("rank", "")), t["trial_id"], f"{t['objective']:.4f}"]
        + [_fmt(t["hyperparameters"].get(k)) for k in keys]
        + [_epochs(t), _fmt(t["best_epoch"]), _fmt(t["seconds"])]
        for t in shown
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    for t in failed:
        lines.append(f"trial {t['trial_id']}: {t['status']}" + (f" ({t['message']})" if t.get("message") else ""))
    return "\n".join(lines)


def write_results(project_dir: Path, trials: list[dict], metric: str, keys: list[str]) -> None:
    (project_dir / "trials.json").write_text(json.dumps({"objective": objective_name(metric), "direction": "max", "trials": trials}, indent=1, default=str) + "\n")
    test_keys = sorted({k for t in trials for k in t["test"] if k != "num_examples"})
    with open(project_dir / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "trial_id", "status", objective_name(metric)] + keys + ["epochs", "best_epoch", "seconds"] + [f"test_{k}" for k in test_keys])
        for t in trials:
            writer.writerow(
                [t.get("rank", ""), t["trial_id"], t["status"], "" if t["objective"] is None else t["objective"]]
                + [_fmt(t["hyperparameters"].get(k)) for k in keys]
                + [_fmt(t["epochs"]), _fmt(t["best_epoch"]), _fmt(t["seconds"])]
                + [_fmt(t["test"].get(k)) for k in test_keys]
            )


def write_best_yaml(project_dir: Path, tuner_obj, best: dict, metric: str) -> Path:
    epochs = (best.get("hyperband") or {}).get("tuner/epochs")
    cfg = tuner_obj.trial_config(best["hyperparameters"], epochs=epochs)
    cfg.train.run_dir = ""
    cfg.train.verbose = 1
    tuned = ", ".join(f"{k}={_fmt(v)}" for k, v in best["hyperparameters"].items())
    header = (
        f"# Best trial {best['trial_id']} of the sweep in {project_dir}\n"
        f"# {objective_name(metric)} = {best['objective']:.4f} (validation, best epoch {best['best_epoch']} of {best['epochs']})\n"
        f"# tuned: {tuned}\n"
        f"# use: python -m tfpps.train --config={project_dir / 'best.yaml'}\n"
    )
    path = project_dir / "best.yaml"
    path.write_text(header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


# --------------------------------------------------------------------------- command line
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
    cli_keys = {_canonical_key(base, k): v for k, v in cli_overrides.items()}
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
        "overrides": {k: _fmt(v) if not isinstance(v, str) else v for k, v in overrides.items()},
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

    kt = _import_keras_tuner()
    objective = kt.Objective(objective_name(metric), direction="max")
    oracle = make_oracle(args.tuner, objective, args.max_trials, args.seed, space.declare(), max_epochs, args.factor, args.initial_points)
    settings = SweepSettings(args.model, args.dataset, args.config, overrides, metric, args.executions_per_trial)
    tuner_cls = _make_tuner_class()
    tuner_obj = tuner_cls(oracle, space, settings, directory=str(directory.parent), project_name=directory.name, overwrite=False)
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
