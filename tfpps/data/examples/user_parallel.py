"""User-parallel mini-batches for session-aware RNNs (Quadrana et al., RecSys 2017).

HGRU4Rec's ``HGRU4Rec.iterate`` (``mquad/hgru4rec``) lays *users* into ``B``
parallel slots. A slot walks one user's sessions in time order, feeding each
session's events one step at a time (input = current item, target = next
item). Two flags tell the network what happens at a step:

``sstart``  the slot starts a new session: the user GRU consumes the last
            session state and the session GRU is re-initialised from the user
``ustart``  the slot starts a new user: both states are reset to zero

When a user's last session ends the slot takes the next unused user.

tfpps computes the whole epoch's schedule once, in numpy, with every step at
exactly ``B`` slots (so the training graph never retraces)::

    input_items  int32 [T, B]   item fed at step t in slot b (0 = PAD where invalid)
    target_items int32 [T, B]   next item (0 where invalid)
    sstart       bool  [T, B]   first step of a session (also true at a user start)
    ustart       bool  [T, B]   first step of a user
    valid        bool  [T, B]   the slot holds data at t
    stream       int32 [T, B]   index of the user (stream) in the slot, -1 where invalid
    stream_end   bool  [T, B]   last step of that stream

Slot assignment is the greedy refill of the reference (users in order; slots
freed at the same step are refilled in slot order), computed by
:func:`tfpps.data.examples.session_parallel.assign_slots`. Sessions shorter than two
events give no step and are skipped.

Differences from the reference iterator (documented in :mod:`tfpps.models.sequential.hrnn`):
the reference ends the epoch as soon as one slot finds no user left to load,
dropping the rest of the other ``B - 1`` slots' users every epoch (always the
same users, since the order is fixed). tfpps keeps going with masked slots
until the data is exhausted (``min_valid``) unless ``drop_tail`` asks for the
reference behaviour.

Example::

    users = UserSessions.from_nested([[[2, 3, 4], [5, 6]], [[7, 8]]])
    sched = build_user_schedule(users, batch_size=2)
    sched.sstart[:, 0]   # [True, False, True]: the first user's two sessions
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import numpy as np

import tensorflow as tf

from tfpps.data.examples.session_parallel import StepSchedule, assign_slots, gather_ranges


@dataclasses.dataclass
class UserSessions:
    """Sessions grouped into per-user streams, flat.

    ``items[session_offsets[s]:session_offsets[s+1]]`` is session ``s``;
    ``user_offsets[u]:user_offsets[u+1]`` are the sessions of stream ``u``
    (time ordered); ``user_ids[u]`` is its user id.
    """

    items: np.ndarray  # int32 [E]
    session_offsets: np.ndarray  # int64 [S + 1]
    user_offsets: np.ndarray  # int64 [U + 1]
    user_ids: np.ndarray  # int64 [U]

    @property
    def num_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def session_lengths(self) -> np.ndarray:
        return np.diff(self.session_offsets)

    def subset(self, streams: np.ndarray) -> "UserSessions":
        """The streams of index array ``streams``, in that order."""
        streams = np.asarray(streams, np.int64)
        per_user = np.diff(self.user_offsets)[streams]
        sessions = gather_ranges(self.user_offsets[:-1][streams], per_user)
        lengths = self.session_lengths[sessions]
        return UserSessions(
            self.items[gather_ranges(self.session_offsets[:-1][sessions], lengths)],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64),
            self.user_ids[streams],
        )

    def sessions_of(self, u: int) -> list[np.ndarray]:
        lo, hi = self.user_offsets[u], self.user_offsets[u + 1]
        return [self.items[self.session_offsets[s] : self.session_offsets[s + 1]] for s in range(lo, hi)]

    @classmethod
    def from_nested(cls, users: Sequence[Sequence[Sequence[int]]], user_ids: Sequence[int] | None = None) -> "UserSessions":
        """From ``users[u][s]`` = item list of session ``s`` of stream ``u``."""
        sessions = [np.asarray(s, np.int32) for u in users for s in u]
        lengths = np.array([len(s) for s in sessions], np.int64)
        per_user = np.array([len(u) for u in users], np.int64)
        items = np.concatenate(sessions) if sessions else np.zeros(0, np.int32)
        ids = np.arange(len(users), dtype=np.int64) if user_ids is None else np.asarray(user_ids, np.int64)
        return cls(
            items.astype(np.int32),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64),
            ids,
        )


@dataclasses.dataclass
class FlatSessions:
    """Every session of some records: items, owner user, first timestamp, reading order."""

    items: np.ndarray  # int32 [E]
    offsets: np.ndarray  # int64 [S + 1]
    users: np.ndarray  # int64 [S]
    first_times: np.ndarray  # int64 [S]
    last_times: np.ndarray  # int64 [S]
    record: np.ndarray  # int64 [S]: index of the record the session came from
    is_last_in_record: np.ndarray  # bool [S]

    @property
    def num_sessions(self) -> int:
        return int(len(self.users))

    def session(self, s: int) -> np.ndarray:
        return self.items[self.offsets[s] : self.offsets[s + 1]]


def read_sessions(records: tf.data.Dataset, read_batch: int = 4096) -> tuple[FlatSessions, dict]:
    """Split sequential records into sessions at ``session_starts``.

    A record may hold one session (``last_session``/``time`` splits) or all of a
    user's sessions (``loo``). Returns the sessions and, per record, its
    ``target_item`` (0 when none) under ``extras["target_item"]``.
    """

    def select(rec):
        n = tf.size(rec["item_ids"])
        starts = rec.get("session_starts")
        starts = tf.zeros([n], tf.int64) if starts is None else tf.cast(starts, tf.int64)
        times = rec.get("timestamps")
        times = tf.zeros([n], tf.int64) if times is None else tf.cast(times, tf.int64)
        target = rec.get("target_item")
        target = tf.constant(0, tf.int64) if target is None else tf.cast(target, tf.int64)
        return {
            "item_ids": tf.cast(rec["item_ids"], tf.int32),
            "starts": starts,
            "times": times,
            "user_id": tf.cast(rec["user_id"], tf.int64),
            "target_item": target,
        }

    ds = records.map(select).ragged_batch(read_batch)
    items, starts, times, lengths, users, targets = [], [], [], [], [], []
    for batch in ds:
        for name, out in (("item_ids", items), ("starts", starts), ("times", times)):
            rt = batch[name]
            if isinstance(rt, tf.RaggedTensor):
                out.append(rt.flat_values.numpy())
                if name == "item_ids":
                    lengths.append(rt.row_lengths().numpy())
            else:
                dense = rt.numpy()
                out.append(dense.reshape(-1))
                if name == "item_ids":
                    lengths.append(np.full(dense.shape[0], dense.shape[1], np.int64))
        users.append(batch["user_id"].numpy())
        targets.append(batch["target_item"].numpy())
    if not items:
        empty = np.zeros(0, np.int64)
        return FlatSessions(np.zeros(0, np.int32), np.zeros(1, np.int64), empty, empty, empty, empty, empty.astype(bool)), {
            "target_item": empty,
            "user_id": empty,
        }
    items_a = np.concatenate(items).astype(np.int32)
    starts_a = np.concatenate(starts)
    times_a = np.concatenate(times)
    rec_len = np.concatenate(lengths).astype(np.int64)
    rec_users = np.concatenate(users).astype(np.int64)
    rec_targets = np.concatenate(targets).astype(np.int64)

    rec_off = np.concatenate([[0], np.cumsum(rec_len)])
    boundary = starts_a.astype(bool).copy()
    boundary[rec_off[:-1][rec_len > 0]] = True  # every record starts a session
    sess_start = np.flatnonzero(boundary)
    offsets = np.concatenate([sess_start, [len(items_a)]]).astype(np.int64)
    rec_of_event = np.repeat(np.arange(len(rec_len)), rec_len)
    sess_record = rec_of_event[sess_start] if len(sess_start) else np.zeros(0, np.int64)
    is_last = np.ones(len(sess_start), bool)
    if len(sess_start) > 1:
        is_last[:-1] = sess_record[1:] != sess_record[:-1]
    flat = FlatSessions(
        items=items_a,
        offsets=offsets,
        users=rec_users[sess_record],
        first_times=times_a[sess_start] if len(sess_start) else np.zeros(0, np.int64),
        last_times=times_a[offsets[1:] - 1] if len(sess_start) else np.zeros(0, np.int64),
        record=sess_record.astype(np.int64),
        is_last_in_record=is_last,
    )
    return flat, {"target_item": rec_targets, "user_id": rec_users}


def group_by_user(flat: FlatSessions, keep: np.ndarray | None = None) -> UserSessions:
    """Streams of ``flat``'s sessions (those with ``keep``), one per user, users in id order,
    sessions by first timestamp (ties: reading order)."""
    idx = np.arange(flat.num_sessions) if keep is None else np.flatnonzero(keep)
    order = idx[np.lexsort((idx, flat.first_times[idx], flat.users[idx]))]
    lengths = np.diff(flat.offsets)[order]
    items = (
        np.concatenate([flat.items[flat.offsets[s] : flat.offsets[s + 1]] for s in order])
        if len(order)
        else np.zeros(0, np.int32)
    )
    users = flat.users[order]
    new_user = np.ones(len(order), bool)
    new_user[1:] = users[1:] != users[:-1]
    user_first = np.flatnonzero(new_user)
    return UserSessions(
        items.astype(np.int32),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.concatenate([user_first, [len(order)]]).astype(np.int64),
        users[user_first].astype(np.int64),
    )


@dataclasses.dataclass
class UserParallelSchedule(StepSchedule):
    """Per-step arrays of a user-parallel epoch (see the module docstring)."""

    FEATURES: ClassVar[tuple[str, ...]] = ("input_items", "target_items", "sstart", "ustart", "valid")
    PAD_FILL: ClassVar[dict[str, int]] = {"stream": -1}  # no stream in a padding step
    input_items: np.ndarray
    target_items: np.ndarray
    sstart: np.ndarray
    ustart: np.ndarray
    valid: np.ndarray
    stream: np.ndarray
    stream_end: np.ndarray


def build_user_schedule(
    users: UserSessions, batch_size: int, min_valid: int = 1, drop_tail: bool = False
) -> UserParallelSchedule:
    """The user-parallel schedule of one epoch over ``users`` (streams in their order).

    Args:
      users: the streams.
      batch_size: ``B``, parallel slots.
      min_valid: stop at the first step with fewer valid slots than this
        (2 when the in-batch targets are the only negatives).
      drop_tail: the reference's stop rule: end the epoch at the first step
        where some slot has no user left.
    """
    b = int(batch_size)
    lens = users.session_lengths
    steps_per_session = np.maximum(lens - 1, 0)
    # steps per stream
    per_user_sessions = np.diff(users.user_offsets)
    sess_user = np.repeat(np.arange(users.num_users), per_user_sessions)
    user_steps = np.bincount(sess_user, weights=steps_per_session, minlength=users.num_users).astype(np.int64)
    active = np.flatnonzero(user_steps > 0)
    empty = np.zeros((0, b), np.int32)
    if len(active) == 0:
        z = empty.astype(bool)
        return UserParallelSchedule(empty, empty.copy(), z, z.copy(), z.copy(), empty.copy(), z.copy())
    slot, start = assign_slots(user_steps[active], b)
    user_slot = np.full(users.num_users, -1, np.int64)
    user_start = np.zeros(users.num_users, np.int64)
    user_slot[active], user_start[active] = slot, start
    num_t = int((start + user_steps[active]).max())

    # every (session, position) training pair, vectorised
    keep = steps_per_session > 0
    s_idx = np.flatnonzero(keep)
    n_steps = steps_per_session[s_idx]
    total = int(n_steps.sum())
    sess = np.repeat(s_idx, n_steps)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps)
    owner = sess_user[sess]
    # step of the pair inside its user's stream: steps of the user's earlier sessions + pos
    before = np.append(np.cumsum(steps_per_session) - steps_per_session, 0)  # steps before each session, all users
    first_session_of_user = users.user_offsets[:-1]
    sess_step_offset = before[:-1] - before[first_session_of_user][sess_user]
    rows = user_start[owner] + sess_step_offset[sess] + pos
    cols = user_slot[owner]
    src = users.session_offsets[sess] + pos

    inp = np.zeros((num_t, b), np.int32)
    tgt = np.zeros((num_t, b), np.int32)
    sstart = np.zeros((num_t, b), bool)
    ustart = np.zeros((num_t, b), bool)
    valid = np.zeros((num_t, b), bool)
    stream = np.full((num_t, b), -1, np.int32)
    stream_end = np.zeros((num_t, b), bool)
    inp[rows, cols] = users.items[src]
    tgt[rows, cols] = users.items[src + 1]
    sstart[rows, cols] = pos == 0
    step_in_user = sess_step_offset[sess] + pos
    ustart[rows, cols] = step_in_user == 0
    valid[rows, cols] = True
    stream[rows, cols] = owner
    stream_end[rows, cols] = step_in_user == user_steps[owner] - 1

    cut = num_t
    if drop_tail:
        short = np.flatnonzero(valid.sum(axis=1) < min(b, len(active)))
        cut = int(short[0]) if len(short) else num_t
    elif min_valid > 1:
        short = np.flatnonzero(valid.sum(axis=1) < min_valid)
        cut = int(short[0]) if len(short) else num_t
    sl = slice(0, cut)
    return UserParallelSchedule(inp[sl], tgt[sl], sstart[sl], ustart[sl], valid[sl], stream[sl], stream_end[sl])

