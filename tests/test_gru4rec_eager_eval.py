"""GRU4Rec's eager streamed evaluation (tfpps.models.sequential.gru4rec_eager_eval) gives the prefix evaluation's metrics,
ranks as the evaluator ranks (ties, NaN, PAD/OOV), and is what the trainer uses when it applies."""
import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from test_gru4rec import make_run
from test_gru4rec_streaming import EvalData, eval_fixture
from tfpps.evaluation import evaluator
from tfpps.evaluation.metrics import ranks_from_scores_np
from tfpps.models.sequential import gru4rec_eager_eval as eager
from tfpps.models.sequential.gru4rec import GRU4Rec, GRU4RecConfig
from tfpps.runs.validation import eval_batches, evaluate_split


@pytest.mark.parametrize(
    "params, ties",
    [
        (dict(layers=[16, 8]), "standard"),
        (dict(layers=[12], gru_cell="reset_after"), "conservative"),
        (dict(layers=[8, 8], gru_cell="reset_after", constrained_embedding=False), "standard"),  # one-hot input
        (dict(layers=[8], constrained_embedding=False, embedding=6), "conservative"),
    ],
)
def test_eager_evaluation_equals_prefix_evaluation(params, ties):
    data = eval_fixture(seed=2)
    params = GRU4RecConfig(n_sample=0, **params)
    run = make_run(params, batch_size=4)
    run.data.max_len = 10  # histories up to 34 items: cut streams
    run.eval.batch_size = 37
    run.eval.ties = ties
    run.eval.ks = [1, 5, 10]
    model = GRU4Rec(params, data.info(), run)
    model.By.assign(tf.random.stateless_normal(model.By.shape, seed=[5, 6]))
    want = evaluator.evaluate(model.score_items, eval_batches(data, "test", run), ks=run.eval.ks, ties=ties,
                              num_items=data.num_items, progress=False)
    got = eager.evaluate_eagerly(model, data, "test", run, ks=run.eval.ks, ties=ties)
    assert got["num_examples"] == want["num_examples"] > 300
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name
    assert evaluate_split(model, data, "test", run) == got  # the trainer takes this path


def test_streams_reproduce_the_prefix_examples():
    """Hand-counted: [5,6,7,8] without a target at max_len 2 -> ends 1, 2 in one run, ends 3 (history 6,7)
    as a cut run; [9] with target 4 -> one end after 1 item; an empty history with a target -> the zero state."""
    seqs, points, targets = eager.build_streams([np.array([5, 6, 7, 8]), np.array([9]), np.array([], np.int64)],
                                                np.array([0, 4, 3]), max_len=2)
    assert [s.tolist() for s in seqs] == [[5, 6], [6, 7], [9], []]
    assert [p.tolist() for p in points] == [[1, 2], [2], [1], [0]]
    assert [t.tolist() for t in targets] == [[6, 7], [8], [4], [3]]


def srgnn_prefix_fixture(seed=3, sessions=40, num_items=30):
    """Test records as SR-GNN/NARM give them: every prefix of a session is a (history, target) record; some
    histories repeat across sessions, and some are longer than max_len."""
    rng = np.random.default_rng(seed)
    seqs, targets = [], []
    for s in range(sessions):
        session = rng.integers(2, num_items, size=int(rng.choice([2, 3, 4, 6, 15]))).tolist()
        if s % 5 == 0:
            session[0] = 2  # shared first clicks: identical short histories in several sessions
        for k in range(1, len(session)):
            seqs.append(session[:k])
            targets.append(session[k])
    return EvalData(seqs, num_items, targets), sessions


def test_prefix_records_are_streamed_once_per_session():
    """Records whose history extends another record's are scored on one run (a session is run once, not
    once per prefix), with the prefix evaluation's metrics; histories longer than max_len keep their window."""
    data, sessions = srgnn_prefix_fixture()
    params = GRU4RecConfig(n_sample=0, layers=[10])
    run = make_run(params, batch_size=4)
    run.data.max_len = 8
    run.eval.batch_size = 16
    run.eval.ks = [1, 5, 10]
    model = GRU4Rec(params, data.info(), run)
    model.By.assign(tf.random.stateless_normal(model.By.shape, seed=[7, 8]))
    items, targets = eager.read_records(data, "test")
    seqs, points, _ = eager.build_streams(items, targets, run.data.max_len)
    long_records = sum(len(h) > run.data.max_len for h in items)
    assert sum(len(p) for p in points) == len(items) > 3 * sessions  # every record scored exactly once
    assert len(seqs) <= sessions + long_records  # at most one run per session, plus the cut windows
    want = evaluator.evaluate(model.score_items, eval_batches(data, "test", run), ks=run.eval.ks, ties="standard",
                              num_items=data.num_items, progress=False)
    got = eager.evaluate_eagerly(model, data, "test", run, ks=run.eval.ks)
    assert got["num_examples"] == want["num_examples"] == len(items)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-6), name


@pytest.mark.parametrize("ties", ["standard", "conservative"])
def test_rank_rows_ranks_as_the_evaluator(ties):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(64, 3)).astype(np.float32)
    weights = np.round(rng.normal(size=(30, 3)), 0).astype(np.float32)  # integer weights: many tied scores
    weights[:2] = 50.0  # PAD and OOV would win: they are never competitors
    bias = np.zeros(30, np.float32)
    bias[7] = np.nan  # a NaN competitor counts as ahead; item 7 as the target ranks last
    states[:4] = np.round(states[:4])
    targets = rng.integers(2, 30, size=64)
    targets[3] = 7
    scores = states @ weights.T + bias
    want = ranks_from_scores_np(scores, targets, ties, np.arange(30) < 2)
    got = eager.rank_rows(tf.constant(states), targets, tf.constant(weights), tf.constant(bias), ties)
    np.testing.assert_array_equal(got, want)
    scale = eager.weight_scale(weights, bias)
    assert np.isnan(scale[1])  # the NaN bias: no shortcut, the NaN rows are still found
    np.testing.assert_array_equal(eager.rank_rows(states, targets, weights, bias, ties, scale), want)
    finite_bias = np.where(np.isnan(bias), 0.0, bias).astype(np.float32)
    finite_want = ranks_from_scores_np(states @ weights.T + finite_bias, targets, ties, np.arange(30) < 2)
    finite_scale = eager.weight_scale(weights, finite_bias)
    assert eager._scores_finite(states, finite_scale)  # the bound holds: the NaN scan is skipped
    np.testing.assert_array_equal(eager.rank_rows(states, targets, weights, finite_bias, ties, finite_scale), finite_want)
    huge = weights * np.float32(1e37)  # scores overflow to +-inf and inf - inf = NaN: the bound refuses the shortcut
    assert not eager._scores_finite(states, eager.weight_scale(huge, finite_bias))
    huge_scores = states @ huge.T + finite_bias
    np.testing.assert_array_equal(eager.rank_rows(states, targets, huge, finite_bias, ties, eager.weight_scale(huge, finite_bias)),
                                  ranks_from_scores_np(huge_scores, targets, ties, np.arange(30) < 2))
    assert got[3] == 28  # NaN target: behind all 27 competitors (30 items less PAD, OOV and itself)
    pad_target = targets.copy()
    pad_target[0] = 1  # an OOV target takes the general path, as the evaluator ranks it
    np.testing.assert_array_equal(eager.rank_rows(tf.constant(states), pad_target, tf.constant(weights), tf.constant(bias), ties),
                                  ranks_from_scores_np(scores, pad_target, ties, (np.arange(30) < 2)[None, :] & (np.arange(30)[None, :] != pad_target[:, None])))


def test_not_used_where_it_does_not_apply():
    data = eval_fixture(n=6)
    params = GRU4RecConfig(layers=[4], n_sample=0)
    run = make_run(params, batch_size=2)
    model = GRU4Rec(params, data.info(), run)
    run.eval.mask_history = True
    assert model.evaluate_eagerly(data, "test", run) is None
    run.eval.mask_history = False
    data.multi_target = True
    assert model.evaluate_eagerly(data, "test", run) is None
    empty = EvalData([[5]] * 3, 12, [0] * 3)
    with pytest.raises(ValueError, match="no examples"):
        eager.evaluate_eagerly(GRU4Rec(params, empty.info(), run), empty, "test", run)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(eager)
    assert result.attempted >= 3 and result.failed == 0
