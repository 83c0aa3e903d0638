"""tf.data example builders: prefix augmentation, evaluation examples, padding, sharded reads."""
import numpy as np
import pytest
import tensorflow as tf

from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir, DatasetError
from tfpps.data.examples.prefix import eval_examples, prefix_examples
from tfpps.spec import schema


def records(seqs, targets=None):
    targets = targets or [0] * len(seqs)
    return tf.data.Dataset.from_generator(
        lambda: ({"user_id": np.int64(u + 2), "item_ids": np.array(s, np.int64), "target_item": np.int64(t)}
                 for u, (s, t) in enumerate(zip(seqs, targets))),
        output_signature={
            "user_id": tf.TensorSpec([], tf.int64),
            "item_ids": tf.TensorSpec([None], tf.int64),
            "target_item": tf.TensorSpec([], tf.int64),
        },
    )


def test_prefix_examples_keep_most_recent_items_left_aligned():
    got = list(prefix_examples(records([[5, 6, 7, 8]]), max_len=2).as_numpy_iterator())
    assert [g["item_ids"].tolist() for g in got] == [[5, 0], [5, 6], [6, 7]]
    assert [int(g["length"]) for g in got] == [1, 2, 2]
    assert [int(g["target_item"]) for g in got] == [6, 7, 8]
    assert all(int(g["user_id"]) == 2 for g in got)


def test_prefix_examples_skip_sequences_too_short():
    assert list(prefix_examples(records([[5], []]), max_len=3).as_numpy_iterator()) == []


def test_eval_examples_with_target_and_whole_sessions():
    ds = records([[5, 6, 7], [9, 10, 11]], targets=[8, 0])
    got = list(eval_examples(ds, max_len=2, with_seen=True).as_numpy_iterator())
    # record 1: one example (history 6,7 -> 8); record 2 (no target): every next item
    assert [(g["item_ids"].tolist(), int(g["target_item"])) for g in got] == [
        ([6, 7], 8), ([9, 0], 10), ([9, 10], 11)
    ]
    assert got[0]["seen_items"].tolist() == [5, 6, 7]


def test_batch_padded_pads_variable_length_features():
    ds = eval_examples(records([[5, 6, 7], [9]], targets=[8, 3]), max_len=4, with_seen=True)
    batch = next(iter(pipeline.batch_padded(ds, 8)))
    assert batch["item_ids"].shape == (2, 4)
    assert batch["seen_items"].numpy().tolist() == [[5, 6, 7], [9, 0, 0]]


def test_sharded_reads_are_disjoint_per_input_pipeline(tmp_path):
    files = []
    for shard in range(4):
        path = str(tmp_path / f"part-{shard}{schema.TFRECORD_SUFFIX}")
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for i in range(5):
                w.write(schema.encode_example(schema.SEQUENTIAL, {"user_id": shard * 10 + i, "item_ids": [2, 3]}))
        files.append(path)
    everything = sorted(int(r["user_id"]) for r in pipeline.read_tfrecords(files, schema.SEQUENTIAL).as_numpy_iterator())
    assert everything == sorted(s * 10 + i for s in range(4) for i in range(5))
    shuffled = [int(r["user_id"]) for r in pipeline.read_tfrecords(files, schema.SEQUENTIAL, shuffle=True, seed=3).as_numpy_iterator()]
    assert sorted(shuffled) == everything and shuffled != everything


def test_missing_dataset_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not a tfpps dataset"):
        DatasetDir(tmp_path)
