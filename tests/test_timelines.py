"""Per-user ordering, sessionization and the three split modes."""
import pytest

from beam_jobs import timelines

H = 3600


def ev(item, ts, session=None):
    return {"user_id": "u", "item_id": item, "timestamp": ts, "session_id": session}


def test_sessionize_by_gap_and_by_id():
    evs = timelines.order_events([ev("c", 2 * H), ev("a", 0), ev("b", 60), ev("d", 2 * H + 1801)])
    sessions = timelines.sessionize(evs, 30 * 60)
    assert [[e["item_id"] for e in s] for s in sessions] == [["a", "b"], ["c"], ["d"]]
    given = [ev("a", 0, "s2"), ev("b", 10, "s1"), ev("c", 20, "s2")]
    assert [[e["item_id"] for e in s] for s in timelines.sessionize(given, 30 * 60)] == [["a", "c"], ["b"]]


def test_loo_split_holds_out_last_two_items():
    evs = [ev(x, i * 10) for i, x in enumerate("abcde")]
    out = timelines.build_user_records("u", evs, timelines.TimelineOptions(split="loo"))
    assert out.train[0]["item_ids"] == ["a", "b", "c"] and out.train[0]["target_item"] is None
    assert out.valid[0]["item_ids"] == ["a", "b", "c"] and out.valid[0]["target_item"] == "d"
    assert out.test[0]["item_ids"] == ["a", "b", "c", "d"] and out.test[0]["target_item"] == "e"


def test_loo_keeps_session_starts_of_prefix():
    evs = [ev("a", 0), ev("b", 10), ev("c", 5 * H), ev("d", 5 * H + 5), ev("e", 9 * H)]
    out = timelines.build_user_records("u", evs, timelines.TimelineOptions(split="loo"))
    assert out.test[0]["session_starts"] == [1, 0, 1, 0]
    assert out.counters["sessions"] == 3


def test_last_session_split():
    evs = [ev("a", 0), ev("b", 10), ev("c", 5 * H), ev("d", 5 * H + 5), ev("e", 9 * H), ev("f", 9 * H + 1)]
    out = timelines.build_user_records("u", evs, timelines.TimelineOptions(split="last_session"))
    assert [r["item_ids"] for r in out.train] == [["a", "b"]]
    assert [r["item_ids"] for r in out.valid] == [["c", "d"]]
    assert [r["item_ids"] for r in out.test] == [["e", "f"]]
    assert len({r["session_key"] for r in out.train + out.valid + out.test}) == 3


def test_time_split_by_session_end():
    day = 86400
    evs = [ev("a", 0), ev("b", 10), ev("c", 3 * day), ev("d", 3 * day + 5)]
    opts = timelines.TimelineOptions(split="time", test_days=1, valid_days=1)
    out = timelines.build_user_records("u", evs, opts, max_timestamp=3 * day + 5)
    assert [r["item_ids"] for r in out.test] == [["c", "d"]]
    assert [r["item_ids"] for r in out.train] == [["a", "b"]] and out.valid == []


def test_min_lengths_and_consecutive_dedup():
    evs = [ev("a", 0), ev("a", 5), ev("b", 10), ev("z", 5 * H)]
    opts = timelines.TimelineOptions(split="loo", min_session_length=2, dedup_consecutive=True)
    out = timelines.build_user_records("u", evs, opts)
    # "a a b" -> "a b"; the single-event session "z" is dropped; 2 items -> train only
    assert out.counters["consecutive_repeats_removed"] == 1
    assert out.counters["short_sessions_removed"] == 1
    assert out.train[0]["item_ids"] == ["a", "b"] and out.test == []
    few = timelines.build_user_records("u", evs[:1], timelines.TimelineOptions(min_user_interactions=2))
    assert few.counters.get("short_users_removed") == 1 and not few.train


def test_unknown_split_mode():
    with pytest.raises(ValueError, match="unknown split"):
        timelines.TimelineOptions(split="random")


def test_same_timestamp_order_does_not_depend_on_arrival_order():
    evs = [ev("c", 10), ev("a", 10), ev("b", 10), ev("d", 20)]
    outs = {
        tuple(r["item_ids"] + [r["target_item"]])
        for perm in (evs, evs[::-1], evs[1:] + evs[:1])
        for r in timelines.build_user_records("u", perm, timelines.TimelineOptions(split="loo")).test
    }
    assert outs == {("a", "b", "c", "d")}


def test_same_timestamp_events_keep_log_order():
    """Ties follow the log (``log_position``), as RecBole's and GRU4Rec's stable sorts do, not the item ids."""
    evs = [ev("z", 10), ev("a", 10), ev("m", 10), ev("b", 5)]
    for pos, e in enumerate(evs):
        e["log_position"] = (0, pos + 2)  # line numbers after a header
    for perm in (evs, evs[::-1], evs[2:] + evs[:2]):
        (rec,) = timelines.build_user_records("u", perm, timelines.TimelineOptions(split="loo")).test
        assert rec["item_ids"] + [rec["target_item"]] == ["b", "z", "a", "m"]
    # a later input file comes after an earlier one at the same timestamp
    evs[0]["log_position"] = (1, 1)
    (rec,) = timelines.build_user_records("u", evs, timelines.TimelineOptions(split="loo")).test
    assert rec["target_item"] == "z"


def test_leave_one_out_holds_out_the_last_tied_event_of_the_log(tmp_path):
    """End to end: the test target is the user's last event in file order among same-second events."""
    import tfpps  # noqa: F401
    from beam_jobs import cli
    from tfpps.data.dataset_dir import DatasetDir

    rows = [f"u{u},i{j},{100 * (j // 3)},{5 - j % 2}" for u in range(3) for j in (8, 3, 5, 1, 0, 7, 2)]
    log = tmp_path / "ties.csv"
    log.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    cli.run(["--source=csv", f"--input={log}", f"--output={tmp_path}/out", "--split=loo",
                        "--direct_running_mode=in_memory"])
    ds = DatasetDir(tmp_path / "out")
    items = ds.vocab("items")
    targets = {items[int(r["target_item"])] for r in ds.records("test")}
    # per user, times (j // 3): i8 -> 200, i3 -> 100, i5 -> 100, i1 -> 0, i0 -> 0, i7 -> 200, i2 -> 0;
    # the last second (200) holds i8 then i7 in file order, so i7 is the target (item-id order would give i8)
    assert targets == {"i7"}
