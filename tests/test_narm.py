"""NARM: shapes, masking, the official GRU/attention equations, the tied decoder, the loss, and learning."""
import dataclasses

import numpy as np
import pytest

import tfpps  # noqa: F401  (before TensorFlow)
import tensorflow as tf

from tfpps.config import ConfigError, RunConfig, build_run_config
from tfpps.evaluation.metrics import ranks_from_scores_np
from tfpps.models.base import DatasetInfo
from tfpps.models.sequential.narm import NARM, NARMConfig, narm_prefix_examples

NUM_ITEMS = 12


def make_model(num_items=NUM_ITEMS, seed=1, **params):
    run = RunConfig(model="narm", model_params=NARMConfig(**params))
    run.train.seed = seed
    info = DatasetInfo(num_items=num_items, num_users=3, item_counts=np.ones(num_items, np.int64))
    return NARM(run.model_params, info, run)


def batch(histories, width):
    ids = np.zeros((len(histories), width), np.int64)
    for i, h in enumerate(histories):
        ids[i, : len(h)] = h
    return {
        "item_ids": tf.constant(ids),
        "length": tf.constant([len(h) for h in histories], tf.int64),
        "target_item": tf.constant([2] * len(histories), tf.int64),
        "user_id": tf.zeros([len(histories)], tf.int64),
    }


HISTORIES = [[2, 5, 7], [3], [4, 4, 9, 11, 6], []]


# ---------------------------------------------------------------------------- config
def test_config_defaults_are_official_and_validated():
    cfg = NARMConfig()
    assert (cfg.embedding_size, cfg.hidden_size, cfg.dropout_embed, cfg.dropout_context) == (50, 100, 0.25, 0.5)
    assert cfg.attention_normalisation == "masked_softmax" and cfg.gate_activation == "hard_sigmoid"
    for bad in ({"attention_normalisation": "softmax"}, {"dropout_embed": 1.0}, {"hidden_size": 0}, {"truncate": "x"}):
        with pytest.raises(ConfigError):
            dataclasses.replace(cfg, **bad).validate()
    run = build_run_config("narm")
    assert run.train.batch_size == 512 and run.train.learning_rate == 0.001 and run.train.epochs == 30
    assert run.model_params == NARMConfig()


# ---------------------------------------------------------------------------- shapes and masking
@pytest.mark.parametrize("norm", ["masked_softmax", "none"])
def test_shapes_and_padding_never_changes_scores(norm):
    model = make_model(attention_normalisation=norm)
    narrow = model.score_items(batch(HISTORIES, 5)).numpy()
    wide = model.score_items(batch(HISTORIES, 12)).numpy()
    assert narrow.shape == (4, NUM_ITEMS)
    np.testing.assert_allclose(narrow, wide, rtol=1e-5, atol=1e-5)
    # a row's scores do not depend on the other rows (the batch is trimmed to its longest history)
    alone = model.score_items(batch(HISTORIES[:1], 3)).numpy()
    np.testing.assert_allclose(alone[0], narrow[0], rtol=1e-5, atol=1e-5)
    # items past `length` are ignored even when they are not 0
    junk = batch(HISTORIES, 12)
    junk["item_ids"] = tf.where(junk["item_ids"] == 0, tf.constant(9, tf.int64), junk["item_ids"])
    np.testing.assert_allclose(model.score_items(junk).numpy(), wide, rtol=1e-5, atol=1e-5)
    assert np.isfinite(narrow).all()  # including the length-0 history


def test_attention_weights_are_masked_and_normalised():
    feats = batch(HISTORIES, 7)
    lengths = np.array([len(h) for h in HISTORIES])
    real = np.arange(7)[None, :] < lengths[:, None]
    w = make_model().attention_weights(feats).numpy()
    assert w.shape == (4, 7)
    assert (w[~real] == 0).all()
    np.testing.assert_allclose(w.sum(1)[lengths > 0], 1.0, rtol=1e-6)
    assert (w[real] > 0).all()
    w_none = make_model(attention_normalisation="none").attention_weights(feats).numpy()
    assert (w_none[~real] == 0).all()


def test_length_zero_history_gives_finite_scores_and_zero_context():
    model = make_model()
    feats = batch([[]], 4)
    out = model.encode(feats)
    np.testing.assert_array_equal(out["context"].numpy(), 0.0)
    assert np.isfinite(model.score_items(feats).numpy()).all()
    assert np.isfinite(model.compute_loss(feats, training=True).numpy())


# ---------------------------------------------------------------------------- the official equations
def _hs(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def _official_gru_params(model):
    """The official (gru_Wxrz, gru_Urz, gru_Uh, gru_b) from the Keras GRU: its update gate is 1 - z,
    i.e. the z blocks are negated (hs(-a) = 1 - hs(a))."""
    hid = model.params.hidden_size
    kernel, recurrent, bias = (v.numpy().copy() for v in model.gru.weights)
    sign = np.concatenate([-np.ones(hid), np.ones(2 * hid)])
    kernel, recurrent, bias = kernel * sign, recurrent * sign, bias * sign
    return kernel, recurrent[:, : 2 * hid], recurrent[:, 2 * hid :], bias


def _numpy_narm(model, history):
    """The official NARM.py forward pass (inference: dropout scales by keep), one history, in numpy."""
    p = model.params
    emb = model.item_embedding.numpy()
    w, urz, uh, b = _official_gru_params(model)
    a1, a2, v, bili = (x.numpy() for x in (model.attn_a1, model.attn_a2, model.attn_v, model.bilinear))
    hid = p.hidden_size
    h = np.zeros(hid)
    states = []
    for item in history:  # gru_layer._step
        x = emb[item] * (1 - p.dropout_embed) @ w + b
        pre = h @ urz + x[: 2 * hid]
        z, r = _hs(pre[:hid]), _hs(pre[hid:])
        cand = np.tanh((h * r) @ uh + x[2 * hid :])
        h = (1 - z) * h + z * cand
        states.append(h)
    states = np.array(states)
    alpha = _hs(states @ a1 + h @ a2) @ v  # compute_alpha
    weight = np.exp(alpha - alpha.max()) / np.exp(alpha - alpha.max()).sum()
    c = np.concatenate([weight @ states, h]) * (1 - p.dropout_context)
    return emb @ (c @ bili), weight


def test_forward_matches_the_official_equations():
    model = make_model()
    feats = batch(HISTORIES[:3], 6)
    scores = model.score_items(feats).numpy()
    weights = model.attention_weights(feats).numpy()
    for i, hist in enumerate(HISTORIES[:3]):
        ref_scores, ref_weights = _numpy_narm(model, hist)
        np.testing.assert_allclose(scores[i], ref_scores, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(weights[i, : len(hist)], ref_weights, rtol=1e-4, atol=1e-6)


def test_initialisation_follows_the_official_code():
    model = make_model(num_items=4000)
    hid = model.params.hidden_size
    kernel, urz, uh, bias = _official_gru_params(model)
    assert model.item_embedding.numpy().std() == pytest.approx(np.sqrt(2 / 4000), rel=0.05)
    assert kernel.std() == pytest.approx(np.sqrt(2 / 50), rel=0.05)
    assert kernel.mean() == pytest.approx(0.0, abs=0.01)
    assert model.bilinear.numpy().std() == pytest.approx(np.sqrt(2 / 50), rel=0.05)
    assert model.attn_a1.numpy().std() == pytest.approx(np.sqrt(2 / hid), rel=0.05)
    np.testing.assert_array_equal(bias, 0.0)
    for block in (urz[:, :hid], urz[:, hid:], uh):
        np.testing.assert_allclose(block.T @ block, np.eye(hid), atol=1e-4)
    assert not np.allclose(urz[:, :hid], -urz[:, hid:]) and not np.allclose(urz[:, hid:], uh)
    # the same seed gives the same model; another seed another one
    np.testing.assert_array_equal(make_model(seed=5).gru.weights[1].numpy(), make_model(seed=5).gru.weights[1].numpy())
    assert not np.allclose(make_model(seed=5).item_embedding.numpy(), make_model(seed=6).item_embedding.numpy())


# ---------------------------------------------------------------------------- decoder and loss
def test_bilinear_decoder_is_tied_to_the_item_embedding():
    model = make_model()
    feats = batch([[2, 3, 4]], 3)
    before = model.score_items(feats).numpy()
    query = tf.matmul(model.encode(feats)["context"] * 0.5, model.bilinear).numpy()[0]
    np.testing.assert_allclose(before[0], model.item_embedding.numpy() @ query, rtol=1e-5, atol=1e-6)
    model.item_embedding[10].assign(model.item_embedding[10] + 1.0)  # item 10 is not in the history
    after = model.score_items(feats).numpy()
    changed = ~np.isclose(after, before)
    assert changed[0, 10] and changed.sum() == 1


def test_loss_is_full_softmax_cross_entropy_over_real_items():
    model = make_model()
    feats = batch(HISTORIES, 5)
    feats["target_item"] = tf.constant([5, 2, 11, 7], tf.int64)
    logits = model.score_items(feats).numpy()[:, 2:].astype(np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    expected = -log_p[np.arange(4), feats["target_item"].numpy() - 2].mean()
    assert model.compute_loss(feats, training=False).numpy() == pytest.approx(expected, rel=1e-5)
    # training mode drops units at random; the loss stays finite
    assert np.isfinite(model.compute_loss(feats, training=True).numpy())


# ---------------------------------------------------------------------------- data
class FakeData:
    """The part of DatasetDir that NARM uses: ``records("train", ...)`` and ``info()``."""

    def __init__(self, sequences, num_items):
        self.sequences = sequences
        self.num_items = num_items

    def records(self, split, shuffle=False, seed=0, **kwargs):
        seqs = tf.ragged.constant(self.sequences, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(
            {"item_ids": seqs, "user_id": tf.range(len(self.sequences), dtype=tf.int64)}
        ).map(lambda r: {**r, "item_ids": tf.cast(r["item_ids"], tf.int64)})

    def info(self):
        counts = np.zeros(self.num_items, np.int64)
        for s in self.sequences:
            np.add.at(counts, s, 1)
        counts[:2] = 0
        return DatasetInfo(num_items=self.num_items, num_users=len(self.sequences) + 2, item_counts=counts)


@pytest.mark.parametrize("truncate,expected", [("last", [4, 5, 6]), ("first", [2, 3, 4])])
def test_prefix_examples_truncation(truncate, expected):
    data = FakeData([[2, 3, 4, 5, 6, 7]], 10)
    examples = list(narm_prefix_examples(data.records("train"), max_len=3, truncate=truncate).as_numpy_iterator())
    assert [int(e["target_item"]) for e in examples] == [3, 4, 5, 6, 7]
    assert [int(e["length"]) for e in examples] == [1, 2, 3, 3, 3]
    assert examples[0]["item_ids"].tolist() == [2, 0, 0]
    assert examples[-1]["item_ids"].tolist() == expected


def test_make_train_dataset_batches_every_prefix():
    data = FakeData([[2, 3, 4], [5, 6], [7, 1, 8, 9], [4]], 10)  # item 1 (OOV) as a target is dropped
    run = RunConfig(model="narm", model_params=NARMConfig())
    run.data.max_len, run.train.batch_size, run.data.shuffle_buffer = 4, 3, 100
    ds = NARM.make_train_dataset(run.model_params, data, run, epoch_seed=3)
    assert int(ds.cardinality()) == 2  # declared, so fit works with steps_per_execution > 1
    batches = list(ds.as_numpy_iterator())
    assert [len(b["target_item"]) for b in batches] == [3, 2]
    targets = sorted(int(t) for b in batches for t in b["target_item"])
    assert targets == [3, 4, 6, 8, 9]
    assert batches[0]["item_ids"].shape == (3, 4)


# ---------------------------------------------------------------------------- learning
def _markov_chain(rng, num_items):
    real = np.arange(2, num_items)
    return {i: rng.choice(real, size=2, replace=False) for i in real}


def _markov_sequences(rng, successors, count, length):
    real = np.array(sorted(successors))
    popular = real[: len(real) // 5]  # a popularity skew for the baseline to exploit
    seqs = []
    for _ in range(count):
        item = rng.choice(popular) if rng.random() < 0.5 else rng.choice(real)
        seq = [item]
        for _ in range(length - 1):
            item = rng.choice(successors[item]) if rng.random() < 0.9 else rng.choice(popular)
            seq.append(item)
        seqs.append([int(i) for i in seq])
    return seqs


def _recall_at(scores, targets, k):
    """Recall@k with the evaluator's ranking (PAD and OOV excluded)."""
    pad_oov = np.arange(scores.shape[1]) < 2
    return float((ranks_from_scores_np(scores, np.asarray(targets), exclude_mask=pad_oov) <= k).mean())


def test_learns_a_markov_chain_better_than_popularity():
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    num_items, max_len = 52, 10
    chain = _markov_chain(rng, num_items)
    train = FakeData(_markov_sequences(rng, chain, 300, 12), num_items)
    test_seqs = _markov_sequences(rng, chain, 200, 8)
    run = RunConfig(model="narm", model_params=NARMConfig())
    run.data.max_len, run.train.batch_size, run.data.shuffle_buffer = max_len, 64, 10_000
    model = NARM(run.model_params, train.info(), run)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.001), steps_per_execution=8)  # official lr
    model.fit(NARM.make_train_dataset(run.model_params, train, run, epoch_seed=0), epochs=4, verbose=0)

    feats = batch([s[:-1][-max_len:] for s in test_seqs], max_len)
    targets = np.array([s[-1] for s in test_seqs])
    narm_recall = _recall_at(model.score_items(feats).numpy(), targets, 10)
    pop_scores = np.tile(train.info().item_counts.astype(np.float64), (len(targets), 1))
    pop_recall = _recall_at(pop_scores, targets, 10)
    assert narm_recall > pop_recall + 0.3, (narm_recall, pop_recall)
    assert narm_recall > 0.8, narm_recall
