"""Item-KNN, S-KNN and V-SKNN on toy data with hand-computed similarities and scores.

Toy training data (items 2..6, num_items = 7; 0 = PAD, 1 = OOV):

    seq  user  items        last timestamp   recency rank
    s0   2     {2, 3, 4}    12               3 (oldest)
    s1   3     {3, 4} (+OOV) 21              2
    s2   4     {2, 5}       31               1
    s3   5     {3, 5, 6}    42               0 (newest)

Supports |S_i|: item2 2 (s0 s2), item3 3 (s0 s1 s3), item4 2 (s0 s1), item5 2 (s2 s3), item6 1 (s3).
Co-occurrences c_ij: (2,3) 1 [s0], (2,4) 1 [s0], (2,5) 1 [s2], (3,4) 2 [s0 s1], (3,5) 1 [s3],
(3,6) 1 [s3], (5,6) 1 [s3], all others 0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError, build_run_config
from tfpps.models.base import DatasetInfo
from tfpps.data.examples.knn_sequences import read_sequences
from tfpps.models.baselines.itemknn import ItemKNN, ItemKNNConfig, topk_rows
from tfpps.models.baselines.sknn import SessionKNN, SKNNConfig, VSKNN, VSKNNConfig

N = 7
R6, R3, R2 = math.sqrt(6), math.sqrt(3), math.sqrt(2)
TOY = [  # (user, items, timestamps)
    (2, [2, 3, 4], [10, 11, 12]),
    (3, [3, 1, 4], [19, 20, 21]),  # the OOV id 1 is dropped
    (4, [2, 5], [30, 31]),
    (5, [3, 5, 6], [40, 41, 42]),
]
COUNTS = np.array([0, 0, 2, 3, 2, 2, 1])  # training counts (the popularity fallback's order)


class FakeData:
    """Just what the KNN models read: ``records("train")``, ``num_items`` and ``info()``."""

    def __init__(self, records, num_items=N, starts=None):
        self.rows, self.num_items, self.starts = records, num_items, starts

    def records(self, split):
        assert split == "train"

        def gen():
            for i, (user, items, times) in enumerate(self.rows):
                starts = self.starts[i] if self.starts else [1] + [0] * (len(items) - 1)
                yield {
                    "user_id": np.int64(user),
                    "session_id": np.int64(i),
                    "item_ids": np.array(items, np.int64),
                    "timestamps": np.array(times, np.int64),
                    "session_starts": np.array(starts, np.int64),
                    "target_item": np.int64(0),
                }

        scalar, vector = tf.TensorSpec([], tf.int64), tf.TensorSpec([None], tf.int64)
        spec = {"user_id": scalar, "session_id": scalar, "item_ids": vector, "timestamps": vector,
                "session_starts": vector, "target_item": scalar}
        return tf.data.Dataset.from_generator(gen, output_signature=spec)

    def info(self):
        return DatasetInfo(num_items=self.num_items, num_users=10, item_counts=COUNTS[: self.num_items])


def fitted(model_cls, params, data=None):
    params.validate()
    data = data or FakeData(TOY)
    model = model_cls(params, data.info(), run=None)
    model.fit_data(data)
    return model


def features(histories, users=None):
    """Left-aligned, 0-padded evaluation features of ``histories`` (oldest item first)."""
    width = max(len(h) for h in histories)
    ids = np.zeros((len(histories), width), np.int64)
    for b, h in enumerate(histories):
        ids[b, : len(h)] = h
    users = users or [9] * len(histories)  # user 9 has no training sequence
    return {"item_ids": tf.constant(ids), "length": tf.constant([len(h) for h in histories], tf.int64),
            "user_id": tf.constant(users, tf.int64), "target_item": tf.constant([2] * len(histories), tf.int64)}


def scores(model, histories, users=None):
    return model.score_items(features(histories, users)).numpy()


# --------------------------------------------------------------------------- item-KNN
def itemknn(**kw):
    kw.setdefault("regularization", 0.0)
    kw.setdefault("fallback", "none")
    return fitted(ItemKNN, ItemKNNConfig(**kw))


def test_itemknn_cosine_of_the_last_item():
    # sim(3, j) = c_3j / sqrt(3 s_j): j=2: 1/sqrt(6); j=3: 0 (self); j=4: 2/sqrt(6); j=5: 1/sqrt(6); j=6: 1/sqrt(3)
    # sim(5, j) = c_5j / sqrt(2 s_j): j=2: 1/sqrt(4) = 0.5; j=3: 1/sqrt(6); j=4: 0; j=6: 1/sqrt(2)
    model = itemknn(neighbours=0)
    got = scores(model, [[5, 3], [3, 5], [2]])
    np.testing.assert_allclose(got[0], [0, 0, 1 / R6, 0, 2 / R6, 1 / R6, 1 / R3], rtol=1e-6)
    np.testing.assert_allclose(got[1], [0, 0, 0.5, 1 / R6, 0, 0, 1 / R2], rtol=1e-6)
    # sim(2, j) = c_2j / sqrt(2 s_j): j=3: 1/sqrt(6); j=4: 1/sqrt(4); j=5: 1/sqrt(4)
    np.testing.assert_allclose(got[2], [0, 0, 0, 1 / R6, 0.5, 0.5, 0], rtol=1e-6)
    # the top-100 table (K >= N) gives the same scores as the dense matrix
    np.testing.assert_allclose(scores(itemknn(neighbours=100), [[5, 3]])[0], got[0], rtol=1e-6)


def test_itemknn_window_and_linear_decay():
    # window 2 over history [5, 3]: sim(5, j) + sim(3, j)
    got = scores(itemknn(history_window=2), [[5, 3]])[0]
    np.testing.assert_allclose(got, [0, 0, 0.5 + 1 / R6, 1 / R6, 2 / R6, 1 / R6, 1 / R2 + 1 / R3], rtol=1e-6)
    # linear decay: 5 (older) weight 1/2, 3 (newest) weight 1
    got = scores(itemknn(history_window=2, decay="linear"), [[5, 3]])[0]
    np.testing.assert_allclose(got, [0, 0, 0.25 + 1 / R6, 0.5 / R6, 2 / R6, 1 / R6, 0.5 / R2 + 1 / R3], rtol=1e-6)
    # window 0 = whole history; a 1-item history under window 2 uses just that item (weight 1)
    got = scores(itemknn(history_window=0, decay="linear"), [[2, 5, 3], [3]])
    # item 4: sim(3,4) * 1 + sim(5,4) * 2/3 + sim(2,4) * 1/3
    np.testing.assert_allclose(got[0][4], 2 / R6 + 0 + (1 / 3) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(got[1], scores(itemknn(), [[3]])[0], rtol=1e-6)


def test_remind_false_zeroes_history_items():
    # window 2 over [5, 3] (see above) with items 5 and 3 set to 0
    got = scores(itemknn(history_window=2, remind=False), [[5, 3], [3]])
    np.testing.assert_allclose(got[0], [0, 0, 0.5 + 1 / R6, 0, 2 / R6, 0, 1 / R2 + 1 / R3], rtol=1e-6)
    np.testing.assert_allclose(got[1], [0, 0, 1 / R6, 0, 2 / R6, 1 / R6, 1 / R3], rtol=1e-6)
    # S-KNN, k=2 over [2, 3] (see test_sknn_neighbours_and_scores) with items 2 and 3 set to 0
    got = scores(fitted(SessionKNN, SKNNConfig(k=2, remind=False, fallback="none")), [[2, 3]])[0]
    np.testing.assert_allclose(got, [0, 0, 0, 0, 2 / R6, 0.5, 0], rtol=1e-6)


def test_itemknn_regularization_and_asymmetric_alpha():
    # lambda = 1: sim(3, 4) = 2 / sqrt((3 + 1)(2 + 1)) = 2 / sqrt(12)
    assert scores(itemknn(regularization=1.0), [[3]])[0][4] == pytest.approx(2 / math.sqrt(12), rel=1e-6)
    # alpha = 1 (confidence): sim(3, 4) = c / s_3 = 2/3 but sim(4, 3) = c / s_4 = 2/2
    model = itemknn(alpha=1.0)
    got = scores(model, [[3], [4]])
    assert got[0][4] == pytest.approx(2 / 3) and got[1][3] == pytest.approx(1.0)


def test_itemknn_topk_sparsification_keeps_the_largest_and_breaks_ties_to_lower_ids():
    # row 3 sorted: 4 (2/sqrt6), 6 (1/sqrt3), then 2 and 5 tied at 1/sqrt6
    got = scores(itemknn(neighbours=2), [[3], [5]])
    np.testing.assert_allclose(got[0], [0, 0, 0, 0, 2 / R6, 0, 1 / R3], rtol=1e-6)
    np.testing.assert_allclose(got[1], [0, 0, 0.5, 0, 0, 0, 1 / R2], rtol=1e-6)  # row 5: 6, 2 (3 dropped)
    got = scores(itemknn(neighbours=3), [[3]])[0]
    np.testing.assert_allclose(got, [0, 0, 1 / R6, 0, 2 / R6, 0, 1 / R3], rtol=1e-6)  # tie 2 vs 5 -> 2
    cols, vals = topk_rows(np.array([[0.0, 1.0, 3.0, 1.0, 1.0]]), 3)
    assert cols.tolist() == [[2, 1, 3]] and vals.tolist() == [[3.0, 1.0, 1.0]]


def test_itemknn_split_sessions_counts_within_sessions():
    data = FakeData([(2, [2, 3, 4, 5], [1, 2, 3, 4]), (3, [3, 4], [5, 6])], starts=[[1, 0, 1, 0], [1, 0]])
    seqs = read_sequences(data, N, split_sessions=True)
    assert np.diff(seqs.offsets).tolist() == [2, 2, 2] and seqs.items.tolist() == [2, 3, 4, 5, 3, 4]
    model = fitted(ItemKNN, ItemKNNConfig(regularization=0.0, fallback="none", split_sessions=True), data)
    # sessions {2,3} {4,5} {3,4}: sim(3, 4) = 1/sqrt(2*2), sim(3, 5) = 0, sim(3, 2) = 1/sqrt(2*1)
    np.testing.assert_allclose(scores(model, [[3]])[0], [0, 0, 1 / R2, 0, 0.5, 0, 0], rtol=1e-6)


def test_popularity_fallback_and_pad_oov_never_positive():
    model = fitted(ItemKNN, ItemKNNConfig(regularization=0.0, neighbours=2))
    got = scores(model, [[3]])[0]
    # positives unchanged; the rest: -1 + 0.5 * count / 3 (PAD, OOV: -1; item3: -0.5; item2, item5: -2/3)
    np.testing.assert_allclose(got, [-1, -1, -1 + 1 / 3, -0.5, 2 / R6, -1 + 1 / 3, 1 / R3], rtol=1e-6)
    histories = [[1, 3], [2, 1], [1], [6, 5, 4, 3, 2]]
    for each in (
        model,
        itemknn(history_window=0),
        fitted(SessionKNN, SKNNConfig()),
        fitted(SessionKNN, SKNNConfig(fallback="none")),
        fitted(VSKNN, VSKNNConfig()),
    ):
        got = scores(each, histories)
        assert (got[:, :2] <= 0).all(), type(each).__name__
    assert (scores(itemknn(history_window=0), [[1]])[0] == 0).all()  # an OOV-only history scores nothing


# --------------------------------------------------------------------------- S-KNN / V-SKNN
def test_sknn_neighbours_and_scores():
    # history [2, 3] (H = {2, 3}, |H| = 2); every sequence shares an item:
    # cosine: s0 2/sqrt(2*3) = 2/sqrt6; s1 1/sqrt(2*2) = 0.5; s2 1/sqrt(2*2) = 0.5; s3 1/sqrt(2*3) = 1/sqrt6
    model = fitted(SessionKNN, SKNNConfig(k=2, fallback="none"))
    seqs, sims, decays = model.neighbours([2, 3])
    assert seqs.tolist() == [0, 2]  # s1 and s2 tie at 0.5: the more recent s2 wins
    np.testing.assert_allclose(sims, [2 / R6, 0.5])
    assert decays.tolist() == [1.0, 1.0]
    # items of s0 {2,3,4} get 2/sqrt6, items of s2 {2,5} get 0.5
    np.testing.assert_allclose(scores(model, [[2, 3]])[0], [0, 0, 2 / R6 + 0.5, 2 / R6, 2 / R6, 0.5, 0], rtol=1e-6)
    # all four neighbours
    seqs, sims, _ = fitted(SessionKNN, SKNNConfig(k=10)).neighbours([2, 3])
    assert seqs.tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(sims, [2 / R6, 0.5, 0.5, 1 / R6])


def test_sknn_sample_size_keeps_the_most_recent_candidates():
    # sample_size 2: candidates s3 (t=42) and s2 (t=31) only; sims s2 0.5 > s3 1/sqrt6
    model = fitted(SessionKNN, SKNNConfig(k=2, sample_size=2, fallback="none"))
    seqs, sims, _ = model.neighbours([2, 3])
    assert seqs.tolist() == [2, 3]
    np.testing.assert_allclose(scores(model, [[2, 3]])[0], [0, 0, 0.5, 1 / R6, 0, 0.5 + 1 / R6, 1 / R6], rtol=1e-6)


def test_sknn_jaccard_and_exclude_same_user():
    # jaccard: s0 2/(2+3-2) = 2/3; s1 1/(2+2-1) = 1/3; s2 1/3; s3 1/(2+3-1) = 1/4
    seqs, sims, _ = fitted(SessionKNN, SKNNConfig(similarity="jaccard")).neighbours([2, 3])
    assert seqs.tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(sims, [2 / 3, 1 / 3, 1 / 3, 1 / 4])
    # user 2 owns s0: excluded by default, kept with exclude_same_user=False
    assert fitted(SessionKNN, SKNNConfig(k=2)).neighbours([2, 3], user_id=2)[0].tolist() == [2, 1]
    keep_own = fitted(SessionKNN, SKNNConfig(k=2, exclude_same_user=False))
    assert keep_own.neighbours([2, 3], user_id=2)[0].tolist() == [0, 2]
    # excluding s3 (user 5) under sample_size=2 lets the next most recent candidate (s1) in
    model = fitted(SessionKNN, SKNNConfig(sample_size=2))
    assert sorted(model.neighbours([2, 3], user_id=5)[0].tolist()) == [1, 2]
    # the batched path passes user ids through
    got = fitted(SessionKNN, SKNNConfig(k=2, fallback="none")).score_items(features([[2, 3]], users=[2])).numpy()[0]
    np.testing.assert_allclose(got, [0, 0, 0.5, 0.5, 0.5, 0.5, 0], rtol=1e-6)  # s2 {2,5} + s1 {3,4}, 0.5 each


def test_vsknn_position_weights_change_the_ranking():
    # history [2, 3]: linear weights w2 = 1/2, w3 = 2/2 = 1; dot = overlap weight / |H|:
    # s0 (1/2 + 1)/2 = 0.75; s1 1/2 = 0.5; s2 (1/2)/2 = 0.25; s3 1/2 = 0.5
    model = fitted(VSKNN, VSKNNConfig(k=2, fallback="none"))
    seqs, sims, _ = model.neighbours([2, 3])
    assert seqs.tolist() == [0, 3]  # s1, s3 tie at 0.5: the more recent s3
    np.testing.assert_allclose(sims, [0.75, 0.5])
    v = scores(model, [[2, 3]])[0]
    np.testing.assert_allclose(v, [0, 0, 0.75, 1.25, 0.75, 0.5, 0.5], rtol=1e-6)  # s0 {2,3,4}, s3 {3,5,6}
    # S-KNN (k=2) ranks item 2 above item 3; V-SKNN (newest item 3 weighs more) ranks 3 above 2
    s = scores(fitted(SessionKNN, SKNNConfig(k=2, fallback="none")), [[2, 3]])[0]
    assert s[2] > s[3] and v[3] > v[2]
    # weighting_score=div: a neighbour whose newest shared item is 2 (distance 2) counts 1/2:
    # all four neighbours; item 5 = s3 0.5 * 1 + s2 0.25 * 1/2
    got = scores(fitted(VSKNN, VSKNNConfig(k=4, weighting_score="div", fallback="none")), [[2, 3]])[0]
    assert got[5] == pytest.approx(0.625)
    # a repeated item takes the weight of its newest position: [3, 2, 3] -> w3 = 1, w2 = 2/3
    seqs, sims, _ = fitted(VSKNN, VSKNNConfig(k=1)).neighbours([3, 2, 3])
    assert seqs.tolist() == [0] and sims[0] == pytest.approx((1 + 2 / 3) / 2)


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "cfg",
    [
        ItemKNNConfig(decay="exp"),
        ItemKNNConfig(alpha=1.5),
        ItemKNNConfig(neighbours=-1),
        ItemKNNConfig(fallback="random"),
        SKNNConfig(k=0),
        SKNNConfig(sample_size=-5),
        SKNNConfig(similarity="pearson"),
        VSKNNConfig(weighting="exp"),
        VSKNNConfig(weighting_score="exp"),
    ],
)
def test_bad_config_values_raise_one_line(cfg):
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert "\n" not in str(err.value) and str(err.value).startswith("model_params.")


def test_registry_and_yaml_defaults():
    for name in ("itemknn", "sknn", "vsknn"):
        assert registry.get(name).family == registry.NONNEURAL
    run = build_run_config("vsknn")
    assert (run.model_params.weighting, run.model_params.similarity, run.model_params.k) == ("linear", "dot", 100)
    assert build_run_config("itemknn").model_params.regularization == 20.0
    with pytest.raises(ConfigError, match="model_params.k=0"):
        build_run_config("sknn", overrides={"k": "0"})


def test_itemknn_reads_basket_records_as_time_ordered_sessions():
    from tfpps.spec import schema
    from tfpps.data.examples.knn_sequences import _as_sequence

    raw = schema.encode_example(
        "basket", {"user_id": 2, "baskets": [[2, 3], [], [4, 5, 6]], "basket_timestamps": [1, 2, 3], "target_items": []}
    )
    rec = {k: v[0] for k, v in schema.parse_batch("basket", tf.constant([raw])).items()}
    got = {k: v.numpy().tolist() for k, v in _as_sequence(rec).items()}
    assert got == {"user_id": 2, "item_ids": [2, 3, 4, 5, 6], "timestamps": [1, 1, 3, 3, 3], "session_starts": [1, 0, 1, 0, 0]}
