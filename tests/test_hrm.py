"""HRM: masked pooling (RecBole's padding bugs not copied), the two layers by hand, the user vector, losses, data, learning."""
import dataclasses

import numpy as np
import pytest

import tfpps  # noqa: F401  (before TensorFlow)
import tensorflow as tf

from tfpps.config import ConfigError, RunConfig, build_run_config
from tfpps.evaluation.metrics import ranks_from_scores_np
from tfpps.data.examples.prefix import prefix_examples
from tfpps.models.base import DatasetInfo
from tfpps.data.examples.basket import basket_eval_examples
from tfpps.data.examples.hrm_examples import basket_examples
from tfpps.models.sequential.hrm import HRM, HRMConfig, last_real_items, masked_pool

NUM_ITEMS, NUM_USERS = 8, 5


def make_model(num_items=NUM_ITEMS, num_users=NUM_USERS, seed=1, kind="sequential", **params):
    run = RunConfig(model="hrm", model_params=HRMConfig(**params))
    run.train.seed = seed
    counts = np.ones(num_items, np.int64)
    counts[:2] = 0
    info = DatasetInfo(num_items=num_items, num_users=num_users, item_counts=counts, kind=kind)
    return HRM(run.model_params, info, run)


def batch(histories, width, users=None, targets=None):
    ids = np.zeros((len(histories), width), np.int64)
    for i, h in enumerate(histories):
        ids[i, : len(h)] = h
    return {
        "item_ids": tf.constant(ids),
        "length": tf.constant([len(h) for h in histories], tf.int64),
        "user_id": tf.constant(users if users is not None else [2] * len(histories), tf.int64),
        "target_item": tf.constant(targets if targets is not None else [2] * len(histories), tf.int64),
    }


def set_tables(model, items, users, outputs=None):
    model.item_embedding.assign(np.asarray(items, np.float32))
    model.user_embedding.assign(np.asarray(users, np.float32))
    if outputs is not None:
        model.output_embedding.assign(np.asarray(outputs, np.float32))


# A tiny table, D = 2: item i (ids 2..7) and users 2..4. Row 0 (PAD) is large and positive so that
# pooling over it would show; item 3 is negative in every coordinate.
ITEMS = np.array([[9, 9], [8, 8], [1, -2], [-1, -3], [2, 0.5], [-4, 1], [0, 0], [3, 3]], np.float32)
USERS = np.array([[7, 7], [7, 7], [0.5, 0.5], [-5, 2], [1, -1]], np.float32)


# ---------------------------------------------------------------------------- config
def test_config_defaults_are_recbole_and_errors_are_one_line():
    cfg = HRMConfig()
    assert (cfg.embedding_size, cfg.high_order, cfg.dropout) == (64, 2, 0.2)
    assert (cfg.pooling_items, cfg.pooling_user, cfg.loss, cfg.tie_embeddings) == ("max", "max", "full_softmax", False)
    for bad in (
        {"pooling_items": "sum"},
        {"pooling_user": "mean"},
        {"loss": "bpr"},
        {"dropout": 1.0},
        {"high_order": 0},
        {"embedding_size": -1},
        {"num_negatives": 0},
        {"negative_alpha": -0.5},
    ):
        with pytest.raises(ConfigError) as err:
            dataclasses.replace(cfg, **bad).validate()
        assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)
    run = build_run_config("hrm")
    assert run.model_params == HRMConfig()
    assert (run.train.batch_size, run.train.learning_rate, run.train.optimizer) == (4096, 0.001, "adam")
    run.data.max_len = 1
    with pytest.raises(ConfigError, match="high_order"):
        HRM(run.model_params, DatasetInfo(NUM_ITEMS, NUM_USERS, np.ones(NUM_ITEMS)), run)


# ---------------------------------------------------------------------------- pooling
def test_last_real_items_of_left_aligned_histories():
    feats = batch([[2, 3, 4, 5, 6], [7], [], [2, 3]], 7)
    ids, mask = last_real_items(feats["item_ids"], feats["length"], 3)
    assert ids.numpy().tolist() == [[4, 5, 6], [0, 0, 7], [0, 0, 0], [0, 2, 3]]
    assert mask.numpy().tolist() == [[True] * 3, [False, False, True], [False] * 3, [False, True, True]]


def test_max_pooling_ignores_padding_even_when_all_real_values_are_negative():
    model = make_model(embedding_size=2, high_order=3, pooling_items="max")
    set_tables(model, ITEMS, USERS)
    pooled, present = model.layer1(batch([[3], [3, 5]], 4))  # shorter than high_order
    np.testing.assert_allclose(pooled.numpy(), [[-1, -3], [-1, 1]])
    assert present.numpy().tolist() == [True, True]
    # RecBole's right-aligned max over the last high_order rows would include PAD rows:
    padded_rows = np.stack([np.zeros(2), np.zeros(2), ITEMS[3]])  # a zero PAD vector
    assert padded_rows.max(0).tolist() == [0, 0]  # ... and give 0, not the item's own (negative) vector


def test_avg_pooling_divides_by_the_real_count_of_the_last_high_order_items():
    model = make_model(embedding_size=2, high_order=3, pooling_items="avg")
    set_tables(model, ITEMS, USERS)
    feats = batch([[3], [3, 5], [2, 7, 3, 4, 5]], 6)
    pooled = model.layer1(feats)[0].numpy()
    np.testing.assert_allclose(pooled[0], ITEMS[3])
    np.testing.assert_allclose(pooled[1], (ITEMS[3] + ITEMS[5]) / 2)
    np.testing.assert_allclose(pooled[2], (ITEMS[3] + ITEMS[4] + ITEMS[5]) / 3)  # NOT the whole sequence / 3


def test_masked_pool_on_rows_without_real_items():
    vectors = tf.constant(np.full((2, 3, 2), -5.0, np.float32))
    mask = tf.constant([[False, False, False], [False, True, False]])
    for kind in ("max", "avg"):
        pooled, present = masked_pool(vectors, mask, kind)
        np.testing.assert_allclose(pooled.numpy(), [[0, 0], [-5, -5]])
        assert present.numpy().tolist() == [False, True]


@pytest.mark.parametrize("p1,p2", [("max", "max"), ("max", "avg"), ("avg", "max"), ("avg", "avg")])
def test_two_layers_by_hand(p1, p2):
    model = make_model(embedding_size=2, high_order=2, pooling_items=p1, pooling_user=p2)
    outputs = np.arange(16, dtype=np.float32).reshape(8, 2) / 10 - 0.5
    set_tables(model, ITEMS, USERS, outputs)
    feats = batch([[2, 3, 4], [5], []], 5, users=[3, 4, 2])
    pool = {"max": lambda rows: np.max(rows, 0), "avg": lambda rows: np.mean(rows, 0)}
    layer1 = [pool[p1]([ITEMS[3], ITEMS[4]]), pool[p1]([ITEMS[5]])]
    hybrid = [pool[p2]([USERS[3], layer1[0]]), pool[p2]([USERS[4], layer1[1]]), USERS[2]]  # no items: the user alone
    np.testing.assert_allclose(model.layer1(feats)[0].numpy()[:2], layer1, rtol=1e-6)
    np.testing.assert_allclose(model.hybrid(feats).numpy(), hybrid, rtol=1e-6)
    np.testing.assert_allclose(model.score_items(feats).numpy(), np.array(hybrid) @ outputs.T, rtol=1e-5, atol=1e-6)
    if (p1, p2) == ("max", "max"):  # a spot value: max(max((-1,-3),(2,.5)), (-5,2)) = (2, 2)
        np.testing.assert_allclose(model.hybrid(feats).numpy()[0], [2, 2])


def test_padding_width_and_junk_past_length_never_change_scores():
    model = make_model()
    hist = [[2, 5, 7], [3], [4, 4, 6, 7, 6]]
    narrow = model.score_items(batch(hist, 5)).numpy()
    wide = batch(hist, 9)
    wide["item_ids"] = tf.where(wide["item_ids"] == 0, tf.constant(6, tf.int64), wide["item_ids"])
    np.testing.assert_allclose(model.score_items(wide).numpy(), narrow, rtol=1e-6)
    assert narrow.shape == (3, NUM_ITEMS)


def test_user_vector_changes_scores_for_identical_histories():
    model = make_model()
    scores = model.score_items(batch([[2, 5, 7], [2, 5, 7]], 4, users=[2, 3])).numpy()
    assert not np.allclose(scores[0], scores[1])
    same = model.score_items(batch([[2, 5, 7], [4, 5, 7]], 4, users=[2, 2])).numpy()
    np.testing.assert_allclose(same[0], same[1], rtol=1e-6)  # only the last high_order=2 items matter


def test_output_vectors_are_separate_unless_tied():
    model = make_model()
    assert model.output_embedding is not model.item_embedding and len(model.trainable_weights) == 3
    feats = batch([[2, 3]], 2)
    before = model.score_items(feats).numpy()
    model.output_embedding[6].assign(model.output_embedding[6] + 1.0)  # only item 6's score changes
    changed = ~np.isclose(model.score_items(feats).numpy(), before)
    assert changed[0, 6] and changed.sum() == 1
    tied = make_model(tie_embeddings=True)
    assert tied.output_embedding is tied.item_embedding and len(tied.trainable_weights) == 2
    np.testing.assert_allclose(
        tied.score_items(feats).numpy(), tied.hybrid(feats).numpy() @ tied.item_embedding.numpy().T, rtol=1e-5
    )


# ---------------------------------------------------------------------------- losses
def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_full_softmax_loss_equals_numpy_cross_entropy_over_real_items():
    model = make_model()
    feats = batch([[2, 5, 7], [3], [4, 6]], 4, users=[2, 3, 4], targets=[5, 2, 1])  # target 1 (OOV) is ignored
    logits = model.score_items(feats).numpy().astype(np.float64)[:, 2:]
    expected = -np.mean([_log_softmax(logits[0])[3], _log_softmax(logits[1])[0]])
    assert model.compute_loss(feats).numpy() == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(model.compute_loss(feats, training=True).numpy())  # dropout on


@pytest.mark.parametrize("loss", ["negative_sampling", "sampled_softmax"])
def test_sampled_losses_equal_numpy(loss):
    model = make_model(loss=loss, num_negatives=3)
    feats = batch([[2, 5], [3]], 2, users=[2, 3], targets=[5, 7])
    negatives = np.array([[2, 6, 6], [3, 4, 7]])
    h = model.hybrid(feats).numpy().astype(np.float64)
    out = model.output_embedding.numpy().astype(np.float64)
    pos = (h * out[[5, 7]]).sum(1)
    neg = np.einsum("bd,bkd->bk", h, out[negatives])
    if loss == "negative_sampling":
        log_sig = lambda x: -np.log1p(np.exp(-x))  # noqa: E731
        expected = -log_sig(pos) - log_sig(-neg).sum(1)
    else:
        expected = -_log_softmax(np.concatenate([pos[:, None], neg], 1))[:, 0]
    got = model.sampled_loss(tf.constant(h, tf.float32), tf.constant([5, 7], tf.int64), tf.constant(negatives)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    neg_ids = model.sample_negatives(tf.constant(500, tf.int64)).numpy()
    assert neg_ids.shape == (500, 3) and neg_ids.min() >= 2 and neg_ids.max() < NUM_ITEMS
    assert np.isfinite(model.compute_loss(feats, training=True).numpy())


def test_popularity_noise_and_l2_penalty():
    model = make_model(num_items=6, loss="negative_sampling", negative_alpha=1.0, reg_weight=0.5, num_negatives=4)
    model._noise_logits = tf.math.log(tf.constant([[0.0, 0.0, 1.0, 0.0]]) + 1e-30)  # only item 4
    assert set(model.sample_negatives(tf.constant(8, tf.int64)).numpy().ravel()) == {4}
    plain = make_model(num_items=6, reg_weight=0.5)
    feats = batch([[2, 3, 5]], 3, users=[3], targets=[4])
    norms = lambda t, rows: float((t.numpy()[rows] ** 2).sum())  # noqa: E731
    expected = norms(plain.item_embedding, [3, 5]) + norms(plain.user_embedding, [3]) + norms(plain.output_embedding, [4])
    without = dataclasses.replace(plain.params, reg_weight=0.0)
    plain.params = without
    base = plain.compute_loss(feats).numpy()
    plain.params = dataclasses.replace(without, reg_weight=0.5)
    assert plain.compute_loss(feats).numpy() == pytest.approx(base + 0.5 * expected, rel=1e-5)


# ---------------------------------------------------------------------------- data
class FakeData:
    """The part of DatasetDir that HRM uses: ``records("train", ...)`` and ``info()``."""

    def __init__(self, sequences, users, num_items, num_users):
        self.sequences, self.users, self.num_items, self.num_users = sequences, users, num_items, num_users

    def records(self, split, shuffle=False, seed=0, **kwargs):
        seqs = tf.ragged.constant(self.sequences, dtype=tf.int64)
        ds = tf.data.Dataset.from_tensor_slices({"item_ids": seqs, "user_id": tf.constant(self.users, tf.int64)})
        return ds.shuffle(len(self.users), seed=seed) if shuffle else ds

    def info(self):
        counts = np.zeros(self.num_items, np.int64)
        for s in self.sequences:
            np.add.at(counts, s, 1)
        counts[:2] = 0
        return DatasetInfo(num_items=self.num_items, num_users=self.num_users, item_counts=counts)


class FakeBasketData:
    def __init__(self, baskets, users, num_items, num_users):
        self.baskets, self.users, self.num_items, self.num_users = baskets, users, num_items, num_users

    def records(self, split, shuffle=False, seed=0, **kwargs):
        rows = tf.ragged.constant(self.baskets, dtype=tf.int64, ragged_rank=2)
        return tf.data.Dataset.from_tensor_slices({"baskets": rows, "user_id": tf.constant(self.users, tf.int64)})

    def info(self):
        return DatasetInfo(self.num_items, self.num_users, np.ones(self.num_items, np.int64), kind="basket")


def _run(batch_size=3, shuffle_buffer=100):
    run = RunConfig(model="hrm", model_params=HRMConfig())
    run.train.batch_size, run.data.shuffle_buffer = batch_size, shuffle_buffer
    return run


def test_sequential_train_dataset_keeps_the_last_high_order_items():
    data = FakeData([[2, 3, 4, 5], [6, 7], [7, 1, 3, 4], [4]], [2, 3, 4, 2], 8, 5)  # OOV target 1 dropped
    run = _run()
    ds = HRM.make_train_dataset(run.model_params, data, run, epoch_seed=3)
    assert int(ds.cardinality()) == 2  # 6 examples, batch 3
    examples = [
        (tuple(h[:n].tolist()), int(u), int(t))
        for b in ds.as_numpy_iterator()
        for h, n, u, t in zip(b["item_ids"], b["length"], b["user_id"], b["target_item"])
    ]
    expected = [((2,), 2, 3), ((2, 3), 2, 4), ((3, 4), 2, 5), ((6,), 3, 7), ((7, 1), 4, 3), ((1, 3), 4, 4)]
    assert sorted(examples) == sorted(expected)
    assert all(len(b["item_ids"][0]) == 2 for b in ds.as_numpy_iterator())


def test_chunked_pipeline_equals_prefix_examples_and_reshuffles_each_epoch():
    rng = np.random.default_rng(3)
    seqs = [[int(x) for x in rng.integers(1, 30, rng.integers(1, 15))] for _ in range(60)]
    data = FakeData(seqs, list(range(2, 62)), 30, 62)
    run = _run(batch_size=64, shuffle_buffer=100)  # ~13 records per chunk: several chunks
    run.model_params.high_order = 3
    reference = prefix_examples(data.records("train"), max_len=3).filter(lambda e: e["target_item"] >= 2)
    key = lambda h, n, u, t: (tuple(h[:n].tolist()), int(u), int(t))  # noqa: E731
    expected = sorted(key(e["item_ids"], e["length"], e["user_id"], e["target_item"]) for e in reference.as_numpy_iterator())
    ds = HRM.make_train_dataset(run.model_params, data, run, epoch_seed=0)
    epochs = []
    for _ in range(2):
        batches = list(ds.as_numpy_iterator())
        assert len(batches) == int(ds.cardinality()) == -(-len(expected) // 64)
        assert all(len(b["target_item"]) == 64 for b in batches[:-1])
        epochs.append([key(*row) for b in batches for row in zip(b["item_ids"], b["length"], b["user_id"], b["target_item"])])
        assert sorted(epochs[-1]) == expected
    assert epochs[0] != epochs[1]


def test_basket_training_examples_and_scoring():
    data = FakeBasketData([[[2, 3], [4], [5, 6, 7]], [[6]], [[3, 4, 5], [2, 1]]], [2, 3, 4], 8, 5)
    examples = sorted(
        (tuple(e["last_basket"][e["last_basket"] > 0]), int(e["user_id"]), int(e["target_item"]))
        for e in basket_examples(data.records("train")).as_numpy_iterator()
    )
    assert examples == sorted(
        [((2, 3), 2, 4), ((4,), 2, 5), ((4,), 2, 6), ((4,), 2, 7), ((3, 4, 5), 4, 2), ((3, 4, 5), 4, 1)]
    )
    run = _run(batch_size=4)
    ds = HRM.make_train_dataset(run.model_params, data, run, epoch_seed=0)
    batches = list(ds.as_numpy_iterator())
    assert int(ds.cardinality()) == 2 and sum(len(b["target_item"]) for b in batches) == 5  # the OOV target dropped
    model = make_model(kind="basket", embedding_size=2)
    set_tables(model, ITEMS, USERS)
    feats = {"last_basket": tf.constant([[3, 5, 0], [4, 0, 0]], tf.int64), "user_id": tf.constant([3, 2], tf.int64)}
    np.testing.assert_allclose(model.layer1(feats)[0].numpy(), [[-1, 1], [2, 0.5]])
    assert model.score_items(feats).shape == (2, NUM_ITEMS)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    model.fit(ds, epochs=1, verbose=0)


def test_next_basket_evaluation_ranks_the_whole_next_basket():
    """Next-basket protocol: the last history basket and the user give one ranking; every item of the
    held-out basket is relevant. Metrics checked by hand from the model's own scores."""
    from tfpps.spec import schema
    from tfpps.evaluation import evaluator

    raw = [
        schema.encode_example("basket", {"user_id": 2, "baskets": [[2, 3], [4, 5]], "basket_timestamps": [1, 2], "target_items": [6, 3]}),
        schema.encode_example("basket", {"user_id": 3, "baskets": [[7]], "basket_timestamps": [1], "target_items": [2]}),
        schema.encode_example("basket", {"user_id": 4, "baskets": [[2]], "basket_timestamps": [1], "target_items": []}),
    ]
    records = tf.data.Dataset.from_tensor_slices(raw).batch(3).map(lambda b: schema.parse_batch("basket", b)).unbatch()
    examples = list(basket_eval_examples(records, max_len=3, with_seen=True).as_numpy_iterator())
    assert len(examples) == 2  # a record without a target basket is not an example
    assert examples[0]["last_basket"].tolist() == [4, 5] and examples[0]["target_items"].tolist() == [6, 3]
    assert examples[0]["seen_items"].tolist() == [2, 3, 4, 5] and examples[1]["last_basket"].tolist() == [7]
    assert examples[0]["item_ids"].tolist() == [3, 4, 5] and examples[0]["length"] == 3  # last max_len items

    model = make_model(kind="basket", embedding_size=4, num_items=NUM_ITEMS)
    batch_ = next(iter(basket_eval_examples(records, max_len=3).padded_batch(4)))
    scores = model.score_items(batch_).numpy()
    metrics = evaluator.evaluate(model.score_items, [batch_], ks=[3], progress=False, num_items=NUM_ITEMS)
    expected_recall, expected_prec = [], []
    for row, targets in zip(scores, ([6, 3], [2])):
        order = [i for i in np.argsort(-row, kind="stable") if i >= 2]  # PAD/OOV are never candidates
        hits = len(set(order[:3]) & set(targets))
        expected_recall.append(hits / len(targets))
        expected_prec.append(hits / 3)
    assert metrics["num_examples"] == 2
    assert metrics["recall@3"] == pytest.approx(np.mean(expected_recall))
    assert metrics["precision@3"] == pytest.approx(np.mean(expected_prec))


# ---------------------------------------------------------------------------- learning
def _recall_at(scores, targets, k):
    """Recall@k with the evaluator's ranking (PAD and OOV excluded)."""
    pad_oov = np.arange(scores.shape[1]) < 2
    return float((ranks_from_scores_np(scores, np.asarray(targets), exclude_mask=pad_oov) <= k).mean())


def test_learns_user_and_last_item_dependence_better_than_popularity():
    """The next item is succ[group(user)][last item]; the user's group picks the half of the catalogue.

    Within its half a group's chain is one long cycle and the other half maps onto it one-to-one, so the
    item distribution is near uniform (popularity has little to exploit) and the target needs the last
    item AND the user.
    """
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    num_items, num_users, length = 62, 202, 14  # 60 real items, 200 real users
    real = np.arange(2, num_items)
    halves = [real[:30], real[30:]]
    group = rng.integers(0, 2, num_users)
    succ = []
    for g in (0, 1):
        cycle, other = rng.permutation(halves[g]), rng.permutation(halves[1 - g])
        nxt = {int(a): int(b) for a, b in zip(cycle, np.roll(cycle, -1))}
        nxt.update({int(a): int(b) for a, b in zip(other, rng.permutation(halves[g]))})
        succ.append(nxt)

    def sequence(user):
        seq = [int(rng.choice(real))]
        for _ in range(length):
            seq.append(succ[group[user]][seq[-1]] if rng.random() < 0.85 else int(rng.choice(real)))
        return seq

    users = list(range(2, num_users))
    full = [sequence(u) for u in users]
    train = FakeData([s[:-1] for s in full], users, num_items, num_users)
    run = RunConfig(model="hrm", model_params=HRMConfig(embedding_size=32, dropout=0.0))
    run.data.max_len, run.train.batch_size, run.data.shuffle_buffer = 10, 64, 10_000
    model = HRM(run.model_params, train.info(), run)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), steps_per_execution=16)
    model.fit(HRM.make_train_dataset(run.model_params, train, run, epoch_seed=0), epochs=12, verbose=0)

    feats = batch([s[:-1][-10:] for s in full], 10, users=users)
    targets = np.array([s[-1] for s in full])
    hrm_recall = _recall_at(model.score_items(feats).numpy(), targets, 10)
    pop_scores = np.tile(train.info().item_counts.astype(np.float64), (len(targets), 1))
    pop_recall = _recall_at(pop_scores, targets, 10)
    assert hrm_recall > pop_recall + 0.3, (hrm_recall, pop_recall)
    assert hrm_recall > 0.6, hrm_recall
