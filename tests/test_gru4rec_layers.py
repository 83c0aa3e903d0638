"""Building blocks of GRU4Rec checked against hand / numpy computations of the official formulas."""
import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.data.examples.session_parallel import Sessions, assign_slots, build_schedule
from tfpps.layers.cho_gru import ChoGRUCell, GateStackedUniform
from tfpps.layers.reset_after_gru import ResetAfterGRUCell
from tfpps.layers.samplers import PopularitySampler
from tfpps.tasks import losses
from tfpps.optimizers.adagrad_momentum import AdagradM


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------- Cho GRU
def _cell(d=2, h=3, seed=0):
    rng = np.random.default_rng(seed)
    cell = ChoGRUCell(h)
    cell.build(tf.TensorShape([None, d]))
    w = [rng.normal(scale=0.5, size=v.shape).astype(np.float32) for v in cell.weights]
    cell.set_weights(w)
    return cell, w


def np_cho_step(x, hprev, wx, wrz, wh, b):
    h = hprev.shape[-1]
    vx = x @ wx + b
    vrz = hprev @ wrz
    r = sigmoid(vx[:, h : 2 * h] + vrz[:, :h])
    z = sigmoid(vx[:, 2 * h :] + vrz[:, h:])
    cand = np.tanh((r * hprev) @ wh + vx[:, :h])  # reset BEFORE the recurrent matmul
    return (1 - z) * hprev + z * cand


def test_cho_gru_step_matches_numpy():
    cell, (wx, wrz, wh, b) = _cell()
    x = np.array([[1.0, -2.0], [0.5, 0.25]], np.float32)
    h0 = np.array([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]], np.float32)
    got = cell(tf.constant(x), tf.constant(h0)).numpy()
    np.testing.assert_allclose(got, np_cho_step(x, h0, wx, wrz, wh, b), rtol=1e-5, atol=1e-6)


def test_cho_gru_differs_from_reset_after_variant():
    cell, (wx, wrz, wh, b) = _cell()
    x = np.array([[1.0, -2.0]], np.float32)
    h0 = np.array([[0.9, -0.7, 0.3]], np.float32)
    hh = 3
    vx = x @ wx + b
    vrz = h0 @ wrz
    r = sigmoid(vx[:, hh : 2 * hh] + vrz[:, :hh])
    z = sigmoid(vx[:, 2 * hh :] + vrz[:, hh:])
    after = (1 - z) * h0 + z * np.tanh(r * (h0 @ wh) + vx[:, :hh])  # Keras/PyTorch default (reset_after)
    got = cell(tf.constant(x), tf.constant(h0)).numpy()
    assert np.abs(got - after).max() > 1e-3


def test_cho_gru_sequence_masked_steps_carry_state():
    cell, w = _cell(seed=1)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 2)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    outs, last = cell.run_sequence(tf.constant(x), mask=tf.constant(mask))
    h = np.zeros((2, 3), np.float32)
    expected = []
    for t in range(4):
        new = np_cho_step(x[:, t], h, *w)
        h = np.where(mask[:, t : t + 1], new, h)
        expected.append(h)
    np.testing.assert_allclose(outs.numpy(), np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last.numpy(), expected[-1], rtol=1e-5, atol=1e-6)
    # row 0 stopped after 2 steps: its last state equals the state after its 2nd real step
    np.testing.assert_allclose(last.numpy()[0], expected[1][0], rtol=1e-6)
    # an all-padded sequence keeps the zero state
    _, last0 = cell.run_sequence(tf.constant(x), mask=tf.zeros([2, 4], tf.bool))
    assert np.all(last0.numpy() == 0)


def test_cho_gru_sparse_input_is_a_row_lookup():
    cell = ChoGRUCell(3, sparse_input_dim=7)
    cell.build(None)
    ids = tf.constant([4, 2])
    onehot = tf.one_hot(ids, 7)
    h0 = tf.ones([2, 3]) * 0.1
    dense = cell.recurrent_step(tf.matmul(onehot, cell.Wx) + cell.b, h0)
    np.testing.assert_allclose(cell(ids, h0).numpy(), dense.numpy(), rtol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(cell(ids, h0))
    assert isinstance(tape.gradient(loss, cell.Wx), tf.IndexedSlices)


def test_gate_stacked_init_scale():
    tf.keras.utils.set_random_seed(0)
    w = GateStackedUniform(3)([200, 3 * 100]).numpy()
    limit = np.sqrt(6.0 / (200 + 100))  # per-gate Glorot: fan_out is H, not 3H
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.98 * limit
    assert abs(w.std() - limit / np.sqrt(3)) < 0.01 * limit
    cell = ChoGRUCell(8)
    cell.build(tf.TensorShape([None, 5]))
    assert np.all(cell.b.numpy() == 0)
    assert np.abs(cell.Wrz.numpy()).max() <= np.sqrt(6.0 / 16)


# ----------------------------------------------------------------------------- reset-after (PyTorch nn.GRUCell) GRU
def np_torch_gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """torch.nn.GRUCell's documented equations, in PyTorch's layout: weight_ih [3H, D] = (W_ir|W_iz|W_in)."""
    gi = x @ weight_ih.T + bias_ih
    gh = h @ weight_hh.T + bias_hh
    i_r, i_z, i_n = np.split(gi, 3, axis=1)
    h_r, h_z, h_n = np.split(gh, 3, axis=1)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _torch_weights(d, h, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.6, size=shape).astype(np.float32) for shape in ((3 * h, d), (3 * h, h), (3 * h,), (3 * h,))]


def test_reset_after_gru_matches_pytorch_grucell_equations():
    d, h = 4, 5
    w_ih, w_hh, b_ih, b_hh = _torch_weights(d, h, seed=0)
    cell = ResetAfterGRUCell(h)
    cell.build(tf.TensorShape([None, d]))
    assert [v.name.split("/")[-1] for v in cell.weights] == ["W_ih:0", "W_hh:0", "b_ih:0", "b_hh:0"]
    cell.set_weights([w_ih.T, w_hh.T, b_ih, b_hh])  # tfpps layout = PyTorch's transposed
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, d)).astype(np.float32)
    h0 = rng.normal(scale=0.8, size=(6, h)).astype(np.float32)
    np.testing.assert_allclose(cell(tf.constant(x), tf.constant(h0)).numpy(), np_torch_gru_cell(x, h0, w_ih, w_hh, b_ih, b_hh),
                               rtol=1e-5, atol=1e-5)
    # a masked sequence: the numpy cell step by step, padding carries the state
    xs = rng.normal(size=(3, 4, d)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    outs, last = cell.run_sequence(tf.constant(xs), mask=tf.constant(mask))
    state, expected = np.zeros((3, h), np.float32), []
    for t in range(4):
        state = np.where(mask[:, t : t + 1], np_torch_gru_cell(xs[:, t], state, w_ih, w_hh, b_ih, b_hh), state)
        expected.append(state)
    np.testing.assert_allclose(outs.numpy(), np.stack(expected, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last.numpy(), expected[-1], rtol=1e-5, atol=1e-5)
    # resetting before the recurrent matmul (the Cho cell) would give another candidate
    r = sigmoid(x @ w_ih[:h].T + b_ih[:h] + h0 @ w_hh[:h].T + b_hh[:h])
    n_before = np.tanh(x @ w_ih[2 * h :].T + b_ih[2 * h :] + (r * h0) @ w_hh[2 * h :].T + b_hh[2 * h :])
    n_after = np.tanh(x @ w_ih[2 * h :].T + b_ih[2 * h :] + r * (h0 @ w_hh[2 * h :].T + b_hh[2 * h :]))
    assert np.abs(n_before - n_after).max() > 1e-3


def test_reset_after_gru_sparse_input_without_recurrent_bias():
    """One-hot input (GRU4Rec's GRUEmbedding): a row lookup of W_ih, and no b_hh."""
    n_items, h = 7, 3
    w_ih, w_hh, b_ih, _ = _torch_weights(n_items, h, seed=2)
    cell = ResetAfterGRUCell(h, sparse_input_dim=n_items, recurrent_bias=False)
    cell.build(None)
    assert cell.b_hh is None and len(cell.weights) == 3
    cell.set_weights([w_ih.T, w_hh.T, b_ih])
    ids = np.array([4, 2, 6])
    h0 = np.full((3, h), 0.3, np.float32)
    expected = np_torch_gru_cell(np.eye(n_items, dtype=np.float32)[ids], h0, w_ih, w_hh, b_ih, np.zeros(3 * h, np.float32))
    np.testing.assert_allclose(cell(tf.constant(ids), tf.constant(h0)).numpy(), expected, rtol=1e-5, atol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(cell(tf.constant(ids), tf.constant(h0)))
    assert isinstance(tape.gradient(loss, cell.W_ih), tf.IndexedSlices)


def test_reset_after_gru_official_init():
    """Official PyTorch GRU4Rec (compatibility mode, its default): each gate block U(+-sqrt(6/(fan_in + H))), biases 0."""
    cell = ResetAfterGRUCell(100, seed=5)
    cell.build(tf.TensorShape([None, 60]))
    for w, fan_in in ((cell.W_ih.numpy(), 60), (cell.W_hh.numpy(), 100)):
        limit = np.sqrt(6.0 / (fan_in + 100))
        for block in np.split(w, 3, axis=1):
            assert np.abs(block).max() <= limit and np.abs(block).max() > 0.97 * limit
            assert abs(block.std() - limit / np.sqrt(3)) < 0.03 * limit
    assert np.all(cell.b_ih.numpy() == 0) and np.all(cell.b_hh.numpy() == 0)
    again = ResetAfterGRUCell(100, seed=5)
    again.build(tf.TensorShape([None, 60]))
    np.testing.assert_array_equal(again.W_hh.numpy(), cell.W_hh.numpy())  # seeded


# ----------------------------------------------------------------------------- sampler
def test_sampler_distribution_follows_support_power_alpha():
    counts = np.array([0, 0, 1, 2, 0, 4, 8, 16, 32], np.int64)
    eligible = counts > 0
    for alpha in (0.0, 0.5, 1.0):
        sampler = PopularitySampler(counts, alpha=alpha, n_sample=4096, seed=7)
        draws = np.concatenate([sampler(step).ids.numpy() for step in range(25)])
        assert draws.min() >= 2, "PAD/OOV drawn"
        assert not np.isin(draws, np.flatnonzero(~eligible)).any(), "zero-support item drawn"
        freq = np.bincount(draws, minlength=len(counts)).astype(float)
        expected = np.where(eligible, counts.astype(float) ** alpha, 0.0)
        expected = expected / expected.sum() * len(draws)
        chi2 = ((freq[eligible] - expected[eligible]) ** 2 / expected[eligible]).sum()
        assert chi2 < 30, (alpha, chi2)  # 6 dof: p(chi2 > 30) ~ 4e-5
        np.testing.assert_allclose(sampler.probabilities.numpy(), expected / len(draws), rtol=1e-5)


def test_sampler_is_reproducible_per_seed_and_step():
    counts = np.arange(50)
    a = PopularitySampler(counts, 0.75, 64, seed=1)
    b = PopularitySampler(counts, 0.75, 64, seed=1)
    c = PopularitySampler(counts, 0.75, 64, seed=2)
    np.testing.assert_array_equal(a(5).ids.numpy(), b(5).ids.numpy())
    assert not np.array_equal(a(5).ids.numpy(), a(6).ids.numpy())
    assert not np.array_equal(a(5).ids.numpy(), c(5).ids.numpy())
    s = a(3)
    np.testing.assert_allclose(s.log_weight.numpy(), 0.75 * np.log(s.ids.numpy()), rtol=1e-5)
    np.testing.assert_allclose(s.probability.numpy(), a.probabilities.numpy()[s.ids.numpy()])


# ----------------------------------------------------------------------------- losses
# M = 3 slots, 2 shared samples: scores [3, 5]; diagonal of the first 3 columns = targets
S = np.array(
    [
        [2.0, 0.5, -1.0, 0.3, 1.0],
        [0.2, 1.5, 0.7, -0.4, 0.0],
        [-0.3, 0.8, 0.1, 1.2, -2.0],
    ],
    np.float32,
)
LOGQ = np.array([1.0, 2.0, 0.5, 0.25, 1.5], np.float32)


def np_xe(s, logq=0.0, log_q=None, rows=None, cols=None, bs=None):
    s = s.astype(np.float64)
    m, n = s.shape
    if log_q is not None:
        s = s - logq * log_q[None, :]
    tot = 0.0
    for i in range(m):
        if rows is not None and not rows[i]:
            continue
        keep = [j for j in range(n) if j == i or cols is None or cols[j]]
        tot += -(s[i, i] - np.log(np.exp(s[i, keep]).sum()))
    return tot / (bs or m)


def np_bpr_max(s, bpreg, rows=None, cols=None, bs=None):
    s = s.astype(np.float64)
    m, n = s.shape
    tot = 0.0
    for i in range(m):
        if rows is not None and not rows[i]:
            continue
        neg = [j for j in range(n) if j != i and (cols is None or cols[j])]
        w = np.exp(s[i, neg]) / np.exp(s[i, neg]).sum()
        tot += -np.log((w * sigmoid(s[i, i] - s[i, neg])).sum() + 1e-24) + bpreg * (w * s[i, neg] ** 2).sum()
    return tot / (bs or m)


def np_top1_max(s, rows=None, cols=None, bs=None):
    s = s.astype(np.float64)
    m, n = s.shape
    tot = 0.0
    for i in range(m):
        if rows is not None and not rows[i]:
            continue
        neg = [j for j in range(n) if j != i and (cols is None or cols[j])]
        w = np.exp(s[i, neg]) / np.exp(s[i, neg]).sum()
        tot += (w * (sigmoid(s[i, neg] - s[i, i]) + sigmoid(s[i, neg] ** 2))).sum()
    return tot / (bs or m)


def test_cross_entropy_hand_value():
    # row 0 by hand: -log(e^2 / (e^2 + e^.5 + e^-1 + e^.3 + e^1))
    row0 = -np.log(np.exp(2) / (np.exp(2) + np.exp(0.5) + np.exp(-1) + np.exp(0.3) + np.exp(1)))
    got = losses.cross_entropy(tf.constant(S)).numpy()
    np.testing.assert_allclose(got, np_xe(S), rtol=1e-5)
    single = losses.cross_entropy(tf.constant(S), row_mask=[True, False, False], batch_size=1).numpy()
    np.testing.assert_allclose(single, row0, rtol=1e-5)


def test_cross_entropy_logq_masks_and_nominal_batch_size():
    rows = np.array([True, False, True])
    cols = np.array([True, False, True, True, True])  # slot 1 invalid: its target column is no negative
    got = losses.cross_entropy(tf.constant(S), rows, cols, tf.constant(LOGQ), logq=0.7, batch_size=4).numpy()
    np.testing.assert_allclose(got, np_xe(S, 0.7, LOGQ, rows, cols, bs=4), rtol=1e-5)
    # the masked version equals the official shrunk batch (slot 1 removed), still divided by the nominal size
    keep_r, keep_c = [0, 2], [0, 2, 3, 4]
    shrunk = losses.cross_entropy(tf.constant(S[np.ix_(keep_r, keep_c)]), log_q=LOGQ[keep_c], logq=0.7, batch_size=4)
    np.testing.assert_allclose(got, shrunk.numpy(), rtol=1e-5)


def test_retrieval_cross_entropy_equals_score_matrix_form():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 4)).astype(np.float32)
    c = rng.normal(size=(5, 4)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    scores = q @ c.T + bias
    rows = np.array([True, True, False])
    cols = np.array([True, True, False, True, True])
    task = losses.SampledSoftmaxRetrieval()
    got = task(tf.constant(q), tf.constant(c), tf.constant(bias), rows, cols, tf.constant(LOGQ), 1.0, 32).numpy()
    np.testing.assert_allclose(got, np_xe(scores, 1.0, LOGQ, rows, cols, bs=32), rtol=1e-5)
    ref = losses.cross_entropy(tf.constant(scores), rows, cols, tf.constant(LOGQ), 1.0, 32).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_bpr_max_and_top1_max_match_numpy():
    for bpreg in (0.0, 1.0):
        np.testing.assert_allclose(losses.bpr_max(tf.constant(S), bpreg).numpy(), np_bpr_max(S, bpreg), rtol=1e-5)
    np.testing.assert_allclose(losses.top1_max(tf.constant(S)).numpy(), np_top1_max(S), rtol=1e-5)
    rows = np.array([True, True, False])
    cols = np.array([True, True, False, True, True])
    np.testing.assert_allclose(
        losses.bpr_max(tf.constant(S), 0.5, rows, cols, batch_size=8).numpy(), np_bpr_max(S, 0.5, rows, cols, 8), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.top1_max(tf.constant(S), rows, cols, batch_size=8).numpy(), np_top1_max(S, rows, cols, 8), rtol=1e-5
    )


def test_bpr_max_hand_value_two_columns():
    # one row, target 1.0, one negative 0.0: softmax over negatives is [1]
    s = tf.constant([[1.0, 0.0]])
    expected = -np.log(sigmoid(1.0)) + 2.0 * 0.0
    np.testing.assert_allclose(losses.bpr_max(s, 2.0).numpy(), expected, rtol=1e-6)
    s = tf.constant([[1.0, 0.5]])
    np.testing.assert_allclose(losses.bpr_max(s, 2.0).numpy(), -np.log(sigmoid(0.5)) + 2.0 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(losses.top1_max(s).numpy(), sigmoid(-0.5) + sigmoid(0.25), rtol=1e-6)


def test_final_activation_elu():
    x = tf.constant([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(
        losses.final_activation(x, "elu", 0.5).numpy(), [0.5 * (np.exp(-2) - 1), 0.0, 3.0], rtol=1e-6
    )
    assert np.all(losses.final_activation(x, "elu", 0.0).numpy() == x.numpy())


# ----------------------------------------------------------------------------- AdagradM
def np_adagradm(w, grads, lr, mom, eps=1e-6):
    acc = np.zeros_like(w)
    vel = np.zeros_like(w)
    for g in grads:
        acc = acc + g * g
        u = g / np.sqrt(acc + eps)
        if mom > 0:
            vel = mom * vel - lr * u
            w = w + vel
        else:
            w = w - lr * u
    return w


@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_adagradm_dense_two_steps(momentum):
    w0 = np.array([[0.5, -1.0], [2.0, 0.1]], np.float32)
    g1 = np.array([[0.1, -0.2], [0.3, 0.0]], np.float32)
    g2 = np.array([[-0.4, 0.5], [0.05, 1.0]], np.float32)
    var = tf.Variable(w0)
    opt = AdagradM(learning_rate=0.1, momentum=momentum)
    for g in (g1, g2):
        opt.apply_gradients([(tf.constant(g), var)])
    np.testing.assert_allclose(var.numpy(), np_adagradm(w0, [g1, g2], 0.1, momentum), rtol=1e-5)


def test_adagradm_momentum_zero_is_plain_adagrad():
    w0 = np.array([1.0, -1.0], np.float32)
    g = np.array([0.5, 0.25], np.float32)
    var = tf.Variable(w0)
    AdagradM(learning_rate=0.2, momentum=0.0, epsilon=1e-3).apply_gradients([(tf.constant(g), var)])
    np.testing.assert_allclose(var.numpy(), w0 - 0.2 * g / np.sqrt(g * g + 1e-3), rtol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.4])
def test_adagradm_sparse_rows_only_and_duplicates_summed(momentum):
    w0 = np.arange(12, dtype=np.float32).reshape(6, 2) / 10
    var = tf.Variable(w0)
    opt = AdagradM(learning_rate=0.05, momentum=momentum)
    idx1 = [1, 3, 1]  # row 1 twice: gradients summed (official PyTorch coalesce)
    val1 = np.array([[0.1, 0.2], [0.3, -0.1], [0.5, 0.4]], np.float32)
    idx2 = [3, 4]
    val2 = np.array([[-0.2, 0.2], [1.0, 1.0]], np.float32)
    for idx, val in ((idx1, val1), (idx2, val2)):
        grad = tf.IndexedSlices(tf.constant(val), tf.constant(idx, tf.int64), tf.constant([6, 2], tf.int64))
        opt.apply_gradients([(grad, var)])
    dense = []
    for idx, val in ((idx1, val1), (idx2, val2)):
        g = np.zeros_like(w0)
        np.add.at(g, idx, val)
        dense.append(g)
    # numpy reference applied per row only when the row is touched (sparse semantics)
    w = w0.copy()
    acc = np.zeros_like(w0)
    vel = np.zeros_like(w0)
    for g, idx in zip(dense, (idx1, idx2)):
        rows = sorted(set(idx))
        acc[rows] += g[rows] ** 2
        u = g[rows] / np.sqrt(acc[rows] + 1e-6)
        if momentum:
            vel[rows] = momentum * vel[rows] - 0.05 * u
            w[rows] += vel[rows]
        else:
            w[rows] -= 0.05 * u
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5)
    untouched = [0, 2, 5]
    np.testing.assert_array_equal(var.numpy()[untouched], w0[untouched])
    if momentum:
        # row 1 was not in step 2: it did not move again although it has momentum
        np.testing.assert_allclose(var.numpy()[1], np_adagradm(w0[1], [dense[0][1]], 0.05, momentum), rtol=1e-5)


# ----------------------------------------------------------------------------- session-parallel schedule
def test_schedule_four_sessions_two_slots():
    # records out of time order + one length-1 session that must be skipped
    seqs = [[30, 31, 32, 33], [10, 11, 12], [99], [40, 41], [20, 21]]
    times = [3, 1, 0, 4, 2]
    # time order: A=[10,11,12] (t1), B=[20,21] (t2), C=[30..33] (t3), D=[40,41] (t4)
    sched = build_schedule(seqs, batch_size=2, first_times=times)
    np.testing.assert_array_equal(sched.input_items, [[10, 20], [11, 30], [40, 31], [0, 32]])
    np.testing.assert_array_equal(sched.target_items, [[11, 21], [12, 31], [41, 32], [0, 33]])
    np.testing.assert_array_equal(sched.reset, [[1, 1], [0, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(sched.valid, [[1, 1], [1, 1], [1, 1], [0, 1]])
    assert sched.num_events == 7
    # n_sample == 0: the official iterator stops once fewer than 2 slots are left
    short = build_schedule(seqs, batch_size=2, first_times=times, min_valid=2)
    assert short.num_steps == 3
    np.testing.assert_array_equal(short.input_items, [[10, 20], [11, 30], [40, 31]])
    elems = list(sched.dataset().as_numpy_iterator())
    assert len(elems) == 4 and sorted(elems[0]) == ["input_items", "reset", "target_items", "valid"]
    np.testing.assert_array_equal(elems[1]["input_items"], [11, 30])


def _official_iterator(seqs, batch_size):
    """A direct transcription of the official loop structure (rounds, shrinking batch), for comparison."""
    lengths = np.array([len(s) for s in seqs])
    offs = np.concatenate([[0], np.cumsum(lengths)])
    items = np.concatenate(seqs)
    iters = np.arange(batch_size)
    maxiter = iters.max()
    start = offs[iters]
    end = offs[iters + 1]
    steps = []
    while True:
        minlen = (end - start).min()
        out_idx = items[start]
        for i in range(minlen - 1):
            in_idx = out_idx
            out_idx = items[start + i + 1]
            steps.append(sorted(zip(in_idx.tolist(), out_idx.tolist())))
        start = start + minlen - 1
        finished = end - start <= 1
        n_fin = finished.sum()
        iters[finished] = maxiter + np.arange(1, n_fin + 1)
        maxiter += n_fin
        valid = iters < len(offs) - 1
        if valid.sum() == 0:
            break
        mask = finished & valid
        start[mask] = offs[iters[mask]]
        end[mask] = offs[iters[mask] + 1]
        iters, start, end = iters[valid], start[valid], end[valid]
    return steps


def test_schedule_matches_official_iterator_on_random_sessions():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(2, 1000, size=rng.integers(2, 9)) for _ in range(300)]
    sched = build_schedule(seqs, batch_size=7, first_times=np.arange(len(seqs)))
    ours = [
        sorted(zip(i[v].tolist(), t[v].tolist()))
        for i, t, v in zip(sched.input_items, sched.target_items, sched.valid)
    ]
    assert ours == _official_iterator(seqs, 7)
    assert sched.num_events == sum(len(s) - 1 for s in seqs)


def test_assign_slots_refills_in_slot_order():
    slot, start = assign_slots(np.array([2, 1, 1, 3, 1]), batch_size=2)
    np.testing.assert_array_equal(slot, [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(start, [0, 0, 1, 2, 2])


def test_sessions_from_lists_offsets():
    s = Sessions.from_lists([[2, 3], [4, 5, 6]], [5, 1])
    np.testing.assert_array_equal(s.offsets, [0, 2, 5])
    np.testing.assert_array_equal(s.lengths, [2, 3])


@pytest.mark.parametrize("cell_cls, activation", [(ChoGRUCell, "tanh"), (ChoGRUCell, "relu"),
                                                  (ResetAfterGRUCell, "tanh"), (ResetAfterGRUCell, "relu")])
def test_numpy_step_equals_recurrent_step(cell_cls, activation):
    """The NumPy step of the streamed evaluation computes the cell's own step (to float rounding)."""
    cell = cell_cls(6, seed=3, activation=activation)
    cell.build(tf.TensorShape([None, 4]))
    for w in cell.trainable_weights:  # non-zero biases, so that every term of the step counts
        w.assign(tf.random.stateless_normal(w.shape, seed=[len(w.name), 1]))
    vx = tf.random.stateless_normal([5, 18], seed=[1, 2])
    h = tf.random.stateless_normal([5, 6], seed=[3, 4])
    want = cell.recurrent_step(vx, h).numpy()
    got = cell.numpy_step()(vx.numpy(), h.numpy())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want - h.numpy()).max() > 0.1  # the step moves the state: the comparison is not vacuous
