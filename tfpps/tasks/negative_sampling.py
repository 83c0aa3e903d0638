r"""word2vec-style negative-sampling loss with one negative draw shared by the batch (HEM, AEM, ZAM).

For an example with context vector :math:`c` (a user, a personalised query,
an item), its true target :math:`t` and the batch's :math:`K` shared negatives
:math:`n_1..n_K`, with :math:`s(x) = c \cdot v_x + b_x`:

.. math::
   \ell = -\log \sigma(s(t)) - \sum_{k=1}^{K} \log \sigma(-s(n_k))

There is no log-noise correction (the official HEM code calls it NCE but
computes exactly this). The negatives are drawn once per call from
:math:`P(x) \propto \mathrm{count}(x)^{d}` (``distortion`` :math:`d`; HEM:
0.75 for words, a uniform distribution for products) with replacement, like
``tf.nn.fixed_unigram_candidate_sampler(unique=False)``; ids with zero weight
(PAD, OOV, unseen) are never drawn. A draw may hit the true target; as in the
official code nothing removes it.

Example:
  >>> import numpy as np, tensorflow as tf
  >>> sampler = UnigramSampler(np.array([0, 0, 3, 1]), distortion=1.0)
  >>> ids = sampler.sample(1000, seed=(1, 2)).numpy()
  >>> ids.min() >= 2 and 0.65 < (ids == 2).mean() < 0.85
  True
"""
from __future__ import annotations

import numpy as np

import tensorflow as tf

from tfpps.spec.schema import FIRST_ID


def unigram_weights(counts: np.ndarray, distortion: float) -> np.ndarray:
    """``count ** distortion`` for ids ``>= FIRST_ID`` with a positive count, else 0 (all real ids if none has one)."""
    counts = np.asarray(counts, dtype=np.float64).copy()
    counts[:FIRST_ID] = 0
    if not (counts > 0).any():
        counts[FIRST_ID:] = 1
    return np.where(counts > 0, np.power(np.maximum(counts, 1e-300), distortion), 0.0)


class UnigramSampler(tf.Module):
    """Draws ids with ``P(x) ∝ count(x) ** distortion`` (``distortion=0``: uniform over ids with a count)."""

    def __init__(self, counts: np.ndarray, distortion: float = 0.75, name: str | None = None):
        super().__init__(name=name)
        weights = unigram_weights(counts, distortion)
        self.probabilities = weights / weights.sum()
        self.logits = tf.constant(np.log(np.maximum(self.probabilities, 1e-300)) + np.where(weights > 0, 0.0, -1e30),
                                  tf.float32)

    def sample(self, n: int, seed=None) -> tf.Tensor:
        """``n`` ids (int64) drawn with replacement; ``seed`` a stateless seed pair, or None for the global generator."""
        logits = self.logits[None, :]
        if seed is None:
            return tf.random.categorical(logits, n, dtype=tf.int64)[0]
        return tf.random.stateless_categorical(logits, n, seed, dtype=tf.int64)[0]


def negative_sampling_loss(context: tf.Tensor, true_vectors: tf.Tensor, true_bias: tf.Tensor,
                           negative_vectors: tf.Tensor, negative_bias: tf.Tensor) -> tf.Tensor:
    """Per-example loss ``[B]``: ``context [B, d]``, ``true_vectors [B, d]``, ``true_bias [B]``,
    ``negative_vectors [K, d]`` and ``negative_bias [K]`` shared by the batch."""
    true_logit = tf.reduce_sum(context * true_vectors, axis=-1) + true_bias
    negative_logits = tf.matmul(context, negative_vectors, transpose_b=True) + negative_bias[None, :]
    return tf.nn.softplus(-true_logit) + tf.reduce_sum(tf.nn.softplus(negative_logits), axis=-1)
