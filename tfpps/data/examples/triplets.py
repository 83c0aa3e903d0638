"""Training triplets for metric-learning recommenders (CML, HLRM): user, positive, negative, history.

One epoch visits every distinct (user, training item) pair once, in a fresh
random order (Tran et al.'s ``huitre/data/generators/generator.py`` cycles
through all positive pairs). Each batch is completed in-graph:

* ``negative_item``: one item uniform over the real items (ids
  ``>= FIRST_ID``) that are **not training items of the user**: the
  distribution of the original's draw-and-re-draw loop
  (``huitre/data/sampler.py``), sampled exactly in one step by a binary search
  over the user's sorted positives (:func:`sample_negatives`); no dense
  user x item matrix is built.
* ``item_ids [B, P]`` / ``length [B]`` (only with ``max_history > 0``): up to
  ``max_history`` of the user's OTHER training items, a uniform random subset
  without replacement when there are more (the original's
  ``pref_items[uid] - {iid}`` then ``np.random.choice(..., replace=False)``),
  left-aligned and 0-padded to the widest row of the batch
  (:func:`subsample_history`).

Randomness is stateless and keyed by the epoch seed, so a run is reproducible.

>>> import numpy as np
>>> ui = UserItems.from_lists({2: [5, 3, 3], 3: [4]}, num_users=4, num_items=7)
>>> ui.pairs()[0].tolist(), ui.pairs()[1].tolist()
([2, 2, 3], [3, 5, 4])
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

import tensorflow as tf

from tfpps.data.pipeline import finish
from tfpps.spec.schema import FIRST_ID, PAD_ID


@dataclasses.dataclass
class UserItems:
    """Each user's distinct training items (ids ``>= FIRST_ID``), as CSR arrays sorted within rows."""

    row_splits: np.ndarray  # int64 [num_users + 1]
    items: np.ndarray  # int64 [nnz]
    num_users: int
    num_items: int

    @classmethod
    def from_lists(cls, lists: Mapping[int, Sequence[int]], num_users: int, num_items: int) -> "UserItems":
        rows = [np.zeros(0, np.int64)] * num_users
        for user, items in lists.items():
            arr = np.unique(np.asarray(list(items), np.int64))
            rows[int(user)] = np.unique(np.concatenate([rows[int(user)], arr[arr >= FIRST_ID]]))
        lengths = np.array([len(r) for r in rows], np.int64)
        splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
        return cls(splits, items, num_users, num_items)

    @classmethod
    def from_dataset(cls, data, split: str = "train") -> "UserItems":
        """Merge every ``split`` record of a :class:`~tfpps.data.dataset_dir.DatasetDir` by user."""
        lists: dict[int, list] = {}
        chunks = data.records(split).map(lambda r: {"user_id": r["user_id"], "item_ids": r["item_ids"]})
        for chunk in chunks.ragged_batch(4096):
            items = chunk["item_ids"]
            rows = np.split(items.flat_values.numpy(), items.row_splits.numpy()[1:-1])
            for user, row in zip(chunk["user_id"].numpy().tolist(), rows):
                lists.setdefault(int(user), []).extend(row.tolist())
        return cls.from_lists(lists, data.num_users, data.num_items)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(users, items)``: every distinct training pair, by user then item."""
        users = np.repeat(np.arange(self.num_users, dtype=np.int64), np.diff(self.row_splits))
        return users, self.items


def sample_negatives(users: tf.Tensor, rows: tf.RaggedTensor, num_items: int, seed: tf.Tensor) -> tf.Tensor:
    """One negative per user, uniform over the real items that are NOT among the user's training items.

    This is the distribution of the original's loop (draw uniformly, re-draw
    while the item is a positive), drawn in one step: with the user's sorted
    positives :math:`p_0 < p_1 < \\dots` (offsets from ``FIRST_ID``) the
    ``r``-th non-positive item is ``FIRST_ID + r + #{j : p_j - j <= r}``, a
    batched binary search. A user who has every item gets a uniform item.

    Args:
      users: int ``[B]``.
      rows: ragged ``[num_users, None]`` sorted distinct positives (ids ``>= FIRST_ID``).
      num_items: vocabulary size (ids ``0 .. num_items - 1``).
      seed: stateless seed ``[2]``.
    """
    users = tf.cast(users, tf.int64)
    real = num_items - FIRST_ID
    positives = tf.gather(rows, users)  # [B, None]
    count = positives.row_lengths()
    offsets = positives - FIRST_ID - tf.ragged.range(count)  # p_j - j: non-decreasing
    dense = offsets.to_tensor(default_value=tf.int64.max)  # padding sorts last and never counts
    free = tf.maximum(real - count, 1)
    u = tf.random.stateless_uniform(tf.shape(users), seed, dtype=tf.float32)
    r = tf.minimum(tf.cast(u * tf.cast(free, tf.float32), tf.int64), free - 1)
    before = tf.searchsorted(dense, r[:, None], side="right", out_type=tf.int64)[:, 0]
    negative = FIRST_ID + r + before
    fallback = FIRST_ID + tf.minimum(tf.cast(u * real, tf.int64), real - 1)  # a user with every item
    return tf.where(count < real, negative, fallback)


def subsample_history(ids: tf.Tensor, valid: tf.Tensor, keys: tf.Tensor, max_history: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Keep up to ``max_history`` of the ``valid`` entries of each row of ``ids [B, L]``: those with the largest ``keys``.

    With uniform random ``keys`` this is a uniform subset without replacement.
    Returns ``(item_ids [B, min(L, max_history)], length [B])``: the kept ids
    left-aligned (in key order), 0-padded.
    """
    width = tf.minimum(tf.shape(ids)[1], max_history)
    ranked = tf.where(valid, tf.cast(keys, tf.float32), -1.0)
    top = tf.math.top_k(ranked, k=width, sorted=True)
    chosen = tf.gather(ids, top.indices, batch_dims=1)
    length = tf.minimum(tf.reduce_sum(tf.cast(valid, tf.int64), axis=1), tf.cast(width, tf.int64))
    keep = tf.range(width, dtype=tf.int64)[None, :] < length[:, None]
    return tf.where(keep, chosen, tf.zeros_like(chosen)), length


def shard_pairs(num_pairs: int, shard: tuple[int, int] | None) -> np.ndarray:
    """Indices of the pairs (:meth:`UserItems.pairs`) that shard ``(index, count)`` trains on: every
    ``count``-th pair from ``index`` (all pairs without a shard); shards are disjoint and differ by one pair at most.

    >>> shard_pairs(5, (1, 2)).tolist(), len(shard_pairs(5, None))
    ([1, 3], 5)
    """
    if shard is None:
        return np.arange(num_pairs, dtype=np.int64)
    index, count = shard
    return np.arange(index, num_pairs, count, dtype=np.int64)


def triplet_dataset(user_items: UserItems, batch_size: int, seed: int, max_history: int = 0,
                    shard: tuple[int, int] | None = None) -> tf.data.Dataset:
    """Batches of ``user_id``, ``positive_item``, ``negative_item`` (and ``item_ids``/``length`` histories).

    See the module docstring. The order of the pairs is reshuffled on every
    iteration (epoch); the dataset declares its cardinality. With ``shard=(index, count)`` (one tf.distribute
    input pipeline of ``count``) only that shard's pairs (:func:`shard_pairs`); negatives and histories still
    come from the user's whole training set.
    """
    users_np, items_np = user_items.pairs()
    chosen = shard_pairs(len(users_np), shard)
    users_np, items_np = users_np[chosen], items_np[chosen]
    if shard is not None:
        seed += 1_000_003 * shard[0]  # the shards' orders and negatives are drawn apart (shard 0 keeps ``seed``)
    n = len(users_np)
    if n == 0:
        raise ValueError("no training pairs: every user has an empty training history")
    users, items = tf.constant(users_np), tf.constant(items_np)
    rows = tf.RaggedTensor.from_row_splits(tf.constant(user_items.items), tf.constant(user_items.row_splits))
    num_items = user_items.num_items

    def complete(index, pair_seed):
        user, pos = tf.gather(users, index), tf.gather(items, index)
        out = {
            "user_id": user,
            "positive_item": pos,
            "negative_item": sample_negatives(user, rows, num_items, pair_seed[0]),
        }
        if max_history > 0:
            hist = tf.gather(rows, user).to_tensor(default_value=PAD_ID)  # [B, L]
            valid = tf.logical_and(hist != PAD_ID, hist != pos[:, None])
            random_keys = tf.random.stateless_uniform(tf.shape(hist), pair_seed[1])
            out["item_ids"], out["length"] = subsample_history(hist, valid, random_keys, max_history)
        return out

    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4).map(lambda s: tf.reshape(s, [2, 2]))
    ds = tf.data.Dataset.zip((order, seeds)).map(complete, num_parallel_calls=2, deterministic=True)
    return finish(ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size))))
