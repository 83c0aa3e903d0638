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
    from beam_jobs import cli

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
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "internal check failed, nothing written: Users0 kept 35 events where the counts say 36" in err, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_dedup_keeps_the_first_and_checks_that_every_event_arrived():
    events = make_events(seed=11)
    events = events + events[:9]  # nine exact duplicates
    checks: list = []
    with BeamTestPipeline() as p:
        out = p | beam.Create(events) | cleaning.DropDuplicates(checks=checks)
        assert_that(out | "Keys" >> beam.Map(key), equal_to(sorted({key(e) for e in events})), label="unique")

        def counts_agree(pairs):
            stats = dict(pairs)
            assert stats == {"check:Dedup:expected": len(events), "check:Dedup:kept": len(events)}, stats

        assert_that(checks | beam.Flatten(), counts_agree, label="checks")


def _small_log(tmp_path):
    log = tmp_path / "e.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + j) % 4},{100 * j}\n" for u in range(6) for j in range(6))
                   + "bad row\n")
    return log


def test_a_runner_that_loses_records_before_the_encoder_fails_the_job(tmp_path, monkeypatch, capsys):
    """A record lost between the per-user step and the encoder (outside every filter) is caught too."""
    from beam_jobs import cli, encode

    real = encode.EncodeFn.process

    def lossy(self, element, *args, **kwargs):
        split, rec = element
        if split == "test" and rec["user_id"] == "u2":
            return  # as if it never arrived
        yield from real(self, element, *args, **kwargs)

    monkeypatch.setattr(encode.EncodeFn, "process", lossy)
    argv = ["--source=csv", f"--input={_small_log(tmp_path)}", f"--output={tmp_path}/out", "--direct_running_mode=in_memory"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "internal check failed, nothing written: encode kept 17 events where the counts say 18" in err, err
    assert not (tmp_path / "out").exists()


def test_output_read_back_catches_missing_examples_and_dead_letters(tmp_path, monkeypatch, capsys):
    """The written files are counted again before publishing: a shard or dead-letter row that went missing
    on the way to disk fails the job."""
    from beam_jobs import cli, output_checks

    argv = ["--source=csv", f"--input={_small_log(tmp_path)}", f"--output={tmp_path}/ok", "--direct_running_mode=in_memory"]
    stats = cli.run(argv)
    out = tmp_path / "ok"
    assert output_checks.verify_outputs(str(out), {**stats["stages"], **{f"{s}_records": v["records"] for s, v in stats["splits"].items()},
                                                   "vocab_items": stats["num_items"], "vocab_users": stats["num_users"]}) == []
    n_train = sum(output_checks.count_tfrecords(str(f)) for f in (out / "train").glob("part-*"))
    assert n_train == stats["splits"]["train"]["records"] == 6

    real = output_checks.count_tfrecords
    monkeypatch.setattr(output_checks, "count_tfrecords", lambda path: real(path) - ("/valid/part-00000-" in path))
    assert cli.main([*argv[:2], f"--output={tmp_path}/lost"] + argv[3:]) == 2
    assert "internal check failed, nothing written: valid shards hold 5 examples where the encoder counted 6" in capsys.readouterr().err
    assert not (tmp_path / "lost").exists()

    monkeypatch.setattr(output_checks, "count_tfrecords", real)
    real_lines = output_checks.count_lines
    monkeypatch.setattr(output_checks, "count_lines", lambda path: real_lines(path) - ("dead_letter" in path))
    assert cli.main([*argv[:2], f"--output={tmp_path}/lost2"] + argv[3:]) == 2
    assert "dead_letter files hold 0 rows where the reader counted 1" in capsys.readouterr().err


def test_count_tfrecords_rejects_a_truncated_file(tmp_path):
    from beam_jobs import output_checks
    import struct

    rec = struct.pack("<QI", 3, 0) + b"abc" + b"\0\0\0\0"
    (tmp_path / "ok.tfrecord").write_bytes(rec * 4)
    assert output_checks.count_tfrecords(str(tmp_path / "ok.tfrecord")) == 4
    (tmp_path / "cut.tfrecord").write_bytes(rec * 2 + rec[:9])
    try:
        output_checks.count_tfrecords(str(tmp_path / "cut.tfrecord"))
    except ValueError as exc:
        assert "truncated TFRecord header after 2 records" in str(exc)
    else:
        raise AssertionError("a truncated file was counted")


def test_dedup_keeps_the_copy_earliest_in_the_log():
    """Exact duplicates (same user, item, time) may differ in rating; the earliest line's copy is kept,
    whatever order the runner delivers them in."""
    copies = [{"user_id": "u", "item_id": "i", "timestamp": 5, "rating": r, "log_position": (f, line)}
              for r, (f, line) in ((2.0, (0, 9)), (4.0, (0, 3)), (1.0, (1, 1)))]
    for order in (copies, copies[::-1], copies[1:] + copies[:1]):
        with BeamTestPipeline() as p:
            out = p | beam.Create(order) | cleaning.DropDuplicates()
            assert_that(out | beam.Map(lambda e: e["rating"]), equal_to([4.0]))
