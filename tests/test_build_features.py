"""The Beam job end to end on small fixture logs: outputs, dead letters, counts, errors."""
import json

import pytest

from beam_jobs import cli
from tfpps.data.dataset_dir import DatasetDir
from tfpps.spec import schema

HEADER = "user_id,item_id,timestamp,rating\n"
GOOD = [
    # u1: 6 events, one exact duplicate (dropped by dedup)
    "u1,a,1000,5", "u1,b,1100,4", "u1,c,1200,3", "u1,d,9000,5", "u1,e,9100,4", "u1,f,9200,5", "u1,f,9200,5",
    # u2: 4 events, given out of order in the file
    "u2,c,2000,4", "u2,a,1500,5", "u2,b,1600,1", "u2,d,2500,4",
    # u3: 3 events
    "u3,a,500,5", "u3,b,600,5", "u3,c,700,5",
]
BAD = [
    ("u4,a", "wrong_column_count"),
    ("u4,a,yesterday,5", "bad_timestamp"),
    (",a,1000,5", "empty_user_id"),
    ("u4,a,-5,5", "negative_timestamp"),
]
IN_MEMORY = ["--direct_running_mode=in_memory"]


def write_log(path, extra_bytes=b""):
    lines = GOOD[:5] + [b for b, _ in BAD] + GOOD[5:]
    path.write_bytes(HEADER.encode() + "\n".join(lines).encode() + b"\n" + extra_bytes)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("job")
    log = write_log(tmp / "events.csv", extra_bytes=b"u5,\xff\xfe,1000,5\n")
    out = tmp / "dataset"
    stats = cli.run(["--source=csv", f"--input={log}", f"--output={out}", "--split=loo", *IN_MEMORY])
    return out, stats


def test_every_row_is_accounted_for(built):
    out, stats = built
    data_rows = len(GOOD) + len(BAD) + 1
    st = stats["stages"]
    assert st["events_parsed"] + st["rows_dead_lettered"] == data_rows
    assert st["rows_dead_lettered"] == len(BAD) + 1
    assert st["after_dedup"] == len(GOOD) - 1
    reasons = stats["dead_letter_reasons"]
    assert reasons == {"bad_timestamp": 1, "negative_timestamp": 1, "empty_user_id": 1, "non_utf8": 1, "wrong_column_count": 1}
    dead = [json.loads(l) for p in (out / "dead_letter").glob("*.jsonl") for l in p.read_text().splitlines()]
    assert len(dead) == len(BAD) + 1
    assert all(d["file"].endswith("events.csv") and d["line"] > 1 and d["reason"] for d in dead)
    assert {d["raw"] for d in dead} >= {b for b, _ in BAD}


def test_splits_vocab_and_tfrecords_round_trip(built):
    out, stats = built
    ds = DatasetDir(out)
    assert ds.kind == schema.SEQUENTIAL and ds.meta["split"] == "loo"
    items = ds.vocab("items")
    assert items[:2] == [schema.PAD_TOKEN, schema.OOV_TOKEN] and sorted(items[2:]) == list("abcdef")
    counts = dict(zip(items, ds.vocab_counts("items")))
    # training support: u1 a b c d, u2 a b, u3 a -> a=3, b=2, c=1, d=1 (e, f only in valid/test)
    assert counts["a"] == 3 and counts["b"] == 2 and counts["e"] == 0 and counts["f"] == 0
    assert items[2] == "a"  # most frequent first
    users = ds.vocab("users")
    by_user = {}
    for split in schema.SPLITS:
        for rec in ds.records(split).as_numpy_iterator():
            by_user.setdefault(users[rec["user_id"]], {})[split] = (
                [items[i] for i in rec["item_ids"]],
                items[rec["target_item"]] if rec["target_item"] else None,
            )
    assert by_user["u1"]["train"] == (list("abcd"), None)
    assert by_user["u1"]["valid"] == (list("abcd"), "e")
    assert by_user["u1"]["test"] == (list("abcde"), "f")
    assert by_user["u2"]["test"] == (list("abc"), "d")  # time order, not file order
    assert stats["splits"]["test"]["records"] == 3
    assert len(ds.files("train")) == 4  # --num_shards default
    assert not list(out.parent.glob(".dataset.tmp-*"))  # temp dir renamed away


def test_session_split_drops_unseen_items_from_eval(tmp_path):
    log = tmp_path / "s.csv"
    log.write_text(
        "user_id,item_id,timestamp,session_id\n"
        "s1,a,100,s1\ns1,b,110,s1\ns2,a,200,s2\ns2,b,210,s2\ns2,c,220,s2\n"
        "s3,a,90000,s3\ns3,z,90010,s3\ns3,b,90020,s3\n"
    )
    out = tmp_path / "out"
    stats = cli.run(
        ["--source=csv", f"--input={log}", f"--output={out}", "--split=time", "--test_days=0.5", *IN_MEMORY]
    )
    ds = DatasetDir(out)
    items = ds.vocab("items")
    assert "z" not in items  # only seen in test
    test = [[items[i] for i in r["item_ids"]] for r in ds.records("test").as_numpy_iterator()]
    assert test == [["a", "b"]]
    assert stats["stages"]["test_unseen_items_removed"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source=nope"], "unknown source"),
        (["--source=csv", "--input={tmp}/missing*.csv"], "no file matches"),
        (["--source=csv", "--input={tmp}/empty.csv"], "input file is empty"),
        (["--source=csv", "--input={tmp}/nocol.csv"], "timestamp"),
        (["--source=csv", "--input={tmp}/ok.csv", "--min_user_interactions=-1"], "must be >= 0"),
    ],
)
def test_bad_invocations_give_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nocol.csv").write_text("user_id,item_id\nu,i\n")
    (tmp_path / "ok.csv").write_text(HEADER + "u1,a,1000,5\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if not any(a.startswith("--input") for a in argv):
        argv.append(f"--input={tmp_path}/ok.csv")
    code = cli.main(argv + [f"--output={tmp_path}/out", *IN_MEMORY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("build_features: error:") and message in err[0]
    if "nocol" in " ".join(argv):
        assert "nocol.csv" in err[0]
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys):
    log = write_log(tmp_path / "e.csv")
    (tmp_path / "out").mkdir()
    code = cli.main(["--source=csv", f"--input={log}", f"--output={tmp_path}/out", *IN_MEMORY])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_multi_process_direct_runner_and_kcore(tmp_path):
    """The multi-process DirectRunner (on request; the default is in_memory) with a k-core that removes u3 and
    item e/f."""
    log = write_log(tmp_path / "events.csv")
    out = tmp_path / "mp"
    stats = cli.run(
        [
            "--source=csv",
            f"--input={log}",
            f"--output={out}",
            "--min_user_interactions=4",
            "--min_item_interactions=2",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
            "--num_shards=2",
        ]
    )
    # items e, f occur once -> dropped; then u1 keeps a b c d (4), u2 a c d (+b rating 1 kept: no rating
    # filter) = 4, u3 a b c = 3 < 4 -> dropped; then c occurs twice... stays.
    assert stats["stages"]["users"] == 2
    ds = DatasetDir(out)
    assert set(ds.vocab("users")[2:]) == {"u1", "u2"}
    assert "e" not in ds.vocab("items") and "f" not in ds.vocab("items")
    assert len(ds.files("test")) == 2


def test_parquet_logs_through_the_job(tmp_path):
    """Canonical Parquet logs (as the synthetic generator writes them) give the same dataset as CSV."""
    from tfpps import synthetic

    results = {}
    for fmt in ("csv", "parquet"):
        raw = tmp_path / f"raw_{fmt}"
        synthetic.generate(synthetic.SyntheticConfig(n_users=40, n_items=60, seed=5, events_per_user=12, format=fmt), raw)
        out = tmp_path / f"out_{fmt}"
        stats = cli.run([f"--source={fmt}", f"--input={raw}/events-*.{fmt}", f"--output={out}", *IN_MEMORY])
        ds = DatasetDir(out)
        results[fmt] = (stats["stages"]["events_parsed"], ds.vocab("items"), sorted(
            (ds.vocab("users")[r["user_id"]], tuple(ds.vocab("items")[i] for i in r["item_ids"]))
            for r in ds.records("test").as_numpy_iterator()))
    assert results["csv"][0] > 0
    assert results["csv"] == results["parquet"]
