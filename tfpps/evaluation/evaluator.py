"""Batched full-ranking evaluation: every example's target is ranked against ALL items.

:func:`evaluate` streams evaluation batches (see
:func:`tfpps.data.examples.prefix.eval_examples` / :func:`~tfpps.data.pipeline.batch_padded`),
scores every item with ``score_fn`` (usually ``model.score_items``), ranks the
target (:func:`tfpps.evaluation.metrics.ranks_from_scores`) and averages the
single-target metrics of :mod:`tfpps.evaluation.metrics` over all examples.
Nothing is sampled: the candidate set of example ``b`` is

.. math:: C_b = \\{2, \\dots, N-1\\} \\setminus H_b \\cup \\{t_b\\}

where columns 0 (PAD) and 1 (OOV) are always excluded and ``H_b`` is empty
unless ``mask_history=True``, in which case it holds every item of the
example's ``item_ids`` and ``seen_items``. **The target is never masked**, even
when it occurs in the history (repeat consumption): masking it would make the
example unrankable, and dropping such examples would bias the average towards
novel items. Masked items simply never count as ranked ahead of the target.

**Multi-target examples** (features with ``target_items [B, T]``, 0-padded:
``--split=fo`` datasets) have a set :math:`R_b` of held-out items each. The
candidates are the same (PAD, OOV and, with ``mask_history``, the history
excluded; no target ever excluded); :func:`target_positions` places every
target in the full ranked list: its rank among the NON-target candidates
(ties as for single targets) plus the number of targets ranked above it, so the
positions are exactly where the relevant items sit in the ranked list
(ties between two targets do not change any metric). The multi-target metrics of
:func:`~tfpps.evaluation.metrics.multi_target_metrics` (Recall = hits / |R|,
Precision, MAP, NDCG with the ideal DCG of min(|R|, k) hits, MRR of the first
hit, HitRate) are averaged over the examples that have at least one target;
duplicate target ids count once. With one target per example they equal the
single-target metrics.

Large single-target score matrices (at least :data:`XLA_RANK_MIN_ENTRIES`
entries) without ``mask_history`` are ranked by an XLA-compiled copy of the same
ops (one fused pass instead of ~15), with the same ranks.

:func:`evaluate_ranked_lists` averages the multi-relevant (RecBole) metrics of
top-``K`` lists; :func:`format_table` and :func:`write_metrics` report results.

>>> import numpy as np
>>> import tensorflow as tf
>>> batches = [{"item_ids": np.array([[2], [3]]), "length": np.array([1, 1]),
...             "user_id": np.array([2, 3]), "target_item": np.array([4, 2])}]
>>> scores = lambda f: tf.tile(tf.constant([[9., 9., .5, .4, .3]]), [tf.shape(f["target_item"])[0], 1])
>>> m = evaluate(scores, batches, ks=[1, 3], progress=False)
>>> m["recall@1"], round(m["mrr@3"], 4), m["num_examples"]   # ranks: item 4 -> 3, item 2 -> 1
(0.5, 0.6667, 2)
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

import tensorflow as tf

from tfpps.spec.schema import FIRST_ID
from tfpps.evaluation.metrics import (
    METRICS,
    TIES,
    metric_name,
    multi_relevant_metrics,
    multi_target_metrics,
    ranks_from_scores,
    single_target_metrics,
)

ScoreFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]
HISTORY_FEATURES = ("item_ids", "seen_items")

__all__ = [
    "exclusion_mask",
    "rank_batch",
    "target_positions",
    "evaluate",
    "evaluate_ranked_lists",
    "format_table",
    "write_metrics",
]


# --------------------------------------------------------------------------- per-batch ranking
def exclusion_mask(features: Mapping[str, tf.Tensor], num_items: int | tf.Tensor, mask_history: bool = False) -> tf.Tensor:
    """Bool ``[B, num_items]``: ``True`` for items that may not be ranked ahead of the target.

    PAD (0) and OOV (1) are always excluded; with ``mask_history`` so is every
    id in ``features["item_ids"]`` and ``features["seen_items"]`` (those present;
    ids ``>= num_items`` are ignored). The target column is never excluded.

    Example:
      >>> f = {"item_ids": tf.constant([[2, 4, 0]]), "target_item": tf.constant([4])}
      >>> exclusion_mask(f, 6, mask_history=True).numpy().astype(int).tolist()
      [[1, 1, 1, 0, 0, 0]]
    """
    targets = tf.cast(features["target_item"], tf.int32)
    batch = tf.shape(targets)[0]
    columns = tf.range(num_items, dtype=tf.int32)
    mask = tf.broadcast_to((columns < FIRST_ID)[None, :], tf.stack([batch, tf.cast(num_items, tf.int32)]))
    if mask_history:
        parts = [tf.cast(features[name], tf.int32) for name in HISTORY_FEATURES if name in features]
        if not parts:
            raise ValueError(f"mask_history=True needs one of the features {HISTORY_FEATURES}; got {sorted(features)}")
        history = tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]  # [B, M]
        valid = tf.logical_and(history >= FIRST_ID, history < num_items)
        rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(history))
        indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(history, valid)], axis=1)
        seen = tf.scatter_nd(indices, tf.ones(tf.shape(indices)[:1], tf.int32), tf.shape(mask)) > 0
        mask = tf.logical_or(mask, seen)
    return tf.logical_and(mask, tf.not_equal(columns[None, :], targets[:, None]))


def rank_batch(
    scores: tf.Tensor, features: Mapping[str, tf.Tensor], ties: str = "standard", mask_history: bool = False
) -> tf.Tensor:
    """Int32 ``[B]`` full-ranking ranks of ``features["target_item"]`` under ``scores [B, N]``.

    Checks that every target lies in ``[0, N)`` (a gather on GPU would silently
    read 0 instead), then applies :func:`exclusion_mask` and
    :func:`~tfpps.evaluation.metrics.ranks_from_scores`.

    Example:
      >>> f = {"item_ids": tf.constant([[3]]), "target_item": tf.constant([2])}
      >>> s = tf.constant([[5., 5., .1, .9, .2]])
      >>> rank_batch(s, f).numpy().tolist(), rank_batch(s, f, mask_history=True).numpy().tolist()
      ([3], [2])
    """
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float32)
    num_items = tf.shape(scores)[1]
    targets = tf.cast(features["target_item"], tf.int32)
    tf.debugging.assert_non_negative(targets, message="target_item must be >= 0")
    tf.debugging.assert_less(targets, num_items, message="target_item must be < the number of scored items")
    mask = exclusion_mask(features, num_items, mask_history)
    return ranks_from_scores(scores, targets, ties, mask)


def target_positions(
    scores: tf.Tensor, features: Mapping[str, tf.Tensor], ties: str = "standard", mask_history: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """Positions in the full ranked list of every item of ``features["target_items"]`` (multi-target rows).

    For target ``t`` of row ``b``: ``1 + #{non-target candidates ahead of t}``
    (``ties`` as in :func:`~tfpps.evaluation.metrics.ranks_from_scores`; the
    candidates exclude PAD/OOV and, with ``mask_history``, the history, but
    never a target) ``+ #{targets ranked above t}`` (ties between targets
    broken arbitrarily: it changes no metric).

    Returns:
      ``(positions int32 [B, T], valid bool [B, T])``, sorted so that each row's
      valid positions come first in ascending order. ``valid`` is false for
      padding (id 0), ids ``>= N`` and repeated ids.

    Example:
      >>> f = {"target_items": tf.constant([[4, 2, 0]]), "item_ids": tf.constant([[3]])}
      >>> s = tf.constant([[9., 9., .5, .9, .8, .1]])   # ranked: 3, 4, 2, 5
      >>> p, v = target_positions(s, f)
      >>> p.numpy()[v.numpy()].tolist(), target_positions(s, f, mask_history=True)[0].numpy()[0, :2].tolist()
      ([2, 3], [1, 2])
    """
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float32)
    num_items = tf.shape(scores)[1]
    targets = tf.cast(features["target_items"], tf.int32)  # [B, T]
    width = tf.shape(targets)[1]
    earlier = tf.linalg.band_part(tf.ones([width, width], tf.bool), -1, 0)  # j' <= j
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(width, dtype=tf.bool)))  # j' < j
    repeated = tf.reduce_any(tf.logical_and(tf.equal(targets[:, :, None], targets[:, None, :]), earlier[None]), axis=2)
    valid = (targets > 0) & (targets < num_items) & tf.logical_not(repeated)
    safe = tf.where(valid, targets, tf.zeros_like(targets))
    batch = tf.shape(targets)[0]
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(targets))
    hit = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(safe, valid)], axis=1)
    is_target = tf.scatter_nd(hit, tf.ones(tf.shape(hit)[:1], tf.int32), tf.stack([batch, num_items])) > 0
    excluded = exclusion_mask({**features, "target_item": tf.zeros([batch], tf.int32)}, num_items, mask_history)
    excluded = tf.logical_or(tf.logical_or(excluded, is_target), tf.equal(tf.range(num_items), 0)[None, :])
    ranks = tf.map_fn(  # rank of each target among the non-target candidates, one target column at a time
        lambda column: ranks_from_scores(scores, column, ties, excluded),
        tf.transpose(safe),
        fn_output_signature=tf.int32,
    )  # [T, B]
    big = tf.int32.max // 2
    ranks = tf.sort(tf.where(valid, tf.transpose(ranks), big), axis=1)
    valid = tf.sort(tf.cast(valid, tf.int32), axis=1, direction="DESCENDING") > 0
    positions = ranks + tf.range(width)[None, :]
    return tf.where(valid, positions, tf.zeros_like(positions)), valid


# Ranking a [B, N] score matrix is ~15 elementwise passes over it (comparisons, masks, casts, sums);
# XLA fuses them into one: 0.47 s -> 0.11-0.23 s for 512 x 37,483 on a 2-core CPU. Compiling costs
# ~0.1-0.3 s per batch shape, so only score matrices of at least this many entries take that path.
XLA_RANK_MIN_ENTRIES = 1 << 20


@functools.lru_cache(maxsize=4)
def _xla_ranks(ties: str) -> Callable:
    """``(scores, targets) -> ranks`` without history masking, compiled with XLA (same ops as :func:`rank_batch`)."""

    def ranks(scores, targets):
        mask = exclusion_mask({"target_item": targets}, tf.shape(scores)[1], False)
        return ranks_from_scores(scores, targets, ties, mask)

    return tf.function(ranks, jit_compile=True, autograph=False)


def _ranks(scores: tf.Tensor, features: Mapping[str, tf.Tensor], ties: str, mask_history: bool) -> tf.Tensor:
    """:func:`rank_batch`; large score matrices without history masking (whose masks have data-dependent
    shapes) are ranked by the XLA-compiled twin."""
    if mask_history:
        return rank_batch(scores, features, ties, mask_history)
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float32)
    targets = tf.cast(features["target_item"], tf.int32)
    shape = tf.shape(scores)
    checks = [
        tf.debugging.assert_non_negative(targets, message="target_item must be >= 0"),
        tf.debugging.assert_less(targets, shape[1], message="target_item must be < the number of scored items"),
    ]
    with tf.control_dependencies(checks):
        large = tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64) >= XLA_RANK_MIN_ENTRIES
        return tf.cond(large, lambda: _xla_ranks(ties)(scores, targets), lambda: rank_batch(scores, features, ties, False))


@functools.lru_cache(maxsize=4)
def _cached_step(score_fn: ScoreFn, ks: tuple, ties: str, mask_history: bool, jit_score: bool) -> Callable:
    return _make_step(score_fn, ks, ties, mask_history, jit_score)


def _make_step(score_fn: ScoreFn, ks: tuple, ties: str, mask_history: bool, jit_score: bool) -> Callable:
    """``features -> (metric sums, batch size, number of scored items)`` for one batch."""

    def rank_and_sum(features, scores):
        if "target_items" in features:  # multi-target rows; rows without a target are not counted
            positions, valid = target_positions(scores, features, ties, mask_history)
            keep = tf.reduce_any(valid, axis=1)
            values = multi_target_metrics(positions, valid, ks)
            sums = {name: tf.reduce_sum(tf.where(keep, v, tf.zeros_like(v))) for name, v in values.items()}
            return sums, tf.reduce_sum(tf.cast(keep, tf.int32)), tf.shape(scores)[1]
        ranks = _ranks(scores, features, ties, mask_history)
        sums = {name: tf.reduce_sum(v) for name, v in single_target_metrics(ranks, ks).items()}
        return sums, tf.shape(ranks)[0], tf.shape(scores)[1]

    if jit_score:  # the model's forward pass is traced into the same graph
        return tf.function(lambda features: rank_and_sum(features, score_fn(features)), reduce_retracing=True)
    ranker = tf.function(rank_and_sum, reduce_retracing=True)
    return lambda features: ranker(features, score_fn(features))


def _step_for(score_fn: ScoreFn, ks: tuple, ties: str, mask_history: bool, jit_score: bool) -> Callable:
    # Reuse the traced function across calls (e.g. one validation per epoch) when score_fn is hashable.
    try:
        return _cached_step(score_fn, ks, ties, mask_history, jit_score)
    except TypeError:
        return _make_step(score_fn, ks, ties, mask_history, jit_score)


def _num_batches(batches: Any) -> int | None:
    if isinstance(batches, tf.data.Dataset):
        n = int(batches.cardinality().numpy())
        return n if n >= 0 else None
    try:
        return len(batches)
    except TypeError:
        return None


def _row_chunks(features: Mapping[str, Any], max_rows: int | None) -> Iterable[dict]:
    features = {name: tf.convert_to_tensor(v) for name, v in features.items()}
    batch = int(features["target_item"].shape[0])
    if not max_rows or batch <= max_rows:
        yield features
        return
    for start in range(0, batch, max_rows):
        yield {name: v[start : start + max_rows] for name, v in features.items()}


# --------------------------------------------------------------------------- evaluation loops
def evaluate(
    score_fn: ScoreFn,
    batches: Iterable[Mapping[str, Any]],
    ks: Sequence[int] = (5, 10, 20),
    ties: str = "standard",
    mask_history: bool = False,
    num_items: int | None = None,
    progress: bool = True,
    *,
    max_rows: int | None = None,
    jit_score: bool = True,
) -> dict[str, float]:
    """Mean full-ranking metrics of ``score_fn`` over all examples of ``batches``.

    For every example ``b`` with target ``t_b`` and rank ``r_b`` (see the module
    docstring for the candidate set and :mod:`tfpps.evaluation.metrics` for the
    ties modes), returns :math:`\\frac{1}{|D|}\\sum_b m_k(r_b)` for every metric
    ``m`` in ``recall, hit, mrr, ndcg, map, precision`` and every ``k`` in ``ks``,
    plus ``num_examples`` = :math:`|D|`.

    Args:
      score_fn: ``features -> [B, N]`` scores of all items (e.g. ``model.score_items``).
        With ``jit_score`` (default) it is traced into the per-batch
        ``tf.function`` together with the ranking, so it must be graph-compatible;
        pass ``jit_score=False`` for an eager/NumPy scorer.
      batches: iterable or ``tf.data.Dataset`` of feature dicts with at least
        ``target_item [B]`` (and ``item_ids``/``seen_items`` for ``mask_history``).
      ks: cutoffs.
      ties: ``"standard"`` or ``"conservative"``.
      mask_history: exclude already-seen items (never the target) from the ranking.
      num_items: if given, the width ``N`` every score matrix must have.
      progress: show a progress bar.
      max_rows: score at most this many rows at once (splits larger batches;
        bounds the ``[rows, N]`` score memory for very large vocabularies).
      jit_score: see ``score_fn``.

    Returns:
      ``{"recall@5": ..., ..., "precision@20": ..., "num_examples": int}``.

    Raises:
      ValueError: bad ``ks``/``ties``, a score width different from ``num_items``,
        or no examples at all.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or any(k <= 0 for k in ks):
        raise ValueError(f"ks={ks!r}: expected a non-empty list of positive integers")
    if ties not in TIES:
        raise ValueError(f"ties={ties!r}: expected one of {', '.join(TIES)}")
    step = _step_for(score_fn, ks, ties, bool(mask_history), bool(jit_score))

    bar = tf.keras.utils.Progbar(_num_batches(batches), unit_name="batch") if progress else None
    totals: dict[str, float] = {}
    count = 0
    seen_batches = 0
    for features in batches:
        for chunk in _row_chunks(features, max_rows):
            sums, rows, width = step(chunk)
            width = int(width)
            if num_items is not None and width != num_items:
                raise ValueError(f"score_fn returned scores for {width} items, expected num_items={num_items}")
            for name, value in sums.items():
                totals[name] = totals.get(name, 0.0) + float(value)
            count += int(rows)
        seen_batches += 1
        if bar is not None:
            bar.update(seen_batches, values=[("examples", count)])
    if bar is not None and bar.target is None:
        bar.update(seen_batches, values=[("examples", count)], finalize=True)
    if count == 0:
        raise ValueError("evaluate: the batches hold no examples")
    result: dict[str, float] = {metric_name(n, k): totals[metric_name(n, k)] / count for n in METRICS for k in ks}
    result["num_examples"] = count
    return result


def evaluate_ranked_lists(
    topk_ids: np.ndarray, relevant_ids: np.ndarray, ks: Sequence[int] | None = None
) -> dict[str, float]:
    """Mean RecBole-style multi-relevant metrics of ranked lists.

    See :func:`tfpps.evaluation.metrics.multi_relevant_metrics` for the math.
    Rows with no relevant id are skipped (as RecBole does); ``num_examples``
    counts the rows averaged over.

    Args:
      topk_ids: int ``[B, K]`` recommendations, best first.
      relevant_ids: int ``[B, R]`` relevant ids, ``0``-padded.
      ks: cutoffs ``<= K``; default ``[K]``.

    Example:
      >>> m = evaluate_ranked_lists([[5, 3], [7, 8]], [[3, 0], [0, 0]])  # second row: nothing relevant
      >>> m["recall@2"], m["mrr@2"], m["num_examples"]
      (1.0, 0.5, 1)
    """
    topk = np.asarray(topk_ids, dtype=np.int64)
    relevant = np.asarray(relevant_ids, dtype=np.int64)
    per_example = multi_relevant_metrics(topk, relevant, ks)
    keep = np.any(relevant != 0, axis=1)
    count = int(keep.sum())
    if count == 0:
        raise ValueError("evaluate_ranked_lists: no row has a relevant item")
    result: dict[str, float] = {name: float(values[keep].mean()) for name, values in per_example.items()}
    result["num_examples"] = count
    return result


# --------------------------------------------------------------------------- reporting
def _split_name(name: str) -> tuple[str, int] | None:
    base, sep, k = name.partition("@")
    return (base, int(k)) if sep and k.isdigit() else None


def format_table(metrics: Mapping[str, Any], title: str | None = None) -> str:
    """A text table of ``<name>@<k>`` metrics: one row per metric, one column per ``k``.

    Other entries (``num_examples``, ...) are listed under the table.

    Example:
      >>> print(format_table({"recall@5": 0.5, "recall@10": 0.75, "ndcg@5": 0.25, "num_examples": 4}, "test"))
      test
      metric      @5     @10
      ----------------------
      recall  0.5000  0.7500
      ndcg    0.2500       -
      num_examples: 4
    """
    cells: dict[str, dict[int, Any]] = {}
    extras: list[tuple[str, Any]] = []
    for name, value in metrics.items():
        parsed = _split_name(name)
        if parsed is None:
            extras.append((name, value))
        else:
            cells.setdefault(parsed[0], {})[parsed[1]] = value
    ks = sorted({k for row in cells.values() for k in row})
    order = [n for n in METRICS if n in cells] + [n for n in cells if n not in METRICS]

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{float(value):.4f}"

    name_width = max([len("metric")] + [len(n) for n in order])
    col_width = max([len(f"@{k}") for k in ks] + [6]) + 2
    lines = [title] if title else []
    if cells:
        header = "metric".ljust(name_width) + "".join(f"@{k}".rjust(col_width) for k in ks)
        lines += [header, "-" * len(header)]
        for name in order:
            lines.append(name.ljust(name_width) + "".join(fmt(cells[name].get(k)).rjust(col_width) for k in ks))
    for name, value in extras:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{name}: {shown}")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tf.Tensor, np.ndarray, np.generic)):
        value = np.asarray(value).item() if np.ndim(value) == 0 else np.asarray(value).tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_metrics(path: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as indented JSON to ``path`` (parents created; NaN/inf become ``null``).

    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(dict(metrics)), indent=2) + "\n", encoding="utf-8")
    return path
