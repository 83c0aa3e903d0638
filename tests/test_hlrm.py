"""HLRM (HLR-E) and CML: config, hinge loss by hand, memory read and masking, unit-norm clipping, triplets, learning."""
import dataclasses
import math

import numpy as np
import pytest

import tfpps  # noqa: F401  (before TensorFlow)
import tensorflow as tf

from tfpps.cli import train as train_cli
from tfpps.config import ConfigError, RunConfig, build_run_config
from tfpps.data.examples.triplets import UserItems, subsample_history, triplet_dataset
from tfpps.evaluation import evaluator
from tfpps.layers.relation_memory import RelationMemory, masked_attention
from tfpps.models.base import DatasetInfo
from tfpps.models.metric.cml import CML, CMLConfig
from tfpps.models.metric.hlrm import HLRM, HLRMConfig
from tfpps.tasks.hinge import hinge_loss

NUM_ITEMS, NUM_USERS = 10, 6


def make(cls, num_items=NUM_ITEMS, num_users=NUM_USERS, seed=1, **params):
    config_cls = HLRMConfig if cls is HLRM else CMLConfig
    run = RunConfig(model="hlrm" if cls is HLRM else "cml", model_params=config_cls(**params))
    run.train.seed = seed
    counts = np.ones(num_items, np.int64)
    counts[:2] = 0
    return cls(run.model_params, DatasetInfo(num_items, num_users, counts), run)


def history_batch(histories, users, width=None, junk=0):
    width = width or max(1, max(len(h) for h in histories))
    ids = np.full((len(histories), width), junk, np.int64)
    for r, h in enumerate(histories):
        ids[r, : len(h)] = h
    return {"item_ids": tf.constant(ids), "length": tf.constant([len(h) for h in histories], tf.int64),
            "user_id": tf.constant(users, tf.int64)}


# ---------------------------------------------------------------------------- config
def test_defaults_are_the_originals_and_cli_options_map():
    h, c = HLRMConfig(), CMLConfig()
    assert (h.emb_size, h.loss_margin, h.clip, h.num_relations, h.max_num_prefs, h.beta, h.copy) == (100, 0.2, 1.0, 20, 50, 1.0, False)
    assert (c.emb_size, c.loss_margin, c.clip) == (100, 0.5, 1.0)
    run = build_run_config("hlrm")
    assert (run.train.learning_rate, run.train.batch_size, run.train.patience, run.eval.mask_history) == (2e-4, 1000, 10, True)
    assert build_run_config("cml").train.learning_rate == 7.5e-4
    run, _ = train_cli.parse(["--model=hlrm", "--emb_size=8", "--num_relations=4", "--loss_margin=0.3", "--clip=0.5",
                              "--patience=3", "--max_num_prefs=7", "--freeze_embeddings=false"])
    p = run.model_params
    assert (p.emb_size, p.num_relations, p.loss_margin, p.clip, p.max_num_prefs, run.train.patience) == (8, 4, 0.3, 0.5, 7, 3)


@pytest.mark.parametrize("bad", [{"emb_size": 0}, {"num_relations": 0}, {"loss_margin": -1.0}, {"clip": -0.5},
                                 {"beta": 0.0}, {"max_num_prefs": -1}, {"freeze_embeddings": True}])
def test_bad_options_are_one_line(bad):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(HLRMConfig(), **bad).validate()
    assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)


def test_bad_cli_value_is_one_line(capsys):
    assert train_cli.main(["--model=hlrm", "--num_relations=many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfpps.train: error:") and "num_relations" in err and "\n" not in err


def test_pretrained_and_frozen_embeddings_from_npy(tmp_path):
    items = np.random.default_rng(0).normal(size=(NUM_ITEMS, 4)).astype(np.float32) * 3
    np.save(tmp_path / "items.npy", items)
    model = make(CML, emb_size=4, pretrained_item_embeddings=str(tmp_path / "items.npy"), freeze_embeddings=True)
    np.testing.assert_array_equal(model.item_embedding.numpy(), items)
    assert not model.item_embedding.trainable and model.user_embedding.trainable
    model.compile(optimizer=tf.keras.optimizers.legacy.Adam(0.1))
    ui = UserItems.from_lists({2: [2, 3, 4], 3: [5, 6]}, NUM_USERS, NUM_ITEMS)
    model.fit(triplet_dataset(ui, 2, seed=0), epochs=2, verbose=0)
    np.testing.assert_array_equal(model.item_embedding.numpy(), items)  # frozen: neither trained nor clipped
    assert np.linalg.norm(model.user_embedding.numpy(), axis=1).max() <= 1.0 + 1e-5
    np.save(tmp_path / "bad.npy", items[:, :3])
    for path, message in ((tmp_path / "bad.npy", "shape"), (tmp_path / "missing.npy", "not found")):
        with pytest.raises(ConfigError, match=message) as err:
            make(CML, emb_size=4, pretrained_item_embeddings=str(path))
        assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- hinge loss
def test_hinge_loss_on_a_hand_built_case():
    assert float(hinge_loss([0.5, 2.0], [1.0, 1.0], margin=0.2)) == pytest.approx(1.2)  # 0 + 1.2
    assert hinge_loss([0.5, 2.0], [1.0, 1.0], 0.2, reduction="none").numpy().tolist() == pytest.approx([0.0, 1.2])
    model = make(CML, emb_size=2)
    users = np.zeros((NUM_USERS, 2), np.float32)
    users[2], users[3] = [1, 0], [0, 1]
    items = np.zeros((NUM_ITEMS, 2), np.float32)
    items[2], items[3], items[4], items[5] = [0.6, 0], [0, 1], [0, -1], [0, 0.5]
    model.user_embedding.assign(users)
    model.item_embedding.assign(items)
    feats = {"user_id": tf.constant([2, 3]), "positive_item": tf.constant([2, 4]), "negative_item": tf.constant([3, 5])}
    # user 2: d+ = 0.16, d- = 2 -> max(0, 0.16 - 2 + 0.5) = 0; user 3: d+ = 4, d- = 0.25 -> 4.25 (a sum, not a mean)
    assert float(model.compute_loss(feats)) == pytest.approx(4.25, abs=1e-6)


def numpy_relation(u, refs, item, keys, memories, beta=1.0):
    """HLR-E's relation r(u, i) written out with loops: memory reads, then attention, for one example."""
    rels = []
    for ref in refs:  # the user first, then the real history items
        logits = (item * ref) @ keys
        s = np.exp(logits - logits.max())
        rels.append((s / s.sum()) @ memories)
    w = np.array([rel @ u for rel in rels])
    att = np.exp(w) / np.exp(w).sum() ** beta
    return sum(a * rel for a, rel in zip(att, rels))


@pytest.mark.parametrize("beta, copy", [(1.0, False), (0.5, False), (1.0, True)])
def test_hlrm_loss_equals_the_equations_written_out(beta, copy):
    model = make(HLRM, emb_size=3, num_relations=4, max_num_prefs=3, beta=beta, copy=copy, loss_margin=0.3)
    histories, users, pos, neg = [[5, 6, 7], [4], []], [2, 3, 4], [2, 5, 8], [3, 9, 6]
    feats = dict(history_batch(histories, users, width=3, junk=9),
                 positive_item=tf.constant(pos), negative_item=tf.constant(neg))
    U, I = model.user_embedding.numpy(), model.item_embedding.numpy()
    K, M = model.memory.keys.numpy(), model.memory.memories.numpy()
    expected = 0.0
    for user, hist, p, n in zip(users, histories, pos, neg):
        refs = [U[user]] + [I[h] for h in hist]
        r_pos = numpy_relation(U[user], refs, I[p], K, M, beta)
        r_neg = r_pos if copy else numpy_relation(U[user], refs, I[n], K, M, beta)
        d_pos, d_neg = np.sum((U[user] + r_pos - I[p]) ** 2), np.sum((U[user] + r_neg - I[n]) ** 2)
        expected += max(0.0, d_pos - d_neg + 0.3)
    assert float(model.compute_loss(feats)) == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------------------- memory read and masking
def test_memory_read_shapes_and_a_hand_value():
    layer = RelationMemory(num_memories=2, dim=2, seed=0)
    assert tuple(layer(tf.ones([5, 2]), tf.ones([5, 7, 2])).shape) == (5, 7, 2)
    assert tuple(layer(tf.ones([3, 4, 2]), tf.ones([3, 4, 6, 2])).shape) == (3, 4, 6, 2)
    s = layer.addresses(tf.ones([5, 2]), tf.random.normal([5, 7, 2]))
    np.testing.assert_allclose(tf.reduce_sum(s, -1).numpy(), 1.0, rtol=1e-6)
    layer.keys.assign([[1.0, 0.0], [0.0, 1.0]])
    layer.memories.assign([[1.0, 0.0], [0.0, 2.0]])
    # t * x = (0, ln 3) -> softmax (1/4, 3/4) -> rel = 1/4 (1, 0) + 3/4 (0, 2)
    rel = layer(tf.constant([[1.0, 1.0]]), tf.constant([[[0.0, math.log(3.0)]]]))
    np.testing.assert_allclose(rel.numpy()[0, 0], [0.25, 1.5], rtol=1e-6)
    # attention: masked references get weight 0; beta scales the normaliser
    w = masked_attention(tf.constant([[0.0, math.log(3.0), 50.0]]), tf.constant([[True, True, False]]))
    np.testing.assert_allclose(w.numpy(), [[0.25, 0.75, 0.0]], rtol=1e-6)
    w = masked_attention(tf.constant([[0.0, math.log(3.0)]]), tf.constant([[True, True]]), beta=0.5)
    np.testing.assert_allclose(w.numpy(), [[1 / 2, 3 / 2]], rtol=1e-6)  # exp(w) / 4^0.5


def test_short_histories_are_masked_and_padding_never_matters():
    model = make(HLRM, emb_size=4, num_relations=3, max_num_prefs=5)
    clean = model.score_items(history_batch([[5, 6, 7], [4], []], [2, 3, 4], width=3))
    junk = model.score_items(history_batch([[5, 6, 7], [4], []], [2, 3, 4], width=8, junk=9))
    assert tuple(clean.shape) == (3, NUM_ITEMS)
    np.testing.assert_allclose(clean.numpy(), junk.numpy(), rtol=1e-5, atol=1e-6)
    # an empty history: the relation is the user's own memory read, r = rel(i, u)
    u, items = model.user_embedding[4], tf.convert_to_tensor(model.item_embedding)
    rel = model.memory(items, tf.tile(u[None, None, :], [NUM_ITEMS, 1, 1]))[:, 0]
    np.testing.assert_allclose(clean.numpy()[2], -np.sum((u.numpy() + rel.numpy() - items.numpy()) ** 2, 1), rtol=1e-5)
    _, refs, mask = model.references(history_batch([[5, 6, 7], [4], []], [2, 3, 4], width=8, junk=9))
    assert mask.numpy().sum(1).tolist() == [4, 2, 1] and tuple(refs.shape) == (3, 6, 4)


def test_long_histories_keep_a_fixed_subset_of_max_num_prefs():
    model = make(HLRM, emb_size=4, num_relations=3, max_num_prefs=2)
    feats = history_batch([[5, 6, 7, 8, 9], [4, 5, 6, 7, 8]], [2, 3])
    _, refs, mask = model.references(feats)
    assert tuple(refs.shape) == (2, 3, 4) and mask.numpy().all()
    alone = model.score_items(history_batch([[4, 5, 6, 7, 8]], [3]))
    np.testing.assert_allclose(model.score_items(feats).numpy()[1], alone.numpy()[0], rtol=1e-6)  # batch-independent
    ids, n = subsample_history(tf.constant([[5, 6, 7, 0]]), tf.constant([[True, True, True, False]]),
                               tf.constant([[0.1, 0.9, 0.5, 0.99]]), 2)
    assert ids.numpy().tolist() == [[6, 7]] and n.numpy().tolist() == [2]


def test_ranking_scores_equal_minus_the_training_distance():
    model = make(HLRM, emb_size=4, num_relations=3, max_num_prefs=4, beta=0.8)
    feats = history_batch([[5, 6, 7], [4], []], [2, 3, 4], width=4)
    scores = model.score_items(feats).numpy()
    for item in range(NUM_ITEMS):
        d = model.distances(feats, tf.fill([3], item)).numpy()
        np.testing.assert_allclose(scores[:, item], -d, rtol=1e-5, atol=1e-5)
    cml = make(CML, emb_size=3)
    s = cml.score_items(feats).numpy()
    np.testing.assert_allclose(s, (cml.query_vectors(feats) @ tf.transpose(cml.item_vectors())).numpy(), atol=1e-5)
    for item in (2, 7):
        np.testing.assert_allclose(s[:, item], -cml.distances(feats, tf.fill([3], item)).numpy(), atol=1e-5)


# ---------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("cls, params", [(CML, {}), (HLRM, {"max_num_prefs": 3, "num_relations": 3}),
                                         (HLRM, {"max_num_prefs": 3, "num_relations": 3, "clip_ram": True})])
def test_embeddings_stay_within_unit_norm_after_steps(cls, params):
    model = make(cls, emb_size=4, **params)
    for table in (model.user_embedding, model.item_embedding):
        table.assign(table * 5.0)  # start far outside the unit ball
    keys_before = model.memory.keys.numpy().copy() if cls is HLRM else None
    model.compile(optimizer=tf.keras.optimizers.legacy.Adam(0.05), steps_per_execution=3)
    ui = UserItems.from_lists({2: [2, 3, 4, 5], 3: [5, 6], 4: [7, 8, 9]}, NUM_USERS, NUM_ITEMS)
    model.fit(triplet_dataset(ui, 2, seed=0, max_history=cls.history_size(model.params)), epochs=2, verbose=0)
    for table in (model.user_embedding, model.item_embedding):
        assert np.linalg.norm(table.numpy(), axis=1).max() <= 1.0 + 1e-5
    if cls is HLRM:
        assert not np.allclose(model.memory.keys.numpy(), keys_before)  # the memory trains too
        if params.get("clip_ram"):
            for table in (model.memory.keys, model.memory.memories):
                assert np.linalg.norm(table.numpy(), axis=1).max() <= 1.0 + 1e-5
    free = make(cls, emb_size=4, clip=0.0, **params)
    free.item_embedding.assign(free.item_embedding * 5.0)
    free.compile(optimizer=tf.keras.optimizers.legacy.Adam(0.05))
    free.fit(triplet_dataset(ui, 2, seed=0, max_history=cls.history_size(free.params)), epochs=1, verbose=0)
    assert np.linalg.norm(free.item_embedding.numpy(), axis=1).max() > 1.5  # clip=0: no clipping


# ---------------------------------------------------------------------------- triplets
def test_triplets_avoid_positives_and_histories_exclude_the_positive():
    positives = {2: list(range(2, 38)), 3: [4, 5], 4: [6]}  # user 2 owns 36 of 38 real items
    ui = UserItems.from_lists(positives, 5, 40)
    ds = triplet_dataset(ui, 7, seed=3, max_history=4)
    orders = []
    for _ in range(3):
        seen = []
        for b in ds.as_numpy_iterator():
            for u, p, n, h, k in zip(b["user_id"], b["positive_item"], b["negative_item"], b["item_ids"], b["length"]):
                assert n not in positives[u] and 2 <= n < 40
                hist = h[:k].tolist()
                assert k == min(4, len(positives[u]) - 1) and p not in hist and set(hist) <= set(positives[u])
                assert len(set(hist)) == len(hist) and (h[k:] == 0).all()
                seen.append((int(u), int(p)))
        assert sorted(seen) == sorted((u, i) for u, items in positives.items() for i in items)
        orders.append(seen)
    assert orders[0] != orders[1]


# ---------------------------------------------------------------------------- learning
def cluster_data(seed=0, num_users=122, per_cluster=12, clusters=4, train_n=6, test_n=3):
    """Users of cluster c like items of block c; training and held-out items are both from the block."""
    rng = np.random.default_rng(seed)
    num_items = 2 + per_cluster * clusters
    train, tests = {}, {}
    for u in range(2, num_users):
        block = 2 + (u % clusters) * per_cluster + np.arange(per_cluster)
        chosen = rng.choice(block, train_n + test_n, replace=False)
        noise = rng.choice(np.setdiff1d(np.arange(2, num_items), block), 1)
        train[u], tests[u] = list(chosen[:train_n]) + list(noise), list(chosen[train_n:])
    return UserItems.from_lists(train, num_users, num_items), train, tests, num_items


def test_learns_user_tastes_better_than_popularity():
    tf.keras.utils.set_random_seed(0)
    ui, train, tests, num_items = cluster_data()
    users = sorted(train)
    width = max(map(len, train.values()))
    feats = dict(history_batch([train[u] for u in users], users, width=width),
                 target_item=tf.zeros(len(users), tf.int64), target_items=tf.constant([tests[u] for u in users], tf.int64))
    counts = np.bincount(ui.items, minlength=num_items).astype(np.float32)
    pop = evaluator.evaluate(lambda f: tf.tile(counts[None], [tf.shape(f["user_id"])[0], 1]), [feats], ks=[5],
                             mask_history=True, progress=False)
    results = {}
    for cls, params, lr in ((CML, {}, 0.05), (HLRM, {"max_num_prefs": 8, "num_relations": 4}, 0.05)):
        model = make(cls, num_items=num_items, num_users=122, emb_size=16, loss_margin=0.5, **params)
        model.compile(optimizer=tf.keras.optimizers.legacy.Adam(lr), steps_per_execution=8)
        model.fit(triplet_dataset(ui, 64, seed=0, max_history=cls.history_size(model.params)), epochs=8, verbose=0)
        results[cls.__name__] = evaluator.evaluate(model.score_items, [feats], ks=[5], mask_history=True, progress=False)
    for name, m in results.items():
        assert m["recall@5"] > pop["recall@5"] + 0.3, (name, m["recall@5"], pop["recall@5"])
        assert m["ndcg@5"] > pop["ndcg@5"] + 0.3, (name, m["ndcg@5"], pop["ndcg@5"])
