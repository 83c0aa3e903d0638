"""Read the serialized records of one gzip TFRecord shard into memory, without tf.data.

A TFRecord file is a sequence of frames ``uint64 length | uint32 masked CRC of the length | data |
uint32 masked CRC of the data`` (little-endian); the shards the Beam job writes are gzip-compressed
(:data:`tfpps.spec.schema.TFRECORD_SUFFIX`). Building a ``tf.data.TFRecordDataset`` and iterating it
costs tens of milliseconds per call; reading a few MB of frames here costs a few. Use it where a whole
split is wanted at once in eager code (GRU4Rec's streamed evaluation); training keeps tf.data.

Integrity: the frame CRCs are not checked, but gzip's CRC-32 of the whole stream is (``gzip`` raises
at the end of a corrupted file), and a frame that runs past the end of the data is refused.

Example::

    records = read_tfrecord_file("data_out/ml-100k/test/part-00000-of-00004.tfrecord.gz")  # [bytes, ...]
    parsed = schema.parse_batch("sequential", records)
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

_LENGTH = struct.Struct("<Q")
_HEADER = 12  # uint64 length + uint32 CRC of the length
_FOOTER = 4  # uint32 CRC of the data


def read_tfrecord_file(path: str | Path) -> list[bytes]:
    """The serialized records of the gzip TFRecord file ``path``, in file order.

    Raises ``ValueError`` naming the file when a frame is cut short (a truncated shard).

    Example:
      >>> import tempfile, os
      >>> frame = lambda data: _LENGTH.pack(len(data)) + b"\\0" * 4 + data + b"\\0" * 4
      >>> path = os.path.join(tempfile.mkdtemp(), "x.tfrecord.gz")
      >>> with gzip.open(path, "wb") as fh: _ = fh.write(frame(b"ab") + frame(b"") + frame(b"cde"))
      >>> read_tfrecord_file(path)
      [b'ab', b'', b'cde']
    """
    with gzip.open(path, "rb") as fh:
        buf = fh.read()
    records, pos, end = [], 0, len(buf)
    while pos < end:
        if pos + _HEADER > end:
            raise ValueError(f"{path}: truncated TFRecord frame at byte {pos} of {end}")
        (length,) = _LENGTH.unpack_from(buf, pos)
        start = pos + _HEADER
        if start + length + _FOOTER > end:
            raise ValueError(f"{path}: truncated TFRecord frame at byte {pos} of {end} (record of {length} bytes)")
        records.append(buf[start : start + length])
        pos = start + length + _FOOTER
    return records
