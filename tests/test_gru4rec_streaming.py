"""GRU4Rec's streamed evaluation (each record run once, state carried) gives the prefix-by-prefix evaluation's
examples, ranks and metrics; a reset_after run trains, evaluates and exports through the real trainer."""
import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from test_gru4rec import FakeData, make_run
from tfpps.evaluation import evaluator
from tfpps.evaluation.evaluator import rank_batch
from tfpps.models.sequential.gru4rec import STATE_FEATURE, GRU4Rec, GRU4RecConfig, StreamedEvalBatches
from tfpps.runs.validation import eval_batches, evaluate_split


class EvalData(FakeData):
    """Evaluation records: whole sessions (no target: every next item is an example) mixed with records
    that have a target (one example), as the Beam job writes them for session and leave-one-out splits."""

    kind = "sequential"
    multi_target = False

    def __init__(self, seqs, num_items, targets):
        super().__init__(seqs, num_items)
        self.targets = np.asarray(targets, np.int64)

    def records(self, split, **kwargs):
        targets = tf.constant(self.targets)
        return super().records(split).enumerate().map(lambda i, r: {**r, "target_item": targets[i]})


def eval_fixture(seed=0, n=160, num_items=40):
    rng = np.random.default_rng(seed)
    seqs, targets = [], []
    for k in range(n):
        length = int(rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 34]))  # empty, single-item and longer than max_len
        seqs.append(rng.integers(2, num_items, size=length).tolist())
        targets.append(int(rng.integers(2, num_items)) if k % 3 == 0 else 0)
    seqs[1], targets[1] = [], 7  # a target after an empty history: the zero state
    return EvalData(seqs, num_items, targets)


def per_example(model, batches, ties, mask_history):
    ranks, targets = [], []
    for features in batches:
        ranks.append(rank_batch(model.score_items(features), features, ties, mask_history).numpy())
        targets.append(np.asarray(features["target_item"]))
    return np.concatenate(ranks), np.concatenate(targets)


@pytest.mark.parametrize(
    "params, mask_history, ties",
    [
        (dict(layers=[16, 8]), False, "standard"),
        (dict(layers=[12], gru_cell="reset_after"), True, "conservative"),
        (dict(layers=[8, 8], gru_cell="reset_after", constrained_embedding=False), True, "standard"),  # one-hot input
        (dict(layers=[8], constrained_embedding=False, embedding=6), False, "standard"),
    ],
)
def test_streamed_evaluation_equals_prefix_evaluation(params, mask_history, ties):
    data = eval_fixture()
    params = GRU4RecConfig(n_sample=0, **params)
    run = make_run(params, batch_size=4)
    run.data.max_len = 10  # some histories are cut to their last 10 items
    run.eval.batch_size = 37
    run.eval.mask_history = mask_history
    run.eval.ties = ties
    run.eval.ks = [1, 5, 10]
    model = GRU4Rec(params, data.info(), run)
    model.By.assign(tf.random.stateless_normal(model.By.shape, seed=[3, 4]))

    streamed = model.eval_dataset(data, "test", run)
    assert isinstance(streamed, StreamedEvalBatches)
    first = next(iter(streamed))
    assert STATE_FEATURE in first and "item_ids" not in first and first["target_item"].shape[0] == 37
    assert ("seen_items" in first) == mask_history

    # the same examples in the same order, with the same ranks
    want_ranks, want_targets = per_example(model, eval_batches(data, "test", run), ties, mask_history)
    got_ranks, got_targets = per_example(model, streamed, ties, mask_history)
    np.testing.assert_array_equal(got_targets, want_targets)
    np.testing.assert_array_equal(got_ranks, want_ranks)

    # and the same metrics: the trainer's evaluate_split (streamed) vs the evaluator over the prefix batches
    before = evaluator.evaluate(model.score_items, eval_batches(data, "test", run), ks=run.eval.ks, ties=ties,
                                mask_history=mask_history, num_items=data.num_items, progress=False)
    after = evaluate_split(model, data, "test", run)
    assert after["num_examples"] == before["num_examples"] == len(want_ranks)
    for name in before:
        assert after[name] == pytest.approx(before[name], abs=1e-6), name


def test_streamed_states_equal_zero_state_encodings():
    """Every streamed row holds the state that encoding its (cut) history from zero gives."""
    data = eval_fixture(seed=1, n=40)
    params = GRU4RecConfig(layers=[6, 5], n_sample=0, gru_cell="reset_after")
    run = make_run(params, batch_size=4)
    run.data.max_len = 7
    run.eval.batch_size = 16
    model = GRU4Rec(params, data.info(), run)
    states = np.concatenate([b[STATE_FEATURE].numpy() for b in model.eval_dataset(data, "test", run)])
    encoded = np.concatenate([model.encode(b["item_ids"], b["length"]).numpy() for b in eval_batches(data, "test", run)])
    np.testing.assert_allclose(states, encoded, rtol=1e-5, atol=1e-6)


def test_streamed_batches_without_examples():
    """Record batches with no example (single items, empty histories) or only zero-state examples."""
    seqs = [[5]] * 20 + [[3, 4, 5]] + [[]] * 20 + [[6, 7]] + [[]] * 3
    targets = [0] * 42 + [8, 9, 10]  # the last batch: targets after empty histories only
    data = EvalData(seqs, 12, targets)
    params = GRU4RecConfig(layers=[4], n_sample=0)
    run = make_run(params, batch_size=2)
    run.eval.batch_size = 8
    model = GRU4Rec(params, data.info(), run)
    want = per_example(model, eval_batches(data, "test", run), "standard", False)
    got = per_example(model, model.eval_dataset(data, "test", run), "standard", False)
    np.testing.assert_array_equal(got[1], [4, 5, 7, 8, 9, 10])
    np.testing.assert_array_equal(got[0], want[0])
    assert list(model.eval_dataset(EvalData([[5]] * 3, 12, [0] * 3), "test", run)) == []


def test_no_streaming_for_multi_target_or_other_kinds():
    data = eval_fixture(n=5)
    params = GRU4RecConfig(layers=[4], n_sample=0)
    model = GRU4Rec(params, data.info(), make_run(params, batch_size=2))
    data.multi_target = True
    assert model.eval_dataset(data, "test", make_run(params, batch_size=2)) is None
    data.multi_target, data.kind = False, "basket"
    assert model.eval_dataset(data, "test", make_run(params, batch_size=2)) is None


def test_xla_ranking_of_large_score_matrices_equals_unfused():
    """Large score matrices are ranked by an XLA-compiled twin of rank_batch: same ranks, ties and NaNs included."""
    rng = np.random.default_rng(0)
    b, n = 260, 4100  # > XLA_RANK_MIN_ENTRIES entries
    assert b * n >= evaluator.XLA_RANK_MIN_ENTRIES
    scores = np.round(rng.normal(size=(b, n)), 1).astype(np.float32)  # many ties
    scores[rng.random((b, n)) < 0.001] = np.nan
    scores[:3, :] = 0.0  # all tied
    targets = rng.integers(0, n, size=b)
    targets[5] = 0  # PAD as a target is ranked too (never excluded)
    features = {"target_item": tf.constant(targets)}
    for ties in ("standard", "conservative"):
        fused = evaluator._xla_ranks(ties)(tf.constant(scores), tf.constant(targets, tf.int32)).numpy()
        np.testing.assert_array_equal(fused, rank_batch(tf.constant(scores), features, ties).numpy())
        step = tf.function(lambda s, f, ties=ties: evaluator._ranks(s, f, ties, False))
        np.testing.assert_array_equal(step(tf.constant(scores), features).numpy(), fused)
        small = tf.constant(scores[:4, :50])  # below the threshold: the unfused ops
        np.testing.assert_array_equal(step(small, {"target_item": tf.constant(targets[:4] % 50)}).numpy(),
                                      rank_batch(small, {"target_item": tf.constant(targets[:4] % 50)}, ties).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.function(lambda s, f: evaluator._ranks(s, f, "standard", False))(
            tf.constant(scores), {"target_item": tf.constant(np.full(b, n))})


def test_reset_after_run_trains_evaluates_and_exports(tmp_path):
    """Through the real trainer (loo records with targets: the streamed evaluation), then export: the
    SavedModel, rebuilt from config.yaml with gru_cell=reset_after, scores as the in-process model."""
    from serving_helpers import write_tiny_dataset
    from tfpps.config import build_run_config
    from tfpps.serving.export import export_run
    from tfpps.serving.requests import Request
    from tfpps.serving.runs import InProcessRecommender
    from tfpps.runs.trainer import train

    data_dir = write_tiny_dataset(tmp_path / "data")
    run = build_run_config("gru4rec", overrides={
        "data.dir": str(data_dir), "run_dir": str(tmp_path / "run"), "verbose": "0", "epochs": "1", "max_len": "6",
        "eval.ks": "[5,10]", "train.valid_metric": "ndcg@10", "layers": "[12]", "n_sample": "8", "batch_size": "8",
        "steps_per_execution": "4", "model_params.gru_cell": "reset_after",
    })
    result = train(run, fresh=True)
    assert result["metrics"]["num_examples"] == 40 and 0.0 <= result["metrics"]["ndcg@10"] <= 1.0
    out = tmp_path / "export"
    export_run(tmp_path / "run", out, k=5, index="brute-force", log=lambda msg: None)
    loaded = tf.saved_model.load(str(out))
    requests = [Request("u1", ["m3", "m4"]), Request("u2", []), Request("u3", [f"m{i}" for i in range(2, 12)])]
    got = loaded.signatures["recommend_csv"](user_id=tf.constant([r.user for r in requests]),
                                             history=tf.constant([",".join(r.history) for r in requests]))
    rec = InProcessRecommender(tmp_path / "run")
    assert type(rec.loaded.model.cells[0]).__name__ == "ResetAfterGRUCell"
    want = rec.recommend(requests, 5)
    for b, w in enumerate(want):
        np.testing.assert_allclose(got["scores"].numpy()[b], w.scores, rtol=1e-5, atol=1e-5)
