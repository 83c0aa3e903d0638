"""Cleaning transforms: rating/event filters, de-duplication and k-core filtering.

Everything is combiners, keyed joins and vocabulary-sized side inputs, so no
step needs a whole PCollection of events in one worker's memory. The k-core
counts are combiners (``CombinePerKey(sum)``, lifted: partial counts before
the shuffle). The item filter then broadcasts the surviving items (a subset of
the item vocabulary) and filters the events where they are, with no shuffle
of events and no worker holding a popular item's events (Beam Python's
``CoGroupByKey`` materialises each key's values as a list). The user filter
joins the counts back per user with ``CoGroupByKey``, which holds one user's
events at a time, as the job's per-user step does anyway.

Every filter also emits a check: the events it kept must number exactly the
sum of the counts of the keys it kept. The job compares the two after the run
and fails instead of publishing if they differ (a runner that lost or
duplicated data: the join-based item filter once lost half of the events of a
2.4M-event run on the multi-process DirectRunner).
"""
from __future__ import annotations

import apache_beam as beam

from beam_jobs.events import log_position


def dedup_key(e: dict) -> tuple:
    return (e["user_id"], e["item_id"], e["timestamp"], e.get("session_id"), e.get("event_type"), e.get("basket_id"))


def _earlier(a, b):
    """The event earlier in the log (``a`` on a tie), ``None`` counting as absent."""
    if a is None:
        return b
    if b is None:
        return a
    return b if log_position(b) < log_position(a) else a


class _FirstAndCount(beam.CombineFn):
    """Per key: the earliest event in the log and how many events arrived (the count feeds the dedup check).

    Keeping the earliest (not whichever arrives first) makes the kept copy, e.g. its rating, the same on
    every runner and run."""

    def create_accumulator(self):
        return None, 0

    def add_input(self, acc, element):
        first, n = acc
        return _earlier(first, element), n + 1

    def merge_accumulators(self, accs):
        first, total = None, 0
        for a, n in accs:
            first = _earlier(first, a)
            total += n
        return first, total

    def extract_output(self, acc):
        return acc


class DropDuplicates(beam.PTransform):
    """Exact-duplicate removal with a combiner (bounded memory per key).

    With ``checks``, also emits the check that every event sent to the combiner arrived there: the
    per-key arrival counts must sum to the number of events going in.
    """

    def __init__(self, checks: list | None = None, label: str | None = None):
        super().__init__(label)
        self.checks = checks

    def expand(self, events):
        firsts = (
            events
            | "KeyForDedup" >> beam.Map(lambda e: (dedup_key(e), e))
            | "FirstPerKey" >> beam.CombinePerKey(_FirstAndCount())
            | "Values" >> beam.Values()
        )
        if self.checks is not None:
            self.checks.extend(arrival_check(events, firsts | "Arrived" >> beam.Map(lambda fn: fn[1]), "Dedup"))
        return firsts | "First" >> beam.Map(lambda fn: fn[0])


class FilterByKeyCount(beam.PTransform):
    """Keep events whose ``field`` value occurs at least ``min_count`` times.

    ``broadcast=True``: the surviving keys go to every worker as a side input
    (use it for a field whose vocabulary may be held in memory: items); the
    events are filtered in place. ``broadcast=False``: the counts are joined
    back per key (``CoGroupByKey``; one key's events in memory at a time).
    """

    def __init__(self, field: str, min_count: int, label: str, broadcast: bool = False, checks: list | None = None):
        super().__init__(label)
        self.field, self.min_count, self.broadcast, self.checks = field, min_count, broadcast, checks

    def expand(self, events):
        out = self._filter(events)
        if self.checks is not None:
            self.checks.extend(count_check(self._counts, out, self.min_count, self.label))
        return out

    def _filter(self, events):
        field, min_count = self.field, self.min_count
        if self.broadcast:
            counts = events | "Ones" >> beam.Map(lambda e: (e[field], 1)) | "Count" >> beam.CombinePerKey(sum)
            self._counts = counts
            kept = counts | "Kept" >> beam.Filter(lambda kc: kc[1] >= min_count)
            return events | "Keep" >> beam.Filter(lambda e, keys: e[field] in keys, keys=beam.pvalue.AsDict(kept))
        keyed = events | "Key" >> beam.Map(lambda e: (e[field], e))
        counts = keyed | "Ones" >> beam.Map(lambda kv: (kv[0], 1)) | "Count" >> beam.CombinePerKey(sum)
        self._counts = counts

        def emit(kv):
            _, grouped = kv
            n = grouped["count"]
            if n and n[0] >= min_count:
                yield from grouped["events"]

        return {"events": keyed, "count": counts} | "Join" >> beam.CoGroupByKey() | "Keep" >> beam.FlatMap(emit)


CHECK_PREFIX = "check:"


def count_check(counts, kept_events, min_count: int, name: str) -> list:
    """Two one-element PCollections, ``("check:<name>:expected", sum of the counts >= min_count)`` and
    ``("check:<name>:kept", number of kept events)``; see :func:`failed_checks`."""
    expected = (
        counts
        | "CheckExpected" >> beam.FlatMap(lambda kc: [kc[1]] if kc[1] >= min_count else [])
        | "CheckExpectedSum" >> beam.CombineGlobally(sum)
        | "CheckExpectedName" >> beam.Map(lambda n: (f"{CHECK_PREFIX}{name}:expected", n))
    )
    kept = (
        kept_events
        | "CheckKept" >> beam.combiners.Count.Globally()
        | "CheckKeptName" >> beam.Map(lambda n: (f"{CHECK_PREFIX}{name}:kept", n))
    )
    return [expected, kept]


def arrival_check(sent, arrived_counts, name: str) -> list:
    """Like :func:`count_check` for a step that keeps everything it gets: ``expected`` is the number of
    elements of ``sent``, ``kept`` the sum of ``arrived_counts`` (what the consuming step saw)."""
    expected = (
        sent
        | f"{name}CheckSent" >> beam.combiners.Count.Globally()
        | f"{name}CheckSentName" >> beam.Map(lambda n: (f"{CHECK_PREFIX}{name}:expected", n))
    )
    kept = (
        arrived_counts
        | f"{name}CheckArrived" >> beam.CombineGlobally(sum)
        | f"{name}CheckArrivedName" >> beam.Map(lambda n: (f"{CHECK_PREFIX}{name}:kept", n))
    )
    return [expected, kept]


def failed_checks(stats: dict) -> list[str]:
    """One line per check whose kept count differs from its expected count."""
    bad = []
    for key in sorted(stats):
        if key.startswith(CHECK_PREFIX) and key.endswith(":expected"):
            name = key[len(CHECK_PREFIX):-len(":expected")]
            kept = stats.get(f"{CHECK_PREFIX}{name}:kept", 0)
            if kept != stats[key]:
                bad.append(f"{name} kept {kept} events where the counts say {stats[key]}")
    return bad


class KCore(beam.PTransform):
    """Iterative k-core: alternately drop items and users with too few interactions.

    Beam graphs are static, so the number of rounds is fixed (``iterations``);
    the job records the survivors after each round in ``stats.json`` so a
    user can see whether the filter converged.
    """

    def __init__(self, min_user: int, min_item: int, iterations: int, checks: list | None = None):
        super().__init__()
        self.min_user, self.min_item, self.iterations, self.checks = min_user, min_item, iterations, checks

    def expand(self, events):
        rounds = []
        for i in range(self.iterations):
            if self.min_item > 1:
                events = events | f"Items{i}" >> FilterByKeyCount(
                    "item_id", self.min_item, f"ItemCore{i}", broadcast=True, checks=self.checks
                )
            if self.min_user > 1:
                events = events | f"Users{i}" >> FilterByKeyCount("user_id", self.min_user, f"UserCore{i}", checks=self.checks)
            rounds.append(events)
        return events, rounds
