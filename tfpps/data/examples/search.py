"""tf.data examples for the product-search models, from the Beam job's ``search`` records.

Training examples (:func:`train_examples`): one per (purchase, query) record::

    user_id [ ], query_word_ids [Q], timestamp [ ], item_id [ ],
    history_item_ids / history_query_ids / history_timestamps [<=L] (most recent training purchases before it)

Evaluation examples (:func:`eval_examples`): one per (user, query) record with targets::

    user_id, query_id, query_word_ids, timestamp, history_* (last L),
    item_ids (ALL the user's training purchases: removed from the ranking),
    target_items (every item the user bought with this query in the split), target_item = PAD

:func:`item_word_table` loads the item -> text-words table written by the Beam
job (:meth:`tfpps.data.dataset_dir.DatasetDir.item_text_files`) for the item->word losses.
"""
from __future__ import annotations

import numpy as np

import tensorflow as tf

from tfpps.data.dataset_dir import item_text_files
from tfpps.data.pipeline import read_tfrecords
from tfpps.spec import schema


def _last(ids: tf.Tensor, n: int) -> tf.Tensor:
    return tf.cast(ids[-n:], tf.int64)


def _common(rec: dict, history_length: int) -> dict:
    return {
        "user_id": tf.cast(rec["user_id"], tf.int64),
        "query_word_ids": tf.cast(rec["query_word_ids"], tf.int64),
        "timestamp": tf.cast(rec["timestamp"], tf.int64),
        "history_item_ids": _last(rec["history_item_ids"], history_length),
        "history_query_ids": _last(rec["history_query_ids"], history_length),
        "history_timestamps": _last(rec["history_timestamps"], history_length),
    }


def train_examples(records: tf.data.Dataset, history_length: int) -> tf.data.Dataset:
    return records.map(lambda rec: {**_common(rec, history_length), "item_id": tf.cast(rec["item_id"], tf.int64)})


def eval_examples(records: tf.data.Dataset, history_length: int) -> tf.data.Dataset:
    return records.filter(lambda rec: tf.size(rec["target_items"]) > 0).map(
        lambda rec: {
            **_common(rec, history_length),
            "query_id": tf.cast(rec["query_id"], tf.int64),
            "item_ids": tf.cast(rec["history_item_ids"], tf.int64),
            "target_items": tf.cast(rec["target_items"], tf.int64),
            "target_item": tf.constant(schema.PAD_ID, tf.int64),
        }
    )


def item_word_table(data, num_items: int, max_words: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``(words [num_items, W] int64, lengths [num_items] int64)``: each item's text words, 0-padded
    (``data``: a :class:`tfpps.data.dataset_dir.DatasetDir`).

    Items without text (or datasets built without ``--metadata``) have length 0.
    """
    files = item_text_files(data.path)
    rows: dict[int, list[int]] = {}
    if files:
        for rec in read_tfrecords(files, schema.ITEM_TEXT).as_numpy_iterator():
            item = int(rec["item_id"])
            if 0 <= item < num_items:
                rows[item] = [int(w) for w in rec["word_ids"] if w >= schema.FIRST_ID][:max_words]
    width = max([len(r) for r in rows.values()] + [1])
    words = np.zeros([num_items, width], np.int64)
    lengths = np.zeros([num_items], np.int64)
    for item, ws in rows.items():
        words[item, : len(ws)] = ws
        lengths[item] = len(ws)
    return words, lengths
