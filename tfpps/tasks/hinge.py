"""Triplet hinge loss of collaborative metric learning (Hsieh et al. WWW 2017; Tran et al. RecSys 2021).

.. math:: L = \\sum_b \\max(0,\\; d(u_b, i_b) - d(u_b, j_b) + m)

with :math:`d` the (squared Euclidean) distance of user :math:`u_b` to its
positive item :math:`i_b` and to a negative item :math:`j_b`, and margin
:math:`m`. As in ``deezer/recsys21-hlr`` (``huitre/models/model.py``,
``_create_loss``) the batch loss is the **sum** over the batch, not the mean.

Example:
  >>> hinge_loss([0.5, 2.0], [1.0, 1.0], margin=0.2).numpy().round(4)   # max(0, -0.3) + max(0, 1.2)
  1.2
"""
from __future__ import annotations

import tensorflow as tf


def hinge_loss(pos_distances, neg_distances, margin: float, reduction: str = "sum") -> tf.Tensor:
    """``sum_b max(0, pos_b - neg_b + margin)`` (``reduction="sum"``), ``"mean"``, or per example (``"none"``)."""
    pos = tf.convert_to_tensor(pos_distances, tf.float32)
    neg = tf.convert_to_tensor(neg_distances, tf.float32)
    losses = tf.nn.relu(pos - neg + margin)
    if reduction == "sum":
        return tf.reduce_sum(losses)
    if reduction == "mean":
        return tf.reduce_mean(losses)
    if reduction == "none":
        return losses
    raise ValueError(f"reduction={reduction!r}: expected sum, mean or none")
