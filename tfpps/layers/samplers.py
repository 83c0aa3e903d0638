"""Negative samplers that run inside the training graph.

:class:`PopularitySampler` draws GRU4Rec's extra negatives: one set of
``n_sample`` items **shared by the whole mini-batch**, each drawn (with
replacement) with probability proportional to ``support ** alpha``
(``alpha = 0``: uniform over the items seen in training, ``1``: popularity).

Faithful to the official sample store (``SampleCache`` in
``hidasib/GRU4Rec_Tensorflow_Official``), which draws by binary search of
``U(0, 1)`` in the CDF of ``supp ** sample_alpha``; here the search is
``tf.searchsorted`` on a float64 CDF and the uniforms are
``tf.random.stateless_uniform`` keyed by ``(seed, step)``, so a run is
reproducible and a resumed run draws the same negatives as an uninterrupted
one. (The official code pre-draws 10^7 ids into a GPU buffer to amortise
Python overhead; drawing in-graph per step makes the buffer unnecessary.)

PAD (0) and OOV (1) are never drawn, nor are items with zero training support.

Example::

    sampler = PopularitySampler(item_counts, alpha=0.5, n_sample=2048, seed=42)
    batch = sampler(step)          # batch.ids [2048], batch.probability [2048], batch.log_weight [2048]
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import tensorflow as tf

from tfpps.spec.schema import FIRST_ID


class NegativeSample(NamedTuple):
    """One shared draw of negatives.

    ``ids`` int64 ``[n]``; ``probability`` float32 ``[n]``, the normalised
    sampling probability of each drawn item; ``log_weight`` float32 ``[n]``,
    ``alpha * log(support)``, the *unnormalised* log sampling weight, which is
    what the official logQ correction subtracts (``log(P0[y] ** alpha)``).
    """

    ids: tf.Tensor
    probability: tf.Tensor
    log_weight: tf.Tensor


def sampling_weights(item_counts: np.ndarray, alpha: float, first_id: int = FIRST_ID) -> np.ndarray:
    """``support ** alpha`` for items with support > 0 and id >= ``first_id``; 0 elsewhere (float64).

    If no item has support (degenerate data), real items are weighted uniformly.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    eligible = counts > 0
    eligible[:first_id] = False
    if not eligible.any():
        eligible = np.zeros_like(eligible)
        eligible[first_id:] = True
        counts = np.ones_like(counts)
    weights = np.zeros_like(counts)
    weights[eligible] = counts[eligible] ** float(alpha)
    return weights


class PopularitySampler(tf.Module):
    """Draws ``n_sample`` shared negatives per step, ``P(i) ∝ support(i) ** alpha``.

    Args:
      item_counts: ``[num_items]`` training support per item (0 for PAD/OOV).
      alpha: popularity exponent (``sample_alpha``).
      n_sample: number of items per draw.
      seed: run seed; the draw of step ``t`` depends only on ``(seed, t)``.
    """

    def __init__(self, item_counts: np.ndarray, alpha: float, n_sample: int, seed: int = 0, name: str | None = None):
        super().__init__(name=name)
        self.alpha = float(alpha)
        self.n_sample = int(n_sample)
        self.seed = int(seed)
        weights = sampling_weights(item_counts, alpha)
        total = weights.sum()
        cdf = np.cumsum(weights) / total
        last = int(np.flatnonzero(weights)[-1])
        cdf[last:] = 1.0  # uniforms are < 1, so items after the last eligible one are never hit
        self.num_items = len(weights)
        self._cdf = tf.constant(cdf, dtype=tf.float64)
        self._prob = tf.constant(weights / total, dtype=tf.float32)
        counts = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0)
        self._log_weight = tf.constant(self.alpha * np.log(counts), dtype=tf.float32)

    @property
    def probabilities(self) -> tf.Tensor:
        """``[num_items]`` normalised sampling probability of every item."""
        return self._prob

    def log_weight(self, ids: tf.Tensor) -> tf.Tensor:
        """``alpha * log(max(support, 1))`` of ``ids`` (the official logQ term for sampled columns)."""
        return tf.gather(self._log_weight, ids)

    def __call__(self, step, stream=None) -> NegativeSample:
        """The draw of training step ``step``; ``stream`` (e.g. a replica id) folds a further key into the
        seed, so that replicas draw different negatives (None: the plain ``(seed, step)`` stream)."""
        step = tf.cast(step, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        if stream is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(stream, tf.int64))
        u = tf.random.stateless_uniform([self.n_sample], seed=seed, dtype=tf.float64)
        ids = tf.searchsorted(self._cdf, u, side="right", out_type=tf.int64)
        return NegativeSample(ids, tf.gather(self._prob, ids), tf.gather(self._log_weight, ids))
