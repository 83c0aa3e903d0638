r"""Sampled softmax for catalogue-scale training of the full-softmax models (NARM, HRM, the search models).

The papers train with a softmax over ALL items, ``-log softmax(s)_t`` with
``s_j = q . v_j`` (``q`` the model's query vector of the example, ``v_j`` the
output vector of item ``j``). Its cost per example is one dot product per item
of the catalogue: on DIGINETICA (43k items) the ``[B, 43k]`` logits and their
gradient dominate an epoch. ``model_params.softmax: sampled`` replaces it with
a softmax over a small candidate set (a departure from the papers; ``full``
stays the default):

Candidates of a mini-batch of ``B`` examples with targets ``t_1..t_B``::

    C = [t_1, ..., t_B,  n_1, ..., n_K]     # in-batch targets, then K shared sampled negatives
    n_k ~ Q(j) = support(j)^alpha / sum_i support(i)^alpha       (with replacement;
                                            # PAD, OOV and items without training support never drawn)

Row ``b``'s loss, with the logQ correction (strength ``logq``, 1 = the textbook
correction, 0 = none)::

    o_bc   = q_b . v_{C_c} - logq * log Q_c(C_c)
    log Q_c = log P(t_c) = log(support(t_c) / sum_i support(i))   for an in-batch column c <= B
            = log Q(n_k)                                           for a sampled column
    o_bc   = -inf  when C_c == t_b and c != b                      (accidental hit: the row's own target
                                                                     as another row's target or as a sample)
           = -inf  when column c <= B belongs to an invalid row (target PAD/OOV)
    loss_b = logsumexp_c(o_bc) - o_bb
    loss   = sum_{b valid} loss_b / #valid                          (the mean, as the full softmax's)

The correction subtracts from every logit, the positive's included, the log of
the probability with which its candidate entered the set: an in-batch column
is another example's target, drawn from the training distribution (popularity,
as the official GRU4Rec code corrects in-batch columns by their popularity,
``logq``), a sampled column comes from ``Q``. Without it frequent items are
over-represented among the negatives and get pushed down too much (Bengio &
Senecal 2008; Jean et al. 2015; Yi et al. 2019, "Sampling-bias-corrected neural
modeling"). The expectation of the sampled loss's gradient is then close to
the full softmax's for large ``K`` (it is not unbiased: the log-partition is
estimated from a sample).

The negatives are one set per training step shared by the batch
(:class:`tfpps.layers.samplers.PopularitySampler`, as GRU4Rec's extra samples),
drawn statelessly from ``(seed, step[, stream])``: with the optimizer's step as
``step`` a resumed run draws the same negatives as an uninterrupted one.

The loss runs through ``tfrs.tasks.Retrieval`` with
``remove_accidental_hits=True`` (TFRS's ``RemoveAccidentalHits`` masks
the candidates equal to the row's positive, the ``-inf`` above) and a
``score_mask`` for invalid rows' columns. The correction is NOT given as
``candidate_sampling_probability`` (TFRS's ``SamplingProbablityCorrection``
clips probabilities to ``[1e-6, 1]``, which distorts the rare items of a
large catalogue: an item seen once among DIGINETICA's 720k training targets
has ``P = 1.4e-6``); it is folded into the embeddings as an extra column
(query ``[q, 1]``, candidate ``[v_c, -logq * log Q_c]``), which is exact.
"""
from __future__ import annotations

import numpy as np

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfpps.config import choice, non_negative
from tfpps.spec.schema import FIRST_ID
from tfpps.layers.samplers import NegativeSample, PopularitySampler, sampling_weights
from tfpps.tasks.losses import summed_softmax_cross_entropy

SOFTMAXES = ("full", "sampled")


def validate_softmax_params(params) -> None:
    """Check a model config's ``softmax``, ``n_sample``, ``sample_alpha`` and ``logq`` (one-line errors)."""
    choice(params, "softmax", SOFTMAXES)
    non_negative(params, "n_sample", "sample_alpha", "logq")


def popularity_log_probabilities(item_counts: np.ndarray) -> np.ndarray:
    """``log(support(i) / sum support)`` per id (float32; ids without support count as support 1)."""
    weights = sampling_weights(item_counts, 1.0)
    return np.log(np.maximum(weights, 1.0) / max(weights.sum(), 1.0)).astype(np.float32)


class CatalogueSampledSoftmax(tf.Module):
    """Sampled softmax over in-batch targets + ``n_sample`` shared popularity negatives, logQ-corrected,
    accidental hits removed (see the module docstring for the math).

    Args:
      item_counts: ``[num_items]`` training support per id (0 for PAD/OOV).
      n_sample: shared sampled negatives per step (0: in-batch negatives only).
      sample_alpha: ``Q(j) ∝ support(j) ** sample_alpha`` (0: uniform over the items seen in training).
      seed: the draws depend only on ``(seed, step, stream)``.
      logq: strength of the logQ correction (1: exact, 0: none).

    Example::

        task = CatalogueSampledSoftmax(counts, n_sample=2048, sample_alpha=0.5, seed=42)
        loss = task(query, targets, item_table, step=optimizer.iterations)
    """

    def __init__(self, item_counts: np.ndarray, n_sample: int, sample_alpha: float, seed: int, logq: float = 1.0,
                 name: str = "sampled_softmax"):
        super().__init__(name=name)
        self.n_sample = int(n_sample)
        self.logq = float(logq)
        self.sampler = PopularitySampler(item_counts, sample_alpha, self.n_sample, seed=seed) if self.n_sample > 0 else None
        self._log_pop = tf.constant(popularity_log_probabilities(item_counts))
        self.task = tfrs.tasks.Retrieval(loss=summed_softmax_cross_entropy, remove_accidental_hits=True)
        # Retrieval.call needs AutoGraph (``len(tf.shape(x))``) while the models' train steps run unconverted
        # (see tfpps.tasks.losses.SampledSoftmaxRetrieval): convert this one method, non-recursively.
        self._retrieval_call = tf.autograph.to_graph(type(self.task).call, recursive=False)

    def candidates(self, targets: tf.Tensor, step=0, stream=None,
                   negatives: NegativeSample | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """``(ids [B + K], log_q [B + K])``: the in-batch targets and the step's sampled negatives, with the
        log probability each entered the candidate set by. ``negatives`` overrides the draw (tests)."""
        targets = tf.cast(targets, tf.int64)
        ids, log_q = targets, tf.gather(self._log_pop, targets)
        if negatives is None and self.sampler is not None:
            negatives = self.sampler(step, stream)
        if negatives is not None:
            ids = tf.concat([ids, tf.cast(negatives.ids, tf.int64)], axis=0)
            log_q = tf.concat([log_q, tf.math.log(tf.cast(negatives.probability, tf.float32))], axis=0)
        return ids, log_q

    def __call__(self, query: tf.Tensor, targets: tf.Tensor, table, step=0, valid: tf.Tensor | None = None,
                 stream=None, negatives: NegativeSample | None = None, bias=None,
                 normalize_items: bool = False) -> tf.Tensor:
        """Mean sampled-softmax loss over the valid rows.

        ``query [B, d]``, ``targets [B]`` item ids, ``table [num_items, d]`` the output item vectors (a
        variable: only the candidates' rows are gathered, so its gradient is sparse), ``valid [B]``
        (default: ``targets >= FIRST_ID``), ``step`` / ``stream`` key the negatives' draw. ``bias``
        (``[num_items]`` or ``[num_items, 1]``) adds a per-item logit ``b_j``; ``normalize_items`` scores
        with L2-normalised item vectors (the search models' ``score: cosine``)."""
        targets = tf.cast(targets, tf.int64)
        valid = targets >= FIRST_ID if valid is None else tf.cast(valid, tf.bool)
        ids, log_q = self.candidates(targets, step, stream, negatives)
        b, n = tf.shape(query)[0], tf.shape(ids)[0]
        vectors = tf.gather(table, ids)  # [B + K, d]
        if normalize_items:
            vectors = tf.math.l2_normalize(vectors, -1)
        correction = -self.logq * tf.cast(log_q, vectors.dtype) if self.logq else tf.zeros([n], vectors.dtype)
        if bias is not None:  # folded into the extra column, whose query entry is 1
            correction += tf.reshape(tf.gather(bias, ids), [n])
        q = tf.concat([query, tf.ones([b, 1], query.dtype)], axis=1)
        c = tf.concat([vectors, correction[:, None]], axis=1)
        col_ok = tf.concat([valid, tf.ones([n - b], tf.bool)], axis=0)
        score_mask = tf.logical_or(col_ok[None, :], tf.cast(tf.eye(b, n), tf.bool))
        weight = tf.cast(valid, query.dtype)
        total = self._retrieval_call(self.task, q, c, sample_weight=weight, candidate_ids=ids, score_mask=score_mask,
                                     compute_metrics=False, compute_batch_metrics=False)
        return total / tf.maximum(tf.reduce_sum(weight), 1.0)
