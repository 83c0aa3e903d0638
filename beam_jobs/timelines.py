"""Per-user timelines: ordering, sessionization and train/valid/test splitting.

Pure Python on one user's events (plain dicts with canonical keys, see
:mod:`beam_jobs.events`), so every rule is unit-testable without Beam; the
Beam job applies :func:`build_user_records` after grouping events by user.

Split modes (``--split``)
-------------------------
``loo``
    chronological leave-one-out per user (RecBole ``LS`` / ``order TO``): the
    last item is the test target, the second-last the validation target, the
    rest is one training sequence. One record per user.
``last_session``
    last-session-out per user (Quadrana et al.): the last session is test, the
    one before validation, earlier sessions train. One record per session.
``time``
    temporal cut-off (GRU4Rec / NARM protocol): sessions ending in the last
    ``test_days`` days are test, the ``valid_days`` before validation, the rest
    train. One record per session.
``fo``
    random hold-out of interactions (Tran et al.'s ``fo`` split,
    ``deezer/recsys21-hlr`` ``huitre/data/splitter.py``): a random
    ``test_size`` of ALL interactions is test, then a random ``valid_size`` of
    the rest is validation (72/8/20 with the defaults). The split is global,
    not stratified per user. Each interaction draws its split from a keyed
    hash of (``split_seed``, user, item, timestamp) (:func:`fo_split_of`), so
    the result is the same on every run and runner and needs no global
    shuffle; the shares are ``test_size`` and ``(1 - test_size) * valid_size``
    in expectation (binomial noise) rather than exactly rounded counts as
    scikit-learn's ``train_test_split`` gives. One training record per user
    (its training interactions, time ordered) and multi-target evaluation
    records: validation = training history -> ``target_items`` (the
    validation interactions), test = training + validation history ->
    ``target_items`` (the test interactions).
``days``
    calendar-day cut-off, SR-GNN's DIGINETICA protocol (``datasets/preprocess.py``
    of CRIPAC-DIG/SR-GNN): a session is dated by the UTC day of its first
    event; with ``D`` the latest date of a kept session (one that passed every
    filter) and ``cut = D - test_days``, sessions dated after ``cut`` are test,
    sessions dated before it training, and the sessions dated ``cut`` itself
    are dropped (SR-GNN compares dates strictly on both sides;
    ``cut_day_sessions_dropped``). Training sessions of the ``valid_days``
    days before ``cut`` become validation, carved from training: their items
    stay in the item vocabulary (training count 0), so ``valid_days`` never
    changes the test set. One record per session.
``given``
    the split comes with the data (``--train_input`` / ``--valid_input`` /
    ``--test_input``, or a ``split`` column): every event carries its
    ``split`` and stays in it. Each split's sessions are built separately
    (:func:`_given_records`), one record per session; an evaluation session
    whose last event is tagged ``target`` (``srgnn`` test pairs) is one record
    ``prefix -> target`` as given. Session length and user-size filters apply
    to training sessions only unless ``filter_eval``. Without a validation
    input (``carve_valid_days > 0``), training sessions ending in the last
    ``carve_valid_days`` days of the training part become validation.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable

from beam_jobs.events import log_position

SPLIT_MODES = ("loo", "last_session", "time", "fo", "given", "days")
SESSION_SPLITS = ("last_session", "time", "given", "days")
DAY_SECONDS = 86_400


@dataclasses.dataclass(frozen=True)
class TimelineOptions:
    split: str = "loo"
    session_gap_seconds: int = 30 * 60
    min_session_length: int = 1
    min_user_interactions: int = 1
    dedup_consecutive: bool = False
    test_days: float = 1.0
    valid_days: float = 0.0
    test_size: float = 0.2  # --split=fo: share of all interactions held out for test
    valid_size: float = 0.1  # --split=fo: share of the remaining interactions held out for validation
    split_seed: int = 2021  # --split=fo: key of the random assignment (the original's random_state)
    filter_eval: bool = False  # --split=given: session / user filters also apply to evaluation sessions
    carve_valid_days: float = 0.0  # --split=given without a validation input: last N training days -> valid

    def __post_init__(self):
        if self.split not in SPLIT_MODES:
            raise ValueError(f"unknown split {self.split!r}; expected one of {', '.join(SPLIT_MODES)}")
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(f"test_size={self.test_size}: must be in (0, 1)")
        if not 0.0 <= self.valid_size < 1.0:
            raise ValueError(f"valid_size={self.valid_size}: must be in [0, 1)")


def fo_uniform(seed: int, user: str, event: dict) -> float:
    """A uniform number in ``[0, 1)`` fixed by (seed, user, item, timestamp): the same on every runner."""
    key = f"{seed}\x1f{user}\x1f{event['item_id']}\x1f{int(event['timestamp'])}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


def fo_split_of(seed: int, user: str, event: dict, test_size: float, valid_size: float) -> str:
    """``"test"`` with probability ``test_size``, else ``"valid"`` with probability ``valid_size``, else ``"train"``."""
    u = fo_uniform(seed, user, event)
    if u < test_size:
        return "test"
    return "valid" if (u - test_size) / (1.0 - test_size) < valid_size else "train"


def order_events(events: Iterable[dict]) -> list[dict]:
    """Time order; same-timestamp events in log order (``log_position``), then by content.

    Within one session or basket, ties keep the order of the log, as the
    stable sorts of RecBole and of GRU4Rec's preprocessing do, so a
    leave-one-out split holds out the same event as theirs. The order events
    arrive in after a shuffle (``GroupByKey``) is arbitrary, so the key is
    total: (timestamp, session, basket, log position, item, event type).
    """
    return sorted(
        events,
        key=lambda e: (
            e["timestamp"],
            str(e.get("session_id") or ""),
            str(e.get("basket_id") or ""),
            log_position(e),
            str(e["item_id"]),
            str(e.get("event_type") or ""),
        ),
    )


def sessionize(events: list[dict], gap_seconds: int) -> list[list[dict]]:
    """Split time-ordered events into sessions.

    With ``session_id`` on every event, sessions are the given ids ordered by
    their first event; otherwise a new session starts after an inactivity gap
    longer than ``gap_seconds``.
    """
    if not events:
        return []
    if all(e.get("session_id") not in (None, "") for e in events):
        by_id: dict[str, list[dict]] = {}
        for e in events:
            by_id.setdefault(str(e["session_id"]), []).append(e)
        return sorted(by_id.values(), key=lambda s: (s[0]["timestamp"], str(s[0]["session_id"])))
    sessions = [[events[0]]]
    for prev, cur in zip(events, events[1:]):
        if cur["timestamp"] - prev["timestamp"] > gap_seconds:
            sessions.append([])
        sessions[-1].append(cur)
    return sessions


def drop_consecutive_repeats(session: list[dict]) -> list[dict]:
    out = [session[0]] if session else []
    for e in session[1:]:
        if e["item_id"] != out[-1]["item_id"]:
            out.append(e)
    return out


@dataclasses.dataclass
class UserRecords:
    """What one user contributes: records per split (token ids, not indices) and counters."""

    train: list[dict] = dataclasses.field(default_factory=list)
    valid: list[dict] = dataclasses.field(default_factory=list)
    test: list[dict] = dataclasses.field(default_factory=list)
    counters: dict = dataclasses.field(default_factory=dict)

    def by_split(self) -> dict[str, list[dict]]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


def _record(user: str, sessions: list[list[dict]], session_key: str, target: dict | None = None) -> dict:
    items, times, starts = [], [], []
    for s in sessions:
        for j, e in enumerate(s):
            items.append(e["item_id"])
            times.append(int(e["timestamp"]))
            starts.append(1 if j == 0 else 0)
    return {
        "user_id": user,
        "session_key": session_key,
        "item_ids": items,
        "timestamps": times,
        "session_starts": starts,
        "target_item": target["item_id"] if target else None,
    }


def long_sessions(events: Iterable[dict], opts: TimelineOptions) -> tuple[list[dict], int]:
    """``--filter_order=sessions_first``: the events of one user's sessions that have at least
    ``min_session_length`` events as they are now (before the k-core and ``dedup_consecutive``), and how many
    sessions were dropped. SR-GNN drops length-1 sessions before it counts item supports."""
    sessions = sessionize(order_events(events), opts.session_gap_seconds)
    kept = [s for s in sessions if len(s) >= opts.min_session_length]
    return [e for s in kept for e in s], len(sessions) - len(kept)


def session_day(session: list[dict]) -> int:
    """``--split=days``: a session's date, the UTC calendar day (days since the epoch) of its first event."""
    return int(session[0]["timestamp"] // DAY_SECONDS)


def _kept_sessions(events: Iterable[dict], opts: TimelineOptions, out: UserRecords) -> list[list[dict]]:
    """Order, sessionize and filter one user's events (``[]``: the user goes); counters into ``out``."""
    ordered = order_events(events)
    sessions = sessionize(ordered, opts.session_gap_seconds)
    if opts.dedup_consecutive:
        before = sum(map(len, sessions))
        sessions = [drop_consecutive_repeats(s) for s in sessions]
        out.counters["consecutive_repeats_removed"] = before - sum(map(len, sessions))
    kept = [s for s in sessions if len(s) >= opts.min_session_length]
    out.counters["short_sessions_removed"] = len(sessions) - len(kept)
    n_events = sum(map(len, kept))
    if n_events < max(1, opts.min_user_interactions) or not kept:
        out.counters["short_users_removed"] = 1
        return []
    return kept


def kept_session_days(events: Iterable[dict], opts: TimelineOptions) -> list[int]:
    """``--split=days``: the dates of the sessions of one user that :func:`build_user_records` keeps; the job
    takes the latest over all users as the reference day ``D`` (SR-GNN's ``maxdate``, taken after its filters)."""
    return [session_day(s) for s in _kept_sessions(events, opts, UserRecords())]


def build_user_records(user: str, events: Iterable[dict], opts: TimelineOptions, max_timestamp: int = 0) -> UserRecords:
    """Order, sessionize, filter and split one user's events into records. ``max_timestamp``: the latest event
    (``time``), the latest training event (``given``), or the latest kept session's date ``D`` (``days``)."""
    if opts.split == "given":
        return _given_records(user, list(events), opts, max_timestamp)
    out = UserRecords(counters={"users_in": 1})
    kept = _kept_sessions(events, opts, out)
    if not kept:
        return out
    out.counters["users"] = 1
    out.counters["sessions"] = len(kept)
    out.counters["interactions"] = sum(map(len, kept))

    def key(i: int) -> str:
        return f"{user}#{i}"

    if opts.split == "loo":
        flat = [e for s in kept for e in s]
        if len(flat) < 3:
            out.train.append(_record(user, kept, key(0)))
            out.counters["users_train_only"] = 1
            return out
        # rebuild session structure of the prefix without the last two events
        def prefix_sessions(n: int) -> list[list[dict]]:
            res, left = [], n
            for s in kept:
                if left <= 0:
                    break
                res.append(s[:left])
                left -= len(s)
            return res

        n = len(flat)
        out.train.append(_record(user, prefix_sessions(n - 2), key(0)))
        out.valid.append(_record(user, prefix_sessions(n - 2), key(0), target=flat[n - 2]))
        out.test.append(_record(user, prefix_sessions(n - 1), key(0), target=flat[n - 1]))
        return out

    if opts.split == "last_session":
        if len(kept) < 2:
            out.train.extend(_record(user, [s], key(i)) for i, s in enumerate(kept))
            out.counters["users_train_only"] = 1
            return out
        has_valid = len(kept) >= 3
        n_train = len(kept) - (2 if has_valid else 1)
        out.train.extend(_record(user, [s], key(i)) for i, s in enumerate(kept[:n_train]))
        if has_valid:
            out.valid.append(_record(user, [kept[-2]], key(len(kept) - 2)))
        out.test.append(_record(user, [kept[-1]], key(len(kept) - 1)))
        return out

    if opts.split == "fo":
        return _fo_records(user, kept, opts, out)

    if opts.split == "days":
        cut = max_timestamp - int(opts.test_days)
        valid_from = cut - int(opts.valid_days)
        for i, s in enumerate(kept):
            day = session_day(s)
            if day == cut:
                out.counters["cut_day_sessions_dropped"] = out.counters.get("cut_day_sessions_dropped", 0) + 1
            elif day > cut:
                out.test.append(_record(user, [s], key(i)))
            elif day >= valid_from:
                out.valid.append({**_record(user, [s], key(i)), "carved": True})  # items stay in the vocabulary
                out.counters["valid_sessions_carved"] = out.counters.get("valid_sessions_carved", 0) + 1
            else:
                out.train.append(_record(user, [s], key(i)))
        return out

    # time split
    test_from = max_timestamp - opts.test_days * 86400
    valid_from = test_from - opts.valid_days * 86400
    for i, s in enumerate(kept):
        end = s[-1]["timestamp"]
        split = "test" if end > test_from else "valid" if end > valid_from else "train"
        getattr(out, split).append(_record(user, [s], key(i)))
    return out


def _fo_records(user: str, kept: list[list[dict]], opts: TimelineOptions, out: UserRecords) -> UserRecords:
    """``--split=fo``: random hold-out of this user's interactions (see the module docstring)."""
    part = {id(e): fo_split_of(opts.split_seed, user, e, opts.test_size, opts.valid_size) for s in kept for e in s}

    def only(splits: tuple[str, ...]) -> list[list[dict]]:
        sessions = [[e for e in s if part[id(e)] in splits] for s in kept]
        return [s for s in sessions if s]

    def items(split: str) -> list[str]:
        return [e["item_id"] for s in kept for e in s if part[id(e)] == split]

    for split in ("train", "valid", "test"):
        out.counters[f"fo_{split}_interactions"] = sum(1 for v in part.values() if v == split)
    train = only(("train",))
    if train:
        out.train.append(_record(user, train, f"{user}#0"))
    if items("valid"):
        out.valid.append({**_record(user, train, f"{user}#0"), "target_items": items("valid")})
    if items("test"):
        out.test.append({**_record(user, only(("train", "valid")), f"{user}#0"), "target_items": items("test")})
    return out


def _given_records(user: str, events: list[dict], opts: TimelineOptions, max_train_timestamp: int) -> UserRecords:
    """``--split=given``: each event's own ``split``; see the module docstring. ``max_train_timestamp``:
    the latest training event of the whole log (the reference of ``carve_valid_days``)."""
    out = UserRecords(counters={"users_in": 1})
    parts: dict[str, list[dict]] = {}
    for e in events:
        parts.setdefault(e.get("split") or "train", []).append(e)
    sessions: list[tuple[str, list[dict]]] = []
    for split in ("train", "valid", "test"):
        for s in sessionize(order_events(parts.get(split, [])), opts.session_gap_seconds):
            sessions.append((split, s))
    sessions.sort(key=lambda ps: (ps[1][0]["timestamp"], str(ps[1][0].get("session_id") or ""), log_position(ps[1][0])))
    filtered = lambda split: split == "train" or opts.filter_eval  # noqa: E731
    if opts.dedup_consecutive:
        removed = 0
        for i, (split, s) in enumerate(sessions):
            if filtered(split) and not any(e.get("target") for e in s):
                kept_s = drop_consecutive_repeats(s)
                removed += len(s) - len(kept_s)
                sessions[i] = (split, kept_s)
        out.counters["consecutive_repeats_removed"] = removed
    kept = [(sp, s) for sp, s in sessions if not filtered(sp) or len(s) >= opts.min_session_length]
    out.counters["short_sessions_removed"] = len(sessions) - len(kept)
    n_filtered = sum(len(s) for sp, s in kept if filtered(sp))
    if opts.min_user_interactions > 1 and n_filtered < opts.min_user_interactions:
        kept = [(sp, s) for sp, s in kept if not filtered(sp)]  # too few (training) events: those go
    if not kept:
        out.counters["short_users_removed"] = 1
        return out
    out.counters["users"] = 1
    out.counters["sessions"] = len(kept)
    out.counters["interactions"] = sum(len(s) for _, s in kept)
    valid_from = max_train_timestamp - opts.carve_valid_days * 86400 if opts.carve_valid_days > 0 else None
    for i, (split, s) in enumerate(kept):
        key = f"{user}#{i}"
        if split == "train" and valid_from is not None and s[-1]["timestamp"] > valid_from:
            out.valid.append({**_record(user, [s], key), "carved": True})  # part of the training input
            out.counters["valid_sessions_carved"] = out.counters.get("valid_sessions_carved", 0) + 1
            continue
        if split != "train" and len(s) >= 2 and s[-1].get("target"):
            getattr(out, split).append(_record(user, [s[:-1]], key, target=s[-1]))
        else:
            getattr(out, split).append(_record(user, [s], key))
    return out
