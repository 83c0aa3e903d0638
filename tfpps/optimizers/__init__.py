"""Optimizers for :class:`tfpps.config.TrainConfig` (Keras 2): the factory :func:`make_optimizer`, the linear
learning-rate decay, and GRU4Rec's Adagrad with momentum (:mod:`tfpps.optimizers.adagrad_momentum`)."""
from __future__ import annotations

import tensorflow as tf


class LinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """``lr * max(floor, 1 - step / total_steps)``: the official HEM code's per-step linear decay
    (``learning_rate * max(0.0001, 1.0 - words_done / total_words)``)."""

    def __init__(self, learning_rate: float, total_steps: int, floor: float = 1e-4):
        self.learning_rate, self.total_steps, self.floor = float(learning_rate), max(1, int(total_steps)), float(floor)

    def __call__(self, step):
        done = tf.cast(step, tf.float32) / float(self.total_steps)
        return self.learning_rate * tf.maximum(self.floor, 1.0 - done)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps, "floor": self.floor}


def make_optimizer(train_cfg, total_steps: int | None = None) -> tf.keras.optimizers.Optimizer:
    """Build the optimizer named by ``train_cfg.optimizer``.

    ``adagrad_momentum`` is GRU4Rec's official optimizer (Adagrad with
    Nesterov-style momentum and sparse row updates); the others are the Keras
    ones. With ``lr_decay: linear`` the rate decays linearly to 1e-4 of its
    start over ``total_steps`` (:class:`LinearDecay`). Legacy (v1) Keras optimizers are used because they keep embedding
    updates sparse (``IndexedSlices``) on CPU and GPU.
    """
    kwargs = {}
    if train_cfg.clipnorm > 0:
        kwargs["global_clipnorm"] = train_cfg.clipnorm
    name, lr = train_cfg.optimizer, train_cfg.learning_rate
    if getattr(train_cfg, "lr_decay", "none") == "linear":
        if not total_steps:
            raise ValueError("train.lr_decay=linear needs the number of training steps")
        lr = LinearDecay(lr, total_steps)
    legacy = tf.keras.optimizers.legacy
    if name == "adam":
        return legacy.Adam(learning_rate=lr, **kwargs)
    if name == "adagrad":
        return legacy.Adagrad(learning_rate=lr, **kwargs)
    if name == "sgd":
        return legacy.SGD(learning_rate=lr, momentum=train_cfg.momentum, **kwargs)
    if name == "adagrad_momentum":
        from tfpps.optimizers.adagrad_momentum import AdagradMomentum

        return AdagradMomentum(learning_rate=lr, momentum=train_cfg.momentum, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}")
