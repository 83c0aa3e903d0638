r"""S-POP: session popularity, the repeat-consumption baseline of session-based recommendation.

As ``algorithms/baselines/spop.py`` of ``rn5l/session-rec`` (Ludewig & Jannach, "Evaluation of
session-based recommendation algorithms", UMUAI 2018) describes it: an item scores by how often it
occurs in the history, and training popularity breaks the ties,

.. math::
   s(i \mid h) = |\{t : h_t = i\}| + \frac{\mathrm{count}(i)}{1 + \max_j \mathrm{count}(j)}

so every item of the history ranks above every other item, the most repeated first, and the rest of
the catalogue follows by popularity (exactly :mod:`tfpps.models.baselines.pop`'s ranking). With
``eval.mask_history`` the history items are removed and S-POP ranks as popularity does.

Departures: ``repeat_weight`` (default 1) scales the history counts; values below
``1 / (1 + max count)`` let popularity outrank a single repeat, which the reference cannot express.
PAD and OOV never score.

Example::

    python -m tfpps.train --model=spop --dataset=yoochoose-100k
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps import registry
from tfpps.errors import ConfigError
from tfpps.models.base import NonNeuralModel
from tfpps.spec.schema import FIRST_ID


@dataclasses.dataclass
class SPopConfig:
    repeat_weight: float = 1.0  # score of one occurrence in the history (popularity adds < 1)

    def validate(self) -> None:
        if not self.repeat_weight > 0:
            raise ConfigError(f"model_params.repeat_weight={self.repeat_weight}: must be positive")


@registry.register("spop", SPopConfig, family=registry.NONNEURAL)
class SessionPopular(NonNeuralModel):
    """S-POP: items of the history by their count in it, then the catalogue by training popularity."""

    def __init__(self, params: SPopConfig, info, run):
        super().__init__(params, info, run)
        counts = np.asarray(info.item_counts, dtype=np.float64)
        counts[:FIRST_ID] = 0.0
        self.popularity = tf.constant(counts / (1.0 + counts.max()), dtype=tf.float32)

    def fit_data(self, data) -> None:
        """Nothing to learn beyond the training counts of the vocabulary."""

    def score_items(self, features) -> tf.Tensor:
        items = tf.cast(features["item_ids"], tf.int64)
        batch, width = tf.shape(items, out_type=tf.int64)[0], tf.shape(items, out_type=tf.int64)[1]
        real = (tf.range(width)[None, :] < tf.cast(features["length"], tf.int64)[:, None]) & (items >= FIRST_ID)
        rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(items))
        index = tf.stack([tf.boolean_mask(rows, real), tf.boolean_mask(items, real)], axis=1)
        repeats = tf.scatter_nd(index, tf.fill([tf.shape(index)[0]], float(self.params.repeat_weight)),
                                tf.stack([batch, tf.cast(self.info.num_items, tf.int64)]))
        return repeats + self.popularity[None, :]
