"""The evaluator on multi-target rows (``target_items``, the fo protocol): hand-computed values, references, ties."""
import math

import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.evaluation import evaluator as E
from tfpps.evaluation.metrics import METRICS, multi_target_metrics

# 8 ids: 0 PAD, 1 OOV, real items 2..7. Row scores fall with the id: the ranked list is 2, 3, 4, 5, 6, 7.
SCORES = np.array([[9, 9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]] * 3, np.float32)
FEATURES = {
    "user_id": np.array([0, 1, 2], np.int64),
    "item_ids": np.array([[2], [0], [0]], np.int64),
    "length": np.array([1, 0, 0], np.int64),
    "target_item": np.zeros(3, np.int64),
    "target_items": np.array([[3, 5], [2, 0], [0, 0]], np.int64),  # the third row has no target: skipped
}
L3, L4, L5 = 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)


def run(mask_history=False, ties="standard", ks=(3, 5), features=FEATURES, scores=SCORES):
    table = tf.constant(scores)
    return E.evaluate(lambda f: tf.gather(table, f["user_id"]), [features], ks=list(ks), ties=ties,
                      mask_history=mask_history, progress=False)


def test_hand_computed_values_without_masking():
    m = run()
    assert m["num_examples"] == 2
    # row 0: targets 3 and 5 at positions 2 and 4 of the list; row 1: target 2 at position 1
    expected = {
        "recall@3": (0.5 + 1) / 2, "hit@3": 1.0, "precision@3": (1 / 3 + 1 / 3) / 2, "mrr@3": (0.5 + 1) / 2,
        "ndcg@3": (L3 / (1 + L3) + 1) / 2, "map@3": (0.5 / 2 + 1) / 2,
        "recall@5": 1.0, "precision@5": (2 / 5 + 1 / 5) / 2, "mrr@5": (0.5 + 1) / 2,
        "ndcg@5": ((L3 + L5) / (1 + L3) + 1) / 2, "map@5": ((1 / 2 + 2 / 4) / 2 + 1) / 2,
    }
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, abs=1e-6), name


def test_history_is_masked_but_never_a_target():
    m = run(mask_history=True, ks=(3,))
    # row 0: item 2 masked -> list 3, 4, 5, ...: targets at 1 and 3; row 1: its target is not in its history
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["ndcg@3"] == pytest.approx(((1 + L4) / (1 + L3) + 1) / 2)
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    # item 2 masked; items 3 (row 0) and 2 (row 1) are in the history AND targets: never masked
    feats = dict(FEATURES, item_ids=np.array([[2, 3], [2, 0], [0, 0]], np.int64), length=np.array([2, 1, 0]))
    assert run(mask_history=True, ks=(1,), features=feats)["hit@1"] == pytest.approx(1.0)


def test_ties_standard_and_conservative():
    flat = np.full_like(SCORES, 0.5)
    feats = dict(FEATURES, target_items=np.array([[3, 5], [7, 0], [0, 0]], np.int64))
    std = run(scores=flat, features=feats, ks=(2,))
    cons = run(scores=flat, features=feats, ks=(6,), ties="conservative")
    assert std["recall@2"] == pytest.approx(1.0) and std["map@2"] == pytest.approx(1.0)  # targets win ties
    # conservative: 6 real items all tied -> targets at the bottom: positions 5, 6 (row 0) and 6 (row 1)
    assert cons["mrr@6"] == pytest.approx((1 / 5 + 1 / 6) / 2)
    assert run(scores=flat, features=feats, ks=(4,), ties="conservative")["hit@4"] == 0.0


def test_duplicate_and_padding_targets_count_once():
    feats = dict(FEATURES, target_items=np.array([[3, 5, 3, 0], [2, 2, 0, 0], [0, 0, 0, 0]], np.int64))
    assert run(features=feats) == run()


def test_one_target_per_row_equals_the_single_target_path():
    rng = np.random.default_rng(0)
    n, b = 30, 40
    scores = rng.normal(size=(b, n)).astype(np.float32)
    scores[:, :5] = np.round(scores[:, :5], 1)  # some ties
    targets = rng.integers(2, n, b)
    history = rng.integers(0, n, (b, 4))
    single = {"user_id": np.arange(b), "item_ids": history, "length": np.full(b, 4), "target_item": targets}
    multi = dict(single, target_item=np.zeros(b, np.int64), target_items=targets[:, None])
    for ties in ("standard", "conservative"):
        for mask in (False, True):
            a = run(features=single, scores=scores, ks=(1, 5, 10), ties=ties, mask_history=mask)
            c = run(features=multi, scores=scores, ks=(1, 5, 10), ties=ties, mask_history=mask)
            assert a.keys() == c.keys()
            for name in a:
                assert c[name] == pytest.approx(a[name], abs=1e-6), (ties, mask, name)


def test_matches_recbole_definitions_on_random_rows():
    """Against evaluate_ranked_lists (NumPy, RecBole's formulas) on the top-K lists of the same masked ranking."""
    rng = np.random.default_rng(1)
    n, b, big_k = 50, 64, 20
    scores = rng.normal(size=(b, n)).astype(np.float32)  # continuous: no ties
    history = np.stack([rng.choice(np.arange(2, n), 6, replace=False) for _ in range(b)])
    targets = np.zeros((b, 8), np.int64)
    for r in range(b):
        pool = np.setdiff1d(np.arange(2, n), history[r])
        t = rng.choice(pool, rng.integers(1, 9), replace=False)
        targets[r, : len(t)] = t
    feats = {"user_id": np.arange(b), "item_ids": history, "length": np.full(b, 6),
             "target_item": np.zeros(b, np.int64), "target_items": targets}
    got = E.evaluate(lambda f: tf.gather(tf.constant(scores), f["user_id"]), [feats], ks=[1, 5, 10, 20],
                     mask_history=True, progress=False, max_rows=16)
    masked = scores.copy()
    masked[:, :2] = -np.inf
    np.put_along_axis(masked, history, -np.inf, axis=1)
    topk = np.argsort(-masked, axis=1, kind="stable")[:, :big_k]
    ref = E.evaluate_ranked_lists(topk, targets, ks=[1, 5, 10, 20])
    for name in ref:
        assert got[name] == pytest.approx(ref[name], abs=1e-5), name


def test_multi_target_metrics_rows_without_targets_are_zero():
    m = multi_target_metrics(np.array([[1, 2], [0, 0]]), np.array([[True, True], [False, False]]), ks=[1, 2])
    assert {name: v.numpy().tolist() for name, v in m.items()}["ndcg@2"] == [1.0, 0.0]
    assert sorted({name.split("@")[0] for name in m}) == sorted(METRICS)
