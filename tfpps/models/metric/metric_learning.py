"""What collaborative metric-learning models share: embeddings, norm clipping, triplets, hinge loss.

Used by :mod:`tfpps.models.metric.cml` and :mod:`tfpps.models.metric.hlrm`; the behaviour
follows ``deezer/recsys21-hlr`` ``huitre/models/model.py``:

* user and item tables ``N(0, 1/sqrt(d))`` (standard deviation);
* loss ``sum_b max(0, d(u, i+) - d(u, i-) + loss_margin)``
  (:func:`tfpps.tasks.hinge.hinge_loss`) with one negative per positive pair,
  re-drawn away from the user's training items (:mod:`tfpps.data.examples.triplets`);
* after EVERY optimizer step each user and item row is clipped to L2 norm
  ``<= clip`` (the original's ``_clip_by_norm_op`` runs after
  ``optimizer.minimize`` under a control dependency): :meth:`train_step`
  applies the gradients, then clips;
* ranking score ``-d(u, i)`` for every item (:meth:`score_items`).

tfpps additions (not in the original code): tables can start from a ``.npy``
file (``pretrained_user_embeddings`` / ``pretrained_item_embeddings``, rows in
the dataset's vocabulary order, shape ``[vocabulary size, emb_size]``) and be
frozen (``freeze_embeddings``: the loaded tables are not trained nor clipped).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

import tensorflow as tf

from tfpps.config import REPO_ROOT, ConfigError, non_negative, positive
from tfpps.data.dataset_dir import cached
from tfpps.data.examples.triplets import UserItems, shard_pairs, triplet_dataset
from tfpps.data.pipeline import replica_epoch
from tfpps.models.base import DatasetInfo, SequentialModel, seed_of
from tfpps.tasks.hinge import hinge_loss


@dataclasses.dataclass
class MetricLearningConfig:
    """Options every metric-learning model has (defaults: CML on ML-20M in ``deezer/recsys21-hlr``)."""

    emb_size: int = 100  # embedding_dim
    loss_margin: float = 0.5  # margin of the hinge loss
    clip: float = 1.0  # clip_norm: max L2 norm of user/item rows after every step; 0 = no clipping
    pretrained_user_embeddings: str = ""  # .npy [num_users, emb_size] to start the user table from
    pretrained_item_embeddings: str = ""  # .npy [num_items, emb_size] to start the item table from
    freeze_embeddings: bool = False  # keep the tables loaded from files fixed

    def validate(self) -> None:
        positive(self, "emb_size")
        non_negative(self, "loss_margin", "clip")
        if self.freeze_embeddings and not (self.pretrained_user_embeddings or self.pretrained_item_embeddings):
            raise ConfigError(
                "model_params.freeze_embeddings=true needs pretrained_user_embeddings or pretrained_item_embeddings"
            )


def _resolve(path: str) -> Path:
    p = Path(os.path.expanduser(path))
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def load_pretrained(path: str, rows: int, dim: int, name: str) -> np.ndarray:
    """A ``[rows, dim]`` float32 table from a ``.npy`` file; one-line :class:`ConfigError` otherwise."""
    file = _resolve(path)
    if not file.exists():
        raise ConfigError(f"model_params.{name}={path!r}: file not found")
    try:
        table = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model_params.{name}={path!r}: not a .npy array ({type(exc).__name__})") from None
    if table.shape != (rows, dim):
        raise ConfigError(f"model_params.{name}={path!r}: shape {table.shape}, expected ({rows}, {dim}) (vocabulary x emb_size)")
    return table.astype(np.float32)


class MetricLearningModel(SequentialModel):
    """Base of CML-style models: subclasses define :meth:`distances` and :meth:`score_items`."""

    DISTRIBUTE_UNSUPPORTED = None  # stateless triplets: trains under mirrored / multiworker
    LOSS_REDUCTION = "sum"  # the original's hinge loss sums over the batch
    DENSE_DISTRIBUTED_GRADIENTS = True  # HLRM's history rows differ between workers (see the base class)

    def __init__(self, params: MetricLearningConfig, info: DatasetInfo, run, **kwargs):
        super().__init__(params, info, run, **kwargs)
        params.validate()
        self.seed = seed_of(run)
        d = params.emb_size
        self.user_embedding = self._table("user_embedding", info.num_users, params.pretrained_user_embeddings, 0)
        self.item_embedding = self._table("item_embedding", info.num_items, params.pretrained_item_embeddings, 1)
        self._clipped = [t for t in (self.user_embedding, self.item_embedding) if t.trainable]
        self.dim = d

    def _table(self, name: str, rows: int, path: str, k: int) -> tf.Variable:
        d = self.params.emb_size
        if path:
            table = load_pretrained(path, rows, d, f"pretrained_{name}s")
            init = tf.keras.initializers.Constant(table)
            trainable = not self.params.freeze_embeddings
        else:
            init = tf.keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(d), seed=self.seed + k)
            trainable = True
        return self.add_weight(name, shape=(rows, d), initializer=init, trainable=trainable)

    # ------------------------------------------------------------------ data
    @classmethod
    def history_size(cls, params) -> int:
        """History items each training triplet carries (0: none)."""
        return 0

    @classmethod
    def make_train_dataset(cls, params, data, run, epoch_seed: int,
                           input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Every distinct (user, training item) pair once per epoch with a negative (see :mod:`tfpps.data.examples.triplets`).

        With an ``input_context`` (tf.distribute) this input pipeline takes every ``n``-th pair
        (:func:`~tfpps.data.examples.triplets.shard_pairs`) and batches by the per-replica batch, as many
        batches as every pipeline has (:func:`~tfpps.data.pipeline.replica_epoch`). Every worker reads the
        whole training split once to know each user's items (negatives avoid all of them)."""
        user_items = cached(data, "user_items", lambda: UserItems.from_dataset(data))  # one pass per process
        if input_context is None:
            return triplet_dataset(user_items, run.train.batch_size, epoch_seed, cls.history_size(params))
        pipelines, num_pairs = input_context.num_input_pipelines, len(user_items.items)
        shard = (input_context.input_pipeline_id, pipelines)
        return replica_epoch(
            user_items,
            lambda ui, per_replica: triplet_dataset(ui, per_replica, epoch_seed, cls.history_size(params), shard=shard),
            run.train.batch_size,
            input_context,
            lambda ctx: len(shard_pairs(num_pairs, (ctx.input_pipeline_id, pipelines))),
        )

    # ------------------------------------------------------------------ training
    def clipped_variables(self) -> list:
        """Tables whose rows are clipped to norm ``clip`` after every step."""
        return list(self._clipped)

    def clip_embeddings(self) -> None:
        """Clip the rows of :meth:`clipped_variables` to norm ``clip``. Under tf.distribute the (mirrored)
        tables are clipped once, in cross-replica context, to the same value on every replica."""
        if self.params.clip <= 0:
            return

        def clip(*_strategy):
            for var in self.clipped_variables():
                var.assign(tf.clip_by_norm(var, self.params.clip, axes=[1]))

        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context() is False:
            tf.distribute.get_replica_context().merge_call(clip)
        else:
            clip()

    def train_step(self, inputs):
        logs = super().train_step(inputs)  # tfrs: loss, gradients, apply_gradients
        self.clip_embeddings()  # ordered after the update: same variables, program order in tf.function
        return logs

    def distances(self, features, items: tf.Tensor) -> tf.Tensor:
        """``[B]`` distances of each example's user (and history) to ``items [B]``."""
        raise NotImplementedError

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        pos = self.distances(features, features["positive_item"])
        neg = self.distances(features, features["negative_item"])
        return hinge_loss(pos, neg, self.params.loss_margin)

    def users(self, features) -> tf.Tensor:
        return tf.gather(self.user_embedding, tf.cast(features["user_id"], tf.int64))

    def items(self, ids) -> tf.Tensor:
        return tf.gather(self.item_embedding, tf.cast(ids, tf.int64))
