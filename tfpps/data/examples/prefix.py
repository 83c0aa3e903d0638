"""Next-item examples of sequential records: every prefix of a sequence -> the item after it.

* :func:`prefix_examples`: every prefix of a training sequence -> next item
  (the "data augmentation" of Tan et al. / RecBole / NARM), computed in-graph.
* :func:`eval_examples`: one example per evaluation record (history, target),
  or, for records without a target (whole test sessions, GRU4Rec protocol),
  one example per next item; with ``multi_target`` (``--split=fo`` datasets,
  :attr:`tfpps.data.dataset_dir.DatasetDir.multi_target`) one example per record with all its
  ``target_items`` (:func:`tfpps.data.examples.basket.multi_target_examples`).
"""
from __future__ import annotations

import tensorflow as tf

from tfpps.data.examples.basket import multi_target_examples
from tfpps.data.examples.window import window


def prefix_examples(records: tf.data.Dataset, max_len: int, min_history: int = 1, truncate: str = "last") -> tf.data.Dataset:
    """Every (prefix -> next item) pair of each record's ``item_ids``.

    A sequence ``[a, b, c]`` gives ``([a] -> b)`` and ``([a, b] -> c)``;
    histories longer than ``max_len`` keep their most recent items
    (``truncate="first"``: their first ones, see :func:`tfpps.data.examples.window.window`).
    """

    def expand(rec):
        items = rec["item_ids"]
        n = tf.shape(items, out_type=tf.int64)[0]
        ends = tf.range(min_history, tf.maximum(n, min_history), dtype=tf.int64)
        hist, lengths = window(items, ends, max_len, truncate)
        return tf.data.Dataset.from_tensor_slices(
            {
                "item_ids": hist,
                "length": lengths,
                "target_item": tf.gather(items, ends),
                "user_id": tf.fill(tf.shape(ends), rec["user_id"]),
            }
        )

    return records.flat_map(expand)


def eval_examples(
    records: tf.data.Dataset, max_len: int, with_seen: bool = False, multi_target: bool = False
) -> tf.data.Dataset:
    """Evaluation examples: (history, target) per record with a ``target_item``;
    every next item of the record when it has none (whole test sessions).

    With ``with_seen`` each example also carries ``seen_items``: the record's
    whole history (for masking already-seen items at ranking time).

    With ``multi_target`` every record is one example ``(history, target_items)``:
    ``item_ids`` the last ``max_len`` items of the record's history,
    ``target_items`` all its held-out items (0-padded by :func:`tfpps.data.pipeline.batch_padded`)
    and ``target_item = 0``; records without any target are skipped.
    """
    if multi_target:
        return multi_target_examples(records, max_len, with_seen)

    def expand(rec):
        items = rec["item_ids"]
        target = rec["target_item"]
        has_target = target > 0
        full = tf.cond(has_target, lambda: tf.concat([items, [target]], 0), lambda: items)
        n = tf.shape(full, out_type=tf.int64)[0]
        ends = tf.cond(has_target, lambda: tf.reshape(n - 1, [1]), lambda: tf.range(1, tf.maximum(n, 1), dtype=tf.int64))
        hist, lengths = window(full, ends, max_len)
        out = {
            "item_ids": hist,
            "length": lengths,
            "target_item": tf.gather(full, ends),
            "user_id": tf.fill(tf.shape(ends), rec["user_id"]),
        }
        ds = tf.data.Dataset.from_tensor_slices(out)
        if with_seen:
            seen = tf.data.Dataset.from_tensors(items).repeat(tf.shape(ends, out_type=tf.int64)[0])
            ds = tf.data.Dataset.zip((ds, seen)).map(lambda d, s: {**d, "seen_items": s})
        return ds

    return records.flat_map(expand)
