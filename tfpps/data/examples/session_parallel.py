"""Session-parallel mini-batches (Hidasi et al., ICLR 2016), as a fixed-shape schedule.

The official ``SessionDataIterator`` (hidasib/GRU4Rec*) lays sessions, sorted
by the time of their first event, into ``B`` parallel slots. Every step feeds,
for each active slot, the current item as input and the next item as target.
When a session ends its slot's hidden state is zeroed and the next unused
session is loaded into it; when no sessions are left the slot is dropped and
the batch shrinks (``H = H[valid_mask]``). With ``n_sample == 0`` training
stops once fewer than two slots remain (no negatives otherwise).

tfpps computes the same schedule once, in numpy, and keeps every step at
exactly ``B`` slots so the training graph never retraces:

``input_items``  int32 ``[T, B]`` item fed at step ``t`` in slot ``b`` (0 = PAD where invalid)
``target_items`` int32 ``[T, B]`` next item (the positive; 0 where invalid)
``reset``        bool  ``[T, B]`` the slot starts a new session at ``t``: zero its state first
``valid``        bool  ``[T, B]`` the slot holds data at ``t``; once False it stays False

Slot assignment reproduces the official iterator exactly: sessions are taken
in order and a slot that runs out gets the next session at the step it
becomes free; slots freed at the same step are refilled in slot order. Only
the storage differs: a finished slot is masked (``valid = False``) instead of
being removed, which yields the same per-step set of (input, target) pairs.

Sessions (records) with fewer than two events are skipped. Ties of first-event
time keep record order (stable sort; the official ``np.argsort`` is not stable).

Example::

    sched = build_schedule([np.array([2, 3, 4]), np.array([5, 6])], first_times=[0, 1], batch_size=2)
    ds = sched.dataset()        # one dict of [B] tensors per step
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import numpy as np

import tensorflow as tf

from tfpps.data.dataset_dir import cached


class StepSchedule:
    """A fixed-shape schedule of ``[T, B]`` arrays, one row per training step, ``B`` slots per row.

    Subclasses are dataclasses whose fields include ``input_items`` and ``valid`` and whose
    ``FEATURES`` name the fields that :meth:`dataset` yields.
    """

    FEATURES: ClassVar[tuple[str, ...]] = ()
    input_items: np.ndarray
    valid: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.input_items.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.input_items.shape[1])

    @property
    def num_events(self) -> int:
        """Number of (input, target) training pairs, i.e. valid slot-steps."""
        return int(self.valid.sum())

    #: fill value of a field in :meth:`padded` steps (0 / False otherwise)
    PAD_FILL: ClassVar[dict[str, int]] = {}

    def dataset(self) -> tf.data.Dataset:
        """``tf.data.Dataset`` yielding one dict of ``[B]`` tensors (the ``FEATURES``) per step, in order."""
        return tf.data.Dataset.from_tensor_slices({name: getattr(self, name) for name in self.FEATURES})

    def padded(self, num_steps: int) -> "StepSchedule":
        """This schedule with steps of no valid slot appended up to ``num_steps`` (they train nothing)."""
        extra = num_steps - self.num_steps
        if extra <= 0:
            return self
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return type(self)(**{name: np.concatenate([a, np.full((extra, a.shape[1]), self.PAD_FILL.get(name, 0), a.dtype)])
                             for name, a in arrays.items()})


def interleaved_dataset(schedules: Sequence[StepSchedule]) -> tf.data.Dataset:
    """One input pipeline's elements for its local replicas' equally long ``schedules``: step ``t`` of the
    first, of the second, ..., then step ``t + 1`` (tf.distribute hands a pipeline's consecutive elements
    to its local replicas in turn)."""
    first = schedules[0]
    return tf.data.Dataset.from_tensor_slices({
        name: np.stack([getattr(s, name) for s in schedules], axis=1).reshape(-1, first.batch_size)
        for name in first.FEATURES
    })


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices ``starts[0] .. starts[0] + lengths[0] - 1, starts[1] ..``: the concatenated ranges (int64).

    >>> gather_ranges(np.array([5, 1]), np.array([2, 3])).tolist()
    [5, 6, 1, 2, 3]
    """
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum(), dtype=np.int64)


@dataclasses.dataclass
class SessionParallelSchedule(StepSchedule):
    """Per-step arrays of a session-parallel epoch (see the module docstring)."""

    FEATURES: ClassVar[tuple[str, ...]] = ("input_items", "target_items", "reset", "valid")
    input_items: np.ndarray
    target_items: np.ndarray
    reset: np.ndarray
    valid: np.ndarray


@dataclasses.dataclass
class Sessions:
    """Sessions stored flat: ``items[offsets[s]:offsets[s+1]]`` is session ``s``."""

    items: np.ndarray  # int32 [E]
    offsets: np.ndarray  # int64 [S + 1]
    first_times: np.ndarray  # int64 [S]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, sessions: np.ndarray) -> "Sessions":
        """The sessions of index array ``sessions``, in that order."""
        lengths = self.lengths[sessions]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Sessions(self.items[gather_ranges(self.offsets[:-1][sessions], lengths)], offsets, self.first_times[sessions])

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]], first_times: Sequence[int] | None = None) -> "Sessions":
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        items = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if len(sequences) else np.zeros(0, np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        times = np.zeros(len(sequences), np.int64) if first_times is None else np.asarray(first_times, np.int64)
        return cls(items, offsets, times)


def sessions_from_records(records: tf.data.Dataset, read_batch: int = 4096) -> Sessions:
    """Collect ``item_ids`` and first timestamps of every record (one record = one session).

    Reads ragged batches of records, so the Python loop is per ``read_batch``
    records, not per event.
    """

    def select(rec):
        ts = rec.get("timestamps")
        first = tf.constant(0, tf.int64) if ts is None else tf.concat([tf.cast(ts, tf.int64), [0]], 0)[0]
        return {"item_ids": tf.cast(rec["item_ids"], tf.int32), "first": first}

    ds = records.map(select, num_parallel_calls=tf.data.AUTOTUNE).ragged_batch(read_batch)
    items, lengths, firsts = [], [], []
    for batch in ds:
        rt = batch["item_ids"]
        if isinstance(rt, tf.RaggedTensor):
            items.append(rt.flat_values.numpy())
            lengths.append(rt.row_lengths().numpy())
        else:  # records of a statically known, equal length come back dense
            dense = rt.numpy()
            items.append(dense.reshape(-1))
            lengths.append(np.full(dense.shape[0], dense.shape[1], np.int64))
        firsts.append(batch["first"].numpy())
    if not items:
        return Sessions(np.zeros(0, np.int32), np.zeros(1, np.int64), np.zeros(0, np.int64))
    lengths = np.concatenate(lengths).astype(np.int64)
    return Sessions(
        np.concatenate(items).astype(np.int32),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.concatenate(firsts).astype(np.int64),
    )


def assign_slots(num_steps: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot and start step of each session (in order), the official greedy refill.

    ``num_steps[s]`` is the number of training steps of session ``s``
    (length - 1, >= 1). Returns ``(slot [S], start [S])``. One loop iteration
    per distinct slot-release time, vectorised over the slots released then.
    """
    n = len(num_steps)
    slot = np.empty(n, np.int64)
    start = np.empty(n, np.int64)
    k = min(batch_size, n)
    slot[:k] = np.arange(k)
    start[:k] = 0
    free = np.full(batch_size, np.iinfo(np.int64).max, np.int64)
    free[:k] = num_steps[:k]
    nxt = k
    while nxt < n:
        t = free.min()
        slots = np.flatnonzero(free == t)[: n - nxt]
        idx = np.arange(nxt, nxt + len(slots))
        slot[idx] = slots
        start[idx] = t
        free[slots] = t + num_steps[idx]
        nxt += len(slots)
    return slot, start


def build_schedule(
    sessions: Sessions | Sequence[Sequence[int]],
    batch_size: int,
    first_times: Sequence[int] | None = None,
    min_valid: int = 1,
) -> SessionParallelSchedule:
    """The session-parallel schedule of one epoch.

    Args:
      sessions: a :class:`Sessions` or a list of item-id sequences.
      batch_size: ``B``, the number of parallel slots.
      first_times: first-event time of each session when ``sessions`` is a list.
      min_valid: stop at the first step with fewer valid slots than this
        (2 reproduces the official stop rule when ``n_sample == 0``; 1 runs
        until the data is exhausted, as with ``n_sample > 0``).
    """
    if not isinstance(sessions, Sessions):
        sessions = Sessions.from_lists(sessions, first_times)
    lengths = sessions.lengths
    keep = np.flatnonzero(lengths >= 2)
    order = keep[np.argsort(sessions.first_times[keep], kind="stable")]
    n_steps = lengths[order] - 1
    b = int(batch_size)
    if len(order) == 0:
        empty = np.zeros((0, b), np.int32)
        return SessionParallelSchedule(empty, empty.copy(), empty.astype(bool), empty.astype(bool))
    slot, start = assign_slots(n_steps, b)
    num_t = int((start + n_steps).max())

    # every (session, position) pair, vectorised
    total = int(n_steps.sum())
    sess = np.repeat(np.arange(len(order)), n_steps)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps)
    rows = start[sess] + pos
    cols = slot[sess]
    src = sessions.offsets[order][sess] + pos

    inp = np.zeros((num_t, b), np.int32)
    tgt = np.zeros((num_t, b), np.int32)
    reset = np.zeros((num_t, b), bool)
    valid = np.zeros((num_t, b), bool)
    inp[rows, cols] = sessions.items[src]
    tgt[rows, cols] = sessions.items[src + 1]
    reset[rows, cols] = pos == 0
    valid[rows, cols] = True

    if min_valid > 1:
        short = np.flatnonzero(valid.sum(axis=1) < min_valid)
        if len(short):
            cut = int(short[0])
            inp, tgt, reset, valid = inp[:cut], tgt[:cut], reset[:cut], valid[:cut]
    return SessionParallelSchedule(inp, tgt, reset, valid)


def session_parallel_dataset(data, batch_size: int, n_sample: int, split: str = "train") -> tuple[tf.data.Dataset, SessionParallelSchedule]:
    """Schedule + dataset for ``data`` (anything with ``.records(split)``), cached per (data, B, stop rule).

    The schedule is identical every epoch (time-ordered, no shuffling, as the
    official code), so it is computed once per process (:func:`tfpps.data.dataset_dir.cached`).
    """
    min_valid = 2 if n_sample == 0 else 1
    sched = cached(data, ("session_parallel_schedule", split, int(batch_size), min_valid),
                   lambda: build_schedule(sessions_from_records(data.records(split)), batch_size, min_valid=min_valid))
    return sched.dataset(), sched


def replica_schedules(data, batch_size: int, n_sample: int, pipelines: int, replicas: int,
                      split: str = "train") -> list[list[SessionParallelSchedule]]:
    """Session-parallel schedules of ``replicas`` tf.distribute replicas fed by ``pipelines`` input pipelines:
    ``[pipeline][local replica]``, every one padded (:meth:`StepSchedule.padded`) to the longest one's steps.

    Input pipeline ``i`` reads its file shard of ``split`` (files ``[i::pipelines]``); its sessions, in the
    order of their first event, are dealt round-robin to its ``replicas / pipelines`` local replicas; each
    replica lays its sessions into ``batch_size / replicas`` slots (:func:`build_schedule`, the official
    refill). Every process computes all of them (one read of the split, cached), so all pipelines agree on
    the number of steps."""
    if replicas % pipelines or batch_size % replicas:
        raise ValueError(f"{replicas} replicas over {pipelines} input pipelines and a batch of {batch_size}: "
                         "each must divide the next")
    min_valid = 2 if n_sample == 0 else 1
    slots, local = batch_size // replicas, replicas // pipelines

    def build() -> list[list[SessionParallelSchedule]]:
        out = []
        for i in range(pipelines):
            ctx = tf.distribute.InputContext(pipelines, i, replicas)
            sessions = sessions_from_records(data.records(split, input_context=ctx))
            order = np.argsort(sessions.first_times, kind="stable")
            out.append([build_schedule(sessions.subset(order[r::local]), slots, min_valid=min_valid)
                        for r in range(local)])
        steps = max(s.num_steps for row in out for s in row)
        return [[s.padded(steps) for s in row] for row in out]

    return cached(data, ("session_parallel_replicas", split, int(batch_size), min_valid, pipelines, replicas), build)


def replica_dataset(data, batch_size: int, n_sample: int, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    """Input pipeline ``input_context.input_pipeline_id``'s epoch (:func:`replica_schedules`): its local
    replicas' steps interleaved (step ``t`` of replica 0, of replica 1, ...), as tf.distribute hands
    consecutive elements of a pipeline to its local replicas; ``[batch_size / replicas]`` slots each."""
    return interleaved_dataset(replica_schedules(data, batch_size, n_sample, input_context.num_input_pipelines,
                                                 input_context.num_replicas_in_sync)[input_context.input_pipeline_id])
