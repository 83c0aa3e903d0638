"""Full-ranking recommendation metrics.

Two families live here:

**Single target** (next-item prediction). The model scores every item of the
vocabulary; the rank of the one target item among the *candidates* (all items
not excluded: PAD, OOV and, optionally, already-seen items are excluded) is

* ``ties="standard"``: :math:`r = 1 + |\\{j \\ne t : s_j > s_t\\}|`
  (GRU4Rec's official "standard" mode: an item tied with the target does not
  push it down);
* ``ties="conservative"``: :math:`r = 1 + |\\{j \\ne t : s_j \\ge s_t\\}|`
  (GRU4Rec's "conservative" mode: the target is ranked below every item it is
  tied with; a model that gives every item the same score gets the worst rank).

and the metrics at cutoff :math:`k` of one example with rank :math:`r` are
(:math:`[\\cdot]` is 1 when true, else 0)

=================  ===============================================
``recall@k``       :math:`[r \\le k]` (equal to ``hit@k`` for one target)
``hit@k``          :math:`[r \\le k]`
``mrr@k``          :math:`[r \\le k] / r`
``ndcg@k``         :math:`[r \\le k] / \\log_2(r + 1)` (IDCG = 1)
``map@k``          :math:`[r \\le k] / r` (one relevant item: AP = precision at its rank)
``precision@k``    :math:`[r \\le k] / k`
=================  ===============================================

**Multi relevant** (next basket, product search): a ranked top-``K`` list of
item ids and a set ``R`` of relevant ids per example, following RecBole's
definitions (``recbole/evaluator/metrics.py``) with
:math:`\\mathrm{rel}_i = [\\mathrm{top}_i \\in R]`:

=================  ===============================================
``hit@k``          :math:`[\\sum_{i \\le k} \\mathrm{rel}_i > 0]`
``recall@k``       :math:`\\sum_{i \\le k} \\mathrm{rel}_i / |R|`
``precision@k``    :math:`\\sum_{i \\le k} \\mathrm{rel}_i / k`
``mrr@k``          :math:`1 / \\min\\{i \\le k : \\mathrm{rel}_i = 1\\}` (0 without a hit)
``ndcg@k``         :math:`\\mathrm{DCG@k} / \\mathrm{IDCG@k}`, :math:`\\mathrm{DCG@k} = \\sum_{i \\le k} \\mathrm{rel}_i / \\log_2(i+1)`,
                   :math:`\\mathrm{IDCG@k} = \\sum_{i \\le \\min(|R|, k)} 1 / \\log_2(i+1)`
``map@k``          :math:`\\sum_{i \\le k} P@i \\cdot \\mathrm{rel}_i / \\min(|R|, k)`
=================  ===============================================

**Multi target** (full ranking with several held-out items per example, the
``fo`` protocol of Tran et al.): the same definitions as *multi relevant*,
computed in TensorFlow from the 1-based positions :math:`p_1 < \\dots < p_{|R|}`
of the relevant items in the full ranked candidate list
(:func:`multi_target_metrics`; the evaluator computes the positions). With one
relevant item they equal the single-target metrics.

Metric names are lower case ``<name>@<k>`` everywhere (``ndcg@10``).

>>> import numpy as np
>>> ranks_from_scores_np(np.array([[0., 0., .9, .5, .9]]), np.array([3])).tolist()
[3]
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

import tensorflow as tf

TIES = ("standard", "conservative")
#: Single-target metric names, in the order reports list them.
METRICS = ("recall", "hit", "mrr", "ndcg", "map", "precision")

__all__ = [
    "TIES",
    "METRICS",
    "metric_name",
    "ranks_from_scores",
    "ranks_from_scores_np",
    "recall_at_k",
    "hit_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "map_at_k",
    "precision_at_k",
    "single_target_metrics",
    "multi_target_metrics",
    "multi_relevant_metrics",
]


def metric_name(name: str, k: int) -> str:
    """The canonical key of metric ``name`` at cutoff ``k``.

    >>> metric_name("NDCG", 10)
    'ndcg@10'
    """
    return f"{name.lower()}@{int(k)}"


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties={ties!r}: expected one of {', '.join(TIES)}")


# --------------------------------------------------------------------------- ranks
def ranks_from_scores(
    scores: tf.Tensor,
    targets: tf.Tensor,
    ties: str = "standard",
    exclude_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """1-based rank of each target among the non-excluded items (TensorFlow, batched).

    With :math:`C_b = \\{j \\ne t_b : \\neg\\,\\mathrm{exclude}_{bj}\\}` the competitors of example ``b``:

    * ``standard``:     :math:`r_b = 1 + |\\{j \\in C_b : s_{bj} > s_{bt_b}\\}|`
    * ``conservative``: :math:`r_b = 1 + |\\{j \\in C_b : s_{bj} \\ge s_{bt_b}\\}|`

    The target's own column never counts, whatever ``exclude_mask`` says there.
    NaN scores are ranked pessimistically: a NaN competitor counts as ahead of
    the target, and a NaN target gets the worst rank ``|C_b| + 1``.

    Args:
      scores: float ``[B, N]`` scores of all ``N`` items.
      targets: int ``[B]`` target item index of each row, in ``[0, N)``.
      ties: ``"standard"`` or ``"conservative"``.
      exclude_mask: optional bool ``[B, N]`` (or ``[N]``, broadcast over rows);
        ``True`` marks items that can never be ranked ahead of the target.

    Returns:
      int32 ``[B]`` ranks, ``1`` = best.

    Example:
      >>> scores = tf.constant([[9., 9., .3, .5, .5, .1]])   # PAD and OOV score highest
      >>> pad_oov = tf.constant([True, True, False, False, False, False])
      >>> ranks_from_scores(scores, tf.constant([3]), "standard", pad_oov).numpy().tolist()
      [1]
      >>> ranks_from_scores(scores, tf.constant([3]), "conservative", pad_oov).numpy().tolist()
      [2]
    """
    _check_ties(ties)
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float32)
    targets = tf.cast(tf.convert_to_tensor(targets), tf.int32)
    num_items = tf.shape(scores)[1]
    target_scores = tf.gather(scores, targets, axis=1, batch_dims=1)[:, None]  # [B, 1]
    if ties == "standard":
        ahead = scores > target_scores
    else:
        ahead = scores >= target_scores
    ahead = tf.logical_or(ahead, tf.math.is_nan(scores))
    is_target = tf.equal(tf.range(num_items)[None, :], targets[:, None])  # [B, N]
    competitor = tf.logical_not(is_target)
    if exclude_mask is not None:
        exclude_mask = tf.cast(exclude_mask, tf.bool)
        competitor = tf.logical_and(competitor, tf.logical_not(exclude_mask))
    ranks = 1 + tf.reduce_sum(tf.cast(tf.logical_and(ahead, competitor), tf.int32), axis=1)
    worst = 1 + tf.reduce_sum(tf.cast(competitor, tf.int32), axis=1)
    return tf.where(tf.math.is_nan(target_scores[:, 0]), worst, ranks)


def ranks_from_scores_np(
    scores: np.ndarray,
    targets: np.ndarray,
    ties: str = "standard",
    exclude_mask: np.ndarray | None = None,
) -> np.ndarray:
    """NumPy twin of :func:`ranks_from_scores` (same math, same arguments), for tests and baselines.

    Example:
      >>> ranks_from_scores_np(np.array([[0., 0., .3, .5, .5]]), np.array([3]), "conservative").tolist()
      [2]
    """
    _check_ties(ties)
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.arange(scores.shape[0])
    target_scores = scores[rows, targets][:, None]
    with np.errstate(invalid="ignore"):
        ahead = scores > target_scores if ties == "standard" else scores >= target_scores
    ahead |= np.isnan(scores)
    competitor = np.ones(scores.shape, dtype=bool)
    competitor[rows, targets] = False
    if exclude_mask is not None:
        competitor &= ~np.broadcast_to(np.asarray(exclude_mask, dtype=bool), scores.shape)
    ranks = 1 + np.sum(ahead & competitor, axis=1)
    worst = 1 + np.sum(competitor, axis=1)
    return np.where(np.isnan(target_scores[:, 0]), worst, ranks).astype(np.int64)


# --------------------------------------------------------------------------- single-target metrics
def _hit(ranks, k: int) -> tf.Tensor:
    ranks = tf.cast(tf.convert_to_tensor(ranks), tf.float32)
    return ranks, tf.cast(ranks <= float(k), tf.float32)


def recall_at_k(ranks, k: int) -> tf.Tensor:
    """Recall@k of single-target ranks: :math:`[r \\le k]` (equals HitRate@k).

    Example:
      >>> recall_at_k([1, 3, 11], 10).numpy().tolist()
      [1.0, 1.0, 0.0]
    """
    return _hit(ranks, k)[1]


def hit_at_k(ranks, k: int) -> tf.Tensor:
    """Hit@k of single-target ranks: :math:`[r \\le k]`.

    Example:
      >>> hit_at_k([5, 6], 5).numpy().tolist()
      [1.0, 0.0]
    """
    return _hit(ranks, k)[1]


def mrr_at_k(ranks, k: int) -> tf.Tensor:
    """MRR@k of single-target ranks: :math:`[r \\le k] / r` (GRU4Rec: only ranks within the cutoff count).

    Example:
      >>> mrr_at_k([1, 4, 11], 10).numpy().tolist()
      [1.0, 0.25, 0.0]
    """
    ranks, hit = _hit(ranks, k)
    return hit / ranks


def ndcg_at_k(ranks, k: int) -> tf.Tensor:
    """NDCG@k of single-target ranks: :math:`[r \\le k] / \\log_2(r + 1)` (the ideal DCG is 1).

    Example:
      >>> ndcg_at_k([1, 3, 11], 10).numpy().tolist()  # 1/log2(2), 1/log2(4), cut
      [1.0, 0.5, 0.0]
    """
    ranks, hit = _hit(ranks, k)
    return hit * tf.math.log(2.0) / tf.math.log(ranks + 1.0)


def map_at_k(ranks, k: int) -> tf.Tensor:
    """MAP@k of single-target ranks: one relevant item, so AP@k = P@r = :math:`[r \\le k] / r`.

    Example:
      >>> map_at_k([2, 20], 10).numpy().tolist()
      [0.5, 0.0]
    """
    return mrr_at_k(ranks, k)


def precision_at_k(ranks, k: int) -> tf.Tensor:
    """Precision@k of single-target ranks: :math:`[r \\le k] / k`.

    Example:
      >>> precision_at_k([1, 7], 4).numpy().tolist()
      [0.25, 0.0]
    """
    return _hit(ranks, k)[1] / float(k)


_SINGLE = {
    "recall": recall_at_k,
    "hit": hit_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "precision": precision_at_k,
}


def single_target_metrics(ranks, ks: Iterable[int], names: Sequence[str] = METRICS) -> dict[str, tf.Tensor]:
    """Per-example values ``{"<name>@<k>": float32 [B]}`` of every metric in ``names`` at every ``k``.

    Example:
      >>> m = single_target_metrics([1, 2], ks=[1])
      >>> {name: v.numpy().tolist() for name, v in m.items() if name in ("mrr@1", "ndcg@1")}
      {'mrr@1': [1.0, 0.0], 'ndcg@1': [1.0, 0.0]}
    """
    unknown = [n for n in names if n not in _SINGLE]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {', '.join(METRICS)}")
    return {metric_name(name, k): _SINGLE[name](ranks, k) for name in names for k in ks}


# --------------------------------------------------------------------------- multi-target metrics
def multi_target_metrics(
    positions, valid, ks: Iterable[int], names: Sequence[str] = METRICS
) -> dict[str, tf.Tensor]:
    """Per-example metrics ``{"<name>@<k>": float32 [B]}`` from the list positions of the relevant items.

    With :math:`p_1 < p_2 < \\dots < p_{|R|}` the 1-based positions of an
    example's relevant items in its full ranked list and
    :math:`h_k = |\\{j : p_j \\le k\\}|`:

    * ``hit@k`` :math:`[h_k > 0]`; ``recall@k`` :math:`h_k / |R|`; ``precision@k`` :math:`h_k / k`
    * ``mrr@k`` :math:`[p_1 \\le k] / p_1` (the first hit only)
    * ``ndcg@k`` :math:`\\sum_{p_j \\le k} 1/\\log_2(p_j + 1) \\big/ \\sum_{i=1}^{\\min(|R|, k)} 1/\\log_2(i + 1)`
    * ``map@k`` :math:`\\sum_{p_j \\le k} (j / p_j) \\big/ \\min(|R|, k)` (precision at each hit)

    the definitions of :func:`multi_relevant_metrics` (RecBole's). Rows with
    no relevant item get 0 everywhere.

    Args:
      positions: int ``[B, T]`` 1-based positions (any order; distinct among the valid entries of a row).
      valid: bool ``[B, T]``: which entries are relevant items (the rest is padding).
      ks: cutoffs.
      names: metrics to compute.

    Example:
      >>> m = multi_target_metrics([[2, 5, 0]], [[True, True, False]], ks=[3])
      >>> [round(float(m[n][0]), 4) for n in ("hit@3", "recall@3", "precision@3", "mrr@3", "map@3")]
      [1.0, 0.5, 0.3333, 0.5, 0.25]
      >>> round(float(m["ndcg@3"][0]), 4)  # (1/log2 3) / (1 + 1/log2 3)
      0.3869
    """
    unknown = [n for n in names if n not in _SINGLE]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {', '.join(METRICS)}")
    valid = tf.cast(tf.convert_to_tensor(valid), tf.bool)
    positions = tf.cast(tf.convert_to_tensor(positions), tf.float32)
    big = tf.constant(np.finfo(np.float32).max, tf.float32)
    pos = tf.sort(tf.where(valid, positions, big), axis=1)  # valid positions first, ascending
    pos = tf.concat([pos, tf.fill([tf.shape(pos)[0], 1], big)], axis=1)  # at least one column, never relevant
    num_rel = tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)  # [B]
    is_rel = tf.range(tf.shape(pos)[1])[None, :] < tf.cast(num_rel, tf.int32)[:, None]
    order = tf.cast(tf.range(1, tf.shape(pos)[1] + 1), tf.float32)[None, :]  # j: hits up to and at p_j
    safe_pos = tf.where(is_rel, pos, tf.ones_like(pos))
    safe_rel = tf.maximum(num_rel, 1.0)
    log2 = tf.math.log(2.0)
    out: dict[str, tf.Tensor] = {}
    for k in ks:
        kf = float(k)
        hit_at = tf.cast(tf.logical_and(is_rel, pos <= kf), tf.float32)  # [B, T]
        hits = tf.reduce_sum(hit_at, axis=1)
        denom = tf.minimum(safe_rel, kf)
        ideal = tf.reduce_sum(
            tf.cast(tf.range(1, k + 1)[None, :] <= tf.cast(denom, tf.int32)[:, None], tf.float32)
            * log2
            / tf.math.log(tf.cast(tf.range(1, k + 1), tf.float32) + 1.0)[None, :],
            axis=1,
        )
        values = {
            "hit": tf.cast(hits > 0, tf.float32),
            "recall": hits / safe_rel,
            "precision": hits / kf,
            "mrr": hit_at[:, 0] / safe_pos[:, 0],
            "ndcg": tf.reduce_sum(hit_at * log2 / tf.math.log(safe_pos + 1.0), axis=1) / ideal,
            "map": tf.reduce_sum(hit_at * order / safe_pos, axis=1) / denom,
        }
        has_rel = num_rel > 0
        for name in names:
            out[metric_name(name, k)] = tf.where(has_rel, values[name], tf.zeros_like(hits))
    return out


# --------------------------------------------------------------------------- multi-relevant metrics
def _relevance(topk_ids: np.ndarray, relevant_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rel [B, K]`` (bool: top-k id i is relevant) and ``|R| [B]`` (distinct non-zero relevant ids)."""
    topk = np.asarray(topk_ids, dtype=np.int64)
    rel_ids = np.asarray(relevant_ids, dtype=np.int64)
    if topk.ndim != 2 or rel_ids.ndim != 2 or topk.shape[0] != rel_ids.shape[0]:
        raise ValueError(f"expected topk_ids [B, K] and relevant_ids [B, R], got {topk.shape} and {rel_ids.shape}")
    rel = np.any(topk[:, :, None] == rel_ids[:, None, :], axis=2) & (topk != 0)
    r = rel_ids.shape[1]
    earlier_dup = np.any(
        (rel_ids[:, :, None] == rel_ids[:, None, :]) & np.tril(np.ones((r, r), dtype=bool), k=-1)[None], axis=2
    )
    num_rel = np.sum((rel_ids != 0) & ~earlier_dup, axis=1)
    return rel, num_rel


def multi_relevant_metrics(
    topk_ids: np.ndarray, relevant_ids: np.ndarray, ks: Iterable[int] | None = None
) -> dict[str, np.ndarray]:
    """Per-example RecBole-style metrics ``{"<name>@<k>": float64 [B]}`` of ranked lists.

    Args:
      topk_ids: int ``[B, K]`` recommended item ids, best first (distinct per row;
        ``0`` entries are padding and never relevant).
      relevant_ids: int ``[B, R]`` relevant item ids, ``0``-padded; duplicates count once.
      ks: cutoffs, each ``<= K``; default ``[K]``.

    Rows without any relevant id get ``0`` for every metric (RecBole drops such
    users beforehand; :func:`tfpps.evaluation.evaluator.evaluate_ranked_lists` skips them).

    Example:
      >>> m = multi_relevant_metrics(np.array([[5, 3, 9]]), np.array([[3, 4, 0]]), ks=[3])
      >>> [round(float(m[n][0]), 4) for n in ("hit@3", "recall@3", "precision@3", "mrr@3", "map@3")]
      [1.0, 0.5, 0.3333, 0.5, 0.25]
      >>> round(float(m["ndcg@3"][0]), 4)  # (1/log2 3) / (1 + 1/log2 3)
      0.3869
    """
    rel, num_rel = _relevance(topk_ids, relevant_ids)
    big_k = rel.shape[1]
    ks = [big_k] if ks is None else [int(k) for k in ks]
    for k in ks:
        if not 0 < k <= big_k:
            raise ValueError(f"cutoff k={k} must be in [1, K={big_k}] (the length of the ranked lists)")
    relf = rel.astype(np.float64)
    positions = np.arange(1, big_k + 1, dtype=np.float64)
    cum_hits = np.cumsum(relf, axis=1)  # hits within the first i
    discount = 1.0 / np.log2(positions + 1.0)
    dcg = np.cumsum(relf * discount, axis=1)
    ideal = np.cumsum(discount)  # IDCG of i relevant items at the top
    prec_at_i = cum_hits / positions
    sum_prec = np.cumsum(prec_at_i * relf, axis=1)
    first_hit = np.where(rel.any(axis=1), np.argmax(rel, axis=1) + 1, big_k + 1)  # 1-based; K+1 = none
    has_rel = num_rel > 0
    safe_num_rel = np.maximum(num_rel, 1).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits = cum_hits[:, k - 1]
        denom = np.minimum(safe_num_rel, k)
        idcg = ideal[denom.astype(np.int64) - 1]
        values = {
            "hit": (hits > 0).astype(np.float64),
            "recall": hits / safe_num_rel,
            "precision": hits / k,
            "mrr": np.where(first_hit <= k, 1.0 / first_hit, 0.0),
            "ndcg": dcg[:, k - 1] / idcg,
            "map": sum_prec[:, k - 1] / denom,
        }
        for name in METRICS:
            out[metric_name(name, k)] = np.where(has_rel, values[name], 0.0)
    return out
