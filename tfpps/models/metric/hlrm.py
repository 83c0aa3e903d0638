"""HLRM (HLR-E): Hierarchical Latent Relation Modeling for collaborative metric learning.

Viet-Anh Tran, Guillaume Salha-Galvan, Romain Hennequin, Manuel Moussallam.
"Hierarchical Latent Relation Modeling for Collaborative Metric Learning",
RecSys 2021, https://doi.org/10.1145/3460231.3474230, arXiv:2108.04655.
Faithful to the authors' code ``deezer/recsys21-hlr`` (TF 1.15): class
``HLRE`` in ``huitre/models/hiers/hlr.py`` on ``AttRAM``
(``huitre/models/hiers/attram.py``) and ``Model`` (``huitre/models/model.py``);
data from ``huitre/data/{sampler,splitter}.py`` and
``huitre/data/generators/generator.py``; defaults from
``configs/mvlens/10-core/hlre/fo_margin0.2.json``. Nothing is copied.

Model (``u`` user vector, ``v_i`` item vector, ``K [d, M]`` keys,
``Mem [M, d]`` memory slots; every table ``N(0, 1/sqrt(d))``)::

    refs(u)     = [u ; v_h1 ; ... ; v_hn]        # the user and up to max_num_prefs of its items
    rel_p(i)    = softmax((v_i * refs_p) K) Mem  # level 1: key-addressed memory read on Hadamard products
    a_p(i)      = exp<rel_p(i), u> / (sum_q exp<rel_q(i), u>)^beta   over the real references
    r(u, i)     = sum_p a_p(i) rel_p(i)          # level 2: attention over the n + 1 relations
    d(u, i)     = ||u + r(u, i) - v_i||^2        # translation distance (TransE-style, the "E" of HLR-E)
    loss        = sum_b max(0, d(u_b, i_b) - d(u_b, j_b) + loss_margin)
    after every step: user and item rows clipped to L2 norm <= clip (K, Mem too with clip_ram)
    score(i)    = -d(u, i)   for every item

The negative ``j`` gets its own relation ``r(u, j)`` (the original's
``copy: false``; ``copy: true`` reuses the positive's). During training the
history of an example is up to ``max_num_prefs`` of the user's OTHER training
items, a fresh uniform subset each time when there are more (the original's
``pref_items[uid] - {iid}``); at evaluation it is the example's history
(``item_ids``: the training items for validation, training + validation items
for test, as the original's ``train`` / ``train+valid`` reference sets).
Layers: :class:`tfpps.layers.relation_memory.RelationMemory`; triplets:
:mod:`tfpps.data.examples.triplets`; shared CML parts: :mod:`tfpps.models.metric.metric_learning`.

Departures from the original code
---------------------------------
1. **History subset at evaluation is deterministic**: when a history has more
   than ``max_num_prefs`` items the original draws a new random subset with
   ``np.random.choice`` on every scoring call; tfpps keeps the items with the
   largest keyed hash of (user, item), a fixed uniform subset, so validation
   and test are reproducible. The history visible to the model is the last
   ``data.max_len`` items of the example (``configs/datasets/ml-100k-fo.yaml``
   sets ``max_len`` above every user's history). Histories of non-``fo``
   datasets may repeat an item; the original's are sets.
2. **Full-ranking scores are computed per user in a factorised form**
   (:meth:`RelationMemory.relations_for_all_items`), the same numbers as the
   original's ``[users, items, refs, d]`` tensors without materialising them.
3. **Attention** subtracts the maximum logit before exponentiating (the
   original exponentiates raw logits; same value, no overflow).
4. **Negatives, epochs, model selection, evaluation metrics, pretrained
   tables**: as :mod:`tfpps.models.metric.cml` departures 2-6 (negatives uniform
   over the user's non-positive items, drawn exactly in one step; each pair
   once per epoch in a fresh order; selection on validation NDCG@10 with
   ``train.patience`` instead of the lowest validation hinge loss; full-ranking
   RecBole-definition metrics over all users, history masked; ``.npy``
   pretrained/frozen tables).
5. **Not ported**: the ``diff_ram`` variant (a second memory for the
   user-item relation), inverse-popularity history sampling
   (``pref_sampling``), and ``n_negatives > 1`` (the original's distance code
   only supports one negative per pair).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfpps.config import non_negative, positive
from tfpps.spec.schema import PAD_ID
from tfpps.data.examples.triplets import subsample_history
from tfpps.layers.relation_memory import RelationMemory
from tfpps.models.metric.metric_learning import MetricLearningConfig, MetricLearningModel
from tfpps.registry import register
from tfpps.tasks.hinge import hinge_loss


@dataclasses.dataclass
class HLRMConfig(MetricLearningConfig):
    """HLR-E hyper-parameters; defaults from ``configs/mvlens/10-core/hlre/fo_margin0.2.json`` (ML-20M)."""

    emb_size: int = 100  # embedding_dim 100
    loss_margin: float = 0.2  # margin 0.2
    clip: float = 1.0  # clip_norm 1.0
    num_relations: int = 20  # num_memories 20: memory slots (latent relations)
    max_num_prefs: int = 50  # max_num_prefs 50: history items the relations are read against
    beta: float = 1.0  # beta 1.0: exponent of the attention normaliser
    copy: bool = False  # copy false: negatives get their own relation
    clip_ram: bool = False  # clip_ram (default false): also clip keys and memory slots to norm <= clip

    def validate(self) -> None:
        super().validate()
        positive(self, "num_relations", "beta")
        non_negative(self, "max_num_prefs")


def history_keys(users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    """A fixed pseudo-random float in ``[0, 1)`` per (user, item): which history items a long history keeps."""
    h = tf.cast(users, tf.int64)[:, None] * 2654435761 + tf.cast(items, tf.int64) * 40503 + 12345
    h = tf.bitwise.bitwise_and(h, 0xFFFFFFFF)
    h = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 15)) * 0x2C1B3C6D, 0xFFFFFFFF)
    h = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 12)) * 0x297A2D39, 0xFFFFFFFF)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 15))
    return tf.cast(tf.bitwise.bitwise_and(h, 0xFFFFFF), tf.float32) / float(1 << 24)


@register("hlrm", HLRMConfig)
class HLRM(MetricLearningModel):
    """HLR-E (Tran et al. RecSys 2021): memory-read relations over the user's history, attention, ||u + r - i||^2."""

    def __init__(self, params: HLRMConfig, info, run, **kwargs):
        super().__init__(params, info, run, **kwargs)
        self.memory = RelationMemory(params.num_relations, params.emb_size, seed=self.seed + 2, name="relation_memory")

    @classmethod
    def history_size(cls, params) -> int:
        return params.max_num_prefs

    def clipped_variables(self) -> list:
        extra = [self.memory.keys, self.memory.memories] if self.params.clip_ram else []
        return super().clipped_variables() + extra

    # ------------------------------------------------------------------ references
    def references(self, features) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``(users [B, d], refs [B, 1 + P, d], mask [B, 1 + P])``: the user, then up to ``max_num_prefs`` history items.

        ``features["item_ids"] [B, L]`` (left-aligned, 0-padded) holds
        ``features["length"]`` real items; training triplets already hold at
        most ``max_num_prefs``; longer evaluation histories keep a fixed subset
        (:func:`history_keys`).
        """
        users = self.users(features)
        ids = tf.cast(features["item_ids"], tf.int64)
        length = tf.minimum(tf.cast(features["length"], tf.int64), tf.shape(ids, out_type=tf.int64)[1])
        real = tf.range(tf.shape(ids, out_type=tf.int64)[1])[None, :] < length[:, None]
        if self.params.max_num_prefs == 0:
            ids, length = ids[:, :0], tf.zeros_like(length)
        else:
            keys = history_keys(features["user_id"], ids)
            ids, length = subsample_history(ids, tf.logical_and(real, ids != PAD_ID), keys, self.params.max_num_prefs)
        refs = tf.concat([users[:, None, :], self.items(ids)], axis=1)
        mask = tf.range(tf.shape(refs)[1], dtype=tf.int64)[None, :] <= length[:, None]  # the user's own relation always
        return users, refs, mask

    def relation(self, users, refs, mask, items: tf.Tensor) -> tf.Tensor:
        """``r(u, i) [B, d]`` for item vectors ``items [B, d]``."""
        return self.memory.attended(items, refs, users, mask, self.params.beta)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        users, refs, mask = self.references(features)
        pos = self.items(features["positive_item"])
        neg = self.items(features["negative_item"])
        pos_rel = self.relation(users, refs, mask, pos)
        neg_rel = pos_rel if self.params.copy else self.relation(users, refs, mask, neg)
        pos_d = tf.reduce_sum(tf.math.squared_difference(users + pos_rel, pos), axis=1)
        neg_d = tf.reduce_sum(tf.math.squared_difference(users + neg_rel, neg), axis=1)
        return hinge_loss(pos_d, neg_d, self.params.loss_margin)

    def distances(self, features, items) -> tf.Tensor:
        users, refs, mask = self.references(features)
        vectors = self.items(items)
        return tf.reduce_sum(tf.math.squared_difference(users + self.relation(users, refs, mask, vectors), vectors), axis=1)

    # ------------------------------------------------------------------ ranking
    def score_items(self, features) -> tf.Tensor:
        """``[B, num_items]``: ``-||u + r(u, i) - v_i||^2`` for every id (PAD/OOV included; the evaluator drops them)."""
        users, refs, mask = self.references(features)
        items = tf.convert_to_tensor(self.item_embedding)

        def one_user(args):
            user, ref, m = args
            rel = self.memory.relations_for_all_items(user, ref, m, items, self.params.beta)
            return -tf.reduce_sum(tf.square(user[None, :] + rel - items), axis=1)

        return tf.map_fn(one_user, (users, refs, mask), fn_output_signature=tf.float32, parallel_iterations=4)

    def call(self, features, training: bool = False) -> tf.Tensor:
        return self.score_items(features)
