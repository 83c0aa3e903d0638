"""Catalogue-scale sampled softmax (tfpps.tasks.sampled_softmax): the loss by hand, the draws, and models using it."""
import dataclasses

import numpy as np
import pytest

import tfpps  # noqa: F401  (before TensorFlow)
import tensorflow as tf

from tfpps.config import ConfigError, RunConfig, build_run_config
from tfpps.layers.samplers import NegativeSample
from tfpps.models.base import DatasetInfo
from tfpps.tasks.sampled_softmax import CatalogueSampledSoftmax

COUNTS = np.array([0, 0, 9, 1, 4, 6, 0, 2, 3, 5], np.int64)  # PAD, OOV, then items 2..9 (item 6 unseen)


def _numpy_loss(query, table, targets, neg_ids, alpha, logq, bias=None, normalize=False):
    """The module docstring's formula, written out with numpy (float64); ``bias`` adds b_j to item j's logit,
    ``normalize`` scores with unit-norm item vectors."""
    if normalize:
        table = table / np.linalg.norm(table, axis=1, keepdims=True)
    real = COUNTS.astype(np.float64).copy()
    real[:2] = 0
    log_pop = np.log(np.maximum(real, 1.0) / real.sum())
    q_weights = np.where(real > 0, real ** alpha, 0.0)
    q_prob = q_weights / q_weights.sum()
    ids = np.concatenate([targets, neg_ids])
    log_q = np.concatenate([log_pop[targets], np.log(q_prob[neg_ids])])
    logits = query @ table[ids].T - logq * log_q[None, :]
    if bias is not None:
        logits = logits + bias[ids][None, :]
    b = len(targets)
    valid = targets >= 2
    per_row = []
    for r in range(b):
        if not valid[r]:
            continue
        row = logits[r].copy()
        for c in range(len(ids)):
            if c == r:
                continue
            if ids[c] == targets[r] or (c < b and not valid[c]):  # accidental hit / invalid row's column
                row[c] = -np.inf
        m = row.max()
        per_row.append(m + np.log(np.exp(row - m).sum()) - row[r])
    return float(np.mean(per_row))


@pytest.mark.parametrize("logq", [1.0, 0.0, 0.5])
def test_loss_equals_the_hand_computed_value_with_logq_and_accidental_hits(logq):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(4, 3))
    table = rng.normal(size=(len(COUNTS), 3))
    # rows 0 and 2 share target 2 (an in-batch accidental hit each), row 3 is padding (target 0);
    # the samples hit row 0's target (2) and row 1's target (5)
    targets = np.array([2, 5, 2, 0])
    neg_ids = np.array([5, 7, 2, 9])
    alpha = 0.5
    task = CatalogueSampledSoftmax(COUNTS, n_sample=4, sample_alpha=alpha, seed=1, logq=logq)
    q_weights = np.where(COUNTS > 0, COUNTS.astype(np.float64) ** alpha, 0.0)
    neg = NegativeSample(tf.constant(neg_ids, tf.int64), tf.constant(q_weights[neg_ids] / q_weights.sum(), tf.float32),
                         tf.zeros([4]))
    got = task(tf.constant(query, tf.float32), tf.constant(targets), tf.constant(table, tf.float32), negatives=neg)
    expected = _numpy_loss(query, table, targets, neg_ids, alpha, logq)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # the correction changes the value; without the hits masked it would differ too
    if logq == 1.0:
        assert expected != pytest.approx(_numpy_loss(query, table, targets, neg_ids, alpha, 0.0), rel=1e-3)


@pytest.mark.parametrize("normalize", [False, True])
def test_item_bias_and_unit_norm_items_as_the_search_models_score(normalize):
    """The search models' ``item_loss: sampled_softmax``: logits ``M . v_j + b_j`` (``score: cosine``: unit v_j)."""
    rng = np.random.default_rng(1)
    query, table = rng.normal(size=(4, 3)), rng.normal(size=(len(COUNTS), 3))
    bias = rng.normal(size=len(COUNTS))
    targets, neg_ids, alpha = np.array([2, 5, 2, 0]), np.array([5, 7, 2, 9]), 0.5
    q_weights = np.where(COUNTS > 0, COUNTS.astype(np.float64) ** alpha, 0.0)
    neg = NegativeSample(tf.constant(neg_ids, tf.int64), tf.constant(q_weights[neg_ids] / q_weights.sum(), tf.float32),
                         tf.zeros([4]))
    task = CatalogueSampledSoftmax(COUNTS, n_sample=4, sample_alpha=alpha, seed=1)
    got = task(tf.constant(query, tf.float32), tf.constant(targets), tf.constant(table, tf.float32), negatives=neg,
               bias=tf.constant(bias[:, None], tf.float32), normalize_items=normalize)
    expected = _numpy_loss(query, table, targets, neg_ids, alpha, 1.0, bias=bias, normalize=normalize)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(_numpy_loss(query, table, targets, neg_ids, alpha, 1.0, normalize=normalize), rel=1e-3)


def test_in_batch_only_and_gradient_is_sparse():
    table = tf.Variable(np.random.default_rng(1).normal(size=(len(COUNTS), 3)).astype(np.float32))
    query = tf.constant(np.random.default_rng(2).normal(size=(3, 3)), tf.float32)
    targets = np.array([2, 4, 9])
    task = CatalogueSampledSoftmax(COUNTS, n_sample=0, sample_alpha=0.0, seed=1)
    with tf.GradientTape() as tape:
        loss = task(query, tf.constant(targets), table)
    assert float(loss) == pytest.approx(_numpy_loss(query.numpy(), table.numpy(), targets, np.zeros(0, np.int64), 0.0, 1.0), rel=1e-5)
    grad = tape.gradient(loss, table)
    assert isinstance(grad, tf.IndexedSlices)  # only the candidates' rows are touched


def test_draws_are_keyed_by_step_and_stream_and_never_pad_oov_or_unseen():
    task = CatalogueSampledSoftmax(COUNTS, n_sample=500, sample_alpha=1.0, seed=7)
    a, _ = task.candidates(tf.constant([2, 3]), step=5)
    b, _ = task.candidates(tf.constant([2, 3]), step=5)
    c, _ = task.candidates(tf.constant([2, 3]), step=6)
    d, _ = task.candidates(tf.constant([2, 3]), step=5, stream=1)
    assert (a.numpy() == b.numpy()).all() and (a.numpy() != c.numpy()).any() and (a.numpy() != d.numpy()).any()
    drawn = a.numpy()[2:]
    assert drawn.min() >= 2 and not (drawn == 6).any()
    assert np.mean(drawn == 2) > np.mean(drawn == 3)  # popularity: item 2 (9) far more often than item 3 (1)


# ---------------------------------------------------------------------------- config
def test_softmax_options_validate_with_one_line_errors():
    from tfpps.models.sequential.narm import NARMConfig

    cfg = NARMConfig()
    assert (cfg.softmax, cfg.n_sample, cfg.sample_alpha, cfg.logq) == ("full", 2048, 0.5, 1.0)
    for bad, message in (({"softmax": "sampeld"}, "model_params.softmax='sampeld': expected one of full, sampled"),
                         ({"n_sample": -1}, "model_params.n_sample=-1: must be >= 0"),
                         ({"logq": -0.5}, "model_params.logq=-0.5: must be >= 0")):
        with pytest.raises(ConfigError) as err:
            dataclasses.replace(cfg, **bad).validate()
        assert message in str(err.value) and "\n" not in str(err.value)
    run = build_run_config("narm", overrides={"softmax": "sampled", "n_sample": "64"})
    assert run.model_params.softmax == "sampled" and run.model_params.n_sample == 64
    with pytest.raises(ConfigError, match="model_params.softmax"):
        build_run_config("hrm", overrides={"softmax": "sampled", "loss": "negative_sampling"})


# ---------------------------------------------------------------------------- NARM
def test_narm_sampled_loss_uses_the_query_and_the_tied_embedding():
    from test_narm import HISTORIES, batch, make_model

    model = make_model(softmax="sampled", n_sample=3, sample_alpha=1.0)
    model.info.item_counts[:] = np.array([0, 0] + [1] * 10)
    feats = batch(HISTORIES[:3], 5)
    feats["target_item"] = tf.constant([5, 2, 11], tf.int64)
    query = model.query_vectors(feats).numpy().astype(np.float64)
    table = model.item_embedding.numpy().astype(np.float64)
    ids, log_q = model.sampled_softmax.candidates(feats["target_item"], step=0, stream=0)
    logits = query @ table[ids.numpy()].T - log_q.numpy()[None, :]
    tgt = feats["target_item"].numpy()
    hit = (ids.numpy()[None, :] == tgt[:, None]) & ~np.eye(3, len(ids), dtype=bool)
    logits[hit] = -np.inf
    expected = np.mean([np.log(np.exp(logits[r] - logits[r].max()).sum()) + logits[r].max() - logits[r, r] for r in range(3)])
    assert float(model.compute_loss(feats, training=False)) == pytest.approx(expected, rel=1e-5)
    # scoring is unchanged: every item
    assert model.score_items(feats).shape == (3, 12)


def test_narm_with_sampled_softmax_learns_a_markov_chain_better_than_popularity():
    from test_narm import FakeData, _markov_chain, _markov_sequences, _recall_at, batch
    from tfpps.models.sequential.narm import NARM, NARMConfig

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    num_items, max_len = 52, 10
    chain = _markov_chain(rng, num_items)
    train = FakeData(_markov_sequences(rng, chain, 300, 12), num_items)
    test_seqs = _markov_sequences(rng, chain, 200, 8)
    run = RunConfig(model="narm", model_params=NARMConfig(softmax="sampled", n_sample=8, sample_alpha=0.5))
    run.data.max_len, run.train.batch_size, run.data.shuffle_buffer = max_len, 64, 10_000
    model = NARM(run.model_params, train.info(), run)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.001), steps_per_execution=8)
    model.fit(NARM.make_train_dataset(run.model_params, train, run, epoch_seed=0), epochs=4, verbose=0)

    feats = batch([s[:-1][-max_len:] for s in test_seqs], max_len)
    targets = np.array([s[-1] for s in test_seqs])
    narm_recall = _recall_at(model.score_items(feats).numpy(), targets, 10)
    pop_recall = _recall_at(np.tile(train.info().item_counts.astype(np.float64), (len(targets), 1)), targets, 10)
    assert narm_recall > pop_recall + 0.3, (narm_recall, pop_recall)
    assert narm_recall > 0.8, narm_recall


# ---------------------------------------------------------------------------- HRM
def test_hrm_sampled_softmax_replaces_the_full_softmax():
    from tfpps.models.sequential.hrm import HRM, HRMConfig

    run = RunConfig(model="hrm", model_params=HRMConfig(softmax="sampled", n_sample=4, sample_alpha=0.0, dropout=0.0,
                                                         high_order=2))
    run.data.max_len = 5
    info = DatasetInfo(num_items=len(COUNTS), num_users=4, item_counts=COUNTS.copy())
    model = HRM(run.model_params, info, run)
    feats = {"item_ids": tf.constant([[2, 3, 0], [4, 0, 0]], tf.int64), "length": tf.constant([2, 1], tf.int64),
             "user_id": tf.constant([2, 3], tf.int64), "target_item": tf.constant([5, 9], tf.int64)}
    hybrid = model.query_vectors(feats).numpy().astype(np.float64)
    out = model.output_embedding.numpy().astype(np.float64)
    ids, log_q = model.sampled_softmax.candidates(feats["target_item"], step=0)
    logits = hybrid @ out[ids.numpy()].T - log_q.numpy()[None, :]
    tgt = feats["target_item"].numpy()
    logits[(ids.numpy()[None, :] == tgt[:, None]) & ~np.eye(2, len(ids), dtype=bool)] = -np.inf
    expected = np.mean([np.log(np.exp(logits[r] - logits[r].max()).sum()) + logits[r].max() - logits[r, r] for r in range(2)])
    assert float(model.compute_loss(feats, training=False)) == pytest.approx(expected, rel=1e-5)
