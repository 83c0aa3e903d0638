"""HRNN's (HGRU4Rec, :mod:`tfpps.models.sequential.hrnn`) user-parallel examples, from a dataset directory.

* Training: the user-parallel schedule of the training split's sessions (:func:`train_batches`; the
  schedule itself is :mod:`tfpps.data.examples.user_parallel`'s).
* Evaluation: one stream per evaluation record, the user's earlier-split sessions first
  (:data:`PRIOR_SPLITS`), then the record's own sessions, laid out on a user-parallel schedule with
  every prediction point marked (:func:`evaluation_schedule`); the model runs the schedule and keeps
  its states at the points.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import tensorflow as tf

from tfpps.data.examples import user_parallel
from tfpps.data.examples.session_parallel import interleaved_dataset
from tfpps.data.dataset_dir import cached
from tfpps.data.pipeline import finish
from tfpps.errors import ConfigError

# splits streamed through the network before evaluating a split
PRIOR_SPLITS = {"valid": ("train",), "test": ("train", "valid")}


def train_users(data: Any) -> user_parallel.UserSessions:
    flat, _ = user_parallel.read_sessions(data.records("train"))
    return user_parallel.group_by_user(flat)


def train_batches(data: Any, batch_size: int, min_valid: int, drop_tail: bool) -> tf.data.Dataset:
    """One epoch of user-parallel training steps (``batch_size`` slots; the schedule built once per process)."""

    def schedule():
        sched = user_parallel.build_user_schedule(train_users(data), batch_size, min_valid=min_valid, drop_tail=drop_tail)
        if sched.num_steps == 0:
            raise ConfigError("hrnn: the training split has no session with two or more events")
        return sched

    sched = cached(data, ("hrnn_user_schedule", batch_size, min_valid, bool(drop_tail)), schedule)
    return finish(sched.dataset(), 256)


def replica_batches(data: Any, batch_size: int, min_valid: int, drop_tail: bool,
                    input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    """Input pipeline ``input_context.input_pipeline_id``'s epoch under tf.distribute: replica ``r`` of ``R``
    walks the user-parallel schedule of every ``R``-th user stream (users in id order, from ``r``) in
    ``batch_size / R`` slots; all schedules are padded with empty steps to the longest, and the pipeline
    yields its local replicas' steps interleaved (step ``t`` of each, in replica order). Users, not files,
    are shared out, since a user's sessions may lie in several files: every process reads the whole
    training split once."""
    replicas, pipelines = input_context.num_replicas_in_sync, input_context.num_input_pipelines
    if replicas % pipelines or batch_size % replicas:
        raise ConfigError(f"hrnn: train.batch_size={batch_size} must be a multiple of the {replicas} replicas in sync")

    def build():
        users = train_users(data)
        schedules = [user_parallel.build_user_schedule(users.subset(np.arange(r, users.num_users, replicas)),
                                                       batch_size // replicas, min_valid=min_valid, drop_tail=drop_tail)
                     for r in range(replicas)]
        steps = max(s.num_steps for s in schedules)
        if steps == 0:
            raise ConfigError("hrnn: the training split has no session with two or more events")
        return [s.padded(steps) for s in schedules]

    schedules = cached(data, ("hrnn_replica_schedules", batch_size, min_valid, bool(drop_tail), replicas), build)
    local = replicas // pipelines
    mine = schedules[input_context.input_pipeline_id * local : (input_context.input_pipeline_id + 1) * local]
    return finish(interleaved_dataset(mine), 256)


@dataclasses.dataclass
class EvaluationSchedule:
    """The evaluation streams of one split on a user-parallel schedule, with its prediction points.

    ``point_of_cell [T, B]`` is the point index of every schedule cell (-1 where no prediction is made);
    points are numbered in (stream, position) order and ``event_rows [P]`` is the input event of each.
    """

    users: user_parallel.UserSessions
    schedule: Any  # user_parallel.build_user_schedule's schedule
    event_rows: np.ndarray
    point_of_cell: np.ndarray
    n_points: int

    def targets(self) -> np.ndarray:
        """``[P]`` the item after each point's input event."""
        return self.users.items[self.event_rows + 1].astype(np.int64)

    def point_users(self) -> np.ndarray:
        """``[P]`` the user id of each point's stream."""
        return self.users.user_ids[_stream_of_point(self.schedule, self.point_of_cell, self.n_points)].astype(np.int64)

    def seen_items(self) -> np.ndarray:
        """``[P, L]`` each point's session prefix (up to and including its input event), 0-padded."""
        return _prefixes(self.users, self.event_rows)


def evaluation_schedule(data: Any, split: str, max_slots: int) -> EvaluationSchedule:
    """The prediction points of ``split`` laid out on a schedule of at most ``max_slots`` parallel slots."""
    ev, extras = user_parallel.read_sessions(data.records(split))
    prior_parts = [
        user_parallel.read_sessions(data.records(s))[0]
        for s in PRIOR_SPLITS.get(split, ("train",))
        if s != split and _split_count(data, s) != 0
    ]
    streams, eval_from = _evaluation_streams(ev, extras["target_item"], prior_parts)
    users = user_parallel.UserSessions.from_nested(streams, user_ids=extras["user_id"])
    slots = max(1, min(int(max_slots), users.num_users))
    sched = user_parallel.build_user_schedule(users, slots)
    # which schedule cells are prediction points: event position >= eval_from of its stream's last session
    event_rows, point_of_cell = _prediction_cells(users, sched, eval_from)
    n_points = int(point_of_cell.max()) + 1 if point_of_cell.size and point_of_cell.max() >= 0 else 0
    if n_points == 0:
        raise ValueError(f"hrnn: split {split!r} has no prediction point (sessions need two or more events)")
    return EvaluationSchedule(users, sched, event_rows, point_of_cell, n_points)


def _split_count(data: Any, split: str) -> int:
    count = getattr(data, "count", None)
    return -1 if count is None else int(count(split))


def _evaluation_streams(ev, record_targets: np.ndarray, prior_parts: list) -> tuple[list, np.ndarray]:
    """One stream per evaluation record: the user's earlier-split sessions that ENDED before the
    record's first event, the record's own earlier sessions, then its last session (with the target
    appended when the record has one).

    The time rule keeps each session once: with ``last_session``/``time`` splits the record is one
    session and the user's earlier sessions live in earlier splits; with ``loo`` the record already
    holds the whole history (its training copy starts at the same time and is not added again).

    Returns ``(streams, eval_from [R])``: predictions are made from position ``eval_from[r]`` of
    stream ``r``'s last session on.
    """
    prior: dict[int, list[tuple[int, int, int, np.ndarray]]] = {}
    order = 0
    for part in prior_parts:
        for s in range(part.num_sessions):
            prior.setdefault(int(part.users[s]), []).append(
                (int(part.first_times[s]), order, int(part.last_times[s]), part.session(s))
            )
            order += 1
    for sessions in prior.values():
        sessions.sort(key=lambda t: (t[0], t[1]))
    n_records = len(record_targets)
    by_record: list[list[np.ndarray]] = [[] for _ in range(n_records)]
    record_user = np.zeros(n_records, np.int64)
    record_start = np.full(n_records, np.iinfo(np.int64).max, np.int64)
    for s in range(ev.num_sessions):
        r = int(ev.record[s])
        by_record[r].append(ev.session(s))
        record_user[r] = ev.users[s]
        record_start[r] = min(record_start[r], int(ev.first_times[s]))
    streams, eval_from = [], np.zeros(n_records, np.int64)
    for r in range(n_records):
        own = by_record[r]
        if not own:
            streams.append([np.zeros(0, np.int32)])
            eval_from[r] = np.iinfo(np.int64).max
            continue
        last = own[-1]
        target = int(record_targets[r])
        if target > 0:
            last = np.concatenate([last, np.asarray([target], np.int32)])
            eval_from[r] = len(last) - 2  # only the step that predicts the target
        else:
            eval_from[r] = 0
        earlier = [t[3] for t in prior.get(int(record_user[r]), []) if t[2] < record_start[r]]
        streams.append(earlier + own[:-1] + [last])
    return streams, eval_from


def _prediction_cells(users, sched, eval_from: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(event_rows [P], point_of_cell [T, B])``: the input event of every prediction point and,
    per schedule cell, its point index (-1 elsewhere). Points are numbered in (stream, position) order."""
    lens = users.session_lengths
    last_session = users.user_offsets[1:] - 1
    lo = users.session_offsets[last_session]
    n_last = lens[last_session]
    starts = lo + np.minimum(eval_from, np.maximum(n_last - 1, 0))
    ends = lo + np.maximum(n_last - 1, 0)  # input events are all but the last
    counts = np.maximum(ends - starts, 0)
    event_rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if counts.sum() else np.zeros(0, np.int64)
    point_of_event = np.full(len(users.items), -1, np.int64)
    point_of_event[event_rows] = np.arange(len(event_rows))
    # map schedule cells back to events: replay the stream positions
    cell_event = _cell_events(users, sched)
    point_of_cell = np.where(cell_event >= 0, point_of_event[np.maximum(cell_event, 0)], -1)
    return event_rows.astype(np.int64), point_of_cell


def _cell_events(users, sched) -> np.ndarray:
    """``[T, B]`` index into ``users.items`` of each cell's input event (-1 where invalid)."""
    lens = users.session_lengths
    steps = np.maximum(lens - 1, 0)
    sess = np.repeat(np.arange(len(lens)), steps)
    pos = np.arange(int(steps.sum()), dtype=np.int64) - np.repeat(np.cumsum(steps) - steps, steps)
    events_in_stream_order = users.session_offsets[sess] + pos  # all training pairs, stream by stream
    per_user = np.diff(users.user_offsets)
    sess_user = np.repeat(np.arange(users.num_users), per_user)
    user_steps = np.bincount(sess_user, weights=steps, minlength=users.num_users).astype(np.int64)
    user_first_pair = np.concatenate([[0], np.cumsum(user_steps)])
    out = np.full(sched.stream.shape, -1, np.int64)
    valid = sched.valid
    t_idx, b_idx = np.nonzero(valid)
    streams = sched.stream[t_idx, b_idx].astype(np.int64)
    # position of the cell inside its stream: count earlier valid cells of the same stream in that slot
    order = np.lexsort((t_idx, streams))
    ranks = np.empty(len(order), np.int64)
    s_sorted = streams[order]
    first = np.concatenate([[0], np.flatnonzero(s_sorted[1:] != s_sorted[:-1]) + 1])
    run_start = np.repeat(first, np.diff(np.concatenate([first, [len(order)]])))
    ranks[order] = np.arange(len(order)) - run_start
    out[t_idx, b_idx] = events_in_stream_order[user_first_pair[streams] + ranks]
    return out


def _stream_of_point(sched, point_of_cell: np.ndarray, n_points: int) -> np.ndarray:
    out = np.zeros(n_points, np.int64)
    take = point_of_cell >= 0
    out[point_of_cell[take]] = sched.stream[take]
    return out


def _prefixes(users, event_rows: np.ndarray) -> np.ndarray:
    """``[P, L]`` the session prefix (up to and including the input event) of every point, 0-padded."""
    sess = np.searchsorted(users.session_offsets, event_rows, side="right") - 1
    starts = users.session_offsets[sess]
    lengths = event_rows - starts + 1
    width = int(lengths.max()) if len(lengths) else 1
    out = np.zeros((len(event_rows), width), np.int64)
    for k, (a, n) in enumerate(zip(starts, lengths)):
        out[k, :n] = users.items[a : a + n]
    return out
