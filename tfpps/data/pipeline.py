"""The shared tf.data plumbing over the Beam job's output: reading, batching, prefetching.

* :func:`read_tfrecords`: stream parsed records from gzip TFRecord shards
  (parallel, file-interleaved reads; what :meth:`tfpps.data.dataset_dir.DatasetDir.records` uses).
* :func:`training_records`: a dataset's shuffled training records with a run's reader settings.
* :func:`batch_padded`: batching with padding of variable-length features; :func:`finish`:
  prefetching with tf.data autotuning off; :func:`concat_rows`: row-wise concatenation of batches.

The builders that turn records into model examples are in :mod:`tfpps.data.examples`.
Nothing here loads a split into memory; records stream from the shards.

>>> from tfpps.data.dataset_dir import DatasetDir                # doctest: +SKIP
>>> from tfpps.data.examples.prefix import eval_examples        # doctest: +SKIP
>>> batches = batch_padded(eval_examples(DatasetDir("data_out/synthetic").records("test"), max_len=50), 512)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Callable

import tensorflow as tf

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


def replica_epoch(
    examples: Any,
    batch: Callable[[Any, int], tf.data.Dataset],
    global_batch: int,
    input_context: tf.distribute.InputContext,
    examples_of_pipeline: Callable[[tf.distribute.InputContext], int],
) -> tf.data.Dataset:
    """One input pipeline's epoch under tf.distribute: ``batch(examples, per-replica batch)`` cut to the
    number of batches EVERY pipeline has, so synchronous workers take the same number of steps.

    ``examples`` are this pipeline's (its file shard's) examples (a dataset, or whatever ``batch`` builds
    the batches from), ``examples_of_pipeline(ctx)`` counts
    pipeline ``ctx.input_pipeline_id``'s. The count is that of the smallest shard, ``ceil(examples /
    per-replica batch)``, rounded down to whole steps of the worker's replicas; the tail of a larger
    shard's shuffled stream is left out of that epoch. ``global_batch`` (``train.batch_size``) is the
    per-replica batch times the replicas in sync."""
    per_replica = input_context.get_per_replica_batch_size(global_batch)
    pipelines = input_context.num_input_pipelines
    local_replicas = max(1, input_context.num_replicas_in_sync // pipelines)
    shards = [examples_of_pipeline(tf.distribute.InputContext(pipelines, i, input_context.num_replicas_in_sync))
              for i in range(pipelines)]
    num_batches = min(-(-n // per_replica) for n in shards) // local_replicas * local_replicas
    ds = batch(examples, per_replica).take(num_batches)
    return finish(ds.apply(tf.data.experimental.assert_cardinality(num_batches)))


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
