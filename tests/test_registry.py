"""The model registry finds every model by its file: no module list to edit when a model is added."""
import re
from pathlib import Path

import pytest

import tfpps  # noqa: F401
from tfpps import registry
from tfpps.errors import ConfigError

MODELS_DIR = Path(__file__).resolve().parents[1] / "tfpps" / "models"


def test_every_registered_name_in_the_model_files_is_found():
    declared = set()
    for path in MODELS_DIR.rglob("*.py"):
        declared |= set(re.findall(r'register\(\s*"([a-z0-9_]+)"', path.read_text()))
    assert declared >= {"gru4rec", "narm", "hem", "qem", "zam", "bm25", "pop"}
    assert set(registry.names()) == declared


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; available: .*gru4rec"):
        registry.get("nope")


def test_every_model_declares_its_contract_by_its_base_class():
    from tfpps.models.base import NonNeuralModel, SequentialModel

    for name in registry.names():
        entry = registry.get(name)
        base = NonNeuralModel if entry.family == registry.NONNEURAL else SequentialModel
        assert issubclass(entry.model_cls, base), name
        assert entry.model_cls.score_items is not base.score_items, name
