"""``--source=hem_qrels``: the HEM benchmark's qrels read with the official split kept exactly.

The fixtures are written here in the benchmark's own layout (never the shared data); the last test
checks the real benchmark when it is present.
"""
import collections
import gzip
import json
import os
from pathlib import Path

import pytest

from beam_jobs import cli, examples
from beam_jobs.events import BadRow, SourceError
from beam_jobs.flags import JobError
from beam_jobs.sources import hem_qrels
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir
from tfpps.spec import schema

QUERIES = [
    "cell phone accessory case",      # 0  training
    "cell phone accessory charger",   # 1  training
    "headset bluetooth",              # 2  test only ("bluetooth" occurs in no training query)
    "screen protector",               # 3  training
    "car mount",                      # 4  test only
    "never used",                     # 5
]
TRAIN_QRELS = [  # A is bought by U1 with two queries: one purchase, two queries
    "U1_0 0 A 1 ", "U1_1 0 A 1 ", "U1_3 0 B 1 ", "U1_0 0 C 1 ",
    "U2_0 0 A 1 ", "U2_1 0 A 1 ", "U2_3 0 D 1 ",
    "U3_3 0 B 1 ", "U3_3 0 D 1 ", "U3_0 0 C 1 ",
]
BAD_QRELS = ["U9 0 X", "U9_x 0 A 1", "U9_99 0 A 1", "U9_0 0 A 0"]
TEST_QRELS = ["U1_2 0 D 1 ", "U2_2 0 B 1 ", "U2_2 0 C 1 ", "U3_2 0 A 1 ", "U3_4 0 B 1 "]
TEST_PAIRS = {("U1", "headset bluetooth"): {"D"}, ("U2", "headset bluetooth"): {"B", "C"},
              ("U3", "headset bluetooth"): {"A"}, ("U3", "car mount"): {"B"}}
REVIEWS = [  # the 5-core dump: line n is review n (from 0); train_review_id lists 0, 1, 3 and 4
    {"reviewerID": "U1", "asin": "A", "reviewText": "great case very sturdy", "summary": "love it", "unixReviewTime": 1},
    {"reviewerID": "U1", "asin": "B", "reviewText": "screen protector fits", "summary": "fine", "unixReviewTime": 2},
    {"reviewerID": "U1", "asin": "D", "reviewText": "secretword headset", "summary": "leaky", "unixReviewTime": 3},
    {"reviewerID": "U2", "asin": "A", "reviewText": "solid grip headset", "summary": "ok", "unixReviewTime": 4},
    None,  # a broken training line
    {"reviewerID": "U3", "asin": "B", "reviewText": "zebra", "summary": "zebra", "unixReviewTime": 6},
]


def _gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write("".join(line + "\n" for line in lines))
    return path


def write_benchmark(root: Path, bad_lines: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _gz(root / "query_text.txt.gz", QUERIES)
    _gz(root / "train.qrels.gz", TRAIN_QRELS[:3] + (BAD_QRELS if bad_lines else []) + TRAIN_QRELS[3:])
    _gz(root / "test.qrels.gz", TEST_QRELS)
    _gz(root / "train_review_id.txt.gz", ["line_0", "line_1", "line_3", "line_4", "bogus"])
    return root


def write_reviews(path: Path) -> Path:
    return _gz(path, [json.dumps(r) if r else "{broken json" for r in REVIEWS])


def build(tmp_path: Path, *extra: str, bad_lines: bool = False) -> tuple[dict, Path]:
    root = write_benchmark(tmp_path / "hem", bad_lines=bad_lines)
    out = tmp_path / "out"
    stats = cli.run(["--source=hem_qrels", f"--input={root}", f"--output={out}", "--kind=search",
                                "--valid_fraction=0.5", "--dedup=none", "--num_shards=1", *extra])
    return stats, out


def records(out: Path, split: str) -> list[dict]:
    ds = DatasetDir(out)
    items, queries, users = ds.vocab("items"), ds.vocab("queries"), ds.vocab("users")
    rows = []
    for r in ds.records(split).as_numpy_iterator():
        rows.append({"user": users[r["user_id"]], "query": queries[r["query_id"]], "item": items[r["item_id"]],
                     "targets": {items[i] for i in r["target_items"]},
                     "history": [items[i] for i in r["history_item_ids"]]})
    return rows


def item_texts(out: Path) -> dict[str, set[str]]:
    ds = DatasetDir(out)
    items, words = ds.vocab("items"), ds.vocab("words")
    files = sorted(str(p) for p in (out / schema.ITEM_TEXT_DIR).glob(f"*{schema.TFRECORD_SUFFIX}"))
    return {items[r["item_id"]]: {words[w] for w in r["word_ids"]}
            for r in pipeline.read_tfrecords(files, schema.ITEM_TEXT).as_numpy_iterator()}


def normalized(query: str) -> str:
    from tfpps.spec.text import normalize_words

    return " ".join(normalize_words(query))


# ----------------------------------------------------------------------------- reader
def test_qrels_line_parsing_and_bad_lines(tmp_path):
    root = write_benchmark(tmp_path / "hem")
    adapter = hem_qrels.HemQrelsSource()
    state = adapter.open_state(str(root / "train.qrels.gz"), None)
    ev = adapter.parse_line("U1_3 0 B 1 ", state)
    assert (ev.user_id, ev.item_id, ev.query, ev.split) == ("U1", "B", "screen protector", "train")
    reasons = []
    for line in BAD_QRELS:
        with pytest.raises(BadRow) as info:
            adapter.parse_line(line, state)
        reasons.append(info.value.reason.split(":")[0])
    assert reasons == ["wrong_column_count", "bad_user_query", "unknown_query", "not_a_purchase"]
    assert adapter.open_state(str(root / "test.qrels.gz"), None).split == "test"


def test_multi_query_purchase_is_one_event():
    lines = [{"user_id": "U1", "item_id": "A", "timestamp": hem_qrels.TIME_BASE, "query": q, "split": "train",
              "log_position": (0, n)} for n, q in ((2, "cell phone accessory charger"), (1, "cell phone accessory case"))]
    event = hem_qrels.merge_purchase(lines)
    assert event["queries"] == ["cell phone accessory case", "cell phone accessory charger"]
    assert event["timestamp"] == hem_qrels.TIME_BASE + 1 and event["query"] is None


def test_dead_letters_and_one_event_per_purchase(tmp_path):
    stats, out = build(tmp_path, bad_lines=True)
    st = stats["stages"]
    assert st["rows_dead_lettered"] == len(BAD_QRELS)
    assert stats["dead_letter_reasons"] == {"wrong_column_count": 1, "bad_user_query": 1, "unknown_query": 1, "not_a_purchase": 1}
    dead = [json.loads(line) for f in (out / schema.DEAD_LETTER_DIR).glob("*.jsonl") for line in f.read_text().splitlines()]
    assert {d["raw"] for d in dead} == set(BAD_QRELS) and all(d["reason"] for d in dead)
    assert st["events_parsed"] == len(TRAIN_QRELS) + len(TEST_QRELS)
    # train: U1 A, B, C; U2 A, D; U3 B, D, C = 8 purchases; test: 5 lines, 5 (user, item) purchases
    assert st["qrels_purchases"] == 8 + 5


@pytest.mark.parametrize("missing", ["test.qrels.gz", "query_text.txt.gz"])
def test_missing_file_is_one_line_error(tmp_path, missing, capsys):
    root = write_benchmark(tmp_path / "hem")
    (root / missing).unlink()
    code = cli.main(["--source=hem_qrels", f"--input={root}", f"--output={tmp_path / 'out'}", "--kind=search"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and missing in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_refuses_filters_that_would_change_the_benchmark(tmp_path):
    root = write_benchmark(tmp_path / "hem")
    base = ["--source=hem_qrels", f"--input={root}", f"--output={tmp_path / 'out'}"]
    for extra, match in ((["--kind=sequential"], "--kind=search"),
                         (["--kind=search", "--search_split=random"], "official split"),
                         (["--kind=search", "--min_user_interactions=5"], "min_user_interactions"),
                         (["--kind=search", "--test_query_fraction=0.3"], "test_query_fraction")):
        with pytest.raises(JobError, match=match):
            cli.run(base + extra)


# ----------------------------------------------------------------------------- split
def test_official_split_kept_exactly(tmp_path):
    stats, out = build(tmp_path)
    test = records(out, "test")
    got = {(r["user"], r["query"]): r["targets"] for r in test}
    assert got == {(u, normalized(q)): items for (u, q), items in TEST_PAIRS.items()}
    assert len(test) == len(TEST_PAIRS) and sum(len(r["targets"]) for r in test) == len(TEST_QRELS)
    # test queries are exactly the test-only ones: none in training or validation records
    test_queries = {normalized(QUERIES[2]), normalized(QUERIES[4])}
    train, valid = records(out, "train"), records(out, "valid")
    assert not test_queries & {r["query"] for r in train + valid}
    assert stats["stages"]["test_only_queries"] == 2 and "test_queries_seen_in_training" not in stats["stages"]
    # every eval record's history = the user's training purchases (test: the whole official training part)
    bought = {}
    for line in TRAIN_QRELS:
        user = line.split("_")[0]
        bought.setdefault(user, []).append(line.split()[2])
    for r in test:
        assert set(r["history"]) == set(bought[r["user"]])
    meta = json.loads((out / schema.DATASET_FILE).read_text())
    assert meta["split"] == "hem_given" and meta["eval_targets"] == "multi"
    assert meta["counts"]["test"] == len(TEST_PAIRS)


def test_validation_is_carved_from_training_only(tmp_path):
    _, out = build(tmp_path)
    train, valid = records(out, "train"), records(out, "valid")
    train_lines = {(line.split("_")[0], normalized(QUERIES[int(line.split()[0].split("_")[1])]), line.split()[2])
                   for line in TRAIN_QRELS}
    valid_lines = {(r["user"], r["query"], item) for r in valid for item in r["targets"]}
    train_pairs = {(r["user"], r["query"], r["item"]) for r in train}
    assert valid and valid_lines <= train_lines  # validation judgements are training judgements
    assert train_pairs | valid_lines == train_lines and not train_pairs & valid_lines
    for r in valid:  # one record per (user, query), every validation item bought with it as a target
        assert r["item"] in r["targets"] and not set(r["history"]) & r["targets"]
    assert len({(r["user"], r["query"]) for r in valid}) == len(valid)


def test_validation_queries_held_out_are_unseen_in_training(tmp_path):
    """--valid_query_fraction: seed 2 at 0.3 draws "charger" alone (A, its only product, keeps "case"). The
    training purchases bought with it are U1's A and U2's A, whose validation draws are 0.81 and 0.73: at
    --valid_fraction=0.78 U2's A validates (its "case" pair dropped) and U1's A trains with "case" only. No
    training pair names "charger", nor does the word vocabulary or A's item text."""
    stats, out = build(tmp_path, "--valid_query_fraction=0.3", "--split_seed=2", "--valid_fraction=0.78")
    charger = normalized(QUERIES[1])
    train, valid, test = records(out, "train"), records(out, "valid"), records(out, "test")
    assert stats["stages"]["valid_only_queries"] == 1
    assert [(r["user"], r["query"], r["targets"]) for r in valid] == [("U2", charger, {"A"})]
    assert sorted((r["user"], r["item"], r["query"]) for r in train) == sorted(
        [("U1", "A", normalized(QUERIES[0])), ("U1", "B", normalized(QUERIES[3])), ("U1", "C", normalized(QUERIES[0])),
         ("U2", "D", normalized(QUERIES[3])),
         ("U3", "B", normalized(QUERIES[3])), ("U3", "D", normalized(QUERIES[3])), ("U3", "C", normalized(QUERIES[0]))])
    assert valid[0]["history"] == ["D"]  # U2's training purchases: A validates
    assert "charger" not in DatasetDir(out).vocab("words")
    assert item_texts(out)["A"] == {"cell", "phone", "accessori", "case"}
    assert len(test) == len(TEST_PAIRS)  # the official test part is untouched
    assert stats["stages"]["pairs_dropped_valid_query_holdout"] == 2  # U1's A charger pair, U2's A case pair


def test_valid_query_fraction_flags_are_checked(tmp_path):
    root = write_benchmark(tmp_path / "hem")
    base = ["--source=hem_qrels", f"--input={root}", f"--output={tmp_path / 'out'}", "--kind=search"]
    with pytest.raises(JobError, match="must be in"):
        cli.run(base + ["--valid_query_fraction=1.5"])
    rows = tmp_path / "log.csv"
    rows.write_text("user_id,item_id,timestamp,query\nu,i,1,q\n")
    with pytest.raises(JobError, match="applies to --kind=search --search_split=given"):
        cli.run(["--source=csv", f"--input={rows}", f"--output={tmp_path / 'o2'}", "--kind=search",
                 "--valid_query_fraction=0.2"])


def test_trec_files_use_the_official_query_ids(tmp_path):
    """The run and qrels tfpps writes name (user, query) as the official qrels do, so the written qrels ARE the
    official test.qrels (same lines) and trec_eval scores a run against the official file as is."""
    import tensorflow as tf

    from tfpps.data.examples.search import eval_examples
    from tfpps.evaluation.trec import run_file_metrics, write_trec_files

    _, out = build(tmp_path)
    data = DatasetDir(out)
    names = data.query_names()
    queries = data.vocab("queries")
    assert {names[i] for i, q in enumerate(queries) if q == normalized(QUERIES[2])} == {"2"}
    batches = pipeline.batch_padded(eval_examples(data.records("test"), 20), 8)
    num_items = len(data.vocab("items"))
    score = lambda f: tf.tile(tf.range(num_items, dtype=tf.float32)[None, :], [tf.shape(f["user_id"])[0], 1])
    run, qrels = write_trec_files(score, batches, data.vocab("users"), data.vocab("items"), tmp_path / "run" / "test",
                                  query_names=names)
    assert sorted(qrels.read_text().split("\n")[:-1]) == sorted(" ".join(line.split()) for line in TEST_QRELS)
    assert {line.split()[0] for line in run.read_text().splitlines()} == {line.split()[0] for line in TEST_QRELS}
    official = _gz(tmp_path / "official.qrels.gz", TEST_QRELS)
    plain = tmp_path / "official.qrels"
    plain.write_text(gzip.open(official, "rt").read())
    assert run_file_metrics(run, plain) == run_file_metrics(run, qrels)


# ----------------------------------------------------------------------------- item text
def test_item_text_from_training_queries_only(tmp_path):
    stats, out = build(tmp_path)
    texts = item_texts(out)
    assert set(texts) == {"A", "B", "C", "D"}
    assert texts["A"] == {"cell", "phone", "accessori", "case", "charger"}
    assert texts["D"] == {"screen", "protector"}  # D was bought with "headset bluetooth" in test only
    words = DatasetDir(out).vocab("words")
    assert "bluetooth" not in words and "mount" not in words  # test-only query words are OOV
    assert stats["stages"]["test_query_words_oov"] == 4  # headset, bluetooth, car, mount


def test_item_text_from_training_reviews_only(tmp_path):
    reviews = write_reviews(tmp_path / "reviews_Cell_Phones_and_Accessories_5.json.gz")
    stats, out = build(tmp_path, f"--reviews={reviews}")
    texts = item_texts(out)
    assert texts["A"] == {"great", "case", "veri", "sturdi", "love", "it", "solid", "grip", "headset", "ok"}
    assert texts["B"] == {"screen", "protector", "fit", "fine"}
    words = DatasetDir(out).vocab("words")
    for leaked in ("secretword", "zebra", "leaki"):  # words of test reviews (lines 2 and 5)
        assert leaked not in words and all(leaked not in t for t in texts.values())
    st = stats["stages"]
    assert st["train_reviews_used"] == 3 and st["reviews_not_training"] == 2
    assert stats["dead_letter_reasons"] == {"bad_review": 1, "bad_review_id": 1}
    assert st["test_query_words_oov"] == 3  # "headset" is in a training review now: bluetooth, car, mount


def test_reviews_need_the_source_and_the_review_ids(tmp_path):
    reviews = write_reviews(tmp_path / "reviews_5.json.gz")
    with pytest.raises(JobError, match="--reviews applies"):
        cli.run(["--source=csv", f"--input={reviews}", f"--output={tmp_path / 'o'}", "--kind=search",
                            f"--reviews={reviews}"])
    root = write_benchmark(tmp_path / "hem")
    (root / "train_review_id.txt.gz").unlink()
    with pytest.raises(SourceError, match="train_review_id"):
        cli.run(["--source=hem_qrels", f"--input={root}", f"--output={tmp_path / 'o'}", "--kind=search",
                            f"--reviews={reviews}"])


def test_search_dataset_json_names_its_split(tmp_path):
    rows = ["user_id,item_id,timestamp,query"] + [f"u{u},i{i},{1_600_000_000 + 100 * i},red shoes {i % 2}"
                                                  for u in range(3) for i in range(6)]
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    for split in ("random", "time"):
        out = tmp_path / split
        cli.run(["--source=csv", f"--input={log}", f"--output={out}", "--kind=search", f"--search_split={split}"])
        meta = json.loads((out / schema.DATASET_FILE).read_text())
        assert meta["split"] == split and meta["eval_targets"] == "multi"


# ----------------------------------------------------------------------------- the real benchmark
REAL = Path(os.environ.get("TFPPS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "amazon-cellphones-hem"


@pytest.mark.skipif(not (REAL / "test.qrels.gz").exists(), reason=f"the HEM benchmark is not at {REAL} (shared data absent)")
def test_real_benchmark_keeps_665_test_pairs():
    """The reader, the purchase merge and the given split on the real qrels, without Beam (the full build,
    ``python -m tfpps.data.build --dataset=amazon-cellphones-hem``, takes over a minute)."""
    adapter = hem_qrels.HemQrelsSource()
    lines: dict[tuple, list] = collections.defaultdict(list)
    for file_index, name in enumerate(("train.qrels.gz", "test.qrels.gz")):
        state = adapter.open_state(str(REAL / name), None)
        with gzip.open(REAL / name, "rt") as fh:
            for line_no, line in enumerate(fh, 1):
                event = {**adapter.parse_line(line.rstrip("\n"), state).to_dict(), "log_position": (file_index, line_no)}
                lines[(event["split"], event["user_id"], event["item_id"])].append(event)
    by_user: dict[str, list] = collections.defaultdict(list)
    for group in lines.values():
        purchase = hem_qrels.merge_purchase(group)
        by_user[purchase["user_id"]].append(purchase)
    assert sum(map(len, by_user.values())) == 150_048 + 615 and len(by_user) == 27_879
    opts = examples.ExampleOptions(search_split="given", valid_fraction=0.1)
    test_users = {user for split, user, _ in lines if split == "test"}  # only they can have test records
    test = [r for user in sorted(test_users) for r in examples.build_search_records(user, by_user[user], opts)[0]["test"]]
    assert len(test) == 665 and sum(len(r["target_items"]) for r in test) == 667
    assert len({r["query"] for r in test}) == 30
