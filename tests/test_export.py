"""Export: query/item vectors reproduce score_items; the SavedModel (lookup in the graph, TFRS top-k index)
reloaded with tf.saved_model.load returns the same top-k ids and scores as the in-process model."""
import json

import numpy as np
import pytest

import tfpps  # noqa: F401  (before TensorFlow)
import tensorflow as tf

from serving_helpers import N_ITEMS, tiny_export, tiny_run, workdir
from tfpps.config import RunConfig
from tfpps.spec.schema import FIRST_ID, OOV_TOKEN, PAD_TOKEN
from tfpps.models.base import DatasetInfo, has_item_vectors
from tfpps.models.sequential.gru4rec import GRU4Rec, GRU4RecConfig
from tfpps.models.sequential.hrm import HRM, HRMConfig
from tfpps.models.sequential.narm import NARM, NARMConfig
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


@pytest.mark.parametrize("model", ["gru4rec", "narm", "hrm", "hrnn", "pop", "itemknn", "sknn", "vsknn"])
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
class _PythonScored:
    """A model whose scores pass through ``tf.numpy_function`` (a Python callback no SavedModel can hold)."""

    def __init__(self, model):
        self.model = model

    def score_items(self, features):
        scores = tf.numpy_function(lambda s: s, [self.model.score_items(features)], tf.float32, stateful=False)
        return tf.ensure_shape(scores, [None, None])


def test_python_scored_models_are_refused_with_one_line(base, capsys, monkeypatch):
    import dataclasses

    from tfpps.cli import export
    from tfpps.serving import runs

    load_run = runs.load_run
    monkeypatch.setattr(runs, "load_run", lambda d: dataclasses.replace(load_run(d), model=_PythonScored(load_run(d).model)))
    run = tiny_run("pop", base)
    with pytest.raises(ExportError, match=r"model 'pop' cannot be exported: .*Python.*; exportable: ") as info:
        export.export_run(run, base / "python-export", index="brute-force")
    assert all(name in str(info.value) for name in ("gru4rec", "narm", "hrm", "pop", "itemknn", "sknn", "vsknn"))
    assert export.main([f"--run={run}", f"--out={base / 'python-export'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfpps.export: error: model 'pop' cannot be exported") and "\n" not in err
    assert not (base / "python-export").exists()


# ---------------------------------------------------------------------------- S-KNN / V-SKNN: TensorFlow == NumPy reference
class _RandomSessions:
    """Random training sequences for the KNN models: repeated items, OOV ids, users with several sequences, tied times."""

    def __init__(self, seed, num_items=40, count=70):
        rng = np.random.default_rng(seed)
        self.num_items, self.rows = num_items, []
        for _ in range(count):
            n = int(rng.integers(1, 12))
            items = rng.integers(1, num_items, n)  # 1 = OOV (dropped)
            end = int(rng.integers(0, 30))  # ties between sequences
            self.rows.append((int(rng.integers(2, 30)), items, np.arange(end - n + 1, end + 1),
                              (rng.random(n) < 0.3).astype(np.int64)))
        self.counts = np.bincount(np.concatenate([r[1] for r in self.rows]), minlength=num_items)

    def records(self, split):
        assert split == "train"
        vec, scalar = tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)
        spec = {"user_id": scalar, "item_ids": vec, "timestamps": vec, "session_starts": vec}

        def gen():
            for user, items, times, starts in self.rows:
                yield {"user_id": user, "item_ids": items, "timestamps": times, "session_starts": np.r_[1, starts[1:]]}

        return tf.data.Dataset.from_generator(gen, output_signature=spec)

    def info(self):
        return DatasetInfo(num_items=self.num_items, num_users=30, item_counts=self.counts)


KNN_SETTINGS = [  # every similarity, position weighting and score decay at least once
    ("sknn", {}),
    ("vsknn", {}),
    ("sknn", {"k": 3, "sample_size": 6, "similarity": "jaccard", "weighting_score": "div"}),
    ("sknn", {"k": 5, "sample_size": 0, "weighting": "quadratic", "weighting_score": "linear", "remind": False}),
    ("vsknn", {"k": 4, "sample_size": 8, "weighting": "log", "weighting_score": "quadratic", "exclude_same_user": False}),
    ("vsknn", {"k": 6, "sample_size": 10, "weighting_score": "log", "fallback": "none", "split_sessions": True}),
    ("sknn", {"k": 2, "sample_size": 3, "similarity": "dot", "weighting": "linear"}),
]


@pytest.mark.parametrize("strategy", ["dense", "lists"])
@pytest.mark.parametrize("name,params", KNN_SETTINGS)
def test_sknn_tensorflow_scores_equal_the_numpy_reference(name, params, strategy):
    from tfpps.models.baselines.itemknn import apply_fallback
    from tfpps.models.baselines.sknn import VSKNN, SessionKNN, SKNNConfig, VSKNNConfig

    data = _RandomSessions(seed=len(KNN_SETTINGS) * (strategy == "lists") + KNN_SETTINGS.index((name, params)))
    cls, cfg = (SessionKNN, SKNNConfig) if name == "sknn" else (VSKNN, VSKNNConfig)
    model = cls(cfg(**params), data.info(), run=None)
    model.strategy = strategy
    model.fit_data(data)
    assert model.dense == (strategy == "dense")
    rng = np.random.default_rng(7)
    length = rng.integers(0, 9, 24)
    ids = np.where(np.arange(9)[None, :] < length[:, None], rng.integers(0, 44, (24, 9)), 0)  # PAD, OOV, >= num_items
    users = rng.integers(0, 30, 24)
    f = {"item_ids": tf.constant(ids), "length": tf.constant(length), "user_id": tf.constant(users)}
    want = np.stack([model.score_history(ids[b, : length[b]], users[b]) for b in range(24)])
    if model.params.fallback == "popularity":
        want = apply_fallback(tf.constant(want), model.floor).numpy()
    got = model.score_items(f).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for b in range(24):  # the same top-10 wherever the scores are not tied
        top = np.argsort(-got[b], kind="stable")[:10]
        untied = [i for i in top if np.sum(np.abs(want[b] - want[b, i]) <= 1e-6) == 1]
        assert set(untied) <= set(np.argsort(-want[b], kind="stable")[:10]), b
    for b in range(0, 24, 5):  # the neighbours, best first
        seqs, sims, decays = model.neighbours(ids[b, : length[b]], users[b])
        ref = model.reference_neighbours(ids[b, : length[b]], users[b])
        assert seqs.tolist() == ref[0].tolist()
        np.testing.assert_allclose(sims, ref[1], rtol=1e-12)
        np.testing.assert_allclose(decays, ref[2], rtol=1e-12)
    # several chunks (histories padded to whole chunks) give the same scores
    model.rows_per_chunk = 5
    np.testing.assert_array_equal(model.score_items(f).numpy(), got)


def test_cli_errors_are_one_line(base, capsys, tmp_path):
    from tfpps.cli import export

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
    from tfpps.cli import export

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
