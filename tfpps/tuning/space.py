"""A sweep's search space: ``configs/tune/<model>.yaml`` (or ``--space=FILE``) parsed and checked.

Every key is resolved against the model's config (dotted key, alias or unique field name) and every end
of every range is tried on it before the first trial; a bad space stops with one line naming the file,
the key and the problem (the format: :mod:`tfpps.cli.tune`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from tfpps.config import CONFIG_DIR, ConfigError, RunConfig, _field_types, apply_overrides, load_yaml, resolve_key

KINDS = ("choice", "int", "float", "log")
SAMPLINGS = ("linear", "log", "reverse_log")
SPEC_FIELDS = {
    "choice": {"type", "values"},
    "int": {"type", "min", "max", "step", "sampling"},
    "float": {"type", "min", "max", "step", "sampling"},
    "log": {"type", "min", "max"},
}
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


def canonical_key(cfg: RunConfig, key: str) -> str:
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
            fixed[canonical_key(base, str(key))] = value
        except ConfigError as exc:
            raise ConfigError(f"{source}: fixed: {exc}") from None
    objective = data.get("objective")
    if objective is not None and not isinstance(objective, str):
        raise ConfigError(f"{source}: objective={objective!r}: expected a metric name like ndcg@10")

    params: list[Param] = []
    for key, spec in raw_space.items():
        where = f"{source}: space.{key}"
        try:
            canonical = canonical_key(base, str(key))
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
