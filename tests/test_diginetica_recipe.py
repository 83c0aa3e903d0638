"""``configs/datasets/diginetica.yaml``: DIGINETICA from the raw ``train-item-views.csv``, prepared as SR-GNN's
``datasets/preprocess.py`` prepares it. A hand-counted fixture runs through the Beam job with the recipe's own flags.
``python -m benchmarks.references.srgnn_preprocess_check`` compares the recipe with SR-GNN's script itself on a large fixture.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from beam_jobs import cleaning, cli, timelines
from beam_jobs.sources import get_source
from tfpps.config import dataset_config_path, load_yaml

# (sessionId, userId, itemId, timeframe ms, eventdate), in file order. The last date D of a session that survives
# the filters is 2016-06-01, so the cut day is 05-25 (dropped), test = 05-26 .. 06-01, training < 05-25 and
# validation (valid_days: 1) = 05-24.
ROWS = [
    ("1", "NA", "A", 0, "2016-05-10"), ("1", "NA", "B", 5000, "2016-05-10"), ("1", "NA", "C", 9000, "2016-05-10"),
    ("2", "7", "B", 0, "2016-05-11"), ("2", "7", "A", 1000, "2016-05-11"),
    # a timeframe tie (B, A at 3000: file order) and a row out of timeframe order: C B A
    ("3", "NA", "B", 3000, "2016-05-12"), ("3", "NA", "A", 3000, "2016-05-12"), ("3", "NA", "C", 1000, "2016-05-12"),
    # three clicks in one second (A twice, 400 ms apart), not in timeframe order in the file: A B A
    ("4", "NA", "B", 1200, "2016-05-13"), ("4", "NA", "A", 1400, "2016-05-13"), ("4", "NA", "A", 1000, "2016-05-13"),
    ("5", "7", "A", 0, "2016-05-14"), ("5", "7", "R", 100, "2016-05-14"), ("5", "7", "B", 200, "2016-05-14"),
    ("6", "NA", "R", 0, "2016-05-15"), ("6", "NA", "C", 500, "2016-05-15"),
    ("7", "NA", "S", 0, "2016-05-16"), ("7", "NA", "A", 10, "2016-05-16"), ("7", "NA", "B", 20, "2016-05-16"),
    ("8", "NA", "B", 0, "2016-05-16"), ("8", "NA", "S", 10, "2016-05-16"), ("8", "NA", "C", 20, "2016-05-16"),
    ("9", "NA", "S", 0, "2016-05-17"), ("9", "NA", "S", 10, "2016-05-17"), ("9", "NA", "C", 20, "2016-05-17"),
    ("11", "NA", "S", 0, "2016-05-17"),  # one click: goes before item supports are counted (S: 4, not 5)
    # an exact duplicate row (same session, item, timeframe): SR-GNN keeps both
    ("12", "NA", "A", 0, "2016-05-18"), ("12", "NA", "B", 700, "2016-05-18"), ("12", "NA", "B", 700, "2016-05-18"),
    ("12", "NA", "C", 900, "2016-05-18"),
    ("13", "NA", "C", 0, "2016-05-19"),  # session 13 goes on at the end of the file
    ("14", "NA", "V", 0, "2016-05-24"), ("14", "NA", "V", 10, "2016-05-24"), ("14", "NA", "V", 20, "2016-05-24"),
    ("14", "NA", "V", 30, "2016-05-24"), ("14", "NA", "V", 40, "2016-05-24"), ("14", "NA", "B", 50, "2016-05-24"),
    ("24", "NA", "A", 0, "2016-05-24"), ("24", "NA", "C", 90_000_000, "2016-05-24"),  # 25 h: dated by its first click
    ("15", "NA", "K", 0, "2016-05-25"), ("15", "NA", "K", 10, "2016-05-25"), ("15", "NA", "K", 20, "2016-05-25"),
    ("15", "NA", "K", 30, "2016-05-25"), ("15", "NA", "K", 40, "2016-05-25"), ("15", "NA", "A", 50, "2016-05-25"),
    ("16", "7", "A", 0, "2016-05-26"), ("16", "7", "B", 10, "2016-05-26"), ("16", "7", "C", 20, "2016-05-26"),
    ("17", "NA", "V", 0, "2016-05-28"), ("17", "NA", "K", 5, "2016-05-28"), ("17", "NA", "C", 10, "2016-05-28"),
    ("18", "NA", "T", 0, "2016-06-01"), ("18", "NA", "T", 1, "2016-06-01"), ("18", "NA", "T", 2, "2016-06-01"),
    ("18", "NA", "A", 3, "2016-06-01"),
    ("19", "NA", "T", 0, "2016-05-31"), ("19", "NA", "T", 1, "2016-05-31"), ("19", "NA", "B", 2, "2016-05-31"),
    ("20", "NA", "B", 0, "2016-05-30"), ("20", "NA", "R", 5, "2016-05-30"),
    ("21", "NA", "C", 0, "2016-06-01"), ("21", "NA", "A", 1, "2016-06-01"),
    ("23", "NA", "A", 0, "2016-06-02"), ("23", "NA", "R", 1, "2016-06-02"),  # later than D, but one click after R goes
    ("22", "NA", "A", 0, "2016-06-03"),  # later than D, one click
    ("13", "NA", "A", 2000, "2016-05-19"),
]
# Clicks once the one-click sessions 11 and 22 are gone: A 15, B 13, C 11, V 6, K 6, T 5 stay; R 4 and S 4 go
# (S would have 5 with session 11). Then sessions 6 (C), 9 (C), 20 (B) and 23 (A) are left with one click and go.
# Training (< 05-25): 1 ABC, 2 BA, 3 CBA, 4 ABA, 5 AB, 7 AB, 8 BC, 12 ABBC, 13 CA; validation (05-24): 14 VVVVVB,
# 24 AC; the cut day: 15 (K only there and in test); test: 16 ABC, 17 VKC -> VC, 18 TTTA -> A (too short),
# 19 TTB -> B (too short), 21 CA. T and K are in no training session, so the item vocabulary is A B C V.
TRAIN = sorted(map(list, ["ABC", "BA", "CBA", "ABA", "AB", "AB", "BC", "ABBC", "CA"]))
VALID = sorted(map(list, ["VVVVVB", "AC"]))
TEST = sorted(map(list, ["ABC", "VC", "CA"]))
PAIRS = sorted([(("A",), "B"), (("A", "B"), "C"), (("V",), "C"), (("C",), "A")])


def recipe_flags(fixture: Path, out: Path) -> list[str]:
    flags = dict(load_yaml(dataset_config_path("diginetica"))["build"]["flags"])
    assert flags.pop("input").endswith("train-item-views.csv")
    return [f"--{k}={v}" for k, v in flags.items()] + [
        f"--input={fixture}", f"--output={out}", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diginetica")
    fixture = tmp / "train-item-views.csv"
    fixture.write_text("sessionId;userId;itemId;timeframe;eventdate\n" + "".join(f"{';'.join(map(str, r))}\n" for r in ROWS))
    out = tmp / "out"
    stats = cli.run(recipe_flags(fixture, out))
    return out, stats


def test_recipe_reproduces_the_hand_counted_srgnn_preparation(built):
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.data.examples.prefix import eval_examples

    out, stats = built
    ds = DatasetDir(out)
    items = ds.vocab("items")
    seqs = {split: sorted([items[i] for i in r["item_ids"]] for r in ds.records(split).as_numpy_iterator())
            for split in ("train", "valid", "test")}
    assert seqs == {"train": TRAIN, "valid": VALID, "test": TEST}
    assert sorted(items[2:]) == list("ABCV") and stats["num_items"] == 4 + 2  # + PAD / OOV
    # the tf.data reader evaluates test sessions prefix by prefix: SR-GNN's (prefix, label) pairs
    pairs = sorted((tuple(s[:k]), s[k]) for s in seqs["test"] for k in range(1, len(s)))
    assert pairs == PAIRS
    assert sum(1 for _ in eval_examples(ds.records("test"), max_len=50)) == len(PAIRS) == 4
    st = stats["stages"]
    assert st["events_parsed"] == len(ROWS) == 66
    assert "after_dedup" not in st  # dedup: none, as SR-GNN: the duplicate row of session 12 stays (A B B C)
    assert st["sessions_removed_before_kcore"] == 2 and st["after_sessions_first"] == 64
    assert st["after_kcore_round_1"] == 64 - 4 - 4  # R and S
    assert st["short_sessions_removed"] == 4  # sessions 6, 9, 20, 23
    assert st["cut_day_sessions_dropped"] == 1 and st["valid_sessions_carved"] == 2
    assert st["test_unseen_items_removed"] == 1 + 3 + 2 and st["test_records_too_short"] == 2  # K; T T T; T T
    assert {s: v["records"] for s, v in stats["splits"].items()} == {"train": 9, "valid": 2, "test": 3}


def test_millisecond_distinct_clicks_are_neither_merged_nor_reordered():
    adapter = get_source("diginetica")
    state = adapter.open_state("train-item-views.csv", "sessionId;userId;itemId;timeframe;eventdate")
    first, later, again = (adapter.parse_line(f"4;NA;A;{ms};2016-05-13", state).to_dict() for ms in (1400, 1000, 1400))
    assert first["timestamp"] - later["timestamp"] == pytest.approx(0.4)  # same second, 400 ms apart
    assert later["timestamp"] == 1463097601.0 and first["timestamp"] == 1463097601.4  # 2016-05-13 + 1.0 s / 1.4 s
    # --dedup=exact would keep both clicks (it merged them when timestamps were whole seconds) and drop the copy
    assert cleaning.dedup_key(first) != cleaning.dedup_key(later) and cleaning.dedup_key(first) == cleaning.dedup_key(again)
    assert [e["timestamp"] for e in timelines.order_events([first, later])] == [later["timestamp"], first["timestamp"]]
    # SR-GNN's header names (its sample file) are read too
    srgnn_state = adapter.open_state("sample.csv", "session_id;user_id;item_id;timeframe;eventdate")
    assert adapter.parse_line("4;NA;A;1400;2016-05-13", srgnn_state).to_dict() == first


def test_days_split_keeps_whole_days_only(tmp_path, capsys):
    argv = ["--source=diginetica", f"--input={tmp_path}/x.csv", f"--output={tmp_path}/o", "--split=days"]
    for bad in ("--test_days=0.5", "--test_days=0", "--valid_days=1.5"):
        assert cli.main([*argv, bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "whole days" in err
