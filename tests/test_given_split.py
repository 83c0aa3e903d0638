"""``--split=given`` (separate inputs or a ``split`` column), session-only CSV logs and the ``srgnn`` source.

Every fixture is tiny and hand-counted in the comments next to it. Real-data checks (yoochoose-100k, diginetica
as SR-GNN prepared it) run only when ``../shared/data`` holds them.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from beam_jobs import cli
from beam_jobs.events import SourceError
from beam_jobs.sources import get_source
from beam_jobs.sources.srgnn import load_srgnn_pickle
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.examples.prefix import eval_examples

IN_MEMORY = ["--direct_running_mode=in_memory"]
DAY = 86_400
T0 = 1_600_000_000

# Training sessions (session_id only: no user column), one per day:
#   s1 day 0: a b c       s2 day 1: a b       s3 day 2: b c d e       s4 day 3 (+1h): d a
# train item counts: a 3, b 3, c 2, d 2, e 1
TRAIN = [("s1", "a", 0), ("s1", "b", 10), ("s1", "c", 20),
         ("s2", "a", DAY), ("s2", "b", DAY + 10),
         ("s3", "b", 2 * DAY), ("s3", "c", 2 * DAY + 10), ("s3", "d", 2 * DAY + 20), ("s3", "e", 2 * DAY + 30),
         ("s4", "d", 3 * DAY + 3600), ("s4", "a", 3 * DAY + 3610)]
# Validation: v1 (day 4): c d
VALID = [("v1", "c", 4 * DAY), ("v1", "d", 4 * DAY + 10)]
# Test (day 5): t1 a b x (x unseen in training -> removed: a b); t2 c y (y removed -> c alone: too short, dropped);
#               t3 b c e d (all seen)
TEST = [("t1", "a", 5 * DAY), ("t1", "b", 5 * DAY + 10), ("t1", "x", 5 * DAY + 20),
        ("t2", "c", 5 * DAY + 100), ("t2", "y", 5 * DAY + 110),
        ("t3", "b", 5 * DAY + 200), ("t3", "c", 5 * DAY + 210), ("t3", "e", 5 * DAY + 220), ("t3", "d", 5 * DAY + 230)]


def write_csv(path: Path, rows, split: str | None = None) -> Path:
    head = "session_id,item_id,timestamp" + (",split" if split else "")
    lines = [f"{s},{i},{T0 + t}" + (f",{split}" if split else "") for s, i, t in rows]
    path.write_text(head + "\n" + "\n".join(lines) + "\n")
    return path


def sequences(out: Path) -> dict[str, list[tuple[list[str], str | None]]]:
    """Each split's records as (item tokens, target token or None), sorted."""
    ds = DatasetDir(out)
    items = ds.vocab("items")
    res = {}
    for split in ("train", "valid", "test"):
        recs = [([items[i] for i in r["item_ids"]], items[r["target_item"]] if r["target_item"] else None)
                for r in ds.records(split).as_numpy_iterator()] if ds.files(split) else []
        res[split] = sorted(recs)
    return res


def run(tmp_path: Path, *flags: str, name: str = "out") -> tuple[Path, dict]:
    out = tmp_path / name
    stats = cli.run([f"--output={out}", "--split=given", *flags, *IN_MEMORY])
    return out, stats


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("given")
    return tmp, write_csv(tmp / "train.csv", TRAIN), write_csv(tmp / "valid.csv", VALID), write_csv(tmp / "test.csv", TEST)


def test_given_split_from_separate_files_keeps_every_event_in_its_split(files, capsys):
    tmp, train, valid, test = files
    out, stats = run(tmp, "--source=csv", f"--train_input={train}", f"--valid_input={valid}", f"--test_input={test}",
                     name="separate")
    seqs = sequences(out)
    assert seqs["train"] == sorted([(list("abc"), None), (list("ab"), None), (list("bcde"), None), (list("da"), None)])
    assert seqs["valid"] == [(list("cd"), None)]
    assert seqs["test"] == sorted([(list("ab"), None), (list("bced"), None)])
    assert {s: v["records"] for s, v in stats["splits"].items()} == {"train": 4, "valid": 1, "test": 2}
    st = stats["stages"]
    assert st["test_unseen_items_removed"] == 2 and st["test_records_too_short"] == 1
    assert "note:" not in capsys.readouterr().err  # a validation input: nothing carved
    ds = DatasetDir(out)
    assert ds.meta["split"] == "given" and sorted(ds.vocab("items")[2:]) == list("abcde")  # x, y: test only
    # test sessions are whole sessions: the reader expands them into next-item prefixes (a->b; b->c, bc->e, bce->d)
    n = sum(1 for _ in eval_examples(ds.records("test"), max_len=10))
    assert n == 1 + 3


def test_kcore_runs_on_the_training_part_only_unless_filter_eval(files):
    tmp, train, valid, test = files
    common = ["--source=csv", f"--train_input={train}", f"--valid_input={valid}", f"--test_input={test}",
              "--min_item_interactions=2"]
    out, stats = run(tmp, *common, name="kcore")
    # train counts: e 1 -> e leaves training (s3 = b c d); the test's e is then unseen and removed
    seqs = sequences(out)
    assert (list("bcd"), None) in seqs["train"] and "e" not in DatasetDir(out).vocab("items")
    assert seqs["test"] == sorted([(list("ab"), None), (list("bcd"), None)])
    assert stats["stages"]["after_kcore_round_1"] == len(TRAIN) - 1  # counted on the training part
    assert stats["stages"]["test_unseen_items_removed"] == 3  # x, y, e
    # --filter_eval=true: k-core counts every part: e (2: train + test) stays; x and y (1) go from test
    out, stats = run(tmp, *common, "--filter_eval=true", name="kcore_all")
    seqs = sequences(out)
    assert (list("bcde"), None) in seqs["train"] and seqs["test"] == sorted([(list("ab"), None), (list("bced"), None)])
    assert stats["stages"]["after_kcore_round_1"] == len(TRAIN) + len(VALID) + len(TEST) - 2


def test_split_column_variant_gives_the_same_dataset(files):
    tmp = files[0]
    both = tmp / "all.csv"
    text = "".join(write_csv(tmp / f"part-{s}.csv", rows, s).read_text().split("\n", 1)[1]
                   for s, rows in (("train", TRAIN), ("valid", VALID), ("test", TEST)))
    both.write_text("session_id,item_id,timestamp,split\n" + text.replace(",valid\n", ",Validation\n", 1))
    out, stats = run(tmp, "--source=csv", f"--input={both}", name="column")
    assert sequences(out) == sequences(tmp / "separate")
    assert {s: v["records"] for s, v in stats["splits"].items()} == {"train": 4, "valid": 1, "test": 2}


def test_split_column_bad_or_missing_values_are_dead_letters(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("session_id,item_id,timestamp,split\n"
                   f"s1,a,{T0},train\ns1,b,{T0 + 1},train\ns2,a,{T0 + 9},test\ns2,b,{T0 + 10},test\n"
                   f"s3,a,{T0 + 20},holdout\ns3,b,{T0 + 21},\n")
    out, stats = run(tmp_path, "--source=csv", f"--input={log}")
    assert stats["dead_letter_reasons"] == {"bad_split": 2}
    assert {s: v["records"] for s, v in stats["splits"].items()} == {"train": 1, "valid": 0, "test": 1}


def test_no_valid_input_carves_the_last_training_day_with_one_note(files, capsys):
    tmp, train, _, test = files
    capsys.readouterr()
    out, stats = run(tmp, "--source=csv", f"--train_input={train}", f"--test_input={test}", name="carved")
    # max training time = day 3 + 3610 s; sessions ending after day 2 + 3610 s: only s4 (d a)
    seqs = sequences(out)
    assert seqs["valid"] == [(list("da"), None)] and len(seqs["train"]) == 3 and len(seqs["test"]) == 2
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ["note: no --valid_input; validation = the last 1.0 day(s) of the training input (1 sessions)"]
    assert stats["stages"]["valid_sessions_carved"] == 1


def test_time_split_without_valid_days_says_validation_is_empty(files, capsys):
    tmp, train, _, _ = files
    capsys.readouterr()
    cli.run(["--source=csv", f"--input={train}", f"--output={tmp / 'time'}", "--split=time", *IN_MEMORY])
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "validation split is empty and early stopping is off" in notes[0]


@pytest.mark.parametrize("argv, message", [
    (["--split=given", "--train_input=X"], "needs both --train_input and --test_input"),
    (["--split=given"], "needs --train_input and --test_input, or --input"),
    (["--split=loo", "--train_input=X", "--input=Y"], "apply to --split=given"),
    (["--split=loo"], "--input is required"),
])
def test_bad_given_flags_are_one_line(tmp_path, capsys, argv, message):
    assert cli.main(["--source=csv", f"--output={tmp_path}/o", *argv, *IN_MEMORY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_session_only_csv_keeps_sessions_whole(tmp_path):
    adapter = get_source("csv")
    state = adapter.open_state("x.csv", "session_id,item_id,timestamp")
    ev = adapter.parse_line("s7,i1,1000", state)
    assert ev.user_id == "s7" and ev.session_id == "s7"
    with pytest.raises(SourceError, match="user_id.*or a 'session_id' column"):
        adapter.open_state("x.csv", "item_id,timestamp")
    # sessions keyed by session_id stay whole even across a long gap (no gap-based re-splitting)
    log = tmp_path / "s.csv"
    log.write_text(f"session_id,item_id,timestamp\ns1,a,{T0}\ns1,b,{T0 + 5 * 3600}\ns2,a,{T0 + DAY}\ns2,c,{T0 + DAY + 1}\n")
    out = tmp_path / "out"
    cli.run(["--source=csv", f"--input={log}", f"--output={out}", "--split=last_session", *IN_MEMORY])
    assert sequences(out)["train"] == [(list("ab"), None), (list("ac"), None)]


# --------------------------------------------------------------------------- #
# srgnn
# --------------------------------------------------------------------------- #
SR_TRAIN = [[1, 2, 3], [2, 3, 5], [3, 4, 1, 2], [4, 5]]  # 4 sessions; the last one becomes validation
SR_TEST = ([[1, 2], [1], [3, 4, 1], [6, 2]], [3, 2, 2, 1])  # 6 unseen in training: 4th prefix becomes [2] -> 1


def dump(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


def test_srgnn_records_are_exactly_as_given_and_not_re_expanded(tmp_path, capsys):
    train, test = dump(tmp_path / "all_train_seq.txt", SR_TRAIN), dump(tmp_path / "test.txt", SR_TEST)
    capsys.readouterr()
    # synthetic times: session n at 60 n s; the last 0.0005 day (43.2 s) of training holds the last session only
    out, stats = run(tmp_path, "--source=srgnn", f"--train_input={train}", f"--test_input={test}", "--valid_days=0.0005")
    seqs = sequences(out)
    assert seqs["train"] == sorted([(["1", "2", "3"], None), (["2", "3", "5"], None), (["3", "4", "1", "2"], None)])
    assert seqs["valid"] == [(["4", "5"], None)]
    assert seqs["test"] == sorted([(["1", "2"], "3"), (["1"], "2"), (["3", "4", "1"], "2"), (["2"], "1")])
    assert stats["stages"]["test_unseen_items_removed"] == 1
    ds = DatasetDir(out)
    examples = list(eval_examples(ds.records("test"), max_len=10).as_numpy_iterator())
    assert len(examples) == 4  # one per (prefix, label), not one per sub-prefix
    assert "1 sessions" in capsys.readouterr().err


@pytest.mark.parametrize("obj, what", [
    ([[1, 2], [3, "x"]], "session 1"),
    ([[1, 2], []], "session 1"),
    ([[1, 0]], "session 0"),
    (([[1]], [2, 3]), "1 prefixes but 2 labels"),
    (([[1]], [True]), "label 0"),
    ({"a": 1}, "a dict"),
])
def test_srgnn_bad_structure_is_one_line_naming_the_file(tmp_path, capsys, obj, what):
    bad = dump(tmp_path / "bad.txt", obj)
    test = dump(tmp_path / "test.txt", SR_TEST)
    code = cli.main(["--source=srgnn", "--split=given", f"--train_input={bad}", f"--test_input={test}",
                                f"--output={tmp_path / 'o'}", *IN_MEMORY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(bad) in err[0] and what in err[0]
    assert not (tmp_path / "o").exists()


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.txt"
    evil.write_bytes(pickle.dumps([[1, 2], _Evil(str(marker))]))
    with pytest.raises(SourceError, match="forbidden class"):
        load_srgnn_pickle(str(evil))
    test = dump(tmp_path / "test.txt", SR_TEST)
    code = cli.main(["--source=srgnn", "--split=given", f"--train_input={evil}", f"--test_input={test}",
                                f"--output={tmp_path / 'o'}", *IN_MEMORY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(evil) in err[0] and "forbidden class" in err[0]
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- #
# real data (skipped when ../shared/data does not hold it)
# --------------------------------------------------------------------------- #
def _real(name: str, *files: str) -> Path:
    from tfpps.data.datasets import shared_data_dir

    folder = shared_data_dir() / name
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        pytest.skip(f"real data absent: {folder} lacks {', '.join(missing)}")
    return folder


def _build_config(name: str, out: Path) -> dict:
    from tfpps.data.datasets import job_argv

    return cli.run(job_argv(name, out, overwrite=False) + IN_MEMORY)


def test_yoochoose_100k_given_split_has_the_official_10152_test_events(tmp_path):
    folder = _real("yoochoose-100k", "yoochoose-clicks-100k_train_full.txt", "yoochoose-clicks-100k_test.txt")
    # the official count, from the raw files: test clicks of items seen in training, in sessions of >= 2 such
    # clicks, minus one per session (the first click of a session is never a target)
    train_items = {line.split("\t")[1] for line in list(open(folder / "yoochoose-clicks-100k_train_full.txt"))[1:]}
    per_session: dict[str, int] = {}
    for line in list(open(folder / "yoochoose-clicks-100k_test.txt"))[1:]:
        session, item = line.split("\t")[:2]
        if item in train_items:
            per_session[session] = per_session.get(session, 0) + 1
    sessions = {s: n for s, n in per_session.items() if n >= 2}
    official = sum(sessions.values()) - len(sessions)
    assert official == 10_152
    out = tmp_path / "yc"
    stats = _build_config("yoochoose-100k", out)
    assert stats["splits"]["test"]["records"] == len(sessions) == 3_416
    ds = DatasetDir(out)
    assert sum(1 for _ in eval_examples(ds.records("test"), max_len=50)) == official


@pytest.mark.skipif(os.environ.get("TFPPS_FULL_REAL_DATA") != "1",
                    reason="builds the whole DIGINETICA dataset (about 3.5 minutes on 2 cores); set TFPPS_FULL_REAL_DATA=1")
def test_diginetica_srgnn_given_split_yields_the_published_counts(tmp_path):
    _real("diginetica-srgnn", "all_train_seq.txt", "test.txt")
    out = tmp_path / "dg"
    stats = _build_config("diginetica-srgnn", out)
    assert stats["splits"]["test"]["records"] == 60_858
    assert stats["num_items"] == 43_097 + 2  # + PAD / OOV
    ds = DatasetDir(out)
    assert sum(1 for _ in eval_examples(ds.records("test"), max_len=50)) == 60_858
