"""CML: Collaborative Metric Learning, the metric-learning baseline of HLRM.

Cheng-Kang Hsieh, Longqi Yang, Yin Cui, Tsung-Yi Lin, Serge Belongie, Deborah
Estrin. "Collaborative Metric Learning", WWW 2017,
https://doi.org/10.1145/3038912.3052639. Faithful to the CML of Tran et al.'s
code (``deezer/recsys21-hlr`` ``huitre/models/cml.py`` on ``huitre/models/model.py``),
the baseline HLRM is measured against, trained by the same trainer as
:mod:`tfpps.models.metric.hlrm` so the gain of the relation hierarchy is measurable.

Model (``u`` user vector, ``v_i`` item vector, both ``N(0, 1/sqrt(d))``)::

    d(u, i) = ||u - v_i||^2
    loss    = sum_b max(0, d(u_b, i_b) - d(u_b, j_b) + loss_margin)     # j_b: negative of the pair
    after every step: u <- u * clip / max(||u||, clip), same for every v   (clip = 1)
    score(i) = -d(u, i)   for every item (full ranking)

Departures from the original code
---------------------------------
1. **Hsieh et al.'s extras are absent, as in Tran et al.'s CML**: no feature
   projection, no covariance regulariser, one uniform negative per pair (not
   the paper's U = 10-20 negatives with WARP-style rank weighting).
2. **Negatives** are drawn uniformly from the real items (ids >= 2) that are
   not training items of the user, in one exact step
   (:func:`tfpps.data.examples.triplets.sample_negatives`): the distribution of the
   original's loop that draws from all items and re-draws while the item is a
   positive (which never ends for a user who has every item; tfpps then draws
   any item).
3. **Epochs** visit every distinct training pair once in a fresh order (the
   original shuffles the pairs once and its loop ``range(1, n_batches)``
   skips one batch per epoch, so epochs drift through a fixed order).
4. **Model selection** uses the trainer's validation ranking metric
   (``train.valid_metric``, default NDCG@10) with ``train.patience``; the
   original keeps the epoch of lowest validation hinge loss after a fixed
   number of epochs (its ``epoch_tolerate`` is read but unused).
5. **Evaluation** ranks ALL items for every validation/test user with the
   training (and, for test, validation) items masked (the original's
   ``local_rank`` filters them out of a top-(K + |history|) list, the same
   ranking) through tfpps' shared evaluator; its metric definitions are
   RecBole's (see :mod:`tfpps.evaluation.metrics`). NDCG (ideal DCG of
   ``min(|R|, k)`` hits), Precision and Recall equal the original's ("global"
   NDCG; it also reports a "local" one normalised by the hits found in the
   list); two differ: MRR counts the first hit only (the original sums the
   reciprocal ranks of all hits in the top k) and MAP divides by
   ``min(|R|, k)`` (the original by ``k``). The original evaluates 5 cohorts
   of 10,000 sampled users; tfpps all users.
6. **Pretrained / frozen tables** from ``.npy`` files are a tfpps option
   (:mod:`tfpps.models.metric.metric_learning`).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfpps.models.metric.metric_learning import MetricLearningConfig, MetricLearningModel
from tfpps.registry import register


@dataclasses.dataclass
class CMLConfig(MetricLearningConfig):
    """CML hyper-parameters; defaults from ``configs/mvlens/10-core/cml/fo_margin0.5.json``."""

    emb_size: int = 100  # embedding_dim 100
    loss_margin: float = 0.5  # margin 0.5
    clip: float = 1.0  # clip_norm 1.0


@register("cml", CMLConfig)
class CML(MetricLearningModel):
    """CML (Hsieh et al. WWW 2017): users and items in one metric space, hinge loss, unit-norm clipping."""

    def distances(self, features, items) -> tf.Tensor:
        return tf.reduce_sum(tf.math.squared_difference(self.users(features), self.items(items)), axis=1)

    def score_items(self, features) -> tf.Tensor:
        """``[B, num_items]``: ``-||u - v_i||^2`` for every id (PAD/OOV included; the evaluator drops them)."""
        users = self.users(features)
        items = self.item_embedding
        cross = tf.matmul(users, items, transpose_b=True)
        return 2.0 * cross - tf.reduce_sum(tf.square(users), 1, keepdims=True) - tf.reduce_sum(tf.square(items), 1)[None, :]

    def query_vectors(self, features) -> tf.Tensor:
        """``[B, d + 2]`` ``(2u, -1, -||u||^2)`` so that ``query_vectors @ item_vectors^T == score_items``."""
        users = self.users(features)
        ones = tf.ones_like(users[:, :1])
        return tf.concat([2.0 * users, -ones, -tf.reduce_sum(tf.square(users), 1, keepdims=True)], axis=1)

    def item_vectors(self) -> tf.Tensor:
        """``[num_items, d + 2]`` ``(v, ||v||^2, 1)``."""
        items = tf.convert_to_tensor(self.item_embedding)
        return tf.concat([items, tf.reduce_sum(tf.square(items), 1, keepdims=True), tf.ones_like(items[:, :1])], axis=1)

    def call(self, features, training: bool = False) -> tf.Tensor:
        return self.score_items(features)
