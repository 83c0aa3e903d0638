"""The KNN baselines' training sequences (:mod:`tfpps.models.baselines.itemknn`, :mod:`tfpps.models.baselines.sknn`).

* :func:`read_sequences`: the training split as distinct-item sets, one per record (or per session with
  ``split_sessions``), in CSR (:class:`Sequences`); basket records are flattened in time order.
* :func:`inverted_index`: item -> sequences lists; :func:`expand_rows`: CSR rows gathered.
* :func:`recency_index`: S-KNN's index, the sequences ranked by recency with every item's list of ranks
  cut to the candidates a history can reach.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps.spec.schema import FIRST_ID


@dataclasses.dataclass
class Sequences:
    """Training sequences as CSR: sequence ``s`` holds the sorted distinct items
    ``items[offsets[s]:offsets[s+1]]``; ``time[s]`` is its last timestamp and
    ``user[s]`` its user id. Sequences without a valid item are dropped."""

    offsets: np.ndarray  # int64 [S + 1]
    items: np.ndarray  # int64 [nnz]
    time: np.ndarray  # int64 [S]
    user: np.ndarray  # int64 [S]

    @property
    def num_sequences(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def owners(self) -> np.ndarray:
        """Sequence index of every entry of ``items``."""
        return np.repeat(np.arange(self.num_sequences, dtype=np.int64), self.lengths)


def _as_sequence(rec: dict) -> dict:
    """A sequential record's fields; a basket record flattened in time order (each basket a "session")."""
    if "baskets" not in rec:
        return {k: rec[k] for k in ("user_id", "item_ids", "timestamps", "session_starts")}
    baskets = rec["baskets"]
    lengths = baskets.row_lengths()
    n = tf.size(baskets.flat_values, out_type=tf.int64)
    starts = tf.scatter_nd(baskets.row_starts()[lengths > 0][:, None], tf.ones_like(lengths[lengths > 0]), tf.reshape(n, [1]))
    return {
        "user_id": rec["user_id"],
        "item_ids": tf.cast(baskets.flat_values, tf.int64),
        "timestamps": tf.repeat(tf.cast(rec["basket_timestamps"], tf.int64), lengths),
        "session_starts": tf.cast(starts, tf.int64),
    }


def read_sequences(data, num_items: int, split_sessions: bool = False, batch_size: int = 1024) -> Sequences:
    """Distinct-item sets of ``data.records("train")`` (one per record, or per
    session marked by ``session_starts`` with ``split_sessions``)."""
    ds = data.records("train").map(_as_sequence)
    items, times, starts, rec_len, users = [], [], [], [], []
    for batch in ds.ragged_batch(batch_size):
        ids = batch["item_ids"]
        items.append(ids.values.numpy())
        times.append(batch["timestamps"].values.numpy())
        starts.append(batch["session_starts"].values.numpy())
        rec_len.append(ids.row_lengths().numpy())
        users.append(batch["user_id"].numpy())
    if not items:
        raise ValueError("the training split holds no records")
    items = np.concatenate(items).astype(np.int64)
    times = np.concatenate(times).astype(np.int64)
    starts = np.concatenate(starts).astype(np.int64)
    rec_len = np.concatenate(rec_len).astype(np.int64)
    users = np.concatenate(users).astype(np.int64)
    record = np.repeat(np.arange(len(rec_len), dtype=np.int64), rec_len)
    if len(times) != len(items):  # records without timestamps: order of the records
        times = record.copy()
    first = np.ones(len(items), dtype=bool)
    first[1:] = record[1:] != record[:-1]
    if split_sessions and len(starts) == len(items):
        first |= starts > 0
    seq = np.cumsum(first) - 1  # raw sequence id of every event
    seq_user = users[record[first]]
    seq_time = np.full(int(seq[-1]) + 1 if len(seq) else 0, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(seq_time, seq, times)
    valid = (items >= FIRST_ID) & (items < num_items)
    keys = np.unique(seq[valid] * num_items + items[valid])  # sorted by (sequence, item), distinct
    raw_seq, item = keys // num_items, keys % num_items
    kept, new_seq = np.unique(raw_seq, return_inverse=True)
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(new_seq, minlength=len(kept)))
    return Sequences(offsets, item.astype(np.int64), seq_time[kept], seq_user[kept])


def expand_rows(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR rows ``rows`` concatenated: ``(values, index into rows of each value)``."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = offsets[rows]
    lens = offsets[rows + 1] - starts
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    if len(owner) == 0:
        return values[:0], owner
    within = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    return values[starts[owner] + within], owner


def inverted_index(seqs: Sequences, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Item -> sequences CSR ``(item_offsets [N + 1], sequence ids)``, sequence ids ascending per item."""
    order = np.argsort(seqs.items, kind="stable")
    counts = np.bincount(seqs.items, minlength=num_items)
    offsets = np.zeros(num_items + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    return offsets, seqs.owners()[order]


@dataclasses.dataclass
class RecencyIndex:
    """Training sequences re-indexed by recency rank (rank 0 = the most recent; ties: the later record)
    and the item -> ranks lists, ranks ascending within every item."""

    order: np.ndarray  # int64 [S]: rank -> index of the sequence in read order
    offsets: np.ndarray  # int64 [S + 1]: CSR of the ranked sequences' items
    items: np.ndarray  # int64 [nnz]
    lengths: np.ndarray  # int64 [S]
    user: np.ndarray  # int64 [S]
    item_offsets: np.ndarray  # int64 [N + 1]: CSR of every item's (cut) list of ranks
    item_ranks: np.ndarray  # int64


def recency_index(seqs: Sequences, num_items: int, sample_size: int, exclude_same_user: bool) -> RecencyIndex:
    """S-KNN's index of ``seqs``. With ``sample_size > 0`` every item's list is cut to its ``sample_size``
    most recent sequences (+ the most sequences any user has, with ``exclude_same_user``): the
    ``sample_size`` most recent candidates of a history are among them."""
    count = seqs.num_sequences
    order = np.lexsort((-np.arange(count), -seqs.time))  # rank 0 = most recent; ties: later record
    items, _ = expand_rows(seqs.offsets, seqs.items, order)
    lens = seqs.lengths[order]
    seq_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    seq_user = seqs.user[order]
    ranked = dataclasses.replace(seqs, offsets=seq_offsets, items=items)
    offsets, ranks = inverted_index(ranked, num_items)  # ranks ascending within every item
    if sample_size > 0:
        keep_n = sample_size
        if exclude_same_user:
            users = seq_user[seq_user >= FIRST_ID]
            keep_n += int(np.bincount(users).max()) if users.size else 0
        sizes = np.diff(offsets)
        within = np.arange(len(ranks)) - np.repeat(offsets[:-1], sizes)
        ranks = ranks[within < keep_n]
        offsets = np.concatenate([[0], np.cumsum(np.minimum(sizes, keep_n))]).astype(np.int64)
    return RecencyIndex(order, seq_offsets, items, lens, seq_user, offsets, ranks)
