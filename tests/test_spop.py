"""S-POP: hand-computed scores, the one-line config error, and the repeat-consumption signal it exploits."""
import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from markov_data import write_sequences_dataset
from tfpps import registry
from tfpps.errors import ConfigError
from tfpps.models.base import DatasetInfo
from tfpps.models.baselines.spop import SessionPopular, SPopConfig
from tfpps.cli.train import parse
from tfpps.runs.trainer import train


def test_scores_are_history_counts_plus_popularity_below_one():
    info = DatasetInfo(num_items=6, num_users=3, item_counts=np.array([0, 0, 4, 1, 9, 0]))
    model = SessionPopular(SPopConfig(), info, run=None)
    features = {"item_ids": tf.constant([[3, 3, 5, 0], [1, 0, 0, 0]], tf.int64), "length": tf.constant([3, 1], tf.int64)}
    scores = model.score_items(features).numpy()
    pop = np.array([0, 0, 4, 1, 9, 0]) / 10.0
    np.testing.assert_allclose(scores[0], pop + np.array([0, 0, 0, 2, 0, 1]), rtol=1e-6)
    np.testing.assert_allclose(scores[1], pop, rtol=1e-6)  # OOV in the history scores nothing
    assert list(np.argsort(-scores[0])[:3]) == [3, 5, 4]


def test_a_non_positive_repeat_weight_is_refused_in_one_line():
    assert registry.get("spop").model_cls is SessionPopular
    with pytest.raises(ConfigError, match=r"^model_params.repeat_weight=0.0: must be positive$"):
        SPopConfig(repeat_weight=0.0).validate()


def test_on_data_that_repeats_items_spop_beats_popularity(tmp_path):
    """Each user re-buys from a personal set of 3 of 60 items: the history holds the target, popularity does not."""
    rng = np.random.default_rng(0)
    seqs = {f"u{u}": [f"m{i}" for i in rng.choice(rng.choice(60, 3, replace=False), int(rng.integers(8, 16)))]
            for u in range(300)}
    data = write_sequences_dataset(tmp_path / "data", seqs)
    common = [f"--data_dir={data}", "--verbose=0", "--set", "eval.ks=[3,10]", "--set", "eval.mask_history=false"]
    pop = train(parse(["--model=pop", f"--run_dir={tmp_path / 'pop'}", *common])[0], fresh=True)["metrics"]
    spop = train(parse(["--model=spop", f"--run_dir={tmp_path / 'spop'}", *common])[0], fresh=True)["metrics"]
    assert spop["recall@3"] > 0.9 and pop["recall@3"] < 0.2, (spop, pop)
