"""Optimizer factory for :class:`tfpps.config.TrainConfig` (Keras 2 optimizers)."""
from __future__ import annotations

import tfpps  # noqa: F401
import tensorflow as tf


def make_optimizer(train_cfg) -> tf.keras.optimizers.Optimizer:
    """Build the optimizer named by ``train_cfg.optimizer``.

    ``adagrad_momentum`` is GRU4Rec's official optimizer (Adagrad with
    Nesterov-style momentum and sparse row updates); the others are the Keras
    ones. Legacy (v1) Keras optimizers are used because they keep embedding
    updates sparse (``IndexedSlices``) on CPU and GPU.
    """
    kwargs = {}
    if train_cfg.clipnorm > 0:
        kwargs["global_clipnorm"] = train_cfg.clipnorm
    name, lr = train_cfg.optimizer, train_cfg.learning_rate
    legacy = tf.keras.optimizers.legacy
    if name == "adam":
        return legacy.Adam(learning_rate=lr, **kwargs)
    if name == "adagrad":
        return legacy.Adagrad(learning_rate=lr, **kwargs)
    if name == "sgd":
        return legacy.SGD(learning_rate=lr, momentum=train_cfg.momentum, **kwargs)
    if name == "adagrad_momentum":
        from tfpps.training.adagrad_momentum import AdagradMomentum

        return AdagradMomentum(learning_rate=lr, momentum=train_cfg.momentum, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}")
