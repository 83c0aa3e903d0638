"""GRU4Rec's ranking losses over a session-parallel score matrix.

Score matrix convention (official GRU4Rec, all three implementations):
``scores`` is ``[M, N]`` with ``N = M + n_sample``; row ``i`` is slot ``i``
of the mini-batch, column ``j < M`` is the target item of slot ``j`` (so the
diagonal of the first ``M`` columns holds each row's positive, and the other
slots' targets are its in-batch negatives) and columns ``M..N-1`` are the
``n_sample`` extra negatives shared by the whole batch. A sampled negative
that happens to equal a row's target is **not** masked (as in the official code).

Masking (tfpps' replacement for the official batch *shrinking*, see
:mod:`tfpps.models.sequential.gru4rec`): ``row_mask`` ``[M]`` marks slots that hold
data this step. Invalid rows contribute no loss, and the target columns of
invalid slots are not used as negatives for anyone (``col_mask`` ``[N]``).
Every loss is a **sum** over valid rows divided by the nominal
``batch_size``, as the official ``loss_function(...) / self.batch_size``.

Losses (``r`` scores, ``i`` the target column of the row, ``j`` negatives):

* cross-entropy: ``-log softmax(r - logq * log Q)_i`` over all ``N`` columns
  (:func:`cross_entropy`, and :class:`SampledSoftmaxRetrieval`, the same loss
  through ``tfrs.tasks.Retrieval``, which the model uses). ``log Q`` is
  ``log support`` for in-batch columns and ``alpha * log support`` for the
  sampled ones (official ``P0[Y1]`` / ``P0[Y2] ** sample_alpha``).
* BPR-max (Hidasi & Karatzoglou 2018): with ``s_ij = softmax_j(r_ij)`` over
  negatives only (diagonal masked; official ``softmax_neg``)::

      -log(sum_j s_ij sigmoid(r_i - r_j) + 1e-24) + bpreg * sum_j s_ij r_j^2

* TOP1-max: ``sum_j s_ij (sigmoid(r_j - r_i) + sigmoid(r_j^2))``.

BPR-max / TOP1-max take scores *after* the final activation
(:func:`final_activation`: ELU with ``elu_param``, ``0`` meaning linear).

Why two cross-entropy paths: ``tfrs.tasks.Retrieval`` fits GRU4Rec's XE
(rectangular ``M x (M + n_sample)`` in-batch + extra candidates, labels on
the diagonal, ``sample_weight`` for the row mask, ``score_mask`` for the
column mask), so the model uses it, with a summed softmax cross-entropy
(:func:`summed_softmax_cross_entropy`) as its loss. Two details are handled
around it rather than through its own options: (1) its
``candidate_sampling_probability`` is clipped to ``[1e-6, 1]`` and must be a
probability, whereas the official logQ subtracts logs of *unnormalised*
supports with different powers for in-batch and sampled columns; so the
correction and the output bias ``b_y`` are folded into the candidate
embeddings as an extra column (query ``[h, 1]``, candidate
``[W_y, b_y - logq * log Q]``), which is exact; (2) Retrieval needs embeddings,
not a score matrix, so :func:`cross_entropy` is the score-matrix form (tests
check both agree). Both compute the loss as ``logsumexp - target logit``;
the official ``log(p + 1e-24)`` floor is not reproduced (it only matters
once ``p < 1e-24``, a loss above 55 nats on one row).
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

NEG_INF = -1e30  # finite "minus infinity" for masked logits (exp underflows to exactly 0)


# --------------------------------------------------------------------------- helpers
def _shape(scores: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    s = tf.shape(scores)
    return s[0], s[1]


def _row_weight(scores: tf.Tensor, row_mask) -> tf.Tensor:
    m, _ = _shape(scores)
    if row_mask is None:
        return tf.ones([m], scores.dtype)
    return tf.cast(row_mask, scores.dtype)


def _diag(m, n) -> tf.Tensor:
    return tf.cast(tf.eye(m, n), tf.bool)


def _col_ok(scores: tf.Tensor, col_mask) -> tf.Tensor:
    _, n = _shape(scores)
    if col_mask is None:
        return tf.ones([n], tf.bool)
    return tf.cast(col_mask, tf.bool)


def negative_mask(scores: tf.Tensor, col_mask=None) -> tf.Tensor:
    """``[M, N]`` bool: True where column ``j`` is a negative of row ``i`` (off-diagonal, usable column)."""
    m, n = _shape(scores)
    return tf.logical_and(tf.logical_not(_diag(m, n)), _col_ok(scores, col_mask)[None, :])


def _reduce(per_row: tf.Tensor, weight: tf.Tensor, batch_size) -> tf.Tensor:
    if batch_size is None:
        batch_size = tf.shape(per_row)[0]
    return tf.reduce_sum(per_row * weight) / tf.cast(batch_size, per_row.dtype)


def final_activation(scores: tf.Tensor, final_act: str = "elu", elu_param: float = 0.5) -> tf.Tensor:
    """GRU4Rec's final activation for ranking losses: ``elu`` (``elu_param`` 0 = linear), ``linear``, ``tanh``."""
    if final_act == "linear" or (final_act == "elu" and elu_param <= 0):
        return scores
    if final_act == "elu":
        # official: switch(X >= 0, X, alpha * (exp(X) - 1)); the min() keeps the unused branch finite
        return tf.where(scores >= 0, scores, elu_param * tf.math.expm1(tf.minimum(scores, 0.0)))
    if final_act == "tanh":
        return tf.tanh(scores)
    raise ValueError(f"unknown final_act {final_act!r}")


def softmax_neg(scores: tf.Tensor, neg_mask: tf.Tensor) -> tf.Tensor:
    """Row softmax restricted to ``neg_mask`` (official ``softmax_neg``: diagonal excluded).

    As in the official code the row max is taken over the scores with the
    excluded entries zeroed (it only shifts the exponent).
    """
    mf = tf.cast(neg_mask, scores.dtype)
    x = scores * mf
    e = tf.exp(x - tf.reduce_max(x, axis=1, keepdims=True)) * mf
    return tf.math.divide_no_nan(e, tf.reduce_sum(e, axis=1, keepdims=True))


# --------------------------------------------------------------------------- losses on a score matrix
def cross_entropy(
    scores: tf.Tensor,
    row_mask=None,
    col_mask=None,
    log_q: tf.Tensor | None = None,
    logq: float = 0.0,
    batch_size=None,
) -> tf.Tensor:
    """Softmax cross-entropy of the diagonal over all usable columns, optional logQ correction.

    ``log_q`` ``[N]`` is subtracted times ``logq`` from every row
    (official ``O - logq * log(...)``). Returns ``sum(valid rows) / batch_size``.
    """
    m, n = _shape(scores)
    logits = scores
    if log_q is not None and logq:
        logits = logits - logq * tf.cast(log_q, scores.dtype)[None, :]
    keep = tf.logical_or(_col_ok(scores, col_mask)[None, :], _diag(m, n))
    logits = tf.where(keep, logits, tf.cast(NEG_INF, scores.dtype))
    pos = tf.linalg.diag_part(logits[:, :m])
    per_row = tf.reduce_logsumexp(logits, axis=1) - pos
    return _reduce(per_row, _row_weight(scores, row_mask), batch_size)


def bpr_max(scores: tf.Tensor, bpreg: float = 1.0, row_mask=None, col_mask=None, batch_size=None) -> tf.Tensor:
    """BPR-max with score regularisation (apply :func:`final_activation` first)."""
    m, _ = _shape(scores)
    s = softmax_neg(scores, negative_mask(scores, col_mask))
    pos = tf.linalg.diag_part(scores[:, :m])[:, None]
    per_row = -tf.math.log(tf.reduce_sum(tf.sigmoid(pos - scores) * s, axis=1) + 1e-24)
    if bpreg:
        per_row += bpreg * tf.reduce_sum(tf.square(scores) * s, axis=1)
    return _reduce(per_row, _row_weight(scores, row_mask), batch_size)


def top1_max(scores: tf.Tensor, row_mask=None, col_mask=None, batch_size=None) -> tf.Tensor:
    """TOP1-max (apply :func:`final_activation` first)."""
    m, _ = _shape(scores)
    s = softmax_neg(scores, negative_mask(scores, col_mask))
    pos = tf.linalg.diag_part(scores[:, :m])[:, None]
    per_row = tf.reduce_sum(s * (tf.sigmoid(scores - pos) + tf.sigmoid(tf.square(scores))), axis=1)
    return _reduce(per_row, _row_weight(scores, row_mask), batch_size)


def _mean_over_columns(values: tf.Tensor, col_ok: tf.Tensor) -> tf.Tensor:
    w = tf.cast(col_ok, values.dtype)[None, :]
    return tf.math.divide_no_nan(tf.reduce_sum(values * w, axis=1), tf.reduce_sum(w))


def top1(scores: tf.Tensor, row_mask=None, col_mask=None, batch_size=None) -> tf.Tensor:
    """TOP1 of GRU4Rec (2016) as HGRU4Rec's ``top1`` computes it (apply the final activation first).

    Per row ``i`` with usable columns ``C`` (the row's own target included)::

        mean_{j in C} [sigmoid(r_ij - r_ii) + sigmoid(r_ij^2)] - sigmoid(r_ii^2) / batch_size

    i.e. the regulariser of the positive is subtracted with weight
    ``1/batch_size`` (exactly ``1/|C|`` when there are no extra samples) and
    the ``sigmoid(0)`` of the diagonal stays in the mean, as in the reference.
    Returns ``sum(valid rows) / batch_size`` (the reference's mean over its
    always-full batch).
    """
    m, _ = _shape(scores)
    bs = tf.cast(m if batch_size is None else batch_size, scores.dtype)
    pos = tf.linalg.diag_part(scores[:, :m])
    per_col = tf.sigmoid(scores - pos[:, None]) + tf.sigmoid(tf.square(scores))
    per_row = _mean_over_columns(per_col, _col_ok(scores, col_mask)) - tf.sigmoid(tf.square(pos)) / bs
    return _reduce(per_row, _row_weight(scores, row_mask), batch_size)


def bpr(scores: tf.Tensor, row_mask=None, col_mask=None, batch_size=None) -> tf.Tensor:
    """BPR of GRU4Rec (2016) as HGRU4Rec's ``bpr``: ``mean_{j in C} -log sigmoid(r_ii - r_ij)``
    per row (the diagonal's ``log 2`` included), ``sum(valid rows) / batch_size``."""
    m, _ = _shape(scores)
    pos = tf.linalg.diag_part(scores[:, :m])
    per_col = -tf.math.log_sigmoid(pos[:, None] - scores)
    per_row = _mean_over_columns(per_col, _col_ok(scores, col_mask))
    return _reduce(per_row, _row_weight(scores, row_mask), batch_size)


RANKING_LOSSES = {"bpr-max": bpr_max, "top1-max": top1_max}


# --------------------------------------------------------------------------- XE through TFRS Retrieval
def summed_softmax_cross_entropy(y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: tf.Tensor | None = None) -> tf.Tensor:
    """``sum_i w_i * CE(y_true_i, softmax(y_pred_i))``: Keras' ``CategoricalCrossentropy(from_logits=True, reduction=SUM)``.

    For one-hot (or any normalised) labels ``CE = logsumexp(y_pred) - <y_true, y_pred>``; written this way
    it is ~4x faster on CPU than ``tf.nn.softmax_cross_entropy_with_logits`` for a ``[32, 2080]`` batch.
    """
    y_true = tf.cast(y_true, y_pred.dtype)
    per_row = tf.reduce_logsumexp(y_pred, axis=1) - tf.reduce_sum(y_true * y_pred, axis=1)
    if sample_weight is not None:
        per_row = per_row * tf.cast(sample_weight, per_row.dtype)
    return tf.reduce_sum(per_row)


class SampledSoftmaxRetrieval(tf.keras.layers.Layer):
    """GRU4Rec's cross-entropy (+ logQ) computed by ``tfrs.tasks.Retrieval`` from embeddings.

    ``call(query [M, H], candidates [N, H], candidate_bias [N], ...)`` equals
    ``cross_entropy(query @ candidates.T + candidate_bias, ...)``; see the
    module docstring for how bias and logQ are folded into the embeddings.
    """

    def __init__(self, name: str = "sampled_softmax", **kwargs):
        super().__init__(name=name, **kwargs)
        self.task = tfrs.tasks.Retrieval(loss=summed_softmax_cross_entropy)
        # Retrieval.call relies on AutoGraph (``len(tf.shape(x))``). GRU4Rec's training step runs
        # unconverted (converting Keras/TFRS internals costs 10-30 s of tracing on CPU), so only
        # this one method is converted, non-recursively. For the same reason the loss is a plain
        # function with the semantics of ``CategoricalCrossentropy(from_logits=True,
        # reduction=SUM)`` (whose ``__call__`` would AutoGraph-convert Keras' loss internals).
        self._retrieval_call = tf.autograph.to_graph(type(self.task).call, recursive=False)

    def call(
        self,
        query: tf.Tensor,
        candidates: tf.Tensor,
        candidate_bias: tf.Tensor | None = None,
        row_mask=None,
        col_mask=None,
        log_q: tf.Tensor | None = None,
        logq: float = 0.0,
        batch_size=None,
    ) -> tf.Tensor:
        m = tf.shape(query)[0]
        n = tf.shape(candidates)[0]
        extra = tf.zeros([n], candidates.dtype) if candidate_bias is None else tf.reshape(candidate_bias, [n])
        if log_q is not None and logq:
            extra = extra - logq * tf.cast(log_q, candidates.dtype)
        q = tf.concat([query, tf.ones([m, 1], query.dtype)], axis=1)
        c = tf.concat([candidates, extra[:, None]], axis=1)
        col_ok = tf.ones([n], tf.bool) if col_mask is None else tf.cast(col_mask, tf.bool)
        score_mask = tf.logical_or(col_ok[None, :], _diag(m, n))
        weight = tf.ones([m], query.dtype) if row_mask is None else tf.cast(row_mask, query.dtype)
        loss = self._retrieval_call(
            self.task, q, c, sample_weight=weight, score_mask=score_mask, compute_metrics=False, compute_batch_metrics=False
        )
        if batch_size is None:
            batch_size = m
        return loss / tf.cast(batch_size, loss.dtype)
