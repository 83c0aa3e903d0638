"""Most-popular baseline: every history gets the same ranking, by training support.

score(i) = count_train(i). It is the floor every sequence model must clear:
on data with sequential signal a model that learns transitions beats it by a
wide margin; on data without it, nothing should.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps import registry
from tfpps.models.base import NonNeuralModel


@dataclasses.dataclass
class PopConfig:
    def validate(self) -> None:
        return None


@registry.register("pop", PopConfig, family=registry.NONNEURAL)
class MostPopular(NonNeuralModel):
    """Most-popular baseline (scores = training item counts)."""

    def __init__(self, params, info, run):
        self.params, self.info, self.run_config = params, info, run
        self.counts = tf.constant(np.asarray(info.item_counts, dtype=np.float32))

    def fit_data(self, data) -> None:
        """Nothing to learn beyond the counts already in the vocabulary."""

    def score_items(self, features) -> tf.Tensor:
        batch = tf.shape(features["item_ids"])[0]
        return tf.tile(self.counts[None, :], [batch, 1])
