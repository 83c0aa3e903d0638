"""tfpps.data.tfrecord_file reads what TensorFlow's writer writes, and refuses a cut or corrupted shard."""
import gzip

import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.data.tfrecord_file import read_tfrecord_file


def write(path, records):
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for record in records:
            writer.write(record)
    return path


def test_reads_what_tensorflow_writes_in_order(tmp_path):
    records = [b"", b"x", bytes(range(256)) * 40, b"last"]
    path = write(tmp_path / "a.tfrecord.gz", records)
    assert read_tfrecord_file(path) == records
    assert read_tfrecord_file(path) == [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]


def test_truncated_shard_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path / "a.tfrecord.gz", [b"a" * 100, b"b" * 100])
    raw = gzip.decompress(path.read_bytes())
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(gzip.compress(raw[:-30]))
    with pytest.raises(ValueError, match=r"cut\.tfrecord\.gz: truncated TFRecord frame"):
        read_tfrecord_file(cut)
    header_only = tmp_path / "h.tfrecord.gz"
    header_only.write_bytes(gzip.compress(raw[:5]))
    with pytest.raises(ValueError, match="truncated"):
        read_tfrecord_file(header_only)


def test_corrupted_gzip_is_refused(tmp_path):
    path = write(tmp_path / "a.tfrecord.gz", [b"a" * 1000])
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside gzip's CRC-32 trailer
    path.write_bytes(bytes(data))
    with pytest.raises((OSError, EOFError)):
        read_tfrecord_file(path)
