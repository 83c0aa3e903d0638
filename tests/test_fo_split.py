"""The ``fo`` split (Tran et al.'s random hold-out): timelines, the Beam job, multi-target records, training end to end."""
import json
import random

import pytest

from beam_jobs import cli, summary, timelines
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.examples.prefix import eval_examples
from tfpps.spec import schema

IN_MEMORY = ["--direct_running_mode=in_memory"]
FO = timelines.TimelineOptions(split="fo")


def events(n_users=60, per_user=50, n_items=300, seed=0):
    rng = random.Random(seed)
    out = {}
    for u in range(n_users):
        items = rng.sample(range(n_items), per_user)
        out[f"u{u}"] = [{"user_id": f"u{u}", "item_id": f"i{i}", "timestamp": 1_000 + 60 * j} for j, i in enumerate(items)]
    return out


def split_items(rec_lists):
    return {split: [(r.get("target_items") or r["item_ids"]) for r in recs] for split, recs in rec_lists.items()}


def test_fo_split_is_disjoint_about_72_8_20_and_covers_every_interaction():
    counts = {"train": 0, "valid": 0, "test": 0}
    for user, evs in events().items():
        out = timelines.build_user_records(user, evs, FO)
        train = out.train[0]["item_ids"] if out.train else []
        valid = out.valid[0]["target_items"] if out.valid else []
        test = out.test[0]["target_items"] if out.test else []
        assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
        assert sorted(train + valid + test) == sorted(e["item_id"] for e in evs)
        if out.valid:  # validation history = training items; test history = training + validation items
            assert out.valid[0]["item_ids"] == train and out.valid[0]["target_item"] is None
        if out.test:
            assert sorted(out.test[0]["item_ids"]) == sorted(train + valid)
        for split, items in (("train", train), ("valid", valid), ("test", test)):
            counts[split] += len(items)
            assert out.counters[f"fo_{split}_interactions"] == len(items)
    total = sum(counts.values())
    assert abs(counts["test"] / total - 0.2) < 0.02  # 3000 interactions: 3 standard deviations is 0.022
    assert abs(counts["valid"] / total - 0.08) < 0.015
    assert abs(counts["train"] / total - 0.72) < 0.025


def test_fo_split_is_deterministic_keyed_by_seed_and_independent_of_arrival_order():
    evs = events(n_users=1, per_user=200)["u0"]

    def parts(order, seed=2021):
        out = timelines.build_user_records("u0", order, timelines.TimelineOptions(split="fo", split_seed=seed))
        return sorted(out.train[0]["item_ids"]), sorted(out.valid[0]["target_items"]), sorted(out.test[0]["target_items"])

    first = parts(evs)
    assert parts(evs[::-1]) == first and parts(random.Random(3).sample(evs, len(evs))) == first
    assert parts(evs, seed=7) != first
    # global, not per-user: the same event of another user may land elsewhere
    assert timelines.fo_split_of(1, "a", evs[0], 0.2, 0.1) in ("train", "valid", "test")
    with pytest.raises(ValueError, match="test_size"):
        timelines.TimelineOptions(split="fo", test_size=1.0)


def test_multi_target_records_round_trip_and_old_records_still_parse(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / f"x{schema.TFRECORD_SUFFIX}")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        w.write(schema.encode_example(schema.SEQUENTIAL, {"user_id": 4, "item_ids": [5, 6], "target_items": [9, 3, 7]}))
        w.write(schema.encode_example(schema.SEQUENTIAL, {"user_id": 5, "item_ids": [2], "target_item": 8}))
    new, single = list(pipeline.read_tfrecords([path], schema.SEQUENTIAL).as_numpy_iterator())
    assert new["target_items"].tolist() == [9, 3, 7] and new["target_item"] == 0
    assert single["target_items"].tolist() == [] and single["target_item"] == 8
    # an Example written before target_items existed parses with an empty list
    from tensorflow.core.example import example_pb2, feature_pb2

    old = example_pb2.Example(
        features=feature_pb2.Features(
            feature={"user_id": feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[3])),
                     "item_ids": feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[4, 5]))}
        )
    ).SerializeToString()
    assert schema.parse_single(schema.SEQUENTIAL, old)["target_items"] == []
    # multi-target evaluation examples: the last max_len history items, every target, the whole history as seen
    records = pipeline.read_tfrecords([path], schema.SEQUENTIAL).take(1)
    ex = next(eval_examples(records, max_len=1, with_seen=True, multi_target=True).as_numpy_iterator())
    assert ex["item_ids"].tolist() == [6] and ex["length"] == 1 and ex["target_item"] == 0
    assert ex["target_items"].tolist() == [9, 3, 7] and ex["seen_items"].tolist() == [5, 6]


@pytest.fixture(scope="module")
def fo_dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fo")
    rng = random.Random(1)
    lines = ["user_id,item_id,timestamp,rating"]
    for u in range(30):  # two tastes: users of group g like items g*20 .. g*20+19
        for j, i in enumerate(rng.sample(range(20), 12)):
            lines.append(f"u{u},i{(u % 2) * 20 + i},{1000 + 60 * j},{rng.choice([3, 4, 5])}")
    log = tmp / "log.csv"
    log.write_text("\n".join(lines) + "\n")
    out = tmp / "ds"
    stats = cli.run(
        ["--source=csv", f"--input={log}", f"--output={out}", "--split=fo", "--min_rating=4", "--num_shards=1", *IN_MEMORY]
    )
    return out, stats, lines


def test_beam_job_fo_split_writes_multi_target_records(fo_dataset):
    out, stats, lines = fo_dataset
    ds = DatasetDir(out)
    assert ds.meta["split"] == "fo" and ds.multi_target and json.loads((out / "dataset.json").read_text())["eval_targets"] == "multi"
    kept = [l.split(",") for l in lines[1:] if int(l.split(",")[3]) >= 4]
    items, users = ds.vocab("items"), ds.vocab("users")
    per_user = {}
    for split in schema.SPLITS:
        for rec in ds.records(split).as_numpy_iterator():
            per_user.setdefault(users[rec["user_id"]], {})[split] = (
                [items[i] for i in rec["item_ids"]], [items[i] for i in rec["target_items"]]
            )
    n = {"train": 0, "valid": 0, "test": 0}
    for user, parts in per_user.items():
        train = parts.get("train", ([], []))[0]
        valid = parts.get("valid", ([], []))[1]
        test = parts.get("test", ([], []))[1]
        assert schema.OOV_TOKEN not in train + valid + test  # items seen only in valid/test keep their own id
        assert sorted(train + valid + test) == sorted(i for u, i, _, _ in kept if u == user)
        if "valid" in parts:
            assert parts["valid"][0] == train
        if "test" in parts:
            assert sorted(parts["test"][0]) == sorted(train + valid)
        n["train"], n["valid"], n["test"] = n["train"] + len(train), n["valid"] + len(valid), n["test"] + len(test)
    assert n["train"] + n["valid"] + n["test"] == len(kept)
    assert stats["stages"]["fo_test_interactions"] == n["test"] and stats["stages"]["fo_valid_interactions"] == n["valid"]
    assert "fo test interactions" in summary.summary_table(stats)


def test_bad_fo_flags_give_one_line(tmp_path, capsys):
    log = tmp_path / "l.csv"
    log.write_text("user_id,item_id,timestamp\nu,a,1\n")
    code = cli.main(["--source=csv", f"--input={log}", f"--output={tmp_path}/o", "--split=fo", "--test_size=1.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--test_size" in err and "\n" not in err


def test_train_cml_end_to_end_on_a_fo_dataset(fo_dataset, tmp_path):
    """The trainer, the multi-target evaluator and the metric-learning data path together."""
    from tfpps.config import build_run_config
    from tfpps.runs.trainer import train

    out, _, _ = fo_dataset
    run = build_run_config(
        "cml",
        overrides={"data_dir": str(out), "epochs": "2", "batch_size": "32", "run_dir": str(tmp_path / "run"),
                   "emb_size": "8", "verbose": "0", "lr": "0.01", "eval.ks": "[5]", "valid_metric": "ndcg@5"},
    )
    run.data.dataset = "fo-fixture"
    result = train(run, fresh=True)
    m = result["metrics"]
    assert m["num_examples"] > 0 and 0.0 <= m["recall@5"] <= 1.0 and 0.0 <= m["map@5"] <= 1.0
    assert (tmp_path / "run" / "metrics.json").exists()
