"""One seed default: every model reads train.seed through tfpps.models.base.seed_of, whose fallback is the config's."""
import types

from tfpps.config import TrainConfig
from tfpps.models.base import DEFAULT_SEED, seed_of


def test_the_models_fallback_is_the_configs_default():
    assert DEFAULT_SEED == TrainConfig().seed
    assert seed_of(types.SimpleNamespace(train=types.SimpleNamespace(seed=0))) == 0  # 0 is a seed, not "unset"
    assert seed_of(types.SimpleNamespace(seed=5)) == 5  # a bare train section
    assert seed_of(types.SimpleNamespace(train=types.SimpleNamespace(seed=None))) == DEFAULT_SEED
