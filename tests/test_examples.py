"""Basket and product-search records: grouping, splits, query normalisation, and the Beam job on Amazon files."""
import json

import pytest

from beam_jobs import build_features, examples
from tfpps.data import pipeline, schema


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
    assert [r["item_id"] for r in out["valid"]] == ["i2"]
    assert [r["item_id"] for r in out["test"]] == ["i3", "i4"]
    assert out["train"][0]["query"] == "run shoe" and out["train"][1]["query"] == "shoe run"
    assert out["test"][1]["query_words"] == ["yoga", "mat"]
    # history = earlier TRAINING purchases only
    assert out["test"][1]["history_item_ids"] == ["i0", "i1"]
    assert out["train"][1]["history_item_ids"] == ["i0"]


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
    stats = build_features.run([
        "--source=amazon", f"--input={reviews}", f"--metadata={meta}", f"--output={out}", "--kind=search",
        "--queries_from=categories", "--test_fraction=0.25", "--valid_fraction=0.25", "--direct_running_mode=in_memory",
    ])
    assert stats["stages"]["rows_dead_lettered"] == 1
    ds = pipeline.DatasetDir(out)
    assert ds.kind == schema.SEARCH
    words, queries, items = ds.vocab("words"), ds.vocab("queries"), ds.vocab("items")
    assert "headphon" in words and "electron audio headphon" in queries
    test = list(ds.records("test").as_numpy_iterator())
    # each user's last purchase (B04) is test; B04 has two category paths -> two queries each
    assert len(test) == 3 * 2 and {items[r["item_id"]] for r in test} == {"B04"}
    assert {queries[r["query_id"]] for r in test} == {"cell phone accessori case", "electron accessori"}
    assert all([items[i] for i in r["history_item_ids"]] == ["B01", "B02"] for r in test)
    texts = list(pipeline.read_tfrecords(sorted(str(p) for p in (out / schema.ITEM_TEXT_DIR).glob("*.gz")), schema.ITEM_TEXT).as_numpy_iterator())
    assert len(texts) == 4 and all(len(t["word_ids"]) > 0 for t in texts)
