"""Basket and product-search records: grouping, splits, query normalisation, and the Beam job on Amazon files."""
import json

import pytest

from beam_jobs import cli, examples
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir
from tfpps.spec import schema


def ev(item, ts, basket=None, query=None):
    return {"user_id": "u", "item_id": item, "timestamp": ts, "basket_id": basket, "query": query}


def test_baskets_by_id_timestamp_and_day():
    evs = [ev("a", 10, "b1"), ev("b", 10, "b1"), ev("a", 10, "b1"), ev("c", 20, "b2"), ev("d", 90000, "b3")]
    assert examples.group_baskets(evs, "id") == [(10, ["a", "b"]), (20, ["c"]), (90000, ["d"])]
    assert examples.group_baskets([{**e, "basket_id": None} for e in evs], "timestamp") == [(10, ["a", "b"]), (20, ["c"]), (90000, ["d"])]
    assert examples.group_baskets(evs, "day") == [(10, ["a", "b", "c"]), (90000, ["d"])]


def test_leave_one_basket_out():
    evs = [ev("a", 10, "b1"), ev("b", 20, "b2"), ev("c", 30, "b3"), ev("d", 30, "b3"), ev("e", 40, "b4")]
    out, counters = examples.build_basket_records("u", evs, examples.ExampleOptions())
    assert out["train"][0]["baskets"] == [["a"], ["b"]]
    assert out["valid"][0]["target_items"] == ["c", "d"]
    assert out["test"][0]["baskets"] == [["a"], ["b"], ["c", "d"]] and out["test"][0]["target_items"] == ["e"]
    assert counters["baskets"] == 4


def test_search_split_history_and_query_normalisation():
    evs = [ev(f"i{k}", 100 * k, query=q) for k, q in enumerate(["Running Shoes", "shoes running!", "wireless headphones", "Yoga Mat", "yoga mats"])]
    evs.append(ev("x", 1, query=""))  # a click without a query is not a search example
    out, _ = examples.build_search_records("u", evs, examples.ExampleOptions(test_fraction=0.4, valid_fraction=0.2))
    assert [r["item_id"] for r in out["train"]] == ["i0", "i1"]
    assert [r["target_items"] for r in out["valid"]] == [["i2"]]
    assert out["train"][0]["query"] == "run shoe" and out["train"][1]["query"] == "shoe run"
    # evaluation records are per (user, query): both test purchases were searched as "yoga mat"
    assert [(r["query_words"], r["target_items"]) for r in out["test"]] == [(["yoga", "mat"], ["i3", "i4"])]
    # history = TRAINING purchases only (all of them on evaluation records, earlier ones on training records)
    assert out["test"][0]["history_item_ids"] == ["i0", "i1"] and out["valid"][0]["history_item_ids"] == ["i0", "i1"]
    assert out["train"][1]["history_item_ids"] == ["i0"]


def test_search_eval_records_group_targets_per_query():
    evs = [ev("a", 1, query="red shoes"), ev("b", 2, query="blue hat"), ev("c", 3, query="Red shoe"), ev("d", 4, query="red shoes")]
    out, _ = examples.build_search_records("u", evs, examples.ExampleOptions(test_fraction=0.5, valid_fraction=0.0))
    assert [r["item_id"] for r in out["train"]] == ["a", "b"] and all(r["target_items"] == [] for r in out["train"])
    assert [(r["query"], r["target_items"]) for r in out["test"]] == [("red shoe", ["c", "d"])]
    assert out["test"][0]["history_item_ids"] == ["a", "b"]


def test_random_search_split_is_seeded_per_user():
    evs = [ev(f"i{k}", k, query=f"q{k}") for k in range(20)]
    opts = examples.ExampleOptions(search_split="random", test_fraction=0.3, valid_fraction=0.0)
    first, _ = examples.build_search_records("u", evs, opts)
    again, _ = examples.build_search_records("u", list(reversed(evs)), opts)
    other, _ = examples.build_search_records("v", evs, opts)
    test_items = sorted(t for r in first["test"] for t in r["target_items"])
    assert len(test_items) == 6 and test_items == sorted(t for r in again["test"] for t in r["target_items"])
    assert test_items != sorted(t for r in other["test"] for t in r["target_items"])
    assert test_items != [f"i{k}" for k in range(14, 20)]  # not simply the last ones
    # training history never contains a test purchase, even when the test purchase is older
    train_items = {r["item_id"] for r in first["train"]}
    assert train_items.isdisjoint(test_items) and len(train_items) == 14
    assert all(set(r["history_item_ids"]) <= train_items for r in first["train"] + first["test"])


def test_query_holdout_keeps_eval_queries_out_of_training():
    evs = [ev("a", 1, query="red shoes"), ev("b", 2, query="blue hat"), ev("a2", 3, query="running shoes"), ev("c", 4, query="blue hat"),
           ev("a", 5, query="red shoes")]  # a repeat purchase of "a": dropped
    held_out = {"blue hat", "run shoe"}
    out, counters = examples.build_search_records("u", evs, examples.ExampleOptions(test_fraction=0.5, valid_fraction=0.0), held_out)
    assert [r["query"] for r in out["train"]] == ["red shoe"]  # "blue hat" on b is held out: dropped from training
    assert [(r["query"], r["target_items"]) for r in out["test"]] == [("run shoe", ["a2"]), ("blue hat", ["c"])]
    assert counters["pairs_dropped_query_holdout"] == 1 and counters["repeat_purchases_dropped"] == 1


def test_released_query_gives_every_product_a_training_query():
    fraction = 0.6
    queries = [f"query {k}" for k in range(200)]
    drawn = {q for q in queries if examples.query_uniform(3, q) < fraction}
    assert 0.45 < len(drawn) / len(queries) < 0.75  # seeded uniform draw
    items = {f"p{k}": set(queries[k : k + 2]) for k in range(0, 200, 2)}
    released = {examples.released_query(3, item, qs, fraction) for item, qs in items.items()} - {None}
    for item, qs in items.items():
        assert qs - (drawn - released), f"{item} lost all its training queries"
        if not qs <= drawn:
            assert examples.released_query(3, item, qs, fraction) is None


def test_category_queries_follow_ai_et_al():
    meta = {"item_id": "B1", "categories": [["Clothing, Shoes & Jewelry", "Women", "Shoes"], ["Sports"]]}
    assert examples.category_queries(meta) == ["cloth shoe jewelri women"]


def test_bad_example_options():
    with pytest.raises(ValueError, match="basket grouping"):
        examples.ExampleOptions(basket_by="week")
    with pytest.raises(ValueError, match="fraction"):
        examples.ExampleOptions(test_fraction=0.8, valid_fraction=0.3)


AMAZON_REVIEWS = [
    {"reviewerID": f"U{u}", "asin": asin, "overall": 5.0, "unixReviewTime": 1_400_000_000 + 86400 * k,
     "reviewText": "great sound and comfy", "summary": "nice"}
    for u in range(3) for k, asin in enumerate(["B01", "B02", "B03", "B04"])
]
AMAZON_META = [  # 2014 files are Python literals, not JSON
    "{'asin': 'B01', 'title': 'Bass Headphones', 'categories': [['Electronics', 'Audio', 'Headphones']]}",
    "{'asin': 'B02', 'title': 'Yoga Mat', 'categories': [['Sports & Outdoors', 'Yoga', 'Mats']]}",
    "{'asin': 'B03', 'title': 'Trail Shoes', 'categories': [['Clothing, Shoes & Jewelry', 'Men', 'Shoes']]}",
    "{'asin': 'B04', 'title': 'Phone Case', 'categories': [['Cell Phones & Accessories', 'Cases'], ['Electronics', 'Accessories']]}",
]


def test_amazon_files_to_search_examples(tmp_path):
    reviews = tmp_path / "reviews_Test_5.json"
    reviews.write_text("\n".join(json.dumps(r) for r in AMAZON_REVIEWS) + "\n{broken json\n")
    meta = tmp_path / "meta_Test.json"
    meta.write_text("\n".join(AMAZON_META) + "\n")
    out = tmp_path / "search"
    stats = cli.run([
        "--source=amazon", f"--input={reviews}", f"--metadata={meta}", f"--output={out}", "--kind=search",
        "--queries_from=categories", "--test_fraction=0.25", "--valid_fraction=0.25", "--direct_running_mode=in_memory",
    ])
    assert stats["stages"]["rows_dead_lettered"] == 1
    ds = DatasetDir(out)
    assert ds.kind == schema.SEARCH
    words, queries, items = ds.vocab("words"), ds.vocab("queries"), ds.vocab("items")
    assert "headphon" in words and "electron audio headphon" in queries
    test = list(ds.records("test").as_numpy_iterator())
    # each user's last purchase (B04) is test; B04 has two category paths -> two queries each
    assert len(test) == 3 * 2 and {items[r["item_id"]] for r in test} == {"B04"}
    assert all([items[i] for i in r["target_items"]] == ["B04"] for r in test)
    assert {queries[r["query_id"]] for r in test} == {"cell phone accessori case", "electron accessori"}
    assert all([items[i] for i in r["history_item_ids"]] == ["B01", "B02"] for r in test)
    texts = list(pipeline.read_tfrecords(sorted(str(p) for p in (out / schema.ITEM_TEXT_DIR).glob("*.gz")), schema.ITEM_TEXT).as_numpy_iterator())
    assert len(texts) == 4 and all(len(t["word_ids"]) > 0 for t in texts)
