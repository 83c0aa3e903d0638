"""GRU4Rec model: config, training-step semantics, masking vs. the official shrinking batch, learning."""
import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import CONFIG_DIR, ConfigError, RunConfig, TrainConfig, build_run_config
from tfpps.data.examples.session_parallel import build_schedule
from tfpps.models.base import DatasetInfo
from tfpps.models.sequential.gru4rec import GRU4Rec, GRU4RecConfig
from tfpps.tasks import losses
from tfpps.optimizers.adagrad_momentum import AdagradM


class FakeData:
    """Stands in for DatasetDir: ``records(split)`` and ``info()`` over in-memory sessions."""

    def __init__(self, seqs, num_items, times=None):
        self.seqs = [np.asarray(s, np.int64) for s in seqs]
        self.times = np.arange(len(seqs)) * 10 if times is None else np.asarray(times)
        self.num_items = num_items

    def records(self, split, **kwargs):
        def gen():
            for k, (s, t) in enumerate(zip(self.seqs, self.times)):
                yield {
                    "user_id": np.int64(k),
                    "session_id": np.int64(k),
                    "item_ids": s,
                    "timestamps": t + np.arange(len(s), dtype=np.int64),
                    "session_starts": np.eye(1, len(s), dtype=np.int64)[0],
                    "target_item": np.int64(0),
                }

        spec = {
            "user_id": tf.TensorSpec([], tf.int64),
            "session_id": tf.TensorSpec([], tf.int64),
            "item_ids": tf.TensorSpec([None], tf.int64),
            "timestamps": tf.TensorSpec([None], tf.int64),
            "session_starts": tf.TensorSpec([None], tf.int64),
            "target_item": tf.TensorSpec([], tf.int64),
        }
        return tf.data.Dataset.from_generator(gen, output_signature=spec)

    def info(self):
        counts = np.bincount(np.concatenate(self.seqs), minlength=self.num_items).astype(np.int64)
        counts[:2] = 0
        return DatasetInfo(num_items=self.num_items, num_users=len(self.seqs) + 2, item_counts=counts)


def make_run(params, batch_size, seed=1, **train):
    return RunConfig(model="gru4rec", train=TrainConfig(batch_size=batch_size, seed=seed, **train), model_params=params)


# ----------------------------------------------------------------------------- config
def test_config_defaults_registry_and_yaml():
    GRU4RecConfig().validate()
    entry = registry.get("gru4rec")
    assert entry.model_cls is GRU4Rec and entry.config_cls is GRU4RecConfig
    cfg = build_run_config("gru4rec")
    assert cfg.train.optimizer == "adagrad_momentum"
    from tfpps.optimizers import make_optimizer

    assert isinstance(make_optimizer(cfg.train), AdagradM)
    assert cfg.model_params.layers == [100] and cfg.model_params.n_sample == 2048
    bpr = build_run_config("gru4rec", config_file=str(CONFIG_DIR / "models" / "gru4rec_bprmax.yaml"))
    assert bpr.model_params.loss == "bpr-max"


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"loss": "top1"}, "model_params.loss"),
        ({"layers": []}, "model_params.layers"),
        ({"loss": "bpr-max", "logq": 1.0}, "logq"),
        ({"embedding": 64}, "constrained_embedding"),
        ({"dropout_p_hidden": 1.0}, "dropout_p_hidden"),
        ({"train_mode": "batch"}, "train_mode"),
        ({"n_sample": -1}, "n_sample"),
        ({"gru_cell": "gru"}, "model_params.gru_cell"),
        ({"gru_cell": "reset-after"}, "reset_after"),
    ],
)
def test_config_errors_are_one_line(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        GRU4RecConfig(**kwargs).validate()
    assert needle in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- step semantics
def _tiny_model(batch_size=3, n_sample=4, loss="cross-entropy", **kw):
    info = DatasetInfo(num_items=12, num_users=3, item_counts=np.array([0, 0] + list(range(1, 11))))
    params = GRU4RecConfig(layers=[5], loss=loss, n_sample=n_sample, **kw)
    return GRU4Rec(params, info, make_run(params, batch_size)), info


def _step(x, y, reset, valid):
    return {
        "input_items": tf.constant(x, tf.int32),
        "target_items": tf.constant(y, tf.int32),
        "reset": tf.constant(np.asarray(reset, bool)),
        "valid": tf.constant(np.asarray(valid, bool)),
    }


def test_hidden_state_reset_and_carry():
    model, _ = _tiny_model(batch_size=2)
    cell = model.cells[0]
    wy = model.Wy
    model.compute_loss(_step([2, 3], [4, 5], [1, 1], [1, 1]), training=True)
    h1 = cell(tf.gather(wy, [2, 3]), tf.zeros([2, 5]))
    np.testing.assert_allclose(model.states[0].numpy(), h1.numpy(), rtol=1e-6)
    model.compute_loss(_step([4, 6], [7, 8], [0, 1], [1, 1]), training=True)
    h2 = cell(tf.gather(wy, [4, 6]), tf.stack([h1[0], tf.zeros([5])]))
    np.testing.assert_allclose(model.states[0].numpy(), h2.numpy(), rtol=1e-6)


def test_masked_slot_equals_official_shrunk_batch_and_grads_are_sparse():
    model, info = _tiny_model(batch_size=3, n_sample=4, logq=1.0)
    feats = _step([2, 3, 9], [4, 5, 11], [1, 1, 1], [1, 1, 0])  # slot 2 invalid (its data is garbage)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(feats, training=True)
    grads = dict(zip([v.name for v in model.trainable_variables], tape.gradient(loss, model.trainable_variables)))
    assert isinstance(grads["Wy:0"], tf.IndexedSlices) and isinstance(grads["By:0"], tf.IndexedSlices)

    # official: batch shrunk to the 2 valid slots, loss still / nominal batch size 3
    neg = model.sampler(0)
    h = model.cells[0](tf.gather(model.Wy, [2, 3]), tf.zeros([2, 5]))
    cols = tf.concat([tf.constant([4, 5], tf.int64), neg.ids], 0)
    scores = tf.matmul(h, tf.gather(model.Wy, cols), transpose_b=True) + tf.gather(model.By, cols)
    counts = info.item_counts.astype(np.float32)
    log_q = tf.concat([tf.math.log(tf.gather(counts, [4, 5])), 0.5 * tf.math.log(tf.gather(counts, neg.ids))], 0)
    expected = losses.cross_entropy(scores, log_q=log_q, logq=1.0, batch_size=3)
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5)

    # rows of the invalid slot's items (9 in, 11 out) get no gradient unless they are sampled negatives
    g = tf.convert_to_tensor(grads["Wy:0"]).numpy()
    if 9 not in neg.ids.numpy():
        assert np.all(g[9] == 0)
    if 11 not in neg.ids.numpy():
        assert np.all(g[11] == 0)


@pytest.mark.parametrize("loss", ["bpr-max", "top1-max"])
def test_ranking_losses_run_with_masks(loss):
    model, _ = _tiny_model(batch_size=3, n_sample=0, loss=loss)
    value = model.compute_loss(_step([2, 3, 0], [4, 5, 0], [1, 1, 1], [1, 1, 0]), training=True)
    assert np.isfinite(value.numpy()) and value.numpy() > 0


def test_score_items_padding_and_empty_history():
    model, _ = _tiny_model()
    a = model.score_items({"item_ids": tf.constant([[3, 7, 0, 0], [0, 0, 0, 0]]), "length": tf.constant([2, 0])})
    b = model.score_items({"item_ids": tf.constant([[3, 7]]), "length": tf.constant([2])})
    np.testing.assert_allclose(a.numpy()[0], b.numpy()[0], rtol=1e-6)
    assert a.shape == (2, 12)
    np.testing.assert_allclose(a.numpy()[1], model.By.numpy())  # zero state -> bias only


# ----------------------------------------------------------------------------- learning
def markov_data(num_real=60, n_train=900, n_test=150, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(2, 2 + num_real)
    pop = 1.0 / np.arange(1, num_real + 1) ** 0.8
    pop /= pop.sum()
    nxt = rng.permutation(ids)

    def session():
        n = rng.integers(3, 11)
        s = [rng.choice(ids, p=pop)]
        for _ in range(n - 1):
            s.append(nxt[s[-1] - 2] if rng.random() < 0.8 else rng.choice(ids, p=pop))
        return s

    return [session() for _ in range(n_train)], [session() for _ in range(n_test)], num_real + 2


def recall_at(model, test, k=10, max_len=20):
    hist, lens, tgts = [], [], []
    for s in test:
        for e in range(1, len(s)):
            h = s[max(0, e - max_len) : e]
            hist.append(h + [0] * (max_len - len(h)))
            lens.append(len(h))
            tgts.append(s[e])
    scores = model.score_items({"item_ids": tf.constant(hist, tf.int64), "length": tf.constant(lens, tf.int64)}).numpy()
    scores[:, :2] = -np.inf  # PAD/OOV are not candidates (as in tfpps.evaluation)
    tgts = np.array(tgts)
    target_scores = scores[np.arange(len(tgts)), tgts]
    ranks = (scores > target_scores[:, None]).sum(1) + 1  # "standard" ties
    return float((ranks <= k).mean()), tgts


@pytest.mark.parametrize("gru_cell", ["cho", "reset_after"])
def test_learns_markov_chain_better_than_most_popular(gru_cell):
    tf.keras.utils.set_random_seed(0)
    train, test, n_items = markov_data()
    data = FakeData(train, n_items)
    params = GRU4RecConfig(layers=[48], n_sample=32, sample_alpha=0.5, logq=1.0, gru_cell=gru_cell)
    run = make_run(params, batch_size=32, seed=3, learning_rate=0.1)
    model = GRU4Rec(params, data.info(), run)
    cell_type = {"cho": "ChoGRUCell", "reset_after": "ResetAfterGRUCell"}[gru_cell]
    assert type(model.cells[0]).__name__ == cell_type
    model.compile(optimizer=AdagradM(learning_rate=0.1, momentum=0.1), steps_per_execution=25)
    ds = GRU4Rec.make_train_dataset(params, data, run, epoch_seed=0)
    hist = model.fit(ds, epochs=6, verbose=0)
    assert hist.history["loss_per_event"][-1] < 0.9 * hist.history["loss_per_event"][0]

    recall, tgts = recall_at(model, test)
    counts = data.info().item_counts
    top10 = np.argsort(-counts)[:10]
    pop_recall = float(np.isin(tgts, top10).mean())
    assert recall > pop_recall + 0.25, (recall, pop_recall)


def test_bpr_max_and_prefix_mode_learn():
    tf.keras.utils.set_random_seed(0)
    train, test, n_items = markov_data(n_train=500, n_test=80, seed=1)
    data = FakeData(train, n_items)
    counts = data.info().item_counts
    pop_recall = float(np.isin(recall_at_targets(test), np.argsort(-counts)[:10]).mean())
    for params, epochs in (
        (GRU4RecConfig(layers=[32], loss="bpr-max", n_sample=32, bpreg=1.0, elu_param=0.5), 5),
        (GRU4RecConfig(layers=[32], train_mode="prefix", dropout_p_hidden=0.1), 4),
    ):
        run = make_run(params, batch_size=32, seed=2)
        run.data.max_len = 20
        model = GRU4Rec(params, data.info(), run)
        model.compile(optimizer=AdagradM(learning_rate=0.1, momentum=0.2), steps_per_execution=20)
        model.fit(GRU4Rec.make_train_dataset(params, data, run, epoch_seed=0), epochs=epochs, verbose=0)
        recall, _ = recall_at(model, test)
        assert recall > pop_recall + 0.15, (params.loss, params.train_mode, recall, pop_recall)


def recall_at_targets(test):
    return np.array([s[e] for s in test for e in range(1, len(s))])


@pytest.mark.parametrize("constrained, embedding, gru_cell", [(False, 0, "cho"), (False, 6, "cho"), (False, 0, "reset_after")])
def test_other_embedding_modes_train(constrained, embedding, gru_cell):
    seqs = [[2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 2], [3, 5, 7]]
    data = FakeData(seqs, 12)
    params = GRU4RecConfig(
        layers=[8, 6], constrained_embedding=constrained, embedding=embedding, n_sample=3, dropout_p_embed=0.2,
        gru_cell=gru_cell,
    )
    run = make_run(params, batch_size=2)
    model = GRU4Rec(params, data.info(), run)
    feats = _step([2, 6], [3, 7], [1, 1], [1, 1])
    with tf.GradientTape() as tape:
        loss = model.compute_loss(feats, training=True)
    grads = {v.name: g for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables))}
    sparse_name = ("gru_0/Wx:0" if gru_cell == "cho" else "gru_0/W_ih:0") if embedding == 0 else "E:0"
    assert isinstance(grads[sparse_name], tf.IndexedSlices)
    if gru_cell == "reset_after":  # one-hot first layer = the official GRUEmbedding (no b_hh); the next: nn.GRUCell
        assert "gru_0/b_hh:0" not in grads and "gru_1/b_hh:0" in grads
    assert all(g is not None for g in grads.values())
    model.compile(optimizer=AdagradM(0.05, 0.1), steps_per_execution=4)
    model.fit(GRU4Rec.make_train_dataset(params, data, run, 0), epochs=1, verbose=0)
    scores = model.score_items({"item_ids": tf.constant([[2, 3]]), "length": tf.constant([2])})
    assert scores.shape == (1, 12) and np.all(np.isfinite(scores.numpy()))


def test_training_is_reproducible():
    seqs = [list(range(2, 2 + n)) for n in (3, 5, 4, 6, 2, 7)]
    data = FakeData(seqs, 12)
    weights = []
    for _ in range(2):
        params = GRU4RecConfig(layers=[6], n_sample=5, dropout_p_hidden=0.3, dropout_p_embed=0.2)
        run = make_run(params, batch_size=2, seed=11)
        model = GRU4Rec(params, data.info(), run)
        model.compile(optimizer=AdagradM(0.1, 0.3), steps_per_execution=3)
        model.fit(GRU4Rec.make_train_dataset(params, data, run, 0), epochs=2, verbose=0)
        weights.append([w.numpy() for w in model.weights])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_schedule_shape_is_fixed_for_keras():
    seqs = [[2, 3, 4], [5, 6], [7, 8, 9, 10], [11, 2]]
    sched = build_schedule(seqs, batch_size=3, first_times=[0, 1, 2, 3])
    spec = sched.dataset().element_spec
    assert all(s.shape == (3,) for s in spec.values())
