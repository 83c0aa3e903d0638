"""The contract every next-item model implements, so one trainer and one evaluator serve all.

A model is a ``tfrs.Model`` (Keras 2) that

* builds its own training ``tf.data.Dataset`` from the dataset directory
  (:meth:`SequentialModel.make_train_dataset`), because faithful training
  differs per model (GRU4Rec's session-parallel mini-batches, NARM's prefix
  augmentation, ...);
* computes its loss in :meth:`compute_loss` (called by ``tfrs.Model.train_step``
  inside a multi-step ``tf.function`` when ``steps_per_execution > 1``);
* scores **all** items for a batch of histories in :meth:`score_items`; the
  evaluator ranks these scores.

Dot-product models may also implement the two optional retrieval methods
:meth:`~SequentialModel.query_vectors` ``[B, d]`` and
:meth:`~SequentialModel.item_vectors` ``[num_items, d]`` with
``score_items(f) == query_vectors(f) @ item_vectors()^T`` (a per-item bias is
folded in as a constant-1 query column against a bias item column). Exported
models (:mod:`tfpps.export`) serve them from a TFRS top-k index;
:func:`has_item_vectors` tells whether a model implements them.

Evaluation features (built by :func:`tfpps.data.examples.prefix.eval_examples`):

``item_ids``   int64 ``[B, L]``: the most recent ``L`` history items, left-aligned, 0-padded at the end
``length``     int64 ``[B]``: number of real items in ``item_ids``
``user_id``    int64 ``[B]``
``target_item`` int64 ``[B]``
"""
from __future__ import annotations

from typing import Any


import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfpps.config import DataConfig
from tfpps.data.dataset_dir import DatasetInfo  # noqa: F401  (models import it from here too)


DEFAULT_SEED = 42  # the default of ``train.seed`` (tfpps.config.TrainConfig)
DEFAULT_MAX_LEN = DataConfig.max_len  # the default of ``data.max_len``


def seed_of(run: Any) -> int:
    """``run.train.seed`` (or ``run.seed`` for a bare train section); :data:`DEFAULT_SEED` when the run
    has none: the one seed default every model uses.

    Example:
      >>> import types
      >>> seed_of(types.SimpleNamespace(train=types.SimpleNamespace(seed=7))), seed_of(object())
      (7, 42)
    """
    seed = getattr(getattr(run, "train", run), "seed", None)
    return DEFAULT_SEED if seed is None else int(seed)


def max_len_of(run: Any, default: int | None = DEFAULT_MAX_LEN) -> int | None:
    """``run.data.max_len``, the one history length every model reads (the most recent items kept);
    ``default`` (:data:`DEFAULT_MAX_LEN`, the config's) when the run has none.

    Example:
      >>> import types
      >>> max_len_of(types.SimpleNamespace(data=types.SimpleNamespace(max_len=20))), max_len_of(None)
      (20, 50)
    """
    max_len = getattr(getattr(run, "data", None), "max_len", None)
    return default if max_len is None else int(max_len)


def replica_id() -> tf.Tensor:
    """This replica's id in the tf.distribute sync group as int64 (0 in one process or outside a replica)."""
    ctx = tf.distribute.get_replica_context()
    return tf.cast(ctx.replica_id_in_sync_group if ctx is not None else 0, tf.int64)


class SequentialModel(tfrs.Model):
    """Base class of next-item models; see the module docstring for the contract."""

    #: Make sparse (IndexedSlices) gradients dense before the all-reduce. TF 2.16's collective all-gather of
    #: IndexedSlices aborted for the product-search models under multiworker ("Shape mismatch in the collective
    #: instance": the workers' row counts differ while its equal-length branch runs); dense all-reduces cost
    #: the whole embedding tables per step, so only models that need it set it. Keras 2's Adam and SGD (those
    #: models' optimizers) decay every row's moments for a sparse gradient too, so the update is the same (a
    #: global-norm clip counts a row looked up twice once, where the sparse gradient counted it twice).
    DENSE_DISTRIBUTED_GRADIENTS: bool = False
    #: Why the model cannot train under ``train.strategy: mirrored | multiworker``, or ``None`` when it can:
    #: its :meth:`make_train_dataset` takes ``input_context`` (a tf.distribute input pipeline: read that file
    #: shard, batch by the per-replica batch, yield the same number of batches on every pipeline).
    DISTRIBUTE_UNSUPPORTED: str | None = "not implemented for this model yet (its training data is not sharded per worker)"
    #: How :meth:`compute_loss` reduces over the batch: ``"mean"`` (the replicas' gradients are divided by their
    #: number, so the all-reduced sum is the gradient of the global-batch mean) or ``"sum"`` (the metric-learning
    #: models' summed hinge loss: the all-reduced sum of the per-replica sums already is the global batch's).
    LOSS_REDUCTION: str = "mean"

    def __init__(self, params: Any, info: DatasetInfo, run: Any, **kwargs):
        super().__init__(**kwargs)
        self.params = params
        self.info = info
        self.run_config = run

    def train_step(self, inputs):
        """``tfrs.Model.train_step``; with several replicas in sync (tf.distribute) the gradient is that of
        ``loss / replicas`` (``loss`` itself when :attr:`LOSS_REDUCTION` is ``"sum"``) plus
        ``regularization / replicas``, so the sum the optimizer all-reduces is the gradient of the
        single-process loss of the global batch (and the logged losses are divided likewise, so Keras' sum
        over replicas logs that loss). With :attr:`DENSE_DISTRIBUTED_GRADIENTS` sparse gradients are
        all-reduced dense."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas == 1:
            return super().train_step(inputs)
        n = float(replicas)
        loss_share = n if self.LOSS_REDUCTION == "mean" else 1.0
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses])
            scaled = loss / loss_share + regularization_loss / n
        gradients = tape.gradient(scaled, self.trainable_variables)
        if self.DENSE_DISTRIBUTED_GRADIENTS:
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        metrics = {metric.name: metric.result() for metric in self.metrics}
        # Keras sums the replicas' logs (reduction "auto" = "sum" off TPU), as it does for its own scaled losses
        metrics.update(loss=loss / loss_share, regularization_loss=regularization_loss / n, total_loss=scaled)
        return metrics

    def step_and_replica(self) -> tuple[tf.Tensor, tf.Tensor]:
        """``(optimizer.iterations or 0, replica id in the sync group)`` as int64: the keys of a training step's
        stateless random draws (a resumed run restores the optimizer's step and so draws the same)."""
        optimizer = getattr(self, "optimizer", None)
        step = tf.constant(0, tf.int64) if optimizer is None else tf.cast(optimizer.iterations, tf.int64)
        return step, replica_id()

    @classmethod
    def make_train_dataset(cls, params: Any, data: Any, run: Any, epoch_seed: int) -> tf.data.Dataset:
        """Training examples for one epoch. ``data`` is a :class:`tfpps.data.dataset_dir.DatasetDir`."""
        raise NotImplementedError

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        raise NotImplementedError

    def score_items(self, features) -> tf.Tensor:
        """Scores ``[B, num_items]`` of every item for each history in ``features``."""
        raise NotImplementedError

    def query_vectors(self, features) -> tf.Tensor:
        """Optional: ``[B, d]`` query vectors with ``score_items(features) == query_vectors(features) @ item_vectors()^T``."""
        raise NotImplementedError(f"{type(self).__name__} is not a dot-product model")

    def item_vectors(self) -> tf.Tensor:
        """Optional: ``[num_items, d]`` item vectors (row = vocabulary index, PAD/OOV rows included)."""
        raise NotImplementedError(f"{type(self).__name__} is not a dot-product model")


class NonNeuralModel:
    """Base class of the models fitted in one pass, without gradients (popularity, KNN, BM25).

    Register with ``family=registry.NONNEURAL``. The trainer calls :meth:`fit_data` once on the
    training split instead of ``fit``; the evaluator, ``tfpps.evaluate`` (which refits: no weights are
    saved) and the exports call :meth:`score_items` as for a neural model.
    """

    def __init__(self, params: Any, info: DatasetInfo, run: Any):
        self.params, self.info, self.run_config = params, info, run

    def fit_data(self, data: Any) -> None:
        """Learn from ``data`` (a :class:`tfpps.data.dataset_dir.DatasetDir`): one pass over its training split."""
        raise NotImplementedError

    def score_items(self, features) -> tf.Tensor:
        """Scores ``[B, num_items]`` of every item for each example in ``features``."""
        raise NotImplementedError


def has_item_vectors(model: Any) -> bool:
    """True when ``model`` (an instance or a class) implements :meth:`SequentialModel.query_vectors` and
    :meth:`SequentialModel.item_vectors`."""
    cls = model if isinstance(model, type) else type(model)
    for name in ("query_vectors", "item_vectors"):
        method = getattr(cls, name, None)
        if method is None or method is getattr(SequentialModel, name):
            return False
    return True
