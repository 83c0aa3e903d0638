"""GRU4Rec's streamed evaluation, run eagerly: the official evaluation's cost, tfpps's metrics.

The official ``evaluation.batch_eval`` (hidasib/GRU4Rec_PyTorch_Official) runs each test session once,
one GRU step per click with the state carried, and ranks every next click against all items; it
pays no tracing or compilation. tfpps's :class:`~tfpps.models.sequential.gru4rec.StreamedEvalBatches` does the
same work through tf.data and traced functions, whose one-off tracing (and XLA compilation of the
ranking) costs seconds: more than the whole evaluation of a YOOCHOOSE-sized test set.

:func:`evaluate_eagerly` computes the same examples without tracing anything:

1. the split's records are read once into NumPy;
2. :func:`build_streams` lays them out as :func:`~tfpps.models.sequential.gru4rec.eval_streams` does (one "main"
   run per record scored at every end ``e <= max_len``; one run of the last ``max_len`` items for
   every end ``e > max_len``, as the prefix evaluation cuts those histories);
3. streams are sorted by length and run ``eval.batch_size`` at a time through the model's GRU layers:
   in NumPy, the input projection in one product per layer and the recurrence step by step (a chunk
   runs only as many steps as its longest stream, and a step only the streams still running);
4. the states at the scoring points are scored against all items (``h W_y^T + b_y``) and ranked with
   :func:`rank_rows`, i.e. :math:`r = 1 + |\\{j \\ge \\mathrm{FIRST\\_ID},\\ j \\ne t : s_j > s_t\\}|`
   (``>=`` for ``conservative`` ties), PAD and OOV never counted: the evaluator's ranks, scored in
   chunks of at most :data:`SCORES_PER_CHUNK` entries;
5. the per-example metrics of :func:`tfpps.evaluation.metrics.single_target_metrics` are averaged.

The result equals :func:`tfpps.evaluation.evaluator.evaluate` over the streamed batches up to float
summation order. Data it does not cover (``mask_history``, multi-target or non-sequential data, a
validation sample) returns ``None`` and the trainer takes the traced path.

Example::

    metrics = evaluate_eagerly(model, data, "test", run)   # {"recall@20": ..., "num_examples": N} or None
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

import tensorflow as tf

from tfpps.data.tfrecord_file import read_tfrecord_file
from tfpps.spec import schema
from tfpps.spec.schema import FIRST_ID
from tfpps.evaluation.metrics import METRICS, metric_name, ranks_from_scores, single_target_metrics
from tfpps.models.base import max_len_of


def _split_rows(values: np.ndarray, row_splits: np.ndarray) -> list[np.ndarray]:
    """The rows of a ragged ``(values, row_splits)`` pair, as int64 arrays."""
    values = values.astype(np.int64)
    return [values[row_splits[i] : row_splits[i + 1]] for i in range(len(row_splits) - 1)]


def read_records(data: Any, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """``(item_ids of every record, target_item [R])`` of ``split``. The shards of a dataset directory are
    read into memory (:func:`~tfpps.data.tfrecord_file.read_tfrecord_file`: no tf.data pipeline to build,
    which costs more than the read) and parsed in one batch; other data objects are read through their
    ``records(split)``."""
    if callable(getattr(data, "files", None)):
        serialized = [record for path in data.files(split) for record in read_tfrecord_file(path)]
        parsed = [schema.parse_batch(data.kind, tf.constant(serialized, tf.string))] if serialized else []
    else:
        parsed = data.records(split).ragged_batch(4096)
    items: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for batch in parsed:
        ids = batch["item_ids"]
        items.extend(_split_rows(ids.values.numpy(), ids.row_splits.numpy()))
        targets.append(batch["target_item"].numpy().astype(np.int64).reshape(-1))
    return items, (np.concatenate(targets) if targets else np.zeros([0], np.int64))


def build_streams(items: Sequence[np.ndarray], targets: np.ndarray, max_len: int):
    """GRU runs that reproduce the prefix evaluation's examples (see :func:`~tfpps.models.sequential.gru4rec.eval_streams`).

    Returns ``(sequences, points, point_targets)``: ``sequences[s]`` the items run from the zero state;
    ``points[s]`` the numbers of items ``e`` after which the state is scored (``e = 0``: the zero state)
    and ``point_targets[s]`` their targets.

    Given (history, target) records (``target > 0``, the SR-GNN/NARM test layout, where a session of
    ``n`` clicks is ``n - 1`` records) are streamed like whole sessions: a record whose history is a
    prefix of another record's history (``len <= max_len``) is scored on that record's run at its own
    length, so each session is run once, not once per prefix (the state after a history does not
    depend on what follows it). Identical histories share one scoring point each.

    Example:
      >>> seqs, pts, tgt = build_streams([np.array([5, 6, 7, 8])], np.array([0]), max_len=2)
      >>> [s.tolist() for s in seqs], [p.tolist() for p in pts], [t.tolist() for t in tgt]
      ([[5, 6], [6, 7]], [[1, 2], [2]], [[6, 7], [8]])
      >>> seqs, pts, tgt = build_streams([np.array([1, 2]), np.array([1]), np.array([3])], np.array([4, 2, 9]), max_len=5)
      >>> [s.tolist() for s in seqs], [p.tolist() for p in pts], [t.tolist() for t in tgt]
      ([[1, 2], [3]], [[2, 1], [1]], [[4, 2], [9]])
    """
    m = int(max_len)
    runs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (first record, sequence, points, targets)
    given: dict[tuple, list[tuple[int, int]]] = {}  # history (len <= m) of given-target records -> (record, target)
    steps = np.arange(m + 1, dtype=np.int64)  # views of it are the points of whole sessions (read only)
    for r, (hist, target) in enumerate(zip(items, targets)):
        hist = np.asarray(hist, np.int64)
        if target <= 0 and len(hist) <= m:  # a whole session that fits: scored after each of its clicks
            if len(hist) >= 2:
                runs.append((r, hist[:-1], steps[1 : len(hist)], hist[1:]))
            continue
        if target > 0:
            if 0 < len(hist) <= m:
                given.setdefault(tuple(hist.tolist()), []).append((r, int(target)))
                continue
            full = np.append(hist, target)
            ends = np.array([len(hist)], np.int64)
        else:
            full = hist
            ends = np.arange(1, max(len(hist), 1), dtype=np.int64)
        main = ends[ends <= m]
        if len(main):
            runs.append((r, full[: int(main.max())], main, full[main]))
        for e in ends[ends > m]:
            runs.append((r, full[e - m : e], np.array([m], np.int64), full[[e]]))
    covered: set[tuple] = set()
    for hist in sorted(given, key=len, reverse=True):  # longest first: every prefix finds the run that covers it
        if hist in covered:
            continue
        first, ends, wanted = len(items), [], []
        for k in range(len(hist), 0, -1):
            prefix = hist[:k]
            if prefix in given and prefix not in covered:
                covered.add(prefix)
                for r, target in given[prefix]:
                    first = min(first, r)
                    ends.append(k)
                    wanted.append(target)
        runs.append((first, np.array(hist, np.int64), np.array(ends, np.int64), np.array(wanted, np.int64)))
    runs.sort(key=lambda run: run[0])  # stable: in record order, as the records came
    return [run[1] for run in runs], [run[2] for run in runs], [run[3] for run in runs]


def rank_rows(states, targets: np.ndarray, weights, bias, ties: str = "standard",
              weight_scale: tuple[float, float] | None = None) -> np.ndarray:
    """Int ``[B]`` ranks of ``targets`` under the scores ``states @ weights^T + bias`` of all items, PAD and
    OOV excluded (the evaluator's ranks without history masking), in NumPy: the competitor columns
    ``FIRST_ID..N-1`` are scored directly and compared with each row's target score.

    ``weight_scale`` (:func:`weight_scale`, computed once per evaluation): ``(max |w|, max |b|)`` over the
    competitor rows. When ``max_row ||h||_1 * max |w| + max |b|`` is below :data:`NO_OVERFLOW_BOUND` no score
    can be NaN or infinite, and the scan for NaN rows is skipped.

    Example:
      >>> w = np.array([[9.], [9.], [.3], [.5], [.5]], np.float32); b = np.zeros([5], np.float32)
      >>> rank_rows(np.ones([1, 1], np.float32), np.array([3]), w, b).tolist(), rank_rows(np.ones([1, 1], np.float32), np.array([3]), w, b, "conservative").tolist()
      ([1], [2])
    """
    states, weights, bias = np.asarray(states), np.asarray(weights), np.asarray(bias)
    targets = np.asarray(targets, np.int64)
    if len(targets) and targets.min() < FIRST_ID:  # a PAD/OOV target: the evaluator's general path
        scores = tf.constant(states @ weights.T + bias[None, :])
        mask = tf.range(tf.shape(scores)[1]) < FIRST_ID
        return ranks_from_scores(scores, targets, ties, mask).numpy()
    scores = states @ weights[FIRST_ID:].T  # [B, N - FIRST_ID]
    scores += bias[None, FIRST_ID:]
    target_scores = scores[np.arange(len(targets)), targets - FIRST_ID][:, None]
    ahead = scores > target_scores if ties == "standard" else scores >= target_scores
    count = np.count_nonzero(ahead, axis=1).astype(np.int64)
    # NaN: a NaN competitor counts as ahead, a NaN target ranks last (as ranks_from_scores); a row sum is NaN
    # exactly when the row holds a NaN (or both infinities), so the rare rows are found without a full isnan pass
    odd = np.zeros([0], np.int64) if _scores_finite(states, weight_scale) else np.flatnonzero(np.isnan(scores.sum(axis=1)))
    if len(odd):
        count[odd] = np.count_nonzero(ahead[odd] | np.isnan(scores[odd]), axis=1)
    own = int(ties != "standard")  # a non-NaN target's own column is counted by >=, and is never a competitor
    return np.where(np.isnan(target_scores[:, 0]), scores.shape[1], count - own + 1)


NO_OVERFLOW_BOUND = 1e37
"""A score bound below float32's largest value (3.4e38): no sum of terms bounded by it overflows."""


def weight_scale(weights: np.ndarray, bias: np.ndarray) -> tuple[float, float]:
    """``(max |w|, max |b|)`` over the competitor rows ``FIRST_ID..N-1`` (NaN when one is NaN)."""
    w, b = np.asarray(weights)[FIRST_ID:], np.asarray(bias)[FIRST_ID:]
    return (float(np.abs(w).max()) if w.size else 0.0), (float(np.abs(b).max()) if b.size else 0.0)


def _scores_finite(states: np.ndarray, scale: tuple[float, float] | None) -> bool:
    """Whether every score ``states @ w^T + b`` is finite, by the bound of :func:`rank_rows` (False: unknown)."""
    if scale is None or not len(states):
        return False
    bound = float(np.abs(states).sum(axis=1).max()) * scale[0] + scale[1]
    return bool(np.isfinite(bound)) and bound < NO_OVERFLOW_BOUND


@dataclasses.dataclass(frozen=True)
class NumpyGRU:
    """A snapshot of a GRU4Rec model's GRU part in NumPy, taken once per evaluation: the first layer's
    input table (``None``: one-hot input, the ids go to the first cell as they are) and, per layer,
    the cell's ``numpy_project``, ``numpy_step`` and state size."""

    input_table: np.ndarray | None
    layers: tuple[tuple[Callable, Callable, int], ...]

    @classmethod
    def of(cls, model: Any) -> "NumpyGRU":
        # the rows model._input_embedding gathers: the output embedding (constrained), the input embedding,
        # or none (one-hot input: the first cell gathers its own input weights)
        table = model.Wy if model.params.constrained_embedding else model.E if model.params.embedding > 0 else None
        layers = tuple((cell.numpy_project(), cell.numpy_step(), int(cell.units)) for cell in model.cells)
        return cls(None if table is None else table.numpy(), layers)


def run_layers_eagerly(gru: NumpyGRU, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every GRU state of ``sequences`` (sorted by length, longest first), computed in NumPy.

    Returns ``(states, offsets)``, time-major and unpadded: the sequences still running at step ``t``
    are the first ``n_t`` (they are sorted), and ``states[offsets[t] + r]`` is sequence ``r``'s last-layer
    state after ``t + 1`` items. Each layer projects all its inputs in one product (the cell's
    ``numpy_project``) and runs the recurrence step by step (``numpy_step``); TensorFlow's per-operation
    dispatch in eager mode would cost more than this arithmetic."""
    lengths = np.array([len(s) for s in sequences], np.int64)
    if len(lengths) > 1 and np.any(np.diff(lengths) > 0):
        raise ValueError("run_layers_eagerly: sequences must be sorted by length, longest first")
    width = int(lengths.max()) if len(lengths) else 0
    running = np.searchsorted(-lengths, -np.arange(width), side="left")  # sequences with length > t
    offsets = np.concatenate([[0], np.cumsum(running)])
    items = np.zeros([len(sequences), width], np.int64)
    for r, seq in enumerate(sequences):
        items[r, : len(seq)] = seq
    ids = items.T[(np.arange(width)[None, :] < lengths[:, None]).T]  # time-major: step t's items, rows 0..n_t-1
    x = ids if gru.input_table is None else gru.input_table[ids]
    for project, step, units in gru.layers:
        vx = project(x)  # [offsets[-1], 3H], time-major
        out = np.empty((len(vx), units), vx.dtype)
        h = np.zeros((running[0] if width else 0, units), vx.dtype)
        for t in range(width):
            n, lo = int(running[t]), int(offsets[t])
            h = step(vx[lo : lo + n], h[:n])
            out[lo : lo + n] = h
        x = out
    return x, offsets


def stream_states(gru: NumpyGRU, sequences: Sequence[np.ndarray], points: Sequence[np.ndarray], chunk: int):
    """Yield ``(states [M, H], rows)``: the states at the scoring points of ``chunk`` streams at a time,
    longest first, and the stream indices ``rows`` they came from (in that order)."""
    order = np.argsort([-len(s) for s in sequences], kind="stable")
    units = gru.layers[-1][2]
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        states, offsets = run_layers_eagerly(gru, [sequences[r] for r in rows])
        counts = np.array([len(points[r]) for r in rows])
        row_of = np.repeat(np.arange(len(rows)), counts)
        ends = np.concatenate([points[r] for r in rows])  # state after e items; e = 0: the zero state
        states = np.concatenate([states, np.zeros((1, units), states.dtype)])  # the zero state, last
        where = np.where(ends > 0, offsets[np.maximum(ends - 1, 0)] + row_of, len(states) - 1)
        yield states[where], rows


def evaluate_eagerly(model: Any, data: Any, split: str, run: Any, ks: Sequence[int] = (5, 10, 20),
                     ties: str = "standard") -> dict[str, float] | None:
    """Mean full-ranking metrics of a GRU4Rec ``model`` on ``split``, streamed and eager (module docstring);
    ``None`` where the traced evaluation must be used instead."""
    if getattr(data, "kind", "sequential") != "sequential" or getattr(data, "multi_target", False):
        return None
    if bool(getattr(run.eval, "mask_history", False)):
        return None
    items, targets = read_records(data, split)
    sequences, points, point_targets = build_streams(items, targets, max_len_of(run))
    if not sequences:
        raise ValueError("evaluate: the batches hold no examples")
    weights, bias = model.Wy.numpy(), model.By.numpy()
    if int(weights.shape[0]) != int(data.num_items):
        raise ValueError(f"score_fn returned scores for {int(weights.shape[0])} items, expected num_items={data.num_items}")
    rows_per_rank = max(1, min(4096, SCORES_PER_CHUNK // max(1, int(weights.shape[0]))))
    scale = weight_scale(weights, bias)
    ranks: list[np.ndarray] = []
    for states, rows in stream_states(NumpyGRU.of(model), sequences, points, int(run.eval.batch_size)):
        wanted = np.concatenate([point_targets[r] for r in rows])
        for lo in range(0, int(states.shape[0]), rows_per_rank):
            ranks.append(rank_rows(states[lo : lo + rows_per_rank], wanted[lo : lo + rows_per_rank], weights, bias, ties,
                                   scale))
    all_ranks = np.concatenate(ranks)
    values = single_target_metrics(all_ranks, ks)
    result: dict[str, float] = {}
    for name in METRICS:
        for k in ks:
            key = metric_name(name, k)
            result[key] = float(np.sum(values[key].numpy(), dtype=np.float64) / len(all_ranks))
    result["num_examples"] = int(len(all_ranks))
    return result


SCORES_PER_CHUNK = 1 << 23  # score matrices of at most this many entries (32 MB of float32) are ranked at once
