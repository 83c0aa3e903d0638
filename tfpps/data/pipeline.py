"""tf.data input pipelines over the Beam job's output.

A dataset directory (see :mod:`tfpps.spec.schema` for the layout) is opened
with :class:`DatasetDir`; :meth:`DatasetDir.records` streams one split's
parsed records with parallel, file-interleaved reads, and the functions
below turn records into model examples:

* :func:`prefix_examples`: every prefix of a training sequence -> next item
  (the "data augmentation" of Tan et al. / RecBole / NARM), computed in-graph.
* :func:`eval_examples`: one example per evaluation record (history, target),
  or, for records without a target (whole test sessions, GRU4Rec protocol),
  one example per next item; with ``multi_target`` (``--split=fo`` datasets,
  :attr:`DatasetDir.multi_target`) one example per record with all its
  ``target_items``.
* :func:`batch_padded`: batching with padding of variable-length features.

Nothing here loads a split into memory; records stream from the shards.

>>> ds = DatasetDir("data_out/synthetic")                      # doctest: +SKIP
>>> batches = batch_padded(eval_examples(ds.records("test"), max_len=50), 512)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.data.info import DatasetInfo

from tfpps.spec import schema

AUTOTUNE = tf.data.AUTOTUNE
PARALLELISM = max(2, os.cpu_count() or 2)
PREFETCH_BATCHES = 4


def no_autotune_options() -> tf.data.Options:
    """tf.data options with autotuning off (explicit parallelism and prefetch sizes instead).

    With autotuning on, ``model.fit`` stalls at the end of every epoch until
    tf.data's autotune thread wakes from its exponential back-off sleep
    (10 ms * (2^k - 1): epochs of exactly 10.23 s or 20.47 s however short,
    measured on a 2-core CPU).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def finish(ds: tf.data.Dataset, prefetch: int = PREFETCH_BATCHES) -> tf.data.Dataset:
    """Prefetch a fixed number of batches, autotuning off (see :func:`no_autotune_options`)."""
    return ds.prefetch(prefetch).with_options(no_autotune_options())


class DatasetError(ValueError):
    """A dataset directory is missing or malformed; the message is one line."""


class DatasetDir:
    """A Beam job output directory: metadata, vocabularies and TFRecord splits."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / schema.DATASET_FILE
        if not meta_path.exists():
            raise DatasetError(
                f"{self.path}: not a tfpps dataset (no {schema.DATASET_FILE}); build one with "
                "python -m beam_jobs.build_features --source=... --input=... --output=DIR"
            )
        self.meta = json.loads(meta_path.read_text())
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

    def vocab(self, name: str) -> list[str]:
        """Tokens of vocabulary ``name`` (items/users/words/queries) in index order."""
        return [row[1] for row in self._vocab_rows(name)]

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

    def info(self):
        return DatasetInfo(
            num_items=self.num_items,
            num_users=self.num_users,
            item_counts=self.vocab_counts("items"),
            num_words=self.num_words,
            kind=self.kind,
        )

    # ------------------------------------------------------------------ records
    def files(self, split: str) -> list[str]:
        if split not in schema.SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(schema.SPLITS)}")
        files = sorted(str(p) for p in self.path.glob(schema.split_file_pattern(split)))
        return files

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
        With an ``input_context`` (tf.distribute) each worker reads a disjoint
        subset of the shards.
        """
        files = self.files(split)
        if not files:
            raise DatasetError(f"{self.path}: split {split!r} has no shards ({schema.split_file_pattern(split)})")
        if input_context is not None and input_context.num_input_pipelines > 1:
            files = files[input_context.input_pipeline_id :: input_context.num_input_pipelines]
        return read_tfrecords(
            files, self.kind, shuffle=shuffle, seed=seed, num_parallel_reads=num_parallel_reads, shuffle_buffer=shuffle_buffer
        )

    def count(self, split: str) -> int:
        return int(self.meta.get("counts", {}).get(split, 0))

    @property
    def multi_target(self) -> bool:
        """True when evaluation records hold several held-out items each (``target_items``, ``--split=fo``)."""
        return self.meta.get("eval_targets") == "multi"


def training_records(data, run, seed: int, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """``data``'s shuffled training records with the run's reader settings (``run.data``); with an
    ``input_context`` (tf.distribute) only this input pipeline's shard of the files."""
    extra = {} if input_context is None else {"input_context": input_context}
    return data.records(
        "train",
        shuffle=True,
        seed=seed,
        shuffle_buffer=run.data.shuffle_buffer,
        num_parallel_reads=run.data.num_parallel_reads,
        **extra,
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


def read_tfrecords(
    files: list[str],
    kind: str,
    shuffle: bool = False,
    seed: int = 0,
    num_parallel_reads: int = 4,
    shuffle_buffer: int = 10_000,
    parse_batch_size: int = 256,
) -> tf.data.Dataset:
    """Stream ``kind`` records from gzip TFRecord ``files`` (parallel reads, batched parsing)."""
    file_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=False)
    cycle = max(1, min(num_parallel_reads, len(files)))
    ds = file_ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=cycle,
        num_parallel_calls=min(PARALLELISM, cycle),
        deterministic=True,
    )
    if shuffle and shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(parse_batch_size).map(lambda s: schema.parse_batch(kind, s), num_parallel_calls=PARALLELISM)
    return ds.unbatch()


# ---------------------------------------------------------------------- example builders
def _window(items: tf.Tensor, ends: tf.Tensor, max_len: int) -> tuple[tf.Tensor, tf.Tensor]:
    """For each end position e, the items[e-m:e] (m = min(e, max_len)), left-aligned, 0-padded.

    Returns ``(histories [len(ends), max_len], lengths [len(ends)])``.
    """
    ends = tf.cast(ends, tf.int64)
    starts = tf.maximum(ends - max_len, 0)
    idx = starts[:, None] + tf.range(max_len, dtype=tf.int64)[None, :]
    valid = idx < ends[:, None]
    n = tf.shape(items, out_type=tf.int64)[0]
    safe = tf.minimum(idx, tf.maximum(n - 1, 0))
    gathered = tf.gather(tf.concat([items, tf.zeros([1], tf.int64)], 0), tf.where(n > 0, safe, n))
    return tf.where(valid, gathered, tf.zeros_like(gathered)), ends - starts


def prefix_examples(records: tf.data.Dataset, max_len: int, min_history: int = 1) -> tf.data.Dataset:
    """Every (prefix -> next item) pair of each record's ``item_ids``.

    A sequence ``[a, b, c]`` gives ``([a] -> b)`` and ``([a, b] -> c)``;
    histories longer than ``max_len`` keep their most recent items.
    """

    def expand(rec):
        items = rec["item_ids"]
        n = tf.shape(items, out_type=tf.int64)[0]
        ends = tf.range(min_history, tf.maximum(n, min_history), dtype=tf.int64)
        hist, lengths = _window(items, ends, max_len)
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
    ``target_items`` all its held-out items (0-padded by :func:`batch_padded`)
    and ``target_item = 0``; records without any target are skipped.
    """
    if multi_target:
        return records.filter(lambda rec: tf.size(rec["target_items"]) > 0).map(
            lambda rec: _multi_target_example(rec, max_len, with_seen)
        )

    def expand(rec):
        items = rec["item_ids"]
        target = rec["target_item"]
        has_target = target > 0
        full = tf.cond(has_target, lambda: tf.concat([items, [target]], 0), lambda: items)
        n = tf.shape(full, out_type=tf.int64)[0]
        ends = tf.cond(has_target, lambda: tf.reshape(n - 1, [1]), lambda: tf.range(1, tf.maximum(n, 1), dtype=tf.int64))
        hist, lengths = _window(full, ends, max_len)
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


def _multi_target_example(rec: dict, max_len: int, with_seen: bool) -> dict:
    items = tf.cast(rec["item_ids"], tf.int64)
    n = tf.shape(items, out_type=tf.int64)[0]
    hist, lengths = _window(items, tf.reshape(n, [1]), max_len)
    out = {
        "item_ids": hist[0],
        "length": lengths[0],
        "target_item": tf.constant(schema.PAD_ID, tf.int64),
        "target_items": tf.cast(rec["target_items"], tf.int64),
        "user_id": tf.cast(rec["user_id"], tf.int64),
    }
    if with_seen:
        out["seen_items"] = items
    return out


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
        hist, lengths = _window(flat, tf.reshape(tf.size(flat, out_type=tf.int64), [1]), max_len)
        out = {
            "item_ids": hist[0],
            "length": lengths[0],
            "last_basket": last,
            "target_items": tf.cast(rec["target_items"], tf.int64),
            "target_item": tf.constant(schema.PAD_ID, tf.int64),
            "user_id": tf.cast(rec["user_id"], tf.int64),
        }
        if with_seen:
            out["seen_items"] = flat
        return out

    return records.filter(lambda rec: tf.size(rec["target_items"]) > 0).map(to_example)


def batch_padded(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool = False) -> tf.data.Dataset:
    """Batch examples, padding variable-length features with ``PAD_ID``; prefetches."""
    return finish(ds.padded_batch(batch_size, drop_remainder=drop_remainder))


def concat_rows(pieces: list[dict]) -> dict:
    """Row-wise concatenation of feature dicts; features of rank >= 2 are 0-padded to a common width."""
    if len(pieces) == 1:
        return pieces[0]
    out = {}
    for name in pieces[0]:
        parts = [p[name] for p in pieces]
        if parts[0].shape.rank >= 2:
            width = max(int(p.shape[1]) for p in parts)
            parts = [tf.pad(p, [[0, 0], [0, width - int(p.shape[1])]] + [[0, 0]] * (p.shape.rank - 2)) for p in parts]
        out[name] = tf.concat(parts, axis=0)
    return out
