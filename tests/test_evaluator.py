"""End-to-end checks of tfpps.evaluation.evaluator with a fake score_fn over tf.data."""
import doctest
import json

import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.evaluation import evaluator as E
from tfpps.evaluation.metrics import METRICS, ranks_from_scores_np

# 5 users over 7 items (0 = PAD, 1 = OOV, real items 2..6); the fake model scores by user id.
TABLE = np.array(
    [
        [9, 9, 0.1, 0.2, 0.3, 0.4, 0.5],  # u0 target 6 -> rank 1 (PAD/OOV ignored)
        [9, 9, 0.1, 0.2, 0.3, 0.4, 0.5],  # u1 target 2 -> rank 5 (its history is the target itself)
        [0, 0, 0.5, 0.5, 0.5, 0.1, 0.2],  # u2 target 3 -> standard 1, conservative 3 (ties with 2 and 4)
        [0, 0, 0.9, 0.8, 0.7, 0.6, 0.5],  # u3 target 4 -> 3; history [2, 3] masked -> 1
        [0, 0, 0.1, 0.2, 0.3, 0.4, 0.5],  # u4 target 5 -> 2; history [5, 6]: 6 masked, 5 is the target -> 1
    ],
    dtype=np.float32,
)
FEATURES = {
    "user_id": np.arange(5, dtype=np.int64),
    "item_ids": np.array([[6, 0], [2, 0], [5, 0], [2, 3], [5, 6]], dtype=np.int64),
    "length": np.array([1, 1, 1, 2, 2], dtype=np.int64),
    "target_item": np.array([6, 2, 3, 4, 5], dtype=np.int64),
}


def score_fn(features):
    return tf.gather(tf.constant(TABLE), features["user_id"])


def dataset(batch_size=2):
    return tf.data.Dataset.from_tensor_slices(FEATURES).batch(batch_size)  # 2 + 2 + 1 examples


def test_end_to_end_standard_no_mask():
    m = E.evaluate(score_fn, dataset(), ks=(1, 3, 5), progress=False)
    # ranks [1, 5, 1, 3, 2]
    assert m["num_examples"] == 5
    assert m["recall@1"] == pytest.approx(0.4)  # 2/5
    assert m["recall@3"] == pytest.approx(0.8)  # 4/5
    assert m["hit@5"] == pytest.approx(1.0)
    assert m["mrr@3"] == pytest.approx(0.5666667, rel=1e-6)  # (1 + 0 + 1 + 1/3 + 1/2) / 5
    assert m["mrr@5"] == pytest.approx(0.6066667, rel=1e-6)  # (1 + 1/5 + 1 + 1/3 + 1/2) / 5
    # (1 + 1/log2(6) + 1 + 1/log2(4) + 1/log2(3)) / 5 = (1 + 0.3868528 + 1 + 0.5 + 0.6309298) / 5
    assert m["ndcg@5"] == pytest.approx(0.7035565, rel=1e-6)
    assert m["precision@3"] == pytest.approx(0.8 / 3, rel=1e-6)
    assert m["map@3"] == pytest.approx(m["mrr@3"])
    assert set(m) == {f"{n}@{k}" for n in METRICS for k in (1, 3, 5)} | {"num_examples"}


def test_end_to_end_conservative_ties():
    m = E.evaluate(score_fn, dataset(), ks=(1, 3), ties="conservative", progress=False)
    # ranks [1, 5, 3, 3, 2]
    assert m["recall@1"] == pytest.approx(0.2)  # 1/5
    assert m["mrr@3"] == pytest.approx(0.4333333, rel=1e-6)  # (1 + 0 + 1/3 + 1/3 + 1/2) / 5


def test_end_to_end_mask_history_never_masks_target():
    m = E.evaluate(score_fn, dataset(), ks=(1, 5), mask_history=True, progress=False)
    # ranks [1, 5, 1, 1, 1]: u1 and u4 have their target in the history and keep it.
    assert m["recall@1"] == pytest.approx(0.8)  # 4/5
    assert m["mrr@5"] == pytest.approx(0.84)  # (4 + 1/5) / 5


def test_seen_items_are_masked_too():
    feats = {
        "user_id": np.array([3]),
        "item_ids": np.array([[0]]),
        "seen_items": np.array([[2, 4, 0]]),  # item 2 (0.9) masked, the target 4 stays
        "target_item": np.array([4]),
    }
    unmasked = E.rank_batch(tf.gather(TABLE, [3]), feats).numpy().tolist()
    masked = E.rank_batch(tf.gather(TABLE, [3]), feats, mask_history=True).numpy().tolist()
    assert (unmasked, masked) == ([3], [2])
    mask = E.exclusion_mask({k: tf.constant(v) for k, v in feats.items()}, 7, mask_history=True)
    assert mask.numpy().astype(int).tolist() == [[1, 1, 1, 0, 0, 0, 0]]


def test_matches_numpy_reference_on_random_scores_with_chunking():
    rng = np.random.default_rng(0)
    n_items, n = 300, 70
    table = np.round(rng.random((n, n_items)), 2).astype(np.float32)
    feats = {
        "user_id": np.arange(n),
        "item_ids": rng.integers(0, n_items, size=(n, 4)),
        "target_item": rng.integers(2, n_items, size=n),
    }
    fn = lambda f: tf.gather(table, f["user_id"])  # noqa: E731
    ds = tf.data.Dataset.from_tensor_slices(feats).batch(32)
    for ties in ("standard", "conservative"):
        exclude = np.zeros((n, n_items), bool)
        exclude[:, :2] = True
        ranks = ranks_from_scores_np(table, feats["target_item"], ties, exclude)
        m = E.evaluate(fn, ds, ks=(10,), ties=ties, progress=False)
        chunked = E.evaluate(fn, ds, ks=(10,), ties=ties, progress=False, max_rows=7)
        assert m["num_examples"] == chunked["num_examples"] == n
        hit = ranks <= 10
        assert m["recall@10"] == pytest.approx(hit.mean())
        assert m["mrr@10"] == pytest.approx(np.mean(hit / ranks), rel=1e-5)
        assert m["ndcg@10"] == pytest.approx(np.mean(hit / np.log2(ranks + 1)), rel=1e-5)
        for name in m:
            assert chunked[name] == pytest.approx(m[name], rel=1e-6)


def test_eager_numpy_score_fn_and_python_batches():
    batches = [{k: v[:3] for k, v in FEATURES.items()}, {k: v[3:] for k, v in FEATURES.items()}]
    m = E.evaluate(lambda f: TABLE[np.asarray(f["user_id"])], batches, ks=(1,), jit_score=False, progress=False)
    assert m["recall@1"] == pytest.approx(0.4) and m["num_examples"] == 5


def test_errors():
    with pytest.raises(ValueError, match="num_items=8"):
        E.evaluate(score_fn, dataset(), ks=(1,), num_items=8, progress=False)
    with pytest.raises(ValueError, match="no examples"):
        E.evaluate(score_fn, [], ks=(1,), progress=False)
    with pytest.raises(ValueError, match="ties"):
        E.evaluate(score_fn, dataset(), ties="optimistic", progress=False)
    bad = {**FEATURES, "target_item": np.array([6, 2, 3, 4, 7])}  # 7 is out of range for 7 items
    with pytest.raises(tf.errors.InvalidArgumentError):
        E.evaluate(score_fn, tf.data.Dataset.from_tensor_slices(bad).batch(5), ks=(1,), progress=False)


def test_progress_bar_prints(capsys):
    E.evaluate(score_fn, dataset(), ks=(1,), progress=True)
    assert "3/3" in capsys.readouterr().out  # cardinality of 5 examples in batches of 2


def test_traced_step_is_reused_across_calls():
    E.evaluate(score_fn, dataset(), ks=(2,), progress=False)
    hits = E._cached_step.cache_info().hits
    E.evaluate(score_fn, dataset(), ks=(2,), progress=False)
    assert E._cached_step.cache_info().hits == hits + 1


def test_evaluate_ranked_lists_skips_rows_without_relevant():
    topk = [[7, 2, 9, 4, 5], [3, 6, 1, 8, 2], [4, 5, 6, 7, 8]]
    relevant = [[2, 4, 8], [3, 0, 0], [0, 0, 0]]
    m = E.evaluate_ranked_lists(topk, relevant, ks=[5])
    assert m["num_examples"] == 2
    assert m["recall@5"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["map@5"] == pytest.approx((1 / 3 + 1) / 2)  # row 0: (1/2 + 2/4) / 3
    assert m["precision@5"] == pytest.approx((0.4 + 0.2) / 2)


def test_format_table_and_write_metrics(tmp_path):
    metrics = {"ndcg@10": 0.125, "recall@5": 0.5, "recall@10": 0.75, "num_examples": 12}
    lines = E.format_table(metrics, title="valid").splitlines()
    assert lines[0] == "valid"
    assert lines[1].split() == ["metric", "@5", "@10"]
    assert lines[3].split() == ["recall", "0.5000", "0.7500"]  # METRICS order: recall before ndcg
    assert lines[4].split() == ["ndcg", "-", "0.1250"]
    assert lines[-1] == "num_examples: 12"
    path = E.write_metrics(tmp_path / "sub" / "metrics.json", {**metrics, "bad": float("nan"), "x": np.float32(0.5)})
    assert json.loads(path.read_text()) == {**metrics, "bad": None, "x": 0.5}


def test_docstring_examples_run():
    result = doctest.testmod(E)
    assert result.attempted > 5 and result.failed == 0
