"""What GRU4Rec and HRNN share: training on a slot-parallel schedule (session- or user-parallel).

A batch is ``train.batch_size`` parallel slots, each walking its own sessions in time order; the
recurrent states live in non-trainable variables from step to step and ``features["valid"]`` marks
the slots that hold data this step. :class:`SlotParallelModel` holds what such models do alike: the
constructor's preamble, the untraced Keras steps, the per-event loss log and ``call``.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfpps.models.base import DatasetInfo, SequentialModel, seed_of


def train_section(run: Any) -> Any:
    """``run.train``, or ``run`` itself when given a bare train section."""
    return getattr(run, "train", run)


class SlotParallelModel(SequentialModel):
    """Base of the slot-parallel recurrent models; see the module docstring."""

    def __init__(self, params: Any, info: DatasetInfo, run: Any, **kwargs):
        super().__init__(params, info, run, **kwargs)
        params.validate()
        self.batch_size = int(train_section(run).batch_size)
        self.seed = seed_of(run)
        self.num_items = int(info.num_items)

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
        batch sizes): ``loss`` is the sum over the ``valid`` slots divided by the nominal batch size."""
        n = tf.reduce_sum(tf.cast(valid, loss.dtype))
        self.loss_per_event.update_state(tf.math.divide_no_nan(loss * self.batch_size, n), sample_weight=n)

    def call(self, features, training=False):
        return self.score_items(features)
