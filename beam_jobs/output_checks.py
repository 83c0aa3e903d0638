"""Read-back checks of a finished job's output, before it is published.

The in-pipeline checks (``cleaning.count_check`` / ``arrival_check``) compare what one step sent with
what the next step received. These checks close the chain at the end: the files on disk must hold
exactly what the pipeline counted, i.e.

* each split's TFRecord shards hold ``<split>_records`` examples (the encoder's count),
* the dead-letter files hold ``rows_dead_lettered`` rows (the reader's count),
* each vocabulary file has ``vocab_<name>`` rows (the combiner's count).

Only those files are counted, each by its own pattern: the other files of a dataset (``stats.json``,
``dataset.json``, the ``.tfpps`` ownership marker of :mod:`tfpps.spec.ownership`) are not data and are left alone,
so the checks give the same answer on the finished dataset as on the temp output they run on.

Counting TFRecords needs no TensorFlow: a record is framed as ``uint64 length, uint32 crc, data[length],
uint32 crc`` (little-endian), so the reader skips from header to header. Files are opened through Beam's
``FileSystems`` (``.gz`` decompressed by extension), so the checks also run on ``gs://`` / ``s3://`` outputs.

Example::

    >>> failures = verify_outputs("/tmp/out.tmp", {"train_records": 10, "rows_dead_lettered": 0})
"""
from __future__ import annotations

import struct

from apache_beam.io.filesystems import FileSystems

_HEADER = struct.Struct("<QI")


def count_tfrecords(path: str) -> int:
    """Number of records in one TFRecord file; raises ``ValueError`` on a truncated file."""
    n = 0
    with FileSystems.open(path) as fh:
        while True:
            header = fh.read(_HEADER.size)
            if not header:
                return n
            if len(header) < _HEADER.size:
                raise ValueError(f"{path}: truncated TFRecord header after {n} records")
            length, _ = _HEADER.unpack(header)
            remaining = length + 4  # the data and its crc
            while remaining:
                chunk = fh.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ValueError(f"{path}: truncated TFRecord after {n} records")
                remaining -= len(chunk)
            n += 1


def count_lines(path: str) -> int:
    """Number of ``\\n``-terminated lines (a last line without one counts too)."""
    n, last = 0, b"\n"
    with FileSystems.open(path) as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _files(pattern: str) -> list[str]:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


def verify_outputs(tmp_out: str, stats: dict) -> list[str]:
    """One line per output whose content differs from the pipeline's own count (empty when all agree)."""
    from tfpps.spec import schema

    failures = []
    for split in schema.SPLITS:
        files = _files(f"{tmp_out}/{schema.split_file_prefix(split)}*{schema.TFRECORD_SUFFIX}")
        try:
            on_disk = sum(count_tfrecords(f) for f in files)
        except ValueError as exc:
            failures.append(str(exc))
            continue
        expected = stats.get(f"{split}_records", 0)
        if on_disk != expected:
            failures.append(f"{split} shards hold {on_disk} examples where the encoder counted {expected}")
    dead = sum(count_lines(f) for f in _files(f"{tmp_out}/{schema.DEAD_LETTER_DIR}/*.jsonl"))
    if dead != stats.get("rows_dead_lettered", 0):
        failures.append(f"dead_letter files hold {dead} rows where the reader counted {stats.get('rows_dead_lettered', 0)}")
    for name, file_name in schema.VOCAB_FILES.items():
        if f"vocab_{name}" not in stats:
            continue
        path = f"{tmp_out}/{schema.VOCAB_DIR}/{file_name}"
        rows = count_lines(path) if FileSystems.exists(path) else 0
        if rows != stats[f"vocab_{name}"]:
            failures.append(f"vocabulary {file_name} has {rows} rows where the pipeline counted {stats[f'vocab_{name}']}")
    return failures
