"""Model registry: maps a model name to its class, config dataclass and data family.

>>> from tfpps import registry
>>> "gru4rec" in registry.names()
True
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from tfpps.errors import ConfigError

# Families tell the trainer which examples a model consumes.
SEQUENTIAL = "sequential"  # next-item prediction from an item history (data kind "sequential")
NONNEURAL = "nonneural"  # fitted in one pass (popularity, KNN); no gradient training

# Modules that register models when imported.
_MODEL_MODULES = (
    "tfpps.models.gru4rec",
    "tfpps.models.narm",
    "tfpps.models.pop",
    "tfpps.models.itemknn",
    "tfpps.models.sknn",
    "tfpps.models.hrm",
    "tfpps.models.cml",
    "tfpps.models.hlrm",
    "tfpps.models.hrnn",
    "tfpps.models.hem",
    "tfpps.models.aem",
    "tfpps.models.hrnn_search",
    "tfpps.models.bm25",
)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    model_cls: Any
    config_cls: type
    family: str
    example_kind: str
    summary: str


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register(name: str, config_cls: type, family: str = SEQUENTIAL, example_kind: str = "sequential") -> Callable:
    """Class decorator: ``@register("narm", NARMConfig)``."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name].model_cls is not cls:
            raise ValueError(f"model {name!r} registered twice")
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else name
        _REGISTRY[name] = ModelEntry(name, cls, config_cls, family, example_kind, summary)
        return cls

    return wrap


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for module in _MODEL_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # a real import error inside the module
                    raise
        _loaded = True


def get(name: str | None) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)
