"""Typed run configuration: YAML files mapped onto dataclasses, validated once.

A run has exactly one :class:`RunConfig`. It is built from (in order)
the dataclass defaults, ``configs/models/<model>.yaml``, an optional dataset
config ``configs/datasets/<name>.yaml``, and command-line overrides
(``--set train.learning_rate=0.01``, ``--set lr=0.01`` or ``--lr=0.01``).
Any unknown key or badly typed value raises :class:`ConfigError` whose
message is one line naming the key, the value and what was expected.

>>> from tfpps.config import TrainConfig, apply_overrides
>>> cfg = TrainConfig()
>>> apply_overrides(cfg, {"epochs": "3"}).epochs
3
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from tfpps.errors import ConfigError  # noqa: F401  (re-exported: callers import it from tfpps.config)

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_IN_CHECKOUT = (_SOURCE_ROOT / "setup.py").exists() and (_SOURCE_ROOT / "configs").is_dir()
# Relative paths (data_out/, runs/) resolve against the checkout, or the working directory when installed.
REPO_ROOT = _SOURCE_ROOT if _IN_CHECKOUT else Path.cwd()
# configs/ of the checkout, or the copy packaged into the wheel (setup.py build_py).
CONFIG_DIR = Path(
    os.environ.get("TFPPS_CONFIG_DIR", _SOURCE_ROOT / "configs" if _IN_CHECKOUT else Path(__file__).resolve().parent / "_configs")
)




# --------------------------------------------------------------------------- sections
@dataclasses.dataclass
class DataConfig:
    """Where the examples come from and how they are shaped."""

    dir: str = ""  # a Beam job output directory; empty = the synthetic default
    dataset: str = "synthetic"  # name of configs/datasets/<name>.yaml, for reporting
    max_len: int = 50  # history length fed to models (most recent items kept)
    shuffle_buffer: int = 100_000
    num_parallel_reads: int = 4

    def validate(self) -> None:
        _positive(self, "max_len", "num_parallel_reads")
        _non_negative(self, "shuffle_buffer")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, checkpointing and early stopping."""

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | adagrad | adagrad_momentum | sgd
    momentum: float = 0.0
    clipnorm: float = 0.0  # 0 = no clipping
    lr_decay: str = "none"  # none | linear (to 1e-4 of the rate over all epochs' steps, the HEM code's schedule)
    seed: int = 42
    patience: int = 5  # epochs without validation improvement before stopping; 0 = off
    valid_metric: str = "ndcg@10"
    steps_per_execution: int = 32  # training steps fused into one tf.function call
    run_dir: str = ""  # empty = runs/<model>-<dataset>
    resume: bool = True  # continue from the run dir's backup when one exists
    verbose: int = 1
    strategy: str = "default"  # tf.distribute: default | mirrored (local devices) | multiworker (TF_CONFIG; see tfpps.launch)
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism() (bitwise-repeatable runs, slower)
    steps_per_epoch: int = 0  # cap every epoch at this many training steps (the first of its shuffled batches); 0 = all
    max_minutes: float = 0.0  # stop after the epoch that ends past this wall time (per invocation; resumable); 0 = off

    OPTIMIZERS = ("adam", "adagrad", "adagrad_momentum", "sgd")
    STRATEGIES = ("default", "mirrored", "multiworker")

    def validate(self) -> None:
        _positive(self, "epochs", "batch_size", "learning_rate", "steps_per_execution")
        _non_negative(self, "momentum", "clipnorm", "patience", "steps_per_epoch", "max_minutes")
        _choice(self, "optimizer", self.OPTIMIZERS)
        _choice(self, "strategy", self.STRATEGIES)
        _choice(self, "lr_decay", ("none", "linear"))
        if "@" not in self.valid_metric:
            raise ConfigError(f"train.valid_metric={self.valid_metric!r}: expected <metric>@<k>, e.g. ndcg@10")


@dataclasses.dataclass
class EvalConfig:
    """Full-ranking evaluation over all items."""

    ks: list = dataclasses.field(default_factory=lambda: [5, 10, 20])
    mask_history: bool = False  # RecBole's sequential protocol does not mask history
    ties: str = "standard"  # standard: rank = #(s > s_t) + 1 ; conservative: #(s >= s_t)
    batch_size: int = 512
    valid_sample: int = 0  # validate on a fixed seeded sample (train.seed) of this many examples; 0 = all (test: always all)

    def validate(self) -> None:
        if not self.ks or any((not isinstance(k, int)) or k <= 0 for k in self.ks):
            raise ConfigError(f"eval.ks={self.ks!r}: expected a non-empty list of positive integers")
        _choice(self, "ties", ("standard", "conservative"))
        _positive(self, "batch_size")
        _non_negative(self, "valid_sample")


@dataclasses.dataclass
class RunConfig:
    """Everything one training run needs; saved as ``config.yaml`` in the run dir."""

    model: str
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    model_params: Any = None  # the model's own config dataclass (from the registry)

    SECTIONS = ("data", "train", "eval", "model_params")

    def validate(self) -> "RunConfig":
        for name in self.SECTIONS:
            section = getattr(self, name)
            if hasattr(section, "validate"):
                section.validate()
        if self.train.valid_metric.split("@")[1].isdigit():
            k = int(self.train.valid_metric.split("@")[1])
            if k not in self.eval.ks:
                raise ConfigError(
                    f"train.valid_metric={self.train.valid_metric!r} uses k={k}, which is not in eval.ks={self.eval.ks}"
                )
        return self

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            **{name: dataclasses.asdict(getattr(self, name)) for name in self.SECTIONS if getattr(self, name) is not None},
        }


# Short names accepted on the command line for the fields people change most.
ALIASES = {
    "lr": "train.learning_rate",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "run_dir": "train.run_dir",
    "data_dir": "data.dir",
    "max_len": "data.max_len",
}


# --------------------------------------------------------------------------- validation helpers
def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{_section_name(obj)}.{name}={value!r}: must be > 0")


def _non_negative(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value >= 0:  # NaN too
            raise ConfigError(f"{_section_name(obj)}.{name}={value!r}: must be >= 0")


def _choice(obj: Any, name: str, choices: tuple) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ConfigError(f"{_section_name(obj)}.{name}={value!r}: expected one of {', '.join(map(str, choices))}")


def _probability(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{_section_name(obj)}.{name}={value!r}: must be in [0, 1)")


positive, non_negative, choice, probability = _positive, _non_negative, _choice, _probability


def _section_name(obj: Any) -> str:
    return {DataConfig: "data", TrainConfig: "train", EvalConfig: "eval"}.get(type(obj), "model_params")


# --------------------------------------------------------------------------- coercion
def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the field's declared type."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "Any": Any}.get(
            annotation, Any
        )
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if isinstance(value, str) and annotation is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}={value!r}: not a valid value ({exc.__class__.__name__})") from None
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r}: expected true or false")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}={value!r}: expected an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r}: expected a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}={value!r}: expected a string")
        return str(value)
    if annotation is list or origin is list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r}: expected a list")
        item_type = (typing.get_args(annotation) or [Any])[0]
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(obj)}


def _reject_renamed(obj: Any, key: str, where: str) -> None:
    """A key that ``obj``'s dataclass no longer reads under that name (its ``RENAMED_KEYS``, old name ->
    the key that replaced it) raises one line naming the new key, not the generic unknown-key error."""
    new = getattr(type(obj), "RENAMED_KEYS", {}).get(key)
    if new:
        raise ConfigError(f"config key {where}.{key} is no longer read: set {new} instead")


def update_dataclass(obj: Any, values: Mapping[str, Any], where: str) -> Any:
    """Set fields of dataclass ``obj`` from ``values``; unknown keys are errors."""
    if values is None:
        return obj
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of field: value, got {type(values).__name__}")
    types_ = _field_types(obj)
    for key, value in values.items():
        if key not in types_:
            _reject_renamed(obj, key, where)
            raise ConfigError(f"unknown config key {where}.{key}; known keys: {', '.join(sorted(types_))}")
        setattr(obj, key, _coerce(value, types_[key], f"{where}.{key}"))
    return obj


# --------------------------------------------------------------------------- loading
def load_yaml(path: Path | str) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def merge_into(cfg: RunConfig, data: Mapping[str, Any], source: str) -> RunConfig:
    """Merge a YAML mapping (sections ``data``, ``train``, ``eval``, ``model_params``) into ``cfg``."""
    for key, value in data.items():
        if key == "model":
            if value != cfg.model:
                raise ConfigError(f"{source}: says model {value!r} but the run is for {cfg.model!r}")
            continue
        if key in ("description", "build"):  # free text / Beam job flags of dataset configs
            continue
        if key not in RunConfig.SECTIONS:
            raise ConfigError(f"{source}: unknown section {key!r}; expected one of {', '.join(RunConfig.SECTIONS)}")
        update_dataclass(getattr(cfg, key), value, f"{source}:{key}")
    return cfg


def resolve_key(cfg: RunConfig, key: str) -> tuple[Any, str]:
    """Find the dataclass holding ``key`` (dotted path, alias or unique leaf name)."""
    key = ALIASES.get(key, key)
    if "." in key:
        section, _, leaf = key.partition(".")
        if section not in RunConfig.SECTIONS:
            raise ConfigError(f"unknown config key {key!r}; sections are {', '.join(RunConfig.SECTIONS)}")
        obj = getattr(cfg, section)
        if leaf not in _field_types(obj):
            _reject_renamed(obj, leaf, section)
            raise ConfigError(f"unknown config key {key!r}; known in {section}: {', '.join(sorted(_field_types(obj)))}")
        return obj, leaf
    owners = [s for s in RunConfig.SECTIONS if key in _field_types(getattr(cfg, s))]
    if not owners:
        for section in RunConfig.SECTIONS:
            _reject_renamed(getattr(cfg, section), key, section)
        raise ConfigError(f"unknown config key {key!r} (try --help for the list of options)")
    if len(owners) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous; write one of {', '.join(o + '.' + key for o in owners)}")
    return getattr(cfg, owners[0]), key


def apply_overrides(target: Any, overrides: Mapping[str, str]) -> Any:
    """Apply ``key=value`` overrides to a RunConfig (any key form) or to one dataclass."""
    for key, value in overrides.items():
        if isinstance(target, RunConfig):
            obj, leaf = resolve_key(target, key)
            where = f"{'model_params' if obj is target.model_params else _section_name(obj)}.{leaf}"
        else:
            obj, leaf, where = target, key, key
            if leaf not in _field_types(obj):
                raise ConfigError(f"unknown config key {key!r}")
        setattr(obj, leaf, _coerce(value, _field_types(obj)[leaf], where))
    return target


def parse_set_args(items: list[str]) -> dict[str, str]:
    """``["a.b=1", "lr=0.1"]`` -> ``{"a.b": "1", "lr": "0.1"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip()
    return out


def parse_override_flags(set_items: list[str], extra: list[str]) -> dict[str, str]:
    """Overrides from ``--set key=value`` items and leftover ``--key=value`` flags (``-`` read as ``_``).

    >>> parse_override_flags(["train.lr=0.1"], ["--batch-size=32"])
    {'train.lr': '0.1', 'batch_size': '32'}
    """
    overrides = parse_set_args(set_items)
    for item in extra:
        if not item.startswith("--"):
            raise ConfigError(f"unexpected argument {item!r}")
        key, eq, value = item[2:].partition("=")
        if not eq:
            raise ConfigError(f"--{key}: expected --{key}=VALUE")
        overrides[key.replace("-", "_")] = value
    return overrides


def model_config_path(model: str) -> Path:
    return CONFIG_DIR / "models" / f"{model}.yaml"


def dataset_config_path(name: str) -> Path:
    return CONFIG_DIR / "datasets" / f"{name}.yaml"


def build_run_config(
    model: str,
    dataset: str | None = None,
    config_file: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> RunConfig:
    """Defaults -> configs/models/<model>.yaml -> dataset config -> --config file -> overrides."""
    from tfpps import registry

    entry = registry.get(model)
    cfg = RunConfig(model=model, model_params=entry.config_cls())
    path = model_config_path(model)
    if path.exists():
        merge_into(cfg, load_yaml(path), str(path.relative_to(CONFIG_DIR.parent)) if CONFIG_DIR.parent in path.parents else str(path))
    if dataset:
        dpath = dataset_config_path(dataset)
        if not dpath.exists():
            known = sorted(p.stem for p in (CONFIG_DIR / "datasets").glob("*.yaml"))
            raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(known)}")
        merge_into(cfg, load_yaml(dpath), f"datasets/{dataset}.yaml")
        cfg.data.dataset = dataset
    if config_file:
        merge_into(cfg, load_yaml(config_file), config_file)
    if overrides:
        apply_overrides(cfg, overrides)
    return cfg.validate()


def run_config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved by :meth:`RunConfig.to_dict` (e.g. a run dir's config.yaml)."""
    from tfpps import registry

    model = data.get("model")
    entry = registry.get(model)
    cfg = RunConfig(model=model, model_params=entry.config_cls())
    merge_into(cfg, {k: v for k, v in data.items() if k != "model"}, "saved config")
    return cfg.validate()
