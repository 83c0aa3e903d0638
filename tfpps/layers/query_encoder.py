r"""Query encoders of the product-search models (HEM, AEM, ZAM, HRNN-search).

A query is a bag of word ids ``[B, Q]`` (0 = padding). With word vectors
:math:`w_j` and the query's real words :math:`q`:

``fs`` (HEM's default, ``get_fs_from_words`` of the official code)
    :math:`\tanh(W \cdot \frac{1}{|q|}\sum_{j \in q} w_j + b)`
``mean``
    :math:`\frac{1}{|q|}\sum_{j \in q} w_j` (no projection)
``gru``
    the last state of a GRU run over the words in order.

``padding="hem"`` reproduces a quirk of the official HEM code: queries are
padded to ``max_length`` with an extra *trainable* word vector, and the mean
runs over all ``max_length`` slots, padding included. ``padding="masked"``
(default) averages the real words only.

Example:
  >>> import tensorflow as tf
  >>> words = tf.keras.layers.Embedding(10, 4)
  >>> enc = QueryEncoder(words, 4, kind="fs")
  >>> enc(tf.constant([[2, 3, 0], [5, 0, 0]])).shape
  TensorShape([2, 4])
"""
from __future__ import annotations

import tensorflow as tf

QUERY_ENCODERS = ("fs", "mean", "gru")
QUERY_PADDING = ("masked", "hem")


class QueryEncoder(tf.keras.layers.Layer):
    """Encodes word-id queries ``[B, Q]`` into ``[B, d]`` vectors with a shared word-embedding table."""

    def __init__(self, word_embedding: tf.keras.layers.Embedding, units: int, kind: str = "fs",
                 padding: str = "masked", max_length: int = 12, **kwargs):
        super().__init__(**kwargs)
        if kind not in QUERY_ENCODERS:
            raise ValueError(f"query encoder {kind!r}: expected one of {', '.join(QUERY_ENCODERS)}")
        if padding not in QUERY_PADDING:
            raise ValueError(f"query padding {padding!r}: expected one of {', '.join(QUERY_PADDING)}")
        self.word_embedding, self.units, self.kind, self.padding = word_embedding, units, kind, padding
        self.max_length = int(max_length)
        if kind == "fs":
            self.projection = tf.keras.layers.Dense(units, activation="tanh", name="f_W")
        elif kind == "gru":
            self.gru = tf.keras.layers.GRU(units, name="query_gru")

    def build(self, input_shape):
        if self.padding == "hem":  # the official code's extra, trainable padding word
            dim = self.word_embedding.output_dim
            init = tf.keras.initializers.RandomUniform(-0.5 / dim, 0.5 / dim)
            self.pad_vector = self.add_weight(name="pad_word", shape=[dim], initializer=init)
        super().build(input_shape)

    def word_vectors(self, word_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``([B, Q, d] vectors, [B, Q] float mask)``; with ``padding="hem"`` Q = ``max_length`` and every slot counts."""
        word_ids = tf.cast(word_ids, tf.int64)
        if self.padding == "hem":
            word_ids = word_ids[:, : self.max_length]
            word_ids = tf.pad(word_ids, [[0, 0], [0, self.max_length - tf.shape(word_ids)[1]]])
            real = word_ids > 0
            vectors = tf.where(real[..., None], self.word_embedding(word_ids), self.pad_vector)
            return vectors, tf.ones_like(word_ids, tf.float32)
        mask = tf.cast(word_ids > 0, tf.float32)
        return self.word_embedding(word_ids) * mask[..., None], mask

    def call(self, word_ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        vectors, mask = self.word_vectors(word_ids)
        if self.kind == "gru":
            return self.gru(vectors, mask=mask > 0, training=training)
        mean = tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        return self.projection(mean) if self.kind == "fs" else mean
