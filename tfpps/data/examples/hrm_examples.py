"""HRM's training examples (:mod:`tfpps.models.sequential.hrm`, departure 8), from the training records.

* Basket data: one example per item of every basket after the first, the previous basket as
  ``last_basket`` (:func:`basket_examples`).
* Sequential data: every (last ``high_order`` items -> next item) example, built chunk-wise and
  vectorised (:func:`window_examples`, :func:`sequential_train_examples`).

:func:`train_batches` is one epoch of either, batched, with its cardinality declared.
"""
from __future__ import annotations

import tensorflow as tf

from tfpps.data.dataset_dir import cached
from tfpps.data.pipeline import finish, replica_epoch
from tfpps.spec.schema import BASKET, FIRST_ID, PAD_ID


def train_batches(data, records: tf.data.Dataset, high_order: int, batch_size: int, shuffle_buffer: int,
                  seed: int, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One epoch of HRM training batches from ``records`` (``data``'s shuffled training records).

    Sequential data: prefix examples with the last ``high_order`` items
    (``item_ids [high_order]``, ``length``, ``user_id``, ``target_item``).
    Basket data: ``last_basket``, ``user_id``, ``target_item``. The
    dataset declares its cardinality (one counting pass, once per process),
    so ``fit`` works with ``steps_per_execution > 1``.

    With an ``input_context`` (tf.distribute) ``records`` are this input pipeline's file shard; the batches
    are per-replica (``batch_size`` is the global batch), as many as every pipeline has
    (:func:`~tfpps.data.pipeline.replica_epoch`).
    """
    def batches(records: tf.data.Dataset, size: int, ctx: tf.distribute.InputContext | None) -> tf.data.Dataset:
        if data.info().kind == BASKET:
            ds = basket_examples(records).filter(lambda ex: ex["target_item"] >= FIRST_ID)
            if shuffle_buffer > 0:
                ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            return ds.padded_batch(size)
        total, num_records = counts(ctx)
        return sequential_train_examples(records, high_order, size, shuffle_buffer, seed, total, num_records)

    def counts(ctx: tf.distribute.InputContext | None) -> tuple[int, int]:
        """(examples, records) of the training split, or of pipeline ``ctx``'s file shard; once per process."""
        shard = None if ctx is None else (ctx.input_pipeline_id, ctx.num_input_pipelines)
        if data.info().kind == BASKET:
            return cached(data, ("hrm_basket_count", shard), lambda: (_count_basket(data, ctx), 0))
        return cached(data, ("hrm_sequential_counts", shard), lambda: _count_sequential(data, ctx))

    if input_context is not None:
        return replica_epoch(records, lambda r, size: batches(r, size, input_context), batch_size, input_context,
                             lambda ctx: counts(ctx)[0])
    ds = batches(records, batch_size, None)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-counts(None)[0] // batch_size)))
    return finish(ds)


def _shard_records(data, ctx: tf.distribute.InputContext | None) -> tf.data.Dataset:
    return data.records("train") if ctx is None else data.records("train", input_context=ctx)


def _count(ds: tf.data.Dataset) -> int:
    return int(ds.reduce(tf.constant(0, tf.int64), lambda total, c: total + c).numpy())


def basket_examples(records: tf.data.Dataset) -> tf.data.Dataset:
    """One example per item of every basket after the first: ``last_basket`` (the previous basket) -> item.

    ``last_basket`` is 0-padded to the widest previous basket of the record;
    batch with ``padded_batch``.
    """

    def expand(rec):
        baskets = rec["baskets"]  # ragged [n_baskets, None]
        nxt = baskets[1:]
        targets = nxt.flat_values
        previous = baskets[:-1].to_tensor(default_value=PAD_ID)  # [n_baskets - 1, W]
        last = tf.gather(previous, nxt.value_rowids())
        return tf.data.Dataset.from_tensor_slices(
            {
                "last_basket": tf.cast(last, tf.int64),
                "target_item": tf.cast(targets, tf.int64),
                "user_id": tf.fill(tf.shape(targets), tf.cast(rec["user_id"], tf.int64)),
            }
        )

    return records.flat_map(expand)


def window_examples(chunk: dict, high_order: int) -> dict:
    """Every (last ``high_order`` items -> next item) example of a chunk of records, vectorised.

    ``chunk["item_ids"]`` is a ragged ``[R, None]`` batch of sequences and
    ``chunk["user_id"]`` ``[R]``. Returns dense tensors over all the chunk's
    examples whose target is a real item: ``item_ids [n, high_order]``
    (left-aligned, 0-padded), ``length [n]``, ``user_id [n]`` and
    ``target_item [n]``; the same examples as
    :func:`tfpps.data.examples.prefix.prefix_examples` with ``max_len=high_order``,
    without a per-record ``flat_map``.
    """
    items = chunk["item_ids"]
    flat = tf.cast(items.flat_values, tf.int64)
    lengths = tf.cast(items.row_lengths(), tf.int64)
    positions = tf.ragged.range(tf.ones_like(lengths), tf.maximum(lengths, 1))  # target positions 1 .. n-1
    rows, pos = positions.value_rowids(), positions.flat_values
    base = tf.gather(tf.cast(items.row_starts(), tf.int64), rows)
    target = tf.gather(flat, base + pos)
    length = tf.minimum(pos, high_order)
    start = pos - length
    offsets = tf.range(high_order, dtype=tf.int64)[None, :]
    valid = offsets < length[:, None]
    idx = tf.where(valid, start[:, None] + offsets, start[:, None])
    hist = tf.where(valid, tf.gather(flat, base[:, None] + idx), tf.zeros_like(idx))
    keep = target >= FIRST_ID
    return {
        "item_ids": tf.boolean_mask(hist, keep),
        "length": tf.boolean_mask(length, keep),
        "user_id": tf.boolean_mask(tf.gather(tf.cast(chunk["user_id"], tf.int64), rows), keep),
        "target_item": tf.boolean_mask(target, keep),
    }


def _sequence_chunks(records: tf.data.Dataset, size: int) -> tf.data.Dataset:
    records = records.map(lambda r: {"item_ids": r["item_ids"], "user_id": r["user_id"]})
    return records.ragged_batch(size, row_splits_dtype=tf.int64)


def _count_sequential(data, ctx: tf.distribute.InputContext | None = None) -> tuple[int, int]:
    """(training examples with a real-item target, records) of a sequential dataset (of pipeline ``ctx``'s shard)."""
    counts = _sequence_chunks(_shard_records(data, ctx), 1024).map(
        lambda c: tf.stack(
            [tf.reduce_sum(tf.cast(c["item_ids"][:, 1:].flat_values >= FIRST_ID, tf.int64)), c["item_ids"].nrows()]
        )
    )
    total = counts.reduce(tf.zeros([2], tf.int64), lambda acc, c: acc + c).numpy()
    return int(total[0]), int(total[1])


def sequential_train_examples(
    records, high_order: int, batch_size: int, shuffle_buffer: int, seed: int, total: int, num_records: int
) -> tf.data.Dataset:
    """Batches of HRM training examples from sequential records, built and shuffled chunk-wise.

    Records are shuffled (re-shuffled on every iteration) through a buffer
    of ``shuffle_buffer`` records and grouped into chunks of about
    ``shuffle_buffer`` EXAMPLES; each chunk's examples are built at once
    (:func:`window_examples`), randomly permuted (a fresh permutation on every
    iteration), and cut into batches with ``rebatch`` (exactly
    ``unbatch().batch(batch_size)``, without per-example work). When one chunk
    holds the whole split (e.g. ml-100k with the default buffer) every epoch is
    a uniform random permutation of all examples, as RecBole's.
    """
    per_record = max(1.0, total / max(num_records, 1))
    if shuffle_buffer > 0:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        chunk_records = max(1, int(shuffle_buffer / per_record))
    else:
        chunk_records = max(1, int(batch_size / per_record) + 1)
    chunks = _sequence_chunks(records, chunk_records).map(lambda c: window_examples(c, high_order))
    if shuffle_buffer > 0:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        def permute(examples, pair):
            n = tf.shape(examples["target_item"])[0]
            order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=pair)
            return {name: tf.gather(value, order) for name, value in examples.items()}

        chunks = tf.data.Dataset.zip((chunks, seeds)).map(permute)
    return chunks.rebatch(batch_size, drop_remainder=False)


def _count_basket(data, ctx: tf.distribute.InputContext | None = None) -> int:
    records = _shard_records(data, ctx)
    return _count(records.map(lambda r: tf.reduce_sum(tf.cast(r["baskets"][1:].flat_values >= FIRST_ID, tf.int64))))
