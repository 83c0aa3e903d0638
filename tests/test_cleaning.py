"""The cleaning transforms on hand-built events: k-core by broadcast (items) and by join (users) agree,
and every step is a combiner, a join or a vocabulary-sized side input."""
from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import cleaning


def kcore_by_hand(events: list[dict], min_user: int, min_item: int, iterations: int) -> list[dict]:
    for _ in range(iterations):
        for field, k in (("item_id", min_item), ("user_id", min_user)):
            counts: dict[str, int] = {}
            for e in events:
                counts[e[field]] = counts.get(e[field], 0) + 1
            events = [e for e in events if counts[e[field]] >= k]
    return events


def make_events(seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for u in range(40):
        for j in range(rng.randint(1, 12)):
            # one hot item (about a third of all events) and a long tail
            item = "hot" if rng.random() < 0.35 else f"i{int(rng.paretovariate(1.2)) % 30}"
            events.append({"user_id": f"u{u}", "item_id": item, "timestamp": 1000 * u + j})
    return events


def key(e: dict) -> tuple:
    return (e["user_id"], e["item_id"], e["timestamp"])


def test_broadcast_and_join_filters_agree_with_a_hand_count():
    events = make_events()
    for broadcast in (True, False):
        with BeamTestPipeline() as p:
            kept = (
                p
                | beam.Create(events)
                | cleaning.FilterByKeyCount("item_id", 4, "Items", broadcast=broadcast)
                | beam.Map(key)
            )
            assert_that(kept, equal_to([key(e) for e in kcore_by_hand(events, 0, 4, 1)]))


def test_kcore_matches_the_iterated_definition():
    events = make_events(seed=5)
    expected = kcore_by_hand(events, min_user=5, min_item=4, iterations=3)
    assert 0 < len(expected) < len(events)
    with BeamTestPipeline() as p:
        out, rounds = p | beam.Create(events) | cleaning.KCore(min_user=5, min_item=4, iterations=3)
        assert_that(out | beam.Map(key), equal_to([key(e) for e in expected]))
        assert len(rounds) == 3


def test_every_filter_checks_its_kept_count():
    events = make_events(seed=7)
    checks: list = []
    with BeamTestPipeline() as p:
        out, _ = p | beam.Create(events) | cleaning.KCore(min_user=5, min_item=4, iterations=2, checks=checks)
        assert len(checks) == 2 * 2 * 2  # (expected, kept) per filter, two filters per round

        def all_pass(pairs):
            stats = dict(pairs)
            assert len(stats) == 8 and cleaning.failed_checks(stats) == [], stats

        assert_that(checks | beam.Flatten(), all_pass)
    assert cleaning.failed_checks({"check:UserCore0:expected": 10, "check:UserCore0:kept": 7}) == [
        "UserCore0 kept 7 events where the counts say 10"
    ]


def test_a_runner_that_loses_events_fails_the_job(tmp_path, monkeypatch, capsys):
    """Simulate a runner dropping one event inside the user filter: the job must fail and publish nothing."""
    from beam_jobs import build_features

    log = tmp_path / "e.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + j) % 4},{100 * j}\n" for u in range(6) for j in range(6)))
    real = cleaning.FilterByKeyCount._filter

    def lossy(self, events):
        out = real(self, events)
        if self.field == "user_id":
            out = out | "Lose" >> beam.Filter(lambda e: not (e["user_id"] == "u3" and e["timestamp"] == 0))
        return out

    monkeypatch.setattr(cleaning.FilterByKeyCount, "_filter", lossy)
    argv = ["--source=csv", f"--input={log}", f"--output={tmp_path}/out", "--min_user_interactions=2",
            "--min_item_interactions=2", "--kcore_iterations=1", "--direct_running_mode=in_memory"]
    assert build_features.main(argv) == 2
    err = capsys.readouterr().err
    assert "internal check failed, nothing written: Users0 kept 35 events where the counts say 36" in err, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
