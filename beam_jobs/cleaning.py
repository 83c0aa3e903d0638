"""Cleaning transforms: rating/event filters, de-duplication and k-core filtering.

Everything is keyed joins and combiners, so no step needs a whole
PCollection in one worker's memory (the k-core counts are joined back with
``CoGroupByKey`` rather than broadcast as a side input).
"""
from __future__ import annotations

import apache_beam as beam


def dedup_key(e: dict) -> tuple:
    return (e["user_id"], e["item_id"], e["timestamp"], e.get("session_id"), e.get("event_type"), e.get("basket_id"))


class _FirstCombine(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, acc, element):
        return element if acc is None else acc

    def merge_accumulators(self, accs):
        for a in accs:
            if a is not None:
                return a
        return None

    def extract_output(self, acc):
        return acc


class DropDuplicates(beam.PTransform):
    """Exact-duplicate removal with a combiner (bounded memory per key)."""

    def expand(self, events):
        return (
            events
            | "KeyForDedup" >> beam.Map(lambda e: (dedup_key(e), e))
            | "FirstPerKey" >> beam.CombinePerKey(_FirstCombine())
            | "Values" >> beam.Values()
        )


class FilterByKeyCount(beam.PTransform):
    """Keep events whose ``field`` value occurs at least ``min_count`` times."""

    def __init__(self, field: str, min_count: int, label: str):
        super().__init__(label)
        self.field, self.min_count = field, min_count

    def expand(self, events):
        field, min_count = self.field, self.min_count
        keyed = events | "Key" >> beam.Map(lambda e: (e[field], e))
        counts = keyed | "Ones" >> beam.Map(lambda kv: (kv[0], 1)) | "Count" >> beam.CombinePerKey(sum)

        def emit(kv):
            _, grouped = kv
            n = grouped["count"]
            if n and n[0] >= min_count:
                yield from grouped["events"]

        return {"events": keyed, "count": counts} | "Join" >> beam.CoGroupByKey() | "Keep" >> beam.FlatMap(emit)


class KCore(beam.PTransform):
    """Iterative k-core: alternately drop items and users with too few interactions.

    Beam graphs are static, so the number of rounds is fixed (``iterations``);
    the job records the survivors after each round in ``stats.json`` so a
    user can see whether the filter converged.
    """

    def __init__(self, min_user: int, min_item: int, iterations: int):
        super().__init__()
        self.min_user, self.min_item, self.iterations = min_user, min_item, iterations

    def expand(self, events):
        rounds = []
        for i in range(self.iterations):
            if self.min_item > 1:
                events = events | f"Items{i}" >> FilterByKeyCount("item_id", self.min_item, f"ItemCore{i}")
            if self.min_user > 1:
                events = events | f"Users{i}" >> FilterByKeyCount("user_id", self.min_user, f"UserCore{i}")
            rounds.append(events)
        return events, rounds
