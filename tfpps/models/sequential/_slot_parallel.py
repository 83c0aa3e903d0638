"""What GRU4Rec and HRNN share: training on a slot-parallel schedule (session- or user-parallel).

A batch is ``train.batch_size`` parallel slots, each walking its own sessions in time order; the
recurrent states live in non-trainable variables from step to step and ``features["valid"]`` marks
the slots that hold data this step. :class:`SlotParallelModel` holds what such models do alike: the
constructor's preamble, the untraced Keras steps, the per-event loss log and ``call``.

Under tf.distribute each replica walks its own schedule of ``batch_size / replicas`` slots
(:attr:`SlotParallelModel.slots`; :func:`tfpps.data.examples.session_parallel.replica_dataset`). The
recurrent states are sync-on-read variables (:meth:`SlotParallelModel.state_variable`): every replica keeps
its own copy, uses its first ``slots`` rows, and a checkpoint saves the first replica's, in the
``[batch_size, units]`` shape a single process has, so weights move between strategies.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfpps.config import ConfigError
from tfpps.models.base import DatasetInfo, SequentialModel, replica_id, seed_of


def train_section(run: Any) -> Any:
    """``run.train``, or ``run`` itself when given a bare train section."""
    return getattr(run, "train", run)


class SlotParallelModel(SequentialModel):
    """Base of the slot-parallel recurrent models; see the module docstring."""

    def __init__(self, params: Any, info: DatasetInfo, run: Any, **kwargs):
        super().__init__(params, info, run, **kwargs)
        params.validate()
        self.batch_size = int(train_section(run).batch_size)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.batch_size % replicas:
            raise ConfigError(f"train.batch_size={self.batch_size}: must be a multiple of the {replicas} replicas in "
                              "sync (each walks batch_size / replicas slots)")
        #: slots of one replica's schedule: ``batch_size`` in one process, ``batch_size / replicas`` distributed
        self.slots = self.batch_size // replicas
        self.seed = seed_of(run)
        self.num_items = int(info.num_items)

    def state_variable(self, name: str, shape, dtype=tf.float32) -> tf.Variable:
        """A non-trainable step-to-step variable (recurrent state, step counter) that every replica keeps for
        itself (sync on read; reads and checkpoints outside a replica see the first replica's)."""
        return self.add_weight(name, shape, dtype=dtype, initializer="zeros", trainable=False,
                               synchronization=tf.VariableSynchronization.ON_READ,
                               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def seed_key(self, salt: int) -> tf.Tensor:
        """int64 ``seed + salt`` keying a step's random masks; distributed, plus 7,919 x the replica's id so
        the replicas' masks differ (one process: unchanged)."""
        key = tf.constant(self.seed + salt, tf.int64)
        if self.slots < self.batch_size:
            key += 7_919 * replica_id()
        return key

    def own_rows(self, state: tf.Variable) -> tf.Tensor:
        """The rows of ``state`` this replica's slots use (all of them in one process)."""
        return state if self.slots == self.batch_size else state[: self.slots]

    def set_own_rows(self, state: tf.Variable, value: tf.Tensor) -> None:
        """Write ``value`` (``[slots, ...]``) into this replica's rows of ``state``."""
        if self.slots == self.batch_size:
            state.assign(value)
        else:
            state.assign(tf.concat([value, state[self.slots :]], axis=0))

    # The steps have no tensor-dependent Python control flow, so AutoGraph is not
    # needed; converting the model, TFRS and Keras internals cost ~10-30 s of
    # tracing on CPU, versus <1 s unconverted.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, inputs):
        return super().train_step(inputs)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, inputs):
        return super().test_step(inputs)

    def log_slot_loss(self, loss: tf.Tensor, valid: tf.Tensor) -> None:
        """Add one step to ``self.loss_per_event`` (the epoch's loss per training event, comparable across
        batch sizes): ``loss`` is the sum over the ``valid`` slots divided by the replica's nominal slots."""
        n = tf.reduce_sum(tf.cast(valid, loss.dtype))
        self.loss_per_event.update_state(tf.math.divide_no_nan(loss * self.slots, n), sample_weight=n)

    def call(self, features, training=False):
        return self.score_items(features)
