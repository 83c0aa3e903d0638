"""HRNN / HGRU4Rec: user-parallel schedule, step semantics, losses, bootstrap evaluation, user-state carry-over."""
import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import CONFIG_DIR, ConfigError, RunConfig, TrainConfig, build_run_config
from tfpps.data.examples import user_parallel
from tfpps.models.base import DatasetInfo
from tfpps.models.sequential.hrnn import HRNN, HRNNConfig
from tfpps.tasks import losses
from tfpps.optimizers.adagrad_momentum import AdagradM


RECORD_SPEC = {
    "user_id": tf.TensorSpec([], tf.int64),
    "session_id": tf.TensorSpec([], tf.int64),
    "item_ids": tf.TensorSpec([None], tf.int64),
    "timestamps": tf.TensorSpec([None], tf.int64),
    "session_starts": tf.TensorSpec([None], tf.int64),
    "target_item": tf.TensorSpec([], tf.int64),
}


class FakeSessionData:
    """In-memory stand-in for DatasetDir with last-session-out splits: ``users[u]`` = list of sessions;
    the last session of a user is ``test``, the one before ``valid`` (3+ sessions), the rest ``train``."""

    def __init__(self, users, num_items):
        self.users = users
        self.num_items = num_items
        self.path = None

    def _sessions(self, split):
        for u, sessions in enumerate(self.users):
            n = len(sessions)
            for i, s in enumerate(sessions):
                which = "test" if i == n - 1 else "valid" if (i == n - 2 and n >= 3) else "train"
                if which == split:
                    yield u + 2, i, s

    def records(self, split, **kwargs):
        def gen():
            for user, i, s in self._sessions(split):
                yield {
                    "user_id": np.int64(user),
                    "session_id": np.int64(i),
                    "item_ids": np.asarray(s, np.int64),
                    "timestamps": 1000 * i + np.arange(len(s), dtype=np.int64),
                    "session_starts": np.eye(1, len(s), dtype=np.int64)[0],
                    "target_item": np.int64(0),
                }

        return tf.data.Dataset.from_generator(gen, output_signature=RECORD_SPEC)

    def count(self, split):
        return sum(1 for _ in self._sessions(split))

    def info(self):
        flat = [i for sessions in self.users for s in sessions[:-2] for i in s]
        counts = np.bincount(np.asarray(flat, np.int64), minlength=self.num_items).astype(np.int64)
        counts[:2] = 0
        return DatasetInfo(num_items=self.num_items, num_users=len(self.users) + 2, item_counts=counts)


def make_run(params, batch_size=4, seed=1, **train):
    run = RunConfig(model="hrnn", train=TrainConfig(batch_size=batch_size, seed=seed, **train), model_params=params)
    run.eval.batch_size = 64
    return run


# ----------------------------------------------------------------------------- schedule
def test_user_parallel_schedule_flags_and_refill():
    users = user_parallel.UserSessions.from_nested(
        [[[2, 3, 4], [5, 6]], [[7, 8]], [[9, 10, 11]]], user_ids=[20, 21, 22]
    )
    sched = user_parallel.build_user_schedule(users, batch_size=2)
    # slot 0: user 20 (session [2,3,4] -> 2 steps, then [5,6] -> 1 step); slot 1: user 21 (1 step), then user 22
    assert sched.input_items[:, 0].tolist() == [2, 3, 5]
    assert sched.target_items[:, 0].tolist() == [3, 4, 6]
    assert sched.sstart[:, 0].tolist() == [True, False, True]
    assert sched.ustart[:, 0].tolist() == [True, False, False]
    assert sched.input_items[:, 1].tolist() == [7, 9, 10]
    assert sched.ustart[:, 1].tolist() == [True, True, False]
    assert sched.stream[:, 1].tolist() == [1, 2, 2]
    assert sched.stream_end[:, 1].tolist() == [True, False, True]
    assert sched.num_events == 6 and sched.valid.all()


def test_schedule_stop_rules():
    users = user_parallel.UserSessions.from_nested([[[2, 3, 4, 5, 6]], [[7, 8]], [[9, 10]]])
    full = user_parallel.build_user_schedule(users, batch_size=2)
    assert full.num_events == 4 + 1 + 1
    # reference rule: stop as soon as a slot finds no user left (slot 1 empties at step 2)
    ref = user_parallel.build_user_schedule(users, batch_size=2, drop_tail=True)
    assert ref.num_steps == 2
    # no extra negatives: stop below two valid slots
    assert user_parallel.build_user_schedule(users, batch_size=2, min_valid=2).num_steps == 2


def test_read_sessions_splits_multi_session_records_and_groups_by_user():
    recs = [
        {"user_id": 5, "item_ids": [2, 3, 4, 5], "session_starts": [1, 0, 1, 0], "timestamps": [10, 11, 50, 51], "target_item": 6},
        {"user_id": 3, "item_ids": [7, 8], "session_starts": [1, 0], "timestamps": [5, 6], "target_item": 0},
    ]
    spec = {k: tf.TensorSpec([None] if k in ("item_ids", "session_starts", "timestamps") else [], tf.int64) for k in recs[0]}
    ds = tf.data.Dataset.from_generator(lambda: ({k: np.asarray(v, np.int64) for k, v in r.items()} for r in recs), output_signature=spec)
    flat, extras = user_parallel.read_sessions(ds)
    assert [flat.session(s).tolist() for s in range(flat.num_sessions)] == [[2, 3], [4, 5], [7, 8]]
    assert flat.record.tolist() == [0, 0, 1] and flat.is_last_in_record.tolist() == [False, True, True]
    assert extras["target_item"].tolist() == [6, 0]
    grouped = user_parallel.group_by_user(flat)
    assert grouped.user_ids.tolist() == [3, 5]
    assert [s.tolist() for s in grouped.sessions_of(1)] == [[2, 3], [4, 5]]


# ----------------------------------------------------------------------------- losses
def test_top1_and_bpr_match_the_reference_formulas():
    rng = np.random.default_rng(0)
    r = np.tanh(rng.normal(size=(3, 3)))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    # reference top1: mean(mean(sigmoid(-diag + yhat.T) + sigmoid(yhat.T**2), axis=0) - sigmoid(diag**2)/batch_size)
    d = np.diag(r)
    ref_top1 = np.mean(np.mean(sig(-d[None, :] + r.T) + sig(r.T**2), axis=0) - sig(d**2) / 3)
    ref_bpr = np.mean(-np.log(sig(d[None, :] - r.T)))
    got_top1 = float(losses.top1(tf.constant(r, tf.float32), batch_size=3))
    got_bpr = float(losses.bpr(tf.constant(r, tf.float32), batch_size=3))
    assert got_top1 == pytest.approx(ref_top1, rel=1e-5)
    assert got_bpr == pytest.approx(ref_bpr, rel=1e-5)
    # a masked (finished) slot: its row gives no loss, its column is no negative
    masked = float(losses.top1(tf.constant(r, tf.float32), row_mask=[True, True, False], col_mask=[True, True, False], batch_size=3))
    sub = r[:2, :2]
    ds = np.diag(sub)
    ref_masked = np.sum(np.mean(sig(-ds[None, :] + sub.T) + sig(sub.T**2), axis=0) - sig(ds**2) / 3) / 3
    assert masked == pytest.approx(ref_masked, rel=1e-5)


# ----------------------------------------------------------------------------- step semantics
def _tiny(params=None, batch_size=2, n_items=12):
    params = params or HRNNConfig(session_layers=[6], user_layers=[5], dropout_p_hidden_ses=0.0)
    counts = np.ones(n_items, np.int64)
    counts[:2] = 0
    return HRNN(params, DatasetInfo(num_items=n_items, num_users=5, item_counts=counts), make_run(params, batch_size))


def test_user_state_moves_only_at_session_starts_and_resets_for_new_users():
    m = _tiny()
    h_s = tf.random.normal([2, 6])
    h_u = tf.random.normal([2, 5])
    x = tf.constant([3, 4])
    # inside a session: the user state is carried unchanged
    _, hu1 = m.step(x, [False, False], [False, False], h_s, h_u)
    np.testing.assert_allclose(hu1.numpy(), h_u.numpy())
    # session start: the user GRU consumes the last session state; the session restarts from tanh(W h_u + b)
    hs2, hu2 = m.step(x, [True, False], [False, False], h_s, h_u)
    expected_u = m.usr_cell(h_s, h_u).numpy()[0]
    np.testing.assert_allclose(hu2.numpy()[0], expected_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hu2.numpy()[1], h_u.numpy()[1])
    s0 = m.session_init(hu2[:1])
    expected_s = m.ses_cell.recurrent_step(m._project_items(x[:1]), s0).numpy()[0]
    np.testing.assert_allclose(hs2.numpy()[0], expected_s, rtol=1e-5, atol=1e-6)
    # user start: both states from zero (a user's first session is not personalised)
    hs3, hu3 = m.step(x, [True, True], [True, True], h_s, h_u)
    assert np.all(hu3.numpy() == 0)
    np.testing.assert_allclose(hs3.numpy(), m.ses_cell.recurrent_step(m._project_items(x), tf.zeros([2, 6])).numpy(), rtol=1e-5)


def test_propagation_all_touches_only_the_gates_and_user_to_output_adds_scores():
    p = HRNNConfig(session_layers=[6], user_layers=[5], user_propagation_mode="all", user_to_output=True)
    m = _tiny(p)
    h_u = tf.random.normal([2, 5])
    bias = m._user_gate_bias(h_u).numpy()
    assert np.all(bias[:, :6] == 0) and np.any(bias[:, 6:] != 0)
    h_s = tf.random.normal([2, 6])
    full = m.output_scores(h_s, h_u).numpy()
    no_user = m.output_scores(h_s, tf.zeros_like(h_u)).numpy()
    np.testing.assert_allclose(full - no_user, (h_u @ tf.transpose(m.Wuy)).numpy(), rtol=1e-4, atol=1e-5)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="one positive layer size"):
        HRNNConfig(session_layers=[100, 100]).validate()
    with pytest.raises(ConfigError, match="user_propagation_mode"):
        HRNNConfig(user_propagation_mode="sometimes").validate()
    with pytest.raises(ConfigError, match="cross-entropy uses a softmax"):
        HRNNConfig(loss="cross-entropy", final_act="linear").validate()
    entry = registry.get("hrnn")
    assert entry.config_cls is HRNNConfig
    run = build_run_config("hrnn", config_file=str(CONFIG_DIR / "models" / "hrnn_large.yaml"))
    assert run.model_params.session_layers == [500] and run.train.batch_size == 100
    assert build_run_config("hrnn").train.optimizer == "adagrad_momentum"


# ----------------------------------------------------------------------------- evaluation
def test_bootstrap_states_equal_streaming_the_users_history_by_hand():
    users = [[[2, 3, 4], [5, 6], [7, 8, 9]], [[4, 5], [2, 3, 6]], [[8, 9, 2]]]
    data = FakeSessionData(users, num_items=12)
    m = _tiny(batch_size=2)
    run = make_run(m.params, 2)
    pts = m.evaluation_points(data, "test", run)
    # expected: stream every session in order through m.step with batch 1
    exp_s, exp_u, exp_t = [], [], []
    for sessions in users:
        h_s, h_u = tf.zeros([1, 6]), tf.zeros([1, 5])
        first = True
        for k, s in enumerate(sessions):
            for pos in range(len(s) - 1):
                h_s, h_u = m.step(tf.constant([s[pos]]), [pos == 0], [first and pos == 0], h_s, h_u)
                if k == len(sessions) - 1:
                    exp_s.append(h_s.numpy()[0])
                    exp_u.append(h_u.numpy()[0])
                    exp_t.append(s[pos + 1])
            first = False
    assert pts["target_item"].tolist() == exp_t
    np.testing.assert_allclose(pts["session_state"], np.array(exp_s), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pts["user_state"], np.array(exp_u), rtol=1e-4, atol=1e-5)
    # validation streams only the train split before the valid session
    assert m.evaluation_points(data, "valid", run)["target_item"].tolist() == [6]


# ----------------------------------------------------------------------------- learning
def carry_over_data(n_users=240, seed=0):
    """Only the user GRU can answer: a user's type is shown once (marker item in the first
    session); every later session starts with the shared item 4, followed by the type's item."""
    rng = np.random.default_rng(seed)
    fillers = np.arange(7, 27)
    users = []
    for _ in range(n_users):
        kind = int(rng.integers(2))
        marker, answer = (2, 5) if kind == 0 else (3, 6)
        sessions = [[marker, *rng.choice(fillers, 2)]]
        for _ in range(int(rng.integers(3, 6))):
            sessions.append([4, answer, *rng.choice(fillers, 2)])
        users.append(sessions)
    return users, 27


def test_user_state_carries_the_answer_across_sessions():
    tf.keras.utils.set_random_seed(0)
    users, n_items = carry_over_data()
    data = FakeSessionData(users, n_items)
    params = HRNNConfig(session_layers=[32], user_layers=[32], loss="cross-entropy", dropout_p_hidden_ses=0.0, n_sample=8)
    run = make_run(params, batch_size=16, seed=3)
    model = HRNN(params, data.info(), run)
    model.compile(optimizer=AdagradM(learning_rate=0.1), steps_per_execution=20)
    model.fit(HRNN.make_train_dataset(params, data, run, epoch_seed=0), epochs=25, verbose=0)

    pts = model.evaluation_points(data, "test", run)
    first = np.isin(pts["target_item"], [5, 6])  # the points whose input is the shared item 4
    scores = model.score_items({k: tf.constant(v) for k, v in pts.items()}).numpy()
    top = np.argmax(scores[first][:, [5, 6]], axis=1) + 5
    hrnn_acc = float(np.mean(top == pts["target_item"][first]))
    # the same network without the user's history (its first-session path) cannot tell the types apart
    plain = model.score_items({"item_ids": tf.constant([[4]] * int(first.sum()), tf.int64), "length": tf.ones([int(first.sum())], tf.int64)}).numpy()
    plain_acc = float(np.mean(np.argmax(plain[:, [5, 6]], axis=1) + 5 == pts["target_item"][first]))
    assert hrnn_acc > 0.9, hrnn_acc
    assert plain_acc < 0.7, plain_acc


@pytest.mark.parametrize("loss", ["bpr", "bpr-max", "top1-max", "cross-entropy"])
def test_every_loss_trains_with_finite_decreasing_loss(loss):
    tf.keras.utils.set_random_seed(0)
    users, n_items = carry_over_data(n_users=60, seed=1)
    data = FakeSessionData(users, n_items)
    params = HRNNConfig(session_layers=[16], user_layers=[8], loss=loss, n_sample=4, user_propagation_mode="all", user_to_output=True)
    run = make_run(params, batch_size=8, seed=2)
    model = HRNN(params, data.info(), run)
    model.compile(optimizer=AdagradM(learning_rate=0.1), steps_per_execution=10)
    hist = model.fit(HRNN.make_train_dataset(params, data, run, epoch_seed=0), epochs=4, verbose=0).history["loss_per_event"]
    assert np.all(np.isfinite(hist)) and hist[-1] < hist[0], hist


class FakeLooData(FakeSessionData):
    """Leave-one-out records (the RecBole protocol): ONE record per user holding every session;
    train = all but the last two events, valid/test records = the history plus a target."""

    def _records(self, split):
        for u, sessions in enumerate(self.users):
            flat = [(i, j, item) for i, s in enumerate(sessions) for j, item in enumerate(s)]
            cut = {"train": len(flat) - 2, "valid": len(flat) - 2, "test": len(flat) - 1}[split]
            hist = flat[:cut]
            target = 0 if split == "train" else flat[cut][2]
            yield u + 2, hist, target

    def records(self, split, **kwargs):
        def gen():
            for user, hist, target in self._records(split):
                yield {
                    "user_id": np.int64(user),
                    "session_id": np.int64(0),
                    "item_ids": np.asarray([h[2] for h in hist], np.int64),
                    "timestamps": np.asarray([1000 * h[0] + h[1] for h in hist], np.int64),
                    "session_starts": np.asarray([int(h[1] == 0) for h in hist], np.int64),
                    "target_item": np.int64(target),
                }

        return tf.data.Dataset.from_generator(gen, output_signature=RECORD_SPEC)

    def count(self, split):
        return len(self.users)


def test_leave_one_out_records_are_streamed_once_and_predict_their_target():
    users = [[[2, 3, 4], [5, 6, 7]], [[8, 9], [2, 3]]]
    data = FakeLooData(users, num_items=12)
    m = _tiny(batch_size=2)
    pts = m.evaluation_points(data, "test", make_run(m.params, 2))
    assert pts["target_item"].tolist() == [7, 3]  # one point per record: its target
    # by hand: the whole history once (not again from the train split), then the target step
    for k, sessions in enumerate(users):
        h_s, h_u = tf.zeros([1, 6]), tf.zeros([1, 5])
        for i, s in enumerate(sessions):
            for pos in range(len(s) - 1):
                h_s, h_u = m.step(tf.constant([s[pos]]), [pos == 0], [i == 0 and pos == 0], h_s, h_u)
        np.testing.assert_allclose(pts["session_state"][k], h_s.numpy()[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pts["user_state"][k], h_u.numpy()[0], rtol=1e-4, atol=1e-5)


def test_query_and_item_vectors_reproduce_the_scores():
    for p in (HRNNConfig(session_layers=[6], user_layers=[5]), HRNNConfig(session_layers=[6], user_layers=[5], user_to_output=True)):
        m = _tiny(p)
        feats = {"item_ids": tf.constant([[3, 4, 0], [5, 0, 0]], tf.int64), "length": tf.constant([2, 1], tf.int64)}
        np.testing.assert_allclose(
            (m.query_vectors(feats) @ tf.transpose(m.item_vectors())).numpy(), m.score_items(feats).numpy(), rtol=1e-5, atol=1e-5
        )
        pre = {"session_state": tf.random.normal([2, 6]), "user_state": tf.random.normal([2, 5])}
        np.testing.assert_allclose(
            (m.query_vectors(pre) @ tf.transpose(m.item_vectors())).numpy(), m.score_items(pre).numpy(), rtol=1e-5, atol=1e-5
        )
