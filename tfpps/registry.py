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

# Every module of the tfpps.models package and of its sub-packages (one per kind of model: sequential,
# search, metric, baselines) is imported once, by file name: a model registers itself with @register in its
# own file, so adding a model is one .py (and its configs/models/<name>.yaml); no list to edit.
MODELS_PACKAGE = "tfpps.models"


def _model_modules() -> list[str]:
    """The modules of :data:`MODELS_PACKAGE` and of every sub-package below it, sorted by dotted name
    (shared parts such as ``base`` register nothing and are imported anyway; names starting with ``_``
    are private helpers and are skipped, as is everything below a private package).

    >>> [m for m in _model_modules() if m.endswith((".base", ".gru4rec"))]
    ['tfpps.models.base', 'tfpps.models.sequential.gru4rec']
    """
    import pkgutil

    package = importlib.import_module(MODELS_PACKAGE)
    found = pkgutil.walk_packages(package.__path__, prefix=f"{MODELS_PACKAGE}.", onerror=_reraise)
    return sorted(m.name for m in found if not m.ispkg and not any(p.startswith("_") for p in m.name.split(".")))


def _reraise(name: str) -> None:
    """``walk_packages`` would skip a sub-package that fails to import (and so its models): fail instead."""
    raise  # the ImportError walk_packages is handling


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
        for module in _model_modules():
            importlib.import_module(module)
        _loaded = True


def get(name: str | None) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)
