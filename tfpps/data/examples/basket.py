"""Evaluation examples whose targets are a set of held-out items: next baskets, and ``--split=fo`` records.

* :func:`basket_eval_examples`: one example per basket record with a target basket.
* :func:`multi_target_examples`: one example per sequential record with ``target_items``
  (``--split=fo`` datasets, :attr:`tfpps.data.dataset_dir.DatasetDir.multi_target`).

Both give ``item_ids``/``length`` (the last ``max_len`` history items), every held-out item in
``target_items`` (0-padded by :func:`tfpps.data.pipeline.batch_padded`), ``target_item = PAD``
and ``user_id``; records without any target are skipped.
"""
from __future__ import annotations

import tensorflow as tf

from tfpps.data.examples.window import window
from tfpps.spec import schema


def _with_targets(records: tf.data.Dataset) -> tf.data.Dataset:
    return records.filter(lambda rec: tf.size(rec["target_items"]) > 0)


def _held_out_example(history: tf.Tensor, rec: dict, max_len: int, with_seen: bool) -> dict:
    """One example: the last ``max_len`` items of ``history`` (int64, time ordered) -> all of ``rec``'s
    ``target_items``; with ``with_seen`` also ``seen_items`` = the whole ``history``."""
    hist, lengths = window(history, tf.reshape(tf.size(history, out_type=tf.int64), [1]), max_len)
    out = {
        "item_ids": hist[0],
        "length": lengths[0],
        "target_item": tf.constant(schema.PAD_ID, tf.int64),
        "target_items": tf.cast(rec["target_items"], tf.int64),
        "user_id": tf.cast(rec["user_id"], tf.int64),
    }
    if with_seen:
        out["seen_items"] = history
    return out


def multi_target_examples(records: tf.data.Dataset, max_len: int, with_seen: bool = False) -> tf.data.Dataset:
    """One example ``(history, target_items)`` per record with targets: ``item_ids`` the last ``max_len``
    items of the record's history, ``target_items`` all its held-out items. With ``with_seen``,
    ``seen_items`` = the record's whole history."""
    return _with_targets(records).map(
        lambda rec: _held_out_example(tf.cast(rec["item_ids"], tf.int64), rec, max_len, with_seen)
    )


def basket_eval_examples(records: tf.data.Dataset, max_len: int, with_seen: bool = False) -> tf.data.Dataset:
    """Next-basket evaluation examples: one per basket record with a target basket.

    ``target_items`` = the held-out next basket (every item relevant: the
    multi-target metrics of :mod:`tfpps.evaluation.evaluator`), ``target_item``
    = PAD, ``last_basket`` = the last history basket (HRM's transaction),
    ``item_ids``/``length`` = the last ``max_len`` history items, flattened in
    time order (for item-based models), ``user_id``. With ``with_seen``,
    ``seen_items`` = every history item (masking repurchases).
    """

    def to_example(rec):
        baskets = rec["baskets"]
        n = baskets.nrows()
        flat = tf.cast(baskets.flat_values, tf.int64)
        last = tf.cond(n > 0, lambda: tf.cast(baskets[n - 1], tf.int64), lambda: tf.zeros([0], tf.int64))
        return {**_held_out_example(flat, rec, max_len, with_seen), "last_basket": last}

    return _with_targets(records).map(to_example)
