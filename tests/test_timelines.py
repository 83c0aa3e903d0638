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
