"""Hand-computed checks of tfpps.evaluation.metrics (single-target ranks and RecBole-style metrics)."""
import doctest
import math

import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.evaluation import metrics as M

# Two users over 6 items; column 0 = PAD, 1 = OOV, real items 2..5.
SCORES = np.array(
    [
        [10.0, 8.0, 0.1, 0.7, 0.4, 0.7],  # user A, target 3 (0.7): tied with item 5, PAD/OOV score highest
        [0.0, 0.0, 0.9, 0.2, 0.5, 0.3],  # user B, target 4 (0.5): only item 2 (0.9) is higher
    ],
    dtype=np.float32,
)
TARGETS = np.array([3, 4])
PAD_OOV = np.array([True, True, False, False, False, False])


def tf_ranks(scores, targets, ties="standard", exclude=None):
    ex = None if exclude is None else tf.constant(exclude)
    return M.ranks_from_scores(tf.constant(scores), tf.constant(targets), ties, ex).numpy().tolist()


def test_ranks_standard_vs_conservative_on_ties():
    # A standard: nothing among items 2..5 is > 0.7 -> rank 1; conservative: item 5 ties -> rank 2.
    # B: item 2 > 0.5 -> rank 2 in both modes (no ties).
    assert tf_ranks(SCORES, TARGETS, "standard", PAD_OOV) == [1, 2]
    assert tf_ranks(SCORES, TARGETS, "conservative", PAD_OOV) == [2, 2]
    assert M.ranks_from_scores_np(SCORES, TARGETS, "standard", PAD_OOV).tolist() == [1, 2]
    assert M.ranks_from_scores_np(SCORES, TARGETS, "conservative", PAD_OOV).tolist() == [2, 2]


def test_pad_and_oov_excluded_even_when_scoring_highest():
    # Without the mask PAD (10) and OOV (8) are ahead of A's target: 1 + 2 = 3.
    assert tf_ranks(SCORES, TARGETS, "standard") == [3, 2]
    assert tf_ranks(SCORES, TARGETS, "standard", PAD_OOV) == [1, 2]


def test_excluded_item_never_ahead_and_target_never_masked():
    exclude = np.tile(PAD_OOV, (2, 1))
    exclude[1, 2] = True  # mask B's only better item -> B's rank 2 -> 1
    exclude[0, 3] = True  # "mask" A's target: must be ignored
    assert tf_ranks(SCORES, TARGETS, "standard", exclude) == [1, 1]
    assert tf_ranks(SCORES, TARGETS, "conservative", exclude) == [2, 1]
    assert M.ranks_from_scores_np(SCORES, TARGETS, "conservative", exclude).tolist() == [2, 1]


def test_all_equal_scores_worst_rank_only_when_conservative():
    flat = np.zeros((1, 6), np.float32)
    assert tf_ranks(flat, [4], "standard", PAD_OOV) == [1]
    assert tf_ranks(flat, [4], "conservative", PAD_OOV) == [4]  # 3 competitors (items 2, 3, 5) + 1


def test_nan_scores_are_ranked_pessimistically():
    s = np.array([[0.0, 0.0, np.nan, 0.5, 0.1, 0.2], [0.0, 0.0, 0.3, np.nan, 0.1, 0.2]], np.float32)
    # row 0: NaN competitor counts as ahead -> 2; row 1: NaN target -> worst = 1 + 3 competitors = 4
    assert tf_ranks(s, [3, 3], "standard", PAD_OOV) == [2, 4]
    assert M.ranks_from_scores_np(s, [3, 3], "standard", PAD_OOV).tolist() == [2, 4]


def test_bad_ties_mode_raises():
    with pytest.raises(ValueError, match="ties"):
        M.ranks_from_scores(tf.constant(SCORES), tf.constant(TARGETS), "optimistic")


def _sort_rank(s, t, candidates, ties):
    """Independent reference: position of t after sorting; ties put t first (standard) or last (conservative)."""
    after = 1 if ties == "conservative" else -1
    order = sorted(candidates, key=lambda j: (-s[j], after if j == t else 0))
    return order.index(t) + 1


@pytest.mark.parametrize("ties", ["standard", "conservative"])
def test_tf_and_numpy_ranks_match_sorting_reference(ties):
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((40, 30)), 1).astype(np.float32)  # many ties
    targets = rng.integers(2, 30, size=40)
    exclude = rng.random((40, 30)) < 0.2
    exclude[:, :2] = True
    expected = [
        _sort_rank(scores[b], targets[b], [j for j in range(30) if not exclude[b, j] or j == targets[b]], ties)
        for b in range(40)
    ]
    assert tf_ranks(scores, targets, ties, exclude) == expected
    assert M.ranks_from_scores_np(scores, targets, ties, exclude).tolist() == expected


def test_single_target_metrics_hand_computed():
    ranks = [1, 2, 3, 10, 11]
    np.testing.assert_allclose(M.mrr_at_k(ranks, 10).numpy(), [1.0, 0.5, 1 / 3, 0.1, 0.0], rtol=1e-6)
    np.testing.assert_allclose(M.map_at_k(ranks, 10).numpy(), [1.0, 0.5, 1 / 3, 0.1, 0.0], rtol=1e-6)
    # 1/log2(2) = 1, 1/log2(3) = 0.6309298, 1/log2(4) = 0.5, 1/log2(11) = 0.2890648, rank 11 > k
    np.testing.assert_allclose(M.ndcg_at_k(ranks, 10).numpy(), [1.0, 0.6309298, 0.5, 0.2890648, 0.0], rtol=1e-6)
    np.testing.assert_allclose(M.recall_at_k(ranks, 3).numpy(), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(M.hit_at_k(ranks, 2).numpy(), [1, 1, 0, 0, 0])
    np.testing.assert_allclose(M.precision_at_k(ranks, 5).numpy(), [0.2, 0.2, 0.2, 0, 0])


def test_two_user_means_standard_and_conservative():
    std = tf_ranks(SCORES, TARGETS, "standard", PAD_OOV)  # [1, 2]
    con = tf_ranks(SCORES, TARGETS, "conservative", PAD_OOV)  # [2, 2]
    m_std = {k: float(np.mean(v)) for k, v in M.single_target_metrics(std, [1, 2]).items()}
    m_con = {k: float(np.mean(v)) for k, v in M.single_target_metrics(con, [1, 2]).items()}
    assert m_std["mrr@1"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert m_std["mrr@2"] == pytest.approx(0.75)  # (1 + 1/2) / 2
    assert m_std["ndcg@2"] == pytest.approx(0.8154649, rel=1e-6)  # (1 + 1/log2(3)) / 2
    assert m_std["recall@1"] == pytest.approx(0.5) and m_std["hit@2"] == pytest.approx(1.0)
    assert m_std["precision@2"] == pytest.approx(0.5)  # (1/2 + 1/2) / 2
    assert m_con["mrr@2"] == pytest.approx(0.5)  # (1/2 + 1/2) / 2
    assert m_con["ndcg@2"] == pytest.approx(0.6309298, rel=1e-6)  # 1/log2(3)
    assert m_con["recall@1"] == 0.0
    assert sorted(m_std) == sorted(f"{n}@{k}" for n in M.METRICS for k in (1, 2))


# --------------------------------------------------------------------------- multi-relevant
TOPK = np.array([[7, 2, 9, 4, 5], [3, 6, 1, 8, 2], [2, 0, 0, 0, 0]])
RELEVANT = np.array([[2, 4, 8, 0], [3, 3, 0, 0], [9, 0, 0, 0]])
# row 0: rel = [0,1,0,1,0], |R| = 3; row 1: rel = [1,0,0,0,0], |R| = 1 (duplicate 3 counts once);
# row 2: no hit (the 0 padding of both arrays must not match).


def test_multi_relevant_hand_computed_recbole():
    m = M.multi_relevant_metrics(TOPK, RELEVANT, ks=[2, 5])
    expected = {
        "hit@5": [1, 1, 0],
        "recall@5": [2 / 3, 1, 0],
        "precision@5": [0.4, 0.2, 0],
        "mrr@5": [0.5, 1, 0],
        # DCG = 1/log2(3) + 1/log2(5) = 1.0616063; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309298
        "ndcg@5": [0.4981893, 1, 0],
        # (P@2 + P@4) / min(3, 5) = (1/2 + 2/4) / 3
        "map@5": [1 / 3, 1, 0],
        "hit@2": [1, 1, 0],
        "recall@2": [1 / 3, 1, 0],
        "precision@2": [0.5, 0.5, 0],
        "mrr@2": [0.5, 1, 0],
        # (1/log2(3)) / (1 + 1/log2(3)); IDCG over min(|R|, k) = 2 positions
        "ndcg@2": [0.3868528, 1, 0],
        # P@2 / min(3, 2)
        "map@2": [0.25, 1, 0],
    }
    assert sorted(m) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(m[name], values, rtol=1e-6, atol=1e-12, err_msg=name)


def _recbole_reference(topk, relevant, k):
    """Loop-per-row transcription of RecBole's metric definitions."""
    out = {n: [] for n in M.METRICS}
    for row, rel_row in zip(topk, relevant):
        rel_set = {int(x) for x in rel_row if x != 0}
        rel = [int(x) in rel_set for x in row[:k]]
        hits = sum(rel)
        out["hit"].append(float(hits > 0))
        out["recall"].append(hits / len(rel_set))
        out["precision"].append(hits / k)
        out["mrr"].append(next((1 / (i + 1) for i, r in enumerate(rel) if r), 0.0))
        dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(rel) if r)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel_set), k)))
        out["ndcg"].append(dcg / idcg)
        ap = sum(sum(rel[: i + 1]) / (i + 1) for i, r in enumerate(rel) if r)
        out["map"].append(ap / min(len(rel_set), k))
    return out


def test_multi_relevant_matches_loop_reference_on_random_lists():
    rng = np.random.default_rng(1)
    topk = np.stack([rng.permutation(np.arange(2, 40))[:10] for _ in range(50)])
    relevant = rng.integers(2, 40, size=(50, 6))
    relevant[rng.random((50, 6)) < 0.4] = 0
    relevant[:, 0] = rng.integers(2, 40, size=50)  # at least one relevant id per row
    for k in (1, 3, 10):
        got = M.multi_relevant_metrics(topk, relevant, ks=[k])
        ref = _recbole_reference(topk, relevant, k)
        for name in M.METRICS:
            np.testing.assert_allclose(got[f"{name}@{k}"], ref[name], rtol=1e-9, err_msg=f"{name}@{k}")


def test_multi_relevant_rejects_cutoff_beyond_list():
    with pytest.raises(ValueError, match="k=6"):
        M.multi_relevant_metrics(TOPK, RELEVANT, ks=[6])


def test_docstring_examples_run():
    result = doctest.testmod(M, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0
