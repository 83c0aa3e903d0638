"""Product search (HEM, QEM, AEM, ZAM, HRNN-search): attention math, samplers, query encoders, the
search evaluation (training purchases removed, TREC files), and learning on synthetic search data."""
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from synthetic_search_data import write_search_dataset

from tfpps import registry
from tfpps.config import ConfigError, build_run_config
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir
from tfpps.evaluation.trec import run_file_metrics
from tfpps.layers.query_encoder import QueryEncoder
from tfpps.models.search.aem import attention_weights
from tfpps.tasks.negative_sampling import UnigramSampler, negative_sampling_loss
from tfpps.runs.trainer import build_model, train
from tfpps.runs.validation import evaluate_split


# ----------------------------------------------------------------------------- zero attention
def test_zero_attention_shrinks_the_user_vector_when_nothing_is_relevant():
    mask = tf.constant([[True, True, True, False]])
    irrelevant = tf.constant([[-12.0, -15.0, -11.0, 99.0]])  # f(q, i) << 0 for every purchase; the padding slot is ignored
    zam = attention_weights(irrelevant, mask, zero_attention=True).numpy()[0]
    aem = attention_weights(irrelevant, mask, zero_attention=False).numpy()[0]
    assert zam.sum() < 1e-4 and zam[3] == 0  # u = sum a_i v_i -> 0
    assert aem.sum() == pytest.approx(1.0, abs=1e-6) and aem[3] == 0  # AEM always averages its purchases
    # exp(s) / (1 + sum exp(s)) by hand
    scores = tf.constant([[0.5, -1.0, 2.0, 0.0]])
    e = np.exp([0.5, -1.0, 2.0])
    np.testing.assert_allclose(attention_weights(scores, mask, True).numpy()[0, :3], e / (1 + e.sum()), rtol=1e-5)
    np.testing.assert_allclose(attention_weights(scores, mask, False).numpy()[0, :3], e / e.sum(), rtol=1e-5)
    # no purchase at all: u = 0 in both
    empty = tf.constant([[False, False, False, False]])
    assert attention_weights(scores, empty, True).numpy().sum() == 0 == attention_weights(scores, empty, False).numpy().sum()


def test_zam_user_vector_norm_goes_to_zero_as_relevance_drops(search_dataset):
    model = build_model(_run("zam", search_dataset), DatasetDir(search_dataset))
    features = {"query_word_ids": tf.constant([[2, 3]]), "history_item_ids": tf.constant([[2, 3, 4]])}
    model.user_part(features)  # build
    norms = []
    for scale in (0.0, -0.005, -0.05):  # b_f set so that f(q, i) = 0.1 * d * beta * tanh(b_f) = 0, -0.5, -5 for every purchase
        model.attention_output.assign(tf.fill([model.params.att_hidden_units_num], 1.0))
        model.attention_projection.bias.assign(tf.fill(model.attention_projection.bias.shape, scale))
        model.attention_projection.kernel.assign(tf.zeros_like(model.attention_projection.kernel))
        model.item_embedding.embeddings.assign(tf.ones_like(model.item_embedding.embeddings) * 0.1)
        norms.append(float(tf.norm(model.user_part(features))))
    # weights e^f / (1 + 3 e^f): 1/4, 0.215, 0.0066 -> |u| shrinks with them (AEM would stay at 1/3 each)
    assert norms[0] > norms[1] > norms[2]
    assert norms[2] / norms[0] == pytest.approx(4 * np.exp(-5) / (1 + 3 * np.exp(-5)), rel=0.05)


# ----------------------------------------------------------------------------- negative sampling
def test_unigram_sampler_follows_count_power_and_never_draws_unseen():
    counts = np.array([0, 0, 100, 10, 1, 0, 50])
    sampler = UnigramSampler(counts, distortion=0.75)
    draws = sampler.sample(200_000, seed=(3, 4)).numpy()
    assert set(np.unique(draws)) <= {2, 3, 4, 6}
    expected = np.where(counts > 0, counts.astype(float) ** 0.75, 0)
    expected[:2] = 0
    expected /= expected.sum()
    observed = np.bincount(draws, minlength=len(counts)) / len(draws)
    np.testing.assert_allclose(observed, expected, atol=0.005)
    uniform = np.bincount(UnigramSampler(counts, 0.0).sample(100_000, seed=(1, 1)).numpy(), minlength=7) / 100_000
    np.testing.assert_allclose(uniform[[2, 3, 4, 6]], 0.25, atol=0.01)


def test_negative_sampling_loss_matches_the_formula():
    c = tf.constant([[1.0, 2.0]])
    t, tb = tf.constant([[0.5, -1.0]]), tf.constant([0.25])
    n, nb = tf.constant([[1.0, 0.0], [0.0, 1.0]]), tf.constant([0.0, -0.5])
    sig = lambda x: 1 / (1 + np.exp(-x))
    want = -np.log(sig(0.5 - 2.0 + 0.25)) - np.log(sig(-1.0)) - np.log(sig(-(2.0 - 0.5)))
    assert float(negative_sampling_loss(c, t, tb, n, nb)[0]) == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- query encoders
@pytest.mark.parametrize("kind", ["fs", "mean", "gru"])
def test_query_encoder_shapes_and_masking(kind):
    tf.keras.utils.set_random_seed(0)
    words = tf.keras.layers.Embedding(20, 6)
    enc = QueryEncoder(words, 6, kind=kind)
    short = enc(tf.constant([[4, 7]]))
    padded = enc(tf.constant([[4, 7, 0, 0, 0]]))
    assert short.shape == (1, 6)
    np.testing.assert_allclose(short.numpy(), padded.numpy(), atol=1e-6)  # padding never changes a query
    if kind == "mean":
        np.testing.assert_allclose(short.numpy()[0], words(tf.constant([4, 7])).numpy().mean(0), atol=1e-6)


def test_hem_padding_quirk_counts_pad_slots_in_the_mean():
    words = tf.keras.layers.Embedding(20, 4)
    enc = QueryEncoder(words, 4, kind="mean", padding="hem", max_length=4)
    out = enc(tf.constant([[4, 7]])).numpy()[0]
    want = (words(tf.constant([4, 7])).numpy().sum(0) + 2 * enc.pad_vector.numpy()) / 4
    np.testing.assert_allclose(out, want, atol=1e-6)
    with pytest.raises(ValueError, match="query encoder"):
        QueryEncoder(words, 4, kind="bert")


# ----------------------------------------------------------------------------- data + evaluation
@pytest.fixture(scope="module")
def search_dataset(tmp_path_factory):
    return write_search_dataset(tmp_path_factory.mktemp("search"), n_users=150)


def _run(model, data_dir, tmp_path=None, **overrides):
    values = {"data.dir": str(data_dir), "verbose": "0", "ks": "[10, 100]", **overrides}
    if tmp_path is not None:
        values["run_dir"] = str(tmp_path / model)
    return build_run_config(model, dataset="synthetic-search", overrides=values)


def test_search_split_holds_out_queries_and_keeps_history_to_training(search_dataset):
    ds = DatasetDir(search_dataset)
    train = list(ds.records("train").as_numpy_iterator())
    test = list(ds.records("test").as_numpy_iterator())
    train_queries = {int(r["query_id"]) for r in train}
    assert test and not train_queries & {int(r["query_id"]) for r in test}  # every evaluation query is unseen
    for r in test:  # history = training purchases: never a held-out target (repeat purchases are dropped)
        assert not set(r["history_item_ids"].tolist()) & set(r["target_items"].tolist())
        assert len(r["history_query_ids"]) == len(r["history_item_ids"]) == len(r["history_timestamps"])
    for r in train:  # a training example's history holds earlier purchases only, never its own item
        assert int(r["item_id"]) not in r["history_item_ids"].tolist()


class _MemorisingScorer(tf.Module):
    """Scores every item the user bought in training highest, then the first target, then the rest."""

    def __init__(self, num_items):
        super().__init__()
        self.num_items = num_items

    def score_items(self, features):
        hist = tf.one_hot(tf.cast(features["item_ids"], tf.int32), self.num_items) * 10.0
        target = tf.one_hot(tf.cast(features["target_items"][:, 0], tf.int32), self.num_items)
        return tf.reduce_max(hist, axis=1) + target


def test_search_evaluation_removes_training_purchases_and_writes_trec_files(search_dataset, tmp_path):
    from tfpps.evaluation.trec import write_trec_files
    from tfpps.data.examples import search

    run = _run("qem", search_dataset)
    data = DatasetDir(search_dataset)
    scorer = _MemorisingScorer(data.num_items)
    metrics = evaluate_split(scorer, data, "test", run)
    # with training purchases removed the first target is always ranked 1st: MRR = 1
    assert metrics["mrr@10"] == pytest.approx(1.0) and metrics["num_examples"] > 50
    unmasked = run.eval.__class__(ks=[10, 100], mask_history=False)
    assert unmasked.mask_history is False
    batches = pipeline.batch_padded(search.eval_examples(data.records("test"), 20), 64)
    run_file, qrels = write_trec_files(scorer.score_items, batches, data.vocab("users"), data.vocab("items"),
                                       tmp_path / "test", model_name="memo")
    lines = run_file.read_text().splitlines()
    assert lines[0].split()[1] == "Q0" and lines[0].split()[3] == "1" and lines[0].endswith("tfpps-memo")
    train_items = {}
    for r in data.records("test").as_numpy_iterator():
        train_items[f"{data.vocab('users')[r['user_id']]}_{r['query_id']}"] = {data.vocab("items")[i] for i in r["history_item_ids"]}
    for line in lines:
        qid, _, item, *_ = line.split()
        assert item not in train_items[qid]  # training purchases never appear in the run
    assert run_file_metrics(run_file, qrels)["mrr"] == pytest.approx(1.0)


def test_trec_metrics_match_the_evaluator(search_dataset, tmp_path):
    run = _run("qem", search_dataset, tmp_path, epochs="1")
    result = train(run, fresh=True)
    from_files = run_file_metrics(result["trec_run"], Path(result["trec_run"]).with_suffix(".qrels"))
    assert from_files["num_queries"] == result["metrics"]["num_examples"]
    assert from_files["mrr"] == pytest.approx(result["metrics"]["mrr@100"], abs=1e-4)
    assert from_files["ndcg@10"] == pytest.approx(result["metrics"]["ndcg@10"], abs=1e-4)


# ----------------------------------------------------------------------------- learning
def test_search_models_beat_popularity_and_personalisation_runs(search_dataset, tmp_path):
    pop = train(_run("pop", search_dataset, tmp_path), fresh=True)["metrics"]
    hem = train(_run("hem", search_dataset, tmp_path, epochs="3", learning_rate="0.1"), fresh=True)["metrics"]
    zam = train(_run("zam", search_dataset, tmp_path, epochs="3", batch_size="64", embedding_size="32"), fresh=True)["metrics"]
    assert hem["ndcg@10"] > 1.5 * pop["ndcg@10"], (hem, pop)
    # ZAM trains through the trainer (its held-out score on this fixture's 122 test queries moves between
    # 1x and 3x chance with the seed after 3 short epochs, too noisy to assert; the benchmark table has
    # held-out numbers). Its epoch loss falls; test_zam_fits_one_batch checks that it can learn at all.
    losses = [float(row.split(",")[1]) for row in (tmp_path / "zam" / "history.csv").read_text().splitlines()[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert all(np.isfinite(v) for v in zam.values()), zam


def _tie_averaged_ndcg10(scores, target):
    """NDCG@10 of each row's target among ``scores`` columns; tied items share the average rank."""
    own = scores[np.arange(len(target)), target][:, None]
    rank = (scores > own).sum(1) + ((scores == own).sum(1) - 1) / 2 + 1
    return float(((rank <= 10) / np.log2(rank + 1)).mean())


@pytest.mark.parametrize("model,word_losses,trained", [
    ("hem", {}, True),
    ("hem", {"item_word_loss": "false"}, True),  # user -> word still reads the word biases
    ("hem", {"item_word_loss": "false", "user_word_loss": "false"}, False),  # the query-side losses only
    ("qem", {"item_word_loss": "false"}, False),
])
def test_every_trainable_weight_gets_a_gradient(search_dataset, model, word_losses, trained):
    """With the word losses off nothing reads the word biases: they are not trainable, so the optimizer meets
    no variable without a gradient (TensorFlow would warn at every step)."""
    from tfpps.data.examples import search

    data = DatasetDir(search_dataset)
    overrides = {f"model_params.{k}": v for k, v in word_losses.items()}
    net = build_model(_run(model, search_dataset, **overrides), data)
    batch = next(iter(pipeline.batch_padded(search.train_examples(data.records("train"), 20), 16)))
    with tf.GradientTape() as tape:
        loss = net.compute_loss(batch, training=True)
    gradients = tape.gradient(loss, net.trainable_variables)
    assert all(g is not None for g in gradients), [v.name for v, g in zip(net.trainable_variables, gradients) if g is None]
    assert net.word_bias.trainable is trained


def test_zam_fits_one_batch(search_dataset):
    """40 SGD steps on one batch of 64 training pairs: from all-tied zero vectors (NDCG@10 ~ 0) to the
    purchased item ranked near the top among all items (0.48-0.56 over seeds 1, 2, 42; chance 0.026)."""
    from tfpps.data.examples import search

    data = DatasetDir(search_dataset)
    tf.random.set_seed(42)
    model = build_model(_run("zam", search_dataset, embedding_size="32"), data)
    batch = next(iter(pipeline.batch_padded(search.train_examples(data.records("train"), 20), 64)))
    target = batch["item_id"].numpy() - 2

    def fitted():
        return _tie_averaged_ndcg10(model.score_items(batch).numpy()[:, 2:], target)  # real items only

    before = fitted()
    optimizer = tf.keras.optimizers.SGD(0.1, clipnorm=5.0)  # the shipped config's optimizer
    for _ in range(40):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    chance = sum(1 / np.log2(k + 1) for k in range(1, 11)) / (data.num_items - 2)
    assert before < chance and fitted() > 0.3 > 10 * chance, (before, fitted(), chance)


@pytest.mark.parametrize("model", ["aem", "hrnn_search"])
def test_other_search_models_train_and_score(model, search_dataset, tmp_path):
    result = train(_run(model, search_dataset, tmp_path, epochs="1", embedding_size="16", batch_size="128"), fresh=True)
    assert result["metrics"]["num_examples"] > 50 and 0 <= result["metrics"]["ndcg@10"] <= 1
    assert Path(result["trec_run"]).exists()


def test_search_model_on_sequential_data_is_a_one_line_error(tmp_path):
    from tests.test_training import small_dataset  # noqa: F401  (fixture defined there)

    data = tmp_path / "seq"
    (data / "vocab").mkdir(parents=True)
    (data / "dataset.json").write_text(json.dumps({"kind": "sequential", "num_items": 5, "num_users": 3, "num_words": 0}))
    for name in ("items", "users"):
        (data / "vocab" / f"{name}.tsv").write_text("0\t<PAD>\t0\n1\t<OOV>\t0\n2\tx\t1\n")
    with pytest.raises(ConfigError, match="needs a product-search dataset"):
        build_model(_run("hem", data), DatasetDir(data))


def test_search_models_are_registered_with_configs():
    for name in ("hem", "qem", "aem", "zam", "hrnn_search"):
        entry = registry.get(name)
        assert entry.example_kind == "search"
        cfg = build_run_config(name, dataset="synthetic-search")
        cfg.validate()
    with pytest.raises(ConfigError, match="score"):
        build_run_config("hem", dataset="synthetic-search", overrides={"score": "l1"}).validate()


def test_the_history_length_is_data_max_len_and_the_old_key_says_so(tmp_path):
    for name in ("aem", "zam", "hrnn_search"):  # their recipes keep the 20 most recent purchases
        assert build_run_config(name, dataset="synthetic-search").data.max_len == 20
    for key in ("history_length", "model_params.history_length"):
        with pytest.raises(ConfigError, match=r"^config key model_params\.history_length is no longer read: set data\.max_len instead$"):
            build_run_config("aem", dataset="synthetic-search", overrides={key: "20"})
    old = tmp_path / "old.yaml"
    old.write_text("model_params:\n  history_length: 20\n")
    with pytest.raises(ConfigError, match=r"old\.yaml:model_params\.history_length is no longer read: set data\.max_len instead$"):
        build_run_config("aem", dataset="synthetic-search", config_file=str(old))


# ----------------------------------------------------------------------------- serving with a query
def test_search_model_exports_and_recommends_for_a_query(search_dataset, tmp_path, capsys):
    from tfpps.cli import recommend
    from tfpps.serving.export import export_run
    from tfpps.serving.exported import ExportedRecommender
    from tfpps.serving.requests import Request, normalize_query
    from tfpps.serving.runs import InProcessRecommender

    result = train(_run("zam", search_dataset, tmp_path, epochs="1", embedding_size="16", batch_size="128"), fresh=True)
    run_dir = result["run_dir"]
    export_run(run_dir, tmp_path / "export", k=10, index="brute-force", log=lambda _: None)
    data = DatasetDir(search_dataset)
    rec = next(r for r in data.records("test").as_numpy_iterator())
    words = data.vocab("words")
    user = data.vocab("users")[rec["user_id"]]
    history = [data.vocab("items")[i] for i in rec["history_item_ids"]]
    query = " ".join(words[w] for w in rec["query_word_ids"]).upper() + "!"  # normalised back to the stored words
    assert normalize_query(query) == " ".join(words[w] for w in rec["query_word_ids"])
    requests = [Request(user, history, query), Request(user, history, "zzz unknown words")]
    local = InProcessRecommender(run_dir).recommend(requests, 10)
    exported = ExportedRecommender(tmp_path / "export").recommend(requests, 10)
    for a, b in zip(local, exported):
        assert a.items == b.items
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    assert local[0].items != local[1].items  # the query changes the ranking
    assert recommend.main([f"--model-dir={tmp_path / 'export'}", f"--user={user}", f"--history={','.join(history)}",
                           f"--query={query}", "--k=5"]) == 0
    assert "query:" in capsys.readouterr().out
    assert recommend.main([f"--model-dir={run_dir}", f"--user={user}", "--history="]) == 2
    assert "product-search model: pass --query" in capsys.readouterr().err


def test_search_models_default_to_the_synthetic_search_data():
    from tfpps.cli import train as train_cli

    run, _ = train_cli.parse(["--model=hem", "--epochs=1"])
    assert run.data.dataset == "synthetic-search" and run.eval.mask_history
    run, _ = train_cli.parse(["--model=gru4rec"])
    assert run.data.dataset == "synthetic"


def test_softmax_item_loss_is_cross_entropy_over_every_real_item(search_dataset):
    """``item_loss: softmax``: the M_uq -> item term equals a hand-computed softmax cross-entropy over the
    real items (PAD/OOV columns excluded), plus l2 on the context and true vectors, over the batch size."""
    from tfpps.data.examples import search

    data = DatasetDir(search_dataset)
    model = build_model(_run("qem", search_dataset, embedding_size="8", item_loss="softmax", init="uniform",
                             item_word_loss="false"), data)
    batch = next(iter(pipeline.batch_padded(search.train_examples(data.records("train"), 20), 16)))
    context = model.personalized_query(batch).numpy()
    table, bias = model.item_embedding.embeddings.numpy(), model.item_bias.embeddings.numpy()[:, 0]
    logits = context @ table.T + bias
    logits[:, :2] = -np.inf
    items = batch["item_id"].numpy()
    log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    cross_entropy = -log_softmax[np.arange(len(items)), items].sum()
    l2 = 0.5 * ((context**2).sum() + (table[items] ** 2).sum())
    model.has_item_text = False
    expected = (cross_entropy + model.params.l2 * l2) / len(items)
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)


def test_sampled_softmax_item_loss_learns_as_the_full_softmax(search_dataset, tmp_path):
    """``item_loss: sampled_softmax`` (in-batch purchases + 50 shared popularity-sampled items of ~180, logQ):
    QEM beats popularity by far and ends near the full softmax's QEM (measured: NDCG@10 0.298 vs 0.267,
    popularity 0.083)."""
    common = dict(init="uniform", optimizer="adam", learning_rate="0.01", epochs="3", n_sample="50")
    pop = train(_run("pop", search_dataset, tmp_path), fresh=True)["metrics"]["ndcg@10"]
    full = train(_run("qem", search_dataset, tmp_path / "full", item_loss="softmax", **common), fresh=True)["metrics"]
    sampled = train(_run("qem", search_dataset, tmp_path / "sampled", item_loss="sampled_softmax", **common),
                    fresh=True)["metrics"]
    assert sampled["ndcg@10"] > 2 * pop and sampled["ndcg@10"] > 0.8 * full["ndcg@10"], (sampled, full, pop)


def test_unknown_item_loss_is_a_one_line_error(search_dataset):
    with pytest.raises(ConfigError, match="item_loss"):
        _run("hem", search_dataset, item_loss="nce")


# ----------------------------------------------------------------------------- tf.distribute
def test_search_epoch_is_shared_out_between_input_pipelines(search_dataset):
    """Two input pipelines (two workers) read disjoint file shards, batch by the per-replica batch, take the
    same number of steps, and together train nearly every (user, query words, item, time) pair of the epoch once."""
    from collections import Counter

    from tfpps.models.search.hem import HEM

    data = DatasetDir(search_dataset)
    run = _run("hem", search_dataset, batch_size="64")
    contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2) for i in (0, 1)]
    assert sum(data.shard_count("train", ctx) for ctx in contexts) == data.count("train") == data.shard_count("train")

    def pairs(batches):
        return Counter((int(b["user_id"][i]), tuple(w for w in b["query_word_ids"][i].tolist() if w > 0), int(b["item_id"][i]),
                        int(b["timestamp"][i])) for b in batches for i in range(len(b["item_id"])))

    epochs = [list(HEM.make_train_dataset(run.model_params, data, run, epoch_seed=3, input_context=ctx).as_numpy_iterator())
              for ctx in contexts]
    assert len(epochs[0]) == len(epochs[1]) > 0
    assert max(len(b["item_id"]) for e in epochs for b in e) == 32  # global batch 64 = 2 replicas x 32
    full = pairs(HEM.make_train_dataset(run.model_params, data, run, epoch_seed=3).as_numpy_iterator())
    shards = [pairs(e) for e in epochs]
    assert not set(shards[0]) & set(shards[1])  # no pair on both workers
    seen = shards[0] + shards[1]
    assert all(seen[k] <= full[k] for k in seen)
    assert sum(seen.values()) > 0.9 * sum(full.values())  # only the tail of the larger shard is left out


def test_search_model_trains_under_the_mirrored_strategy(search_dataset, tmp_path):
    """QEM through the trainer with train.strategy=mirrored (one replica on a CPU-only machine): the model,
    its item->word tables and optimizer are built in the strategy's scope and it learns."""
    pop = train(_run("pop", search_dataset, tmp_path), fresh=True)["metrics"]
    qem = train(_run("qem", search_dataset, tmp_path, epochs="3", learning_rate="0.1", strategy="mirrored"), fresh=True)
    assert qem["metrics"]["ndcg@10"] > 1.5 * pop["ndcg@10"], (qem["metrics"], pop)


def test_search_model_trains_on_two_workers_through_the_launcher(tmp_path):
    """A real 2-process MultiWorkerMirroredStrategy run of HEM on 127.0.0.1 (each worker half the global batch): it
    completes (the sparse embedding gradients are all-reduced dense, where TF's sparse all-gather aborted),
    the chief writes the run and the model beats popularity.

    On 500 users (about 400 test records): on the 150-user set's 122 test records HEM's NDCG@10 after 3 epochs
    ranged 0.08-0.15 over seeds and runs (popularity 0.083), on this one 0.134-0.140 (popularity 0.080)."""
    import subprocess
    import sys

    search_dataset = write_search_dataset(tmp_path / "search500", n_users=500)
    repo = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "hem-2workers"
    cmd = [sys.executable, "-m", "tfpps.launch", "--workers=2", "--", "--model=hem", "--dataset=synthetic-search",
           f"--data_dir={search_dataset}", "--epochs=3", "--learning_rate=0.1",
           f"--run_dir={run_dir}", "--verbose=0", "--set", "eval.ks=[10,100]"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads((run_dir / "metrics.json").read_text())
    pop = train(_run("pop", search_dataset, tmp_path), fresh=True)["metrics"]
    assert result["epochs_run"] == 3 and result["metrics"]["ndcg@10"] > 1.25 * pop["ndcg@10"], (result["metrics"], pop)
