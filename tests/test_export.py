"""Export: query/item vectors reproduce score_items; the SavedModel (lookup in the graph, TFRS top-k index)
reloaded with tf.saved_model.load returns the same top-k ids and scores as the in-process model."""
import json

import numpy as np
import pytest

import tfpps  # noqa: F401  (before TensorFlow)
import tensorflow as tf

from serving_helpers import N_ITEMS, tiny_export, tiny_run, workdir
from tfpps.config import RunConfig
from tfpps.data.schema import FIRST_ID, OOV_TOKEN, PAD_TOKEN
from tfpps.models.base import DatasetInfo, has_item_vectors
from tfpps.models.gru4rec import GRU4Rec, GRU4RecConfig
from tfpps.models.hrm import HRM, HRMConfig
from tfpps.models.narm import NARM, NARMConfig
from tfpps.serving import module as serving_module
from tfpps.serving.manifest import ITEM_META_EXPORT, read_manifest
from tfpps.serving.module import ExportError, choose_index
from tfpps.serving.requests import Request
from tfpps.serving.runs import InProcessRecommender, top_k_real

# several requests: known/unknown users, unknown items, an empty history, one longer than max_len (6)
REQUESTS = [
    Request("u1", ["m3", "m4"]),
    Request("u7", ["m10"]),
    Request("nobody", ["m5", "not-an-item", "m7"]),
    Request("u2", []),
    Request("u3", [f"m{i}" for i in range(12, 24)]),
    Request("", ["m29", "m0", "m1"]),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return workdir(tmp_path_factory)


# ---------------------------------------------------------------------------- the model contract
def _features(num_items, batch=5, width=7, seed=0):
    rng = np.random.default_rng(seed)
    length = rng.integers(0, width + 1, batch)
    ids = np.where(np.arange(width)[None, :] < length[:, None], rng.integers(FIRST_ID, num_items, (batch, width)), 0)
    return {"item_ids": tf.constant(ids, tf.int64), "length": tf.constant(length, tf.int64),
            "user_id": tf.constant(rng.integers(FIRST_ID, 6, batch), tf.int64), "target_item": tf.zeros([batch], tf.int64)}


def _model(name, **params):
    cls, cfg = {"gru4rec": (GRU4Rec, GRU4RecConfig), "narm": (NARM, NARMConfig), "hrm": (HRM, HRMConfig)}[name]
    run = RunConfig(model=name, model_params=cfg(**params))
    run.train.batch_size = 4
    info = DatasetInfo(num_items=20, num_users=6, item_counts=np.arange(20))
    return cls(run.model_params, info, run)


@pytest.mark.parametrize("name,params", [
    ("gru4rec", {"layers": [8], "n_sample": 4}),
    ("gru4rec", {"layers": [8, 6], "n_sample": 0, "constrained_embedding": False, "embedding": 5}),
    ("narm", {"embedding_size": 6, "hidden_size": 5}),
    ("hrm", {"embedding_size": 6}),
    ("hrm", {"embedding_size": 6, "tie_embeddings": True, "pooling_items": "avg"}),
])
def test_query_vectors_times_item_vectors_equal_score_items(name, params):
    model = _model(name, **params)
    if name == "gru4rec":  # a non-zero bias, so that folding it into the vectors is tested
        model.By.assign(tf.random.stateless_normal(model.By.shape, seed=[1, 2]))
    f = _features(20)
    q, v = model.query_vectors(f), model.item_vectors()
    assert v.shape[0] == 20 and q.shape == (5, v.shape[1])
    np.testing.assert_allclose(tf.matmul(q, v, transpose_b=True).numpy(), model.score_items(f).numpy(), rtol=1e-5, atol=1e-5)
    assert has_item_vectors(model) and has_item_vectors(type(model))


# ---------------------------------------------------------------------------- exported == in-process
def _call(loaded, requests, signature="serving_default"):
    users = tf.constant([r.user for r in requests])
    if signature == "recommend_csv":
        history = tf.constant([",".join(r.history) for r in requests])
    else:
        width = max(1, max(len(r.history) for r in requests))
        history = tf.constant([r.history + [""] * (width - len(r.history)) for r in requests])
    return {k: v.numpy() for k, v in loaded.signatures[signature](user_id=users, history=history).items()}


def _assert_same_top_k(out, rec, requests, k):
    """Same scores (1e-5) position by position; the same ids wherever scores are not tied."""
    scores = rec.loaded.model.score_items(rec.features(requests)).numpy()
    values, idx = top_k_real(tf.constant(scores), k)
    extended, _ = top_k_real(tf.constant(scores), min(k + 1, rec.max_k))  # one more, to see ties at the cut
    for b in range(len(requests)):
        got = [x.decode() for x in out["item_ids"][b]]
        want = [rec.items.tokens[i] for i in idx[b]]
        np.testing.assert_allclose(out["scores"][b], values[b], rtol=1e-5, atol=1e-5)
        # each returned id really has the returned score in-process (covers tie order)
        np.testing.assert_allclose([scores[b, rec.items.index(t)] for t in got], out["scores"][b], rtol=1e-5, atol=1e-5)
        gaps = np.abs(np.diff(np.concatenate([[np.inf], extended[b], [-np.inf]])))  # gaps[i]: before, gaps[i+1]: after i
        untied = (gaps[:k] > 1e-4) & (gaps[1 : k + 1] > 1e-4)
        assert [g for g, u in zip(got, untied) if u] == [w for w, u in zip(want, untied) if u], (b, got, want)
        assert PAD_TOKEN not in got and OOV_TOKEN not in got and len(set(got)) == k


@pytest.mark.parametrize("model", ["gru4rec", "narm", "hrm", "hrnn", "pop", "itemknn"])
def test_reloaded_export_gives_the_in_process_top_k(model, base):
    export = tiny_export(model, base)
    loaded = tf.saved_model.load(str(export))
    rec = InProcessRecommender(tiny_run(model, base))
    out = _call(loaded, REQUESTS)
    assert out["item_ids"].shape == (len(REQUESTS), 10) and out["scores"].dtype == np.float32
    _assert_same_top_k(out, rec, REQUESTS, 10)
    # the comma-joined signature answers the same
    csv = _call(loaded, REQUESTS, "recommend_csv")
    np.testing.assert_array_equal(csv["item_ids"], out["item_ids"])
    np.testing.assert_allclose(csv["scores"], out["scores"], rtol=1e-6)
    # one request alone = the same request inside a batch
    single = _call(loaded, REQUESTS[2:3])
    np.testing.assert_allclose(single["scores"][0], out["scores"][2], rtol=1e-5, atol=1e-5)
    # vocabulary bookkeeping in the graph
    np.testing.assert_array_equal(out["known_user"], [True, True, False, True, True, False])
    np.testing.assert_array_equal(out["unknown_history_items"], [0, 0, 1, 0, 0, 0])


def test_manifest_item_meta_and_lookup_signatures(base):
    export = tiny_export("gru4rec", base)
    m = read_manifest(export)
    assert (m["model"], m["k"], m["retrieval"], m["exact"], m["max_len"]) == ("gru4rec", 10, "brute-force", True, 6)
    assert m["vocab_sizes"] == {"items": N_ITEMS + 2, "users": 42} and m["created"] and m["test_metrics"]["num_examples"] == 40
    meta = [json.loads(line) for line in (export / ITEM_META_EXPORT).read_text().splitlines()]
    assert len(meta) == N_ITEMS and {"item_id": "m1", "title": "Movie 1"}.items() <= meta[1].items()
    loaded = tf.saved_model.load(str(export))
    idx = loaded.signatures["lookup_items"](ids=tf.constant(["m1", "zzz", "", PAD_TOKEN]))["index"].numpy()
    assert idx[0] >= FIRST_ID and list(idx[1:]) == [1, 1, 1]
    assert loaded.signatures["lookup_users"](ids=tf.constant(["u0"]))["index"].numpy()[0] >= FIRST_ID


def test_k_covering_the_catalog_returns_every_real_item_once(base):
    export = tiny_export("narm", base, k=50)  # clamped to the 30 real items
    assert read_manifest(export)["k"] == N_ITEMS
    out = _call(tf.saved_model.load(str(export)), REQUESTS[:2])
    for row in out["item_ids"]:
        assert sorted(x.decode() for x in row) == sorted(f"m{i}" for i in range(N_ITEMS))
    assert np.all(np.diff(out["scores"], axis=1) <= 0)


# ---------------------------------------------------------------------------- refusals and index choice
def test_python_scored_models_are_refused_with_one_line(base, capsys):
    from tfpps import export

    run = tiny_run("sknn", base)
    with pytest.raises(ExportError, match=r"model 'sknn' cannot be exported: .*Python.*; exportable: ") as info:
        export.export_run(run, base / "sknn-export", index="brute-force")
    assert all(name in str(info.value) for name in ("gru4rec", "narm", "hrm", "pop", "itemknn"))
    assert export.main([f"--run={run}", f"--out={base / 'sknn-export'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfpps.export: error: model 'sknn' cannot be exported") and "\n" not in err
    assert not (base / "sknn-export").exists()


def test_cli_errors_are_one_line(base, capsys, tmp_path):
    from tfpps import export

    existing = tiny_export("pop", base)
    assert export.main([f"--run={tiny_run('pop', base)}", f"--out={existing}"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert export.main([f"--run={tmp_path}", f"--out={tmp_path / 'x'}"]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main([f"--run={tmp_path}", f"--out={tmp_path / 'x'}", "--index=annoy"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfpps.export: error: argument --index") and "\n" not in err


def test_cli_export_with_overwrite(base, capsys):
    from tfpps import export

    out = base / "cli-export"
    assert export.main([f"--run={tiny_run('hrm', base)}", f"--out={out}", "--k=3", "--index=brute-force"]) == 0
    assert "exported hrm (synthetic)" in capsys.readouterr().out
    assert export.main([f"--run={tiny_run('pop', base)}", f"--out={out}", "--k=4", "--overwrite"]) == 0
    m = read_manifest(out)
    assert (m["model"], m["k"], m["retrieval"]) == ("pop", 4, "score_items+top_k")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".cli-export.tmp")]


def test_auto_index_falls_back_to_brute_force_with_one_message(monkeypatch):
    said = []
    monkeypatch.setattr(serving_module, "scann_available", lambda: False)
    assert choose_index("auto", 5000, said.append) == "brute-force"
    assert said == ["ScaNN not installed; using BruteForce"]
    with pytest.raises(ExportError, match="scann package is not installed"):
        choose_index("scann", 5000)
    monkeypatch.setattr(serving_module, "scann_available", lambda: True)
    assert choose_index("auto", 5000, said.append) == "scann"
    assert choose_index("auto", 50, said.append) == "brute-force" and "ScaNN skipped" in said[-1]


def test_scann_index_when_installed(base):
    pytest.importorskip("scann", reason="the scann package is not installed (optional: pip install scann==1.3.2)")
    from tfpps.serving.exported import ExportedRecommender

    export = tiny_export("gru4rec", base, index="scann")
    assert read_manifest(export)["retrieval"] == "scann"
    rec = ExportedRecommender(export)  # loads the ScaNN ops first
    got = rec.recommend(REQUESTS, 10)
    want = InProcessRecommender(tiny_run("gru4rec", base)).recommend(REQUESTS, 10)
    for g, w in zip(got, want):  # tiny catalog: every partition searched and re-scored exactly
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-5, atol=1e-5)
