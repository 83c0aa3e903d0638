"""The shared feature spec: every example kind round-trips through a real TFRecord file."""
import pytest
import tensorflow as tf

from tfpps.data import pipeline
from tfpps.spec import schema

RECORDS = {
    schema.SEQUENTIAL: {
        "user_id": 7,
        "session_id": 123456789012,
        "item_ids": [5, 9, 2, 5],
        "timestamps": [1_700_000_000, 1_700_000_060, 1_700_003_000, 1_800_000_000],
        "session_starts": [1, 0, 1, 0],
        "target_item": 11,
    },
    schema.BASKET: {
        "user_id": 3,
        "baskets": [[4, 5, 6], [7], [2, 4]],
        "basket_timestamps": [10, 20, 30],
        "target_items": [8, 9],
    },
    schema.SEARCH: {
        "user_id": 2,
        "query_id": 4,
        "query_word_ids": [12, 13, 14],
        "item_id": 99,
        "history_item_ids": [3, 4],
        "timestamp": 1_650_000_000,
    },
    schema.ITEM_TEXT: {"item_id": 99, "word_ids": [12, 20, 21, 22]},
}


@pytest.mark.parametrize("kind", schema.KINDS)
def test_every_kind_round_trips_through_tfrecord(tmp_path, kind):
    path = str(tmp_path / f"{kind}{schema.TFRECORD_SUFFIX}")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        w.write(schema.encode_example(kind, RECORDS[kind]))
        w.write(schema.encode_example(kind, {}))  # all defaults
    got = list(pipeline.read_tfrecords([path], kind).as_numpy_iterator())
    assert len(got) == 2
    for name, value in RECORDS[kind].items():
        val = got[0][name]
        if isinstance(value, list) and value and isinstance(value[0], list):
            rows = val.to_list() if hasattr(val, "to_list") else [list(map(int, r)) for r in val]
            assert rows == value
        elif isinstance(value, list):
            assert val.tolist() == value
        else:
            assert int(val) == value
    empty = got[1]
    for f in schema.features_of(kind):
        v = empty[f.name]
        if f.shape == schema.SCALAR:
            assert int(v) == 0
        else:
            assert len(v) == 0


def test_parse_single_and_unknown_feature_error():
    raw = schema.encode_example(schema.SEQUENTIAL, {"user_id": 3, "item_ids": [5, 7]})
    parsed = schema.parse_single(schema.SEQUENTIAL, raw)
    assert parsed["item_ids"] == [5, 7] and parsed["user_id"] == 3 and parsed["target_item"] == schema.PAD_ID
    with pytest.raises(ValueError, match="unknown feature"):
        schema.encode_example(schema.SEQUENTIAL, {"user": 3})
    with pytest.raises(ValueError, match="unknown example kind"):
        schema.features_of("nope")


def test_epoch_seconds_are_exact():
    # int64 storage keeps second precision at today's epoch values (float32 would not)
    ts = [1_732_406_399, 1_732_406_400]
    raw = schema.encode_example(schema.SEQUENTIAL, {"item_ids": [2, 3], "timestamps": ts})
    assert schema.parse_single(schema.SEQUENTIAL, raw)["timestamps"] == ts
