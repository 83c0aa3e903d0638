"""In-graph history windows: for each target position of a sequence, the items before it, cut to ``max_len``."""
from __future__ import annotations

import tensorflow as tf


def window(items: tf.Tensor, ends: tf.Tensor, max_len: int, truncate: str = "last") -> tuple[tf.Tensor, tf.Tensor]:
    """For each end position e, ``m = min(e, max_len)`` items of ``items[:e]``, left-aligned, 0-padded.

    ``truncate="last"`` keeps the most recent ones, ``items[e-m:e]``; ``"first"`` the first ones,
    ``items[:m]`` (the official NARM loader's ``x[:maxlen]``).
    Returns ``(histories [len(ends), max_len], lengths [len(ends)])``.
    """
    ends = tf.cast(ends, tf.int64)
    lengths = tf.minimum(ends, max_len)
    starts = ends - lengths if truncate == "last" else tf.zeros_like(ends)
    idx = starts[:, None] + tf.range(max_len, dtype=tf.int64)[None, :]
    valid = idx < (starts + lengths)[:, None]
    n = tf.shape(items, out_type=tf.int64)[0]
    safe = tf.minimum(idx, tf.maximum(n - 1, 0))
    gathered = tf.gather(tf.concat([items, tf.zeros([1], tf.int64)], 0), tf.where(n > 0, safe, n))
    return tf.where(valid, gathered, tf.zeros_like(gathered)), lengths
