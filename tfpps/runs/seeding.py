"""One seed for a run's initial weights, whatever the strategy: :func:`set_run_seed`.

Keras 2 (``tf_keras`` 2.16) draws the seed of every unseeded initializer (``glorot_uniform``, ``uniform``,
...) from a generator that ``tf.keras.utils.set_random_seed`` stores in a *thread-local*
(``tf_keras.src.backend._SEED_GENERATOR``). A tf.distribute strategy calls the model in one thread per replica,
so a weight built lazily there (a Dense kernel, built on the first step) finds no generator and falls back to
Python's ``random``, which ``set_random_seed`` seeded with the same seed: it draws the seed the first weight
built in the main thread drew. Its initial values are then those of that weight, scaled. Measured: under
``--strategy=mirrored`` HEM's query-encoder kernel started as 34.64 x the first 100 rows of the word
embeddings (correlation 1.0), and test NDCG@10 fell from 0.089-0.099 to 0.065-0.080 (4 seeds, synthetic-search).

:func:`set_run_seed` seeds as ``set_random_seed`` does and makes that generator process-wide, so a weight built
in a replica's thread takes the next seed of the one sequence, as it does in one process: the initial weights
depend on the seed only, not on the strategy.

Example:
  >>> import tfpps, tensorflow as tf
  >>> set_run_seed(3)
  >>> a = tf.keras.initializers.GlorotUniform()([2, 2]).numpy()
  >>> set_run_seed(3)
  >>> (tf.keras.initializers.GlorotUniform()([2, 2]).numpy() == a).all()
  True
"""
from __future__ import annotations

import types

import tensorflow as tf


def set_run_seed(seed: int) -> None:
    """``tf.keras.utils.set_random_seed(seed)`` (Python, NumPy, TensorFlow and Keras' initializer seeds), with
    Keras' seed generator shared by every thread of the process (see the module docstring)."""
    tf.keras.utils.set_random_seed(seed)
    from tf_keras.src import backend  # the Keras 2 that tf.keras is (TF_USE_LEGACY_KERAS=1)

    shared = getattr(backend._SEED_GENERATOR, "generator", None)
    if shared is None:  # not the tf_keras this was written against: leave it as it is
        return
    backend._SEED_GENERATOR = types.SimpleNamespace(generator=shared)
