"""Latent relation memory and the attention over relations of HLR (Tran et al., RecSys 2021).

Level 1, key-addressed memory read (LRML's memory, Tay et al. WWW 2018, as
HLR uses it; ``deezer/recsys21-hlr`` ``huitre/models/hiers/attram.py``
``_lram``): for a target item vector :math:`t` and a reference vector
:math:`x` (the user, or one of the user's items)

.. math:: s = \\mathrm{softmax}\\big((t \\odot x)\\, K\\big) \\in \\mathbb{R}^{M}, \\qquad
          \\mathrm{rel}(t, x) = s\\, \\mathcal{M} \\in \\mathbb{R}^{d}

with the key matrix :math:`K \\in \\mathbb{R}^{d \\times M}` and the memory
slots :math:`\\mathcal{M} \\in \\mathbb{R}^{M \\times d}`, both initialised
:math:`\\mathcal{N}(0, 1/\\sqrt d)` (standard deviation) as in the original.

Level 2, attention over the relations of references :math:`x_0 = u` (the
user) and :math:`x_1..x_n` (history items; ``attram.py``
``_attentive_vectors``):

.. math:: a_p = \\frac{\\exp\\langle \\mathrm{rel}_p, u\\rangle}{\\big(\\sum_{q \\le n} \\exp\\langle \\mathrm{rel}_q, u\\rangle\\big)^{\\beta}},
          \\qquad r = \\sum_{p \\le n} a_p\\, \\mathrm{rel}_p

over the real references only (padding masked); :math:`\\beta = 1` is a
softmax (computed stably, with the maximum subtracted; the original
exponentiates the raw logits, which is the same number).

For full ranking (:meth:`RelationMemory.relations_for_all_items`) the
relation of every item is computed without materialising the
``[items, references, d]`` Hadamard products: because
:math:`\\langle s\\mathcal M, u\\rangle = s\\,(\\mathcal M u)` and
:math:`\\sum_p a_p s_p \\mathcal M = (\\sum_p a_p s_p)\\mathcal M`, one user
costs one ``[N, d] x [d, (n+1) M]`` product plus ``O(N n M)`` work.

Example:
  >>> layer = RelationMemory(num_memories=3, dim=2, seed=0)
  >>> rel = layer(tf.ones([4, 2]), tf.ones([4, 5, 2]))   # 4 targets, 5 references each
  >>> tuple(rel.shape)
  (4, 5, 2)
"""
from __future__ import annotations

import math

import tensorflow as tf


def attend(relations: tf.Tensor, users: tf.Tensor, mask: tf.Tensor, beta: float = 1.0) -> tf.Tensor:
    """Level 2: ``r = sum_p a_p rel_p`` with ``a`` the (``beta``-)softmax of ``<rel_p, u>`` over the ``mask``-ed references.

    Args:
      relations: ``[..., P, d]``.
      users: ``[..., d]`` (broadcast against ``relations`` without its ``P`` axis).
      mask: bool ``[..., P]``; every row needs at least one true entry (the user's own relation).
      beta: exponent of the normaliser (the original's ``beta``; 1 = softmax).

    Returns ``[..., d]``.
    """
    logits = tf.reduce_sum(relations * users[..., None, :], axis=-1)
    weights = masked_attention(logits, mask, beta)
    return tf.reduce_sum(relations * weights[..., None], axis=-2)


def masked_attention(logits: tf.Tensor, mask: tf.Tensor, beta: float = 1.0) -> tf.Tensor:
    """``exp(w_p) / (sum_{q in mask} exp(w_q))^beta`` on the masked entries, 0 elsewhere (last axis)."""
    mask = tf.cast(mask, tf.bool)
    neg_inf = tf.constant(-math.inf, logits.dtype)
    masked = tf.where(mask, logits, neg_inf)
    top = tf.stop_gradient(tf.reduce_max(masked, axis=-1, keepdims=True))
    top = tf.where(tf.math.is_finite(top), top, tf.zeros_like(top))
    exp = tf.where(mask, tf.exp(masked - top), tf.zeros_like(logits))
    total = tf.reduce_sum(exp, axis=-1, keepdims=True)
    weights = exp / tf.maximum(total, tf.keras.backend.epsilon())
    if beta != 1.0:  # exp(w) / S^beta = softmax(w) * S^(1 - beta), with S = exp(top) * total
        weights = weights * tf.exp((1.0 - beta) * (top + tf.math.log(tf.maximum(total, tf.keras.backend.epsilon()))))
    return weights


class RelationMemory(tf.keras.layers.Layer):
    """Level 1: ``rel(t, x) = softmax((t * x) K) M`` (see the module docstring).

    Args:
      num_memories: ``M``, the number of memory slots (the original's ``num_memories``).
      dim: ``d``, the embedding size.
      seed: initialiser seed.
    """

    def __init__(self, num_memories: int, dim: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_memories, self.dim, self.seed = int(num_memories), int(dim), seed
        init = lambda k: tf.keras.initializers.RandomNormal(  # noqa: E731
            stddev=1.0 / math.sqrt(self.dim), seed=None if seed is None else seed + k
        )
        self.keys = self.add_weight("key_matrix", shape=(self.dim, self.num_memories), initializer=init(0))
        self.memories = self.add_weight("memories", shape=(self.num_memories, self.dim), initializer=init(1))

    def addresses(self, targets: tf.Tensor, references: tf.Tensor) -> tf.Tensor:
        """``s = softmax((t * x) K)``: ``targets [..., d]`` against ``references [..., P, d]`` -> ``[..., P, M]``."""
        keys = targets[..., None, :] * references
        return tf.nn.softmax(tf.einsum("...pd,dm->...pm", keys, self.keys), axis=-1)

    def call(self, targets: tf.Tensor, references: tf.Tensor) -> tf.Tensor:
        """Relations ``[..., P, d]`` of ``targets [..., d]`` with each of ``references [..., P, d]``."""
        return tf.einsum("...pm,md->...pd", self.addresses(targets, references), self.memories)

    def attended(
        self, targets: tf.Tensor, references: tf.Tensor, users: tf.Tensor, mask: tf.Tensor, beta: float = 1.0
    ) -> tf.Tensor:
        """Both levels at once: ``attend(self(targets, references), users, mask, beta)`` ``[..., d]``.

        Computed from the addresses alone (``<s M, u> = s . (M u)`` and
        ``sum_p a_p s_p M = (sum_p a_p s_p) M``), without the ``[..., P, d]`` relations.
        """
        s = self.addresses(targets, references)  # [..., P, M]
        memory_user = tf.einsum("md,...d->...m", self.memories, users)  # [..., M]
        weights = masked_attention(tf.einsum("...pm,...m->...p", s, memory_user), mask, beta)
        return tf.einsum("...m,md->...d", tf.einsum("...p,...pm->...m", weights, s), self.memories)

    def relations_for_all_items(
        self, user: tf.Tensor, references: tf.Tensor, mask: tf.Tensor, items: tf.Tensor, beta: float = 1.0
    ) -> tf.Tensor:
        """HLR's attended relation ``r [N, d]`` of ONE user with every item of ``items [N, d]``.

        Equal to ``attend(self(items, references[None]), user, mask, beta)``
        (``references [P, d]``, ``mask [P]``, ``user [d]``) without its
        ``[N, P, d]`` intermediates (see the module docstring).
        """
        scaled = references[:, :, None] * self.keys[None, :, :]  # [P, d, M]: diag(x_p) K
        p = tf.shape(references)[0]
        logits = tf.matmul(items, tf.reshape(tf.transpose(scaled, [1, 0, 2]), [self.dim, -1]))  # [N, P * M]
        s = tf.nn.softmax(tf.reshape(logits, [-1, p, self.num_memories]), axis=-1)  # [N, P, M]
        memory_user = tf.linalg.matvec(self.memories, user)  # [M]: <rel, u> = s . (M u)
        weights = masked_attention(tf.linalg.matvec(s, memory_user), tf.broadcast_to(mask, tf.shape(s)[:2]), beta)
        mixed = tf.einsum("np,npm->nm", weights, s)
        return tf.matmul(mixed, self.memories)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_memories": self.num_memories, "dim": self.dim, "seed": self.seed}
