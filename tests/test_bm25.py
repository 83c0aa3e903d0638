"""BM25 product-search baseline: the formula by hand, PAD/OOV query words, ties by popularity,
config and dataset errors, and an end-to-end run that beats popularity on synthetic search data."""
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError, build_run_config
from tfpps.models.baselines.bm25 import BM25, BM25Config, bm25_postings
from tfpps.runs.trainer import train
from tests.test_search_models import _run, search_dataset  # noqa: F401  (module-scoped fixture defined there)

# Toy: items 2, 3, 4 (0 = PAD, 1 = OOV), words 2 and 3. Item 4's text repeats word 3 (tf = 2).
TOY_WORDS = np.array([[0, 0], [0, 0], [2, 3], [2, 0], [3, 3]])
TOY_LENGTHS = np.array([0, 0, 2, 1, 2])
TOY_COUNTS = [0, 0, 5, 1, 9]


def _toy_model(popularity_tiebreak=0.0, k1=1.2, b=0.75):
    params = BM25Config(k1=k1, b=b, popularity_tiebreak=popularity_tiebreak)
    info = SimpleNamespace(kind="search", num_items=5, num_words=4, item_counts=TOY_COUNTS)
    model = BM25(params, info, SimpleNamespace(model="bm25"))
    model.set_postings(*bm25_postings(TOY_WORDS, TOY_LENGTHS, num_words=4, k1=k1, b=b))
    return model


def _scores(model, queries):
    return model.score_items({"query_word_ids": tf.constant(queries, tf.int64)}).numpy()


def test_scores_match_the_formula_by_hand():
    # N = 3 items with text, df(2) = df(3) = 2: idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln 1.6 for both words.
    # avgdl = (2 + 1 + 2) / 3 = 5/3; k1 (1 - b + b |i| / avgdl) = 1.2 (0.25 + 0.45 |i|): 1.38 for |i| = 2, 0.84 for |i| = 1.
    idf = math.log(1.6)
    want = [
        0.0,
        0.0,
        idf * 1 * 2.2 / (1 + 1.38) + idf * 1 * 2.2 / (1 + 1.38),  # item 2: both words once, |i| = 2
        idf * 1 * 2.2 / (1 + 0.84),  # item 3: word 2 once, |i| = 1
        idf * 2 * 2.2 / (2 + 1.38),  # item 4: word 3 twice, |i| = 2
    ]
    np.testing.assert_allclose(_scores(_toy_model(), [[2, 3]])[0], want, atol=1e-6)
    # b = 0: no length normalisation; k1 = 0: every match weighs idf
    np.testing.assert_allclose(_scores(_toy_model(b=0.0), [[3]])[0], [0, 0, idf * 2.2 / 2.2, 0, idf * 4.4 / 3.2], atol=1e-6)
    np.testing.assert_allclose(_scores(_toy_model(k1=0.0), [[2, 3]])[0], [0, 0, 2 * idf, idf, idf], atol=1e-6)


def test_idf_is_never_negative_for_a_word_in_every_item():
    splits, items, weights = bm25_postings(np.array([[0], [0], [2], [2]]), np.array([0, 0, 1, 1]), 3, 1.2, 0.75)
    assert items.tolist() == [2, 3] and splits.tolist() == [0, 0, 0, 2]
    np.testing.assert_allclose(weights, math.log(1 + 0.5 / 2.5), rtol=1e-6)  # ln(1 + (2 - 2 + .5) / (2 + .5)) > 0


def test_pad_oov_and_unknown_query_words_score_zero():
    model = _toy_model()
    assert not _scores(model, [[0, 1, 99, 0]]).any()  # PAD, OOV and an id outside the word vocabulary
    np.testing.assert_allclose(_scores(model, [[2, 0, 1, 7]]), _scores(model, [[2, 0, 0, 0]]), atol=0)
    assert _scores(model, np.zeros([3, 0], np.int64)).shape == (3, 5)  # empty queries: all zero, no error


def test_ranking_puts_the_matching_item_first_and_ties_by_popularity():
    model = _toy_model(popularity_tiebreak=1e-6)
    scores = _scores(model, [[3, 0], [2, 0], [1, 0]])
    real = lambda row: (np.argsort(-row[2:], kind="stable") + 2).tolist()  # noqa: E731
    assert real(scores[0]) == [4, 2, 3]  # word 3: item 4 (tf 2) first, item 2 next, item 3 has no match
    assert real(scores[1]) == [3, 2, 4]  # word 2: the short item 3 first; item 4 no match
    assert real(scores[2]) == [4, 2, 3]  # no known word: popularity order (counts 9, 5, 1)
    assert scores[2][4] == pytest.approx(1e-6) and scores[2][3] == pytest.approx(1e-6 / 9)
    # the batch is scored as one: each row equals its row scored alone
    np.testing.assert_allclose(scores[1], _scores(model, [[2, 0]])[0], atol=0)


@pytest.mark.parametrize("field, value, message", [
    ("k1", -0.1, "model_params.k1=-0.1: must be >= 0"),
    ("b", 1.5, r"model_params.b=1.5: must be in \[0, 1\]"),
    ("b", -0.01, r"model_params.b=-0.01: must be in \[0, 1\]"),
    ("popularity_tiebreak", -1.0, "model_params.popularity_tiebreak=-1.0: must be >= 0"),
])
def test_bad_config_is_a_one_line_error(field, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        BM25Config(**{field: value}).validate()
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=message):
        build_run_config("bm25", dataset="synthetic-search", overrides={field: str(value)}).validate()


def test_registered_as_a_nonneural_search_model_with_its_config():
    entry = registry.get("bm25")
    assert entry.family == registry.NONNEURAL and entry.example_kind == "search"
    cfg = build_run_config("bm25", dataset="synthetic-search")
    cfg.validate()
    assert (cfg.model_params.k1, cfg.model_params.b) == (1.2, 0.75)


def test_non_search_dataset_is_a_one_line_error(tmp_path):
    info = SimpleNamespace(kind="sequential", num_items=5, num_words=0, item_counts=[0, 0, 1, 1, 1])
    with pytest.raises(ConfigError, match="needs a product-search dataset") as err:
        BM25(BM25Config(), info, SimpleNamespace(model="bm25"))
    assert "\n" not in str(err.value)
    search_info = SimpleNamespace(kind="search", num_items=5, num_words=4, item_counts=[0, 0, 1, 1, 1])
    with pytest.raises(ConfigError, match="no item text"):  # a search dataset built without --metadata
        BM25(BM25Config(), search_info, SimpleNamespace(model="bm25")).fit_data(SimpleNamespace(path=tmp_path))


def test_bm25_beats_popularity_on_synthetic_search_data(search_dataset, tmp_path):  # noqa: F811
    pop = train(_run("pop", search_dataset, tmp_path), fresh=True)["metrics"]
    result = train(_run("bm25", search_dataset, tmp_path), fresh=True)
    bm25 = result["metrics"]
    assert bm25["num_examples"] == pop["num_examples"] > 50
    assert bm25["ndcg@10"] > 1.5 * pop["ndcg@10"], (bm25, pop)
    assert Path(result["trec_run"]).exists()


def test_bm25_exports_and_serves_a_query_like_the_run(search_dataset, tmp_path):  # noqa: F811
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.serving.export import export_run
    from tfpps.serving.exported import ExportedRecommender
    from tfpps.serving.requests import Request
    from tfpps.serving.runs import InProcessRecommender

    run_dir = train(_run("bm25", search_dataset, tmp_path), fresh=True)["run_dir"]
    export_run(run_dir, tmp_path / "export", k=10, log=lambda _: None)
    data = DatasetDir(search_dataset)
    rec = next(r for r in data.records("test").as_numpy_iterator())
    query = " ".join(data.vocab("words")[w] for w in rec["query_word_ids"])
    history = [data.vocab("items")[i] for i in rec["history_item_ids"]]
    requests = [Request(data.vocab("users")[rec["user_id"]], history, query), Request("nobody", [], "zzz unknown")]
    local = InProcessRecommender(run_dir).recommend(requests, 10)
    exported = ExportedRecommender(tmp_path / "export").recommend(requests, 10)
    for a, b in zip(local, exported):
        assert a.items == b.items
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert local[0].scores[0] > 1e-3 > 1e-6 >= local[1].scores[0]  # the query matches; unknown words: popularity only
