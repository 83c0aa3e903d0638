"""The one owner of a dataset directory written by the Beam job: its ``dataset.json``, splits and vocabularies.

The layout (file names from :mod:`tfpps.spec.schema`)::

    <dir>/dataset.json               kind, vocabulary sizes, record counts, job version
    <dir>/stats.json                 the job's statistics
    <dir>/vocab/{items,users,words,queries}.tsv
    <dir>/<split>/part-*.tfrecord.gz for split in train, valid, test
    <dir>/item_text/*.tfrecord.gz    product text (search datasets built with ``--metadata``)

:class:`DatasetDir` reads them; :class:`DatasetInfo` is what a model needs to build itself
(:meth:`DatasetDir.info`); :func:`cached` keeps one process-wide cache of values computed
from a dataset (a counting pass, a schedule) so that every epoch does not repeat them.

Importing this module does not load TensorFlow (only :meth:`DatasetDir.records` does).

>>> ds = DatasetDir("data_out/synthetic")                      # doctest: +SKIP
>>> train = ds.records("train", shuffle=True, seed=1)          # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfpps.spec import schema

if TYPE_CHECKING:
    import tensorflow as tf


class DatasetError(ValueError):
    """A dataset directory is missing or malformed; the message is one line."""


@dataclasses.dataclass
class DatasetInfo:
    """What a model needs to know about the data to build itself."""

    num_items: int  # item vocabulary size, PAD and OOV rows included
    num_users: int  # user vocabulary size, PAD and OOV rows included
    item_counts: np.ndarray  # [num_items] training support of each item (0 for PAD/OOV)
    num_words: int = 0
    kind: str = "sequential"


def meta_path(path: str | os.PathLike) -> Path:
    """``path``'s ``dataset.json``."""
    return Path(path) / schema.DATASET_FILE


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a built dataset (its ``dataset.json`` exists)."""
    return meta_path(path).exists()


def read_meta(path: str | os.PathLike) -> dict:
    """The parsed ``dataset.json`` of the dataset at ``path``."""
    return json.loads(meta_path(path).read_text())


def item_text_files(path: Path) -> list[str]:
    """The ``item_text`` shards under a dataset directory ``path`` (sorted); none when built without them."""
    return sorted(str(p) for p in (Path(path) / schema.ITEM_TEXT_DIR).glob(f"*{schema.TFRECORD_SUFFIX}"))


def pipeline_share(files: list[str], input_context: tf.distribute.InputContext | None) -> list[str]:
    """The files one tf.distribute input pipeline reads: ``files[i::n]`` for pipeline ``i`` of ``n``; all of
    them without an ``input_context``."""
    if input_context is not None and input_context.num_input_pipelines > 1:
        return files[input_context.input_pipeline_id :: input_context.num_input_pipelines]
    return files


class DatasetDir:
    """A Beam job output directory: metadata, vocabularies and TFRecord splits."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not is_dataset(self.path):
            raise DatasetError(
                f"{self.path}: not a tfpps dataset (no {schema.DATASET_FILE}); build one with "
                "python -m beam_jobs.build_features --source=... --input=... --output=DIR"
            )
        self.meta = read_meta(self.path)
        self.kind = self.meta["kind"]
        schema.features_of(self.kind)

    # ------------------------------------------------------------------ metadata
    @property
    def num_items(self) -> int:
        return int(self.meta["num_items"])

    @property
    def num_users(self) -> int:
        return int(self.meta["num_users"])

    @property
    def num_words(self) -> int:
        return int(self.meta.get("num_words", 0))

    @cached_property
    def stats(self) -> dict:
        path = self.path / schema.STATS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def count(self, split: str) -> int:
        return int(self.meta.get("counts", {}).get(split, 0))

    @property
    def multi_target(self) -> bool:
        """True when evaluation records hold several held-out items each (``target_items``, ``--split=fo``)."""
        return self.meta.get("eval_targets") == "multi"

    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_items=self.num_items,
            num_users=self.num_users,
            item_counts=self.vocab_counts("items"),
            num_words=self.num_words,
            kind=self.kind,
        )

    # ------------------------------------------------------------------ vocabularies
    def vocab(self, name: str) -> list[str]:
        """Tokens of vocabulary ``name`` (items/users/words/queries) in index order."""
        return [row[1] for row in self._vocab_rows(name)]

    def query_names(self) -> list[str]:
        """The name of each query index in TREC files: the source's own query id where the dataset has one
        (:data:`~tfpps.spec.schema.QUERY_SOURCE_IDS_FILE`, e.g. the HEM benchmark's query line), else the
        index itself; PAD and OOV are named by their index."""
        queries = self.vocab("queries")
        path = self.path / schema.VOCAB_DIR / schema.QUERY_SOURCE_IDS_FILE
        source_ids: dict[str, str] = {}
        if path.exists():
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    query, sep, source_id = line.rstrip("\n").rpartition("\t")
                    if sep:
                        source_ids[query] = source_id
        return [source_ids.get(q, str(i)) if i >= 2 else str(i) for i, q in enumerate(queries)]

    def vocab_counts(self, name: str) -> np.ndarray:
        """Training counts per index of vocabulary ``name`` (0 for PAD and OOV)."""
        return np.array([int(row[2]) for row in self._vocab_rows(name)], dtype=np.int64)

    def _vocab_rows(self, name: str) -> list[list[str]]:
        path = self.path / schema.VOCAB_DIR / schema.VOCAB_FILES[name]
        if not path.exists():
            raise DatasetError(f"{path}: vocabulary file missing")
        rows = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                rows.append(parts)
        for i, row in enumerate(rows):
            if int(row[0]) != i:
                raise DatasetError(f"{path}: line {i + 1} has index {row[0]}, expected {i}")
        return rows

    # ------------------------------------------------------------------ records
    def files(self, split: str) -> list[str]:
        if split not in schema.SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(schema.SPLITS)}")
        files = sorted(str(p) for p in self.path.glob(schema.split_file_pattern(split)))
        return files

    def shard_count(self, split: str, input_context: tf.distribute.InputContext | None = None) -> int:
        """Records of ``split`` in the files one input pipeline reads (``input_context``; all files without
        one), as :meth:`records` shares them out; counted once per process (:func:`cached`)."""
        from tfpps.data.tfrecord_file import read_tfrecord_file

        files = pipeline_share(self.files(split), input_context)
        return cached(self, ("shard_count", split, tuple(files)), lambda: sum(len(read_tfrecord_file(f)) for f in files))

    def item_text_files(self) -> list[str]:
        """The ``item_text`` shards (product text for item->word losses); none when built without it."""
        return item_text_files(self.path)

    def records(
        self,
        split: str,
        shuffle: bool = False,
        seed: int = 0,
        num_parallel_reads: int = 4,
        shuffle_buffer: int = 10_000,
        input_context: tf.distribute.InputContext | None = None,
    ) -> tf.data.Dataset:
        """Parsed records of ``split``, one dict of tensors per record.

        Shards are read in parallel (interleaved); with ``shuffle`` the shard
        order and a ``shuffle_buffer`` of records are shuffled with ``seed``.
        With an ``input_context`` (tf.distribute) each worker reads a disjoint subset of the shards.
        """
        from tfpps.data.pipeline import read_tfrecords

        files = self.files(split)
        if not files:
            raise DatasetError(f"{self.path}: split {split!r} has no shards ({schema.split_file_pattern(split)})")
        files = pipeline_share(files, input_context)
        return read_tfrecords(
            files, self.kind, shuffle=shuffle, seed=seed, num_parallel_reads=num_parallel_reads, shuffle_buffer=shuffle_buffer
        )


_CACHED: dict = {}


def cached(data, key, compute):
    """``compute()`` once per process for (dataset, ``key``), e.g. a counting pass over the training split
    that every epoch's :meth:`make_train_dataset` would otherwise repeat. The cache holds ``data`` itself,
    so an ``id()`` key (objects without a ``path``) cannot be reused by another object meanwhile."""
    path = getattr(data, "path", None)
    full = (str(path) if path is not None else ("object", id(data)), key)
    if full not in _CACHED:
        if len(_CACHED) >= 64:
            _CACHED.pop(next(iter(_CACHED)))
        _CACHED[full] = (data, compute())
    return _CACHED[full][1]
