"""HRNN (HGRU4Rec): hierarchical recurrent network for session-aware recommendation.

Paper: M. Quadrana, A. Karatzoglou, B. Hidasi, P. Cremonesi. *Personalizing
Session-based Recommendations with Hierarchical Recurrent Neural Networks.*
RecSys 2017 (arXiv:1706.04148). Reference code read: ``mquad/hgru4rec``
(``src/hgru4rec.py``, ``src/evaluation.py``, ``scripts/xing_dense_*.sh``);
nothing is copied.

Model, per step of a user-parallel slot (``x`` input item, ``y`` target,
flags ``sstart``/``ustart``, states ``h_s`` session and ``h_u`` user)::

    u'    = dropout_usr(GRU_u(h_u, input = h_s))          # last state of the previous session
    h_u   = u' if sstart else h_u ;  h_u = 0 if ustart     # user GRU moves only at session starts
    s0    = dropout_init(act(h_u W_init + b_init))         # act = user_to_session_act (tanh)
    h_s   = s0 if sstart else h_s ;  h_s = 0 if ustart     # a user's first session starts from 0
    gates += h_u Wu_to_s[:, r|z]   (user_propagation_mode='all'; the candidate block is unused)
    h_s   = dropout_ses(GRU_s(h_s, x))                     # Cho GRU, one-hot input or item embedding
    r     = h_s W_y[Y]^T + b_y[Y]  (+ h_u W_uy[Y]^T with user_to_output)
    loss  = top1 | bpr | cross-entropy over Y = in-batch targets (+ n_sample popularity^alpha negatives)

Both GRUs are Cho GRUs (:class:`tfpps.layers.cho_gru.ChoGRUCell`, gate blocks
``[h~ | r | z]``) with ``hidden_act`` as candidate activation. Initialisation
is the reference's "adaptive" uniform ``U(±sqrt(6/(fan_in+fan_out)))`` per
gate block, biases 0. Final activation for top1/bpr is tanh (``final_act``
``default``); cross-entropy uses a softmax (``tanh`` puts a tanh before it, the
reference's ``softmaxth``).

Training: :mod:`tfpps.data.examples.user_parallel` builds the user-parallel schedule
(slots walk users' sessions in time order, refilled with the next user);
states live in non-trainable ``[B, H]`` variables and are not back-propagated
across steps, as in the reference. Output and input tables are read with
``tf.gather`` so AdagradM (``adagrad_momentum``, the reference's ``adagrad``
with optional momentum) updates only touched rows.

Evaluation (:meth:`HRNN.eval_dataset`), as the reference's
``evaluate_sessions_batch_hier_bootstrap`` with ``bootstrap_length=-1``:
every evaluation user's sessions from earlier splits (``train`` for
validation; ``train`` and ``valid`` for test) are streamed through the
network first, then the evaluation session; each of its events after the
first is a prediction point (a record with a ``target_item`` gives one
point: its last history item -> the target). The states at the points are
computed once per evaluation with user-parallel streaming and scored against
all items by :meth:`HRNN.score_items`. Called without precomputed states
(e.g. from a serving path), ``score_items`` treats the history as the user's
first session.

Departures from the reference code
----------------------------------
1. **One GRU layer each.** The reference's multi-layer path feeds layer 0's
   output to every upper session layer, resets upper layers only at user
   starts and scores with layer 0; its scripts use one layer. tfpps accepts
   exactly one session and one user layer and says so.
2. **Epoch end.** The reference ends an epoch as soon as one slot finds no
   user left, so the remaining sessions of up to ``B - 1`` users (always the
   same ones: the order is fixed) are never trained on. tfpps continues with
   masked slots (their rows give no loss and their targets are not
   negatives; with ``n_sample = 0`` it stops below two valid slots);
   ``drop_tail: true`` restores the reference rule. The reference also never
   loads its last user (an off-by-one in its user pointer); tfpps does.
3. **User order.** Users are streamed in vocabulary-index order (the
   reference sorts by raw user id); sessions by first-event time.
4. **Sessions shorter than two events** give no training step and are
   skipped (the Beam job's ``--min_session_length`` defaults to 2).
5. **Scores for ranking** are the pre-activation ``r``: the final tanh is
   monotone, so only float ties differ (the reference ranks tanh outputs,
   where saturated scores tie).
6. **Dropout** is stateless, keyed by ``(seed, step)``; same placement.
7. **Losses**: besides the reference's ``top1``, ``bpr`` and ``cross-entropy``,
   GRU4Rec's later ``bpr-max`` (with ``bpreg``) and ``top1-max`` are offered
   (final activation ELU ``elu_param`` by default, as in GRU4Rec); they are
   not in the HGRU4Rec code.
8. **Sampling** of the optional extra negatives is in-graph per step
   (:class:`tfpps.layers.samplers.PopularitySampler`) instead of a pre-drawn
   store; same distribution. ``grad_cap``, ``lmbd`` (L2) and ``sigma``/
   ``init_as_normal`` are not offered (the scripts leave them at 0/off).
9. **Vocabulary rows**: tables have ``num_items`` rows including PAD (0) and
   OOV (1); the evaluator excludes them as candidates.
10. **Several evaluation sessions of one user in the same split** (``time``
   split) each start from the user's earlier-split history; the reference
   streams them one after the other. With ``last_session`` (the paper's
   protocol) there is one per user and the two agree.
11. **tf.distribute** (not in the reference; ``--strategy=mirrored|multiworker``): replica ``r`` of ``R``
   walks the user-parallel schedule of every ``R``-th user in ``batch_size / R`` slots, all schedules
   padded with empty steps to the longest
   (:func:`tfpps.data.examples.hrnn_examples.replica_batches`); the states are per-replica variables. A
   row's in-batch negatives are its own replica's targets; dropout masks are keyed by replica too.

Example::

    python -m tfpps.train --model=hrnn --dataset=ml-100k-sessions
    python -m tfpps.train --model=hrnn --config=configs/models/hrnn_large.yaml
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import tensorflow as tf

from tfpps.config import ConfigError, choice, non_negative, probability
from tfpps.data.examples import hrnn_examples
from tfpps.data.pipeline import finish
from tfpps.layers.cho_gru import ChoGRUCell, GateStackedUniform
from tfpps.layers.samplers import PopularitySampler
from tfpps.models.base import DatasetInfo
from tfpps.models.sequential._slot_parallel import SlotParallelModel, train_section
from tfpps.registry import register
from tfpps.tasks import losses


@dataclasses.dataclass
class HRNNConfig:
    """HGRU4Rec hyperparameters, named as in the reference (defaults: its "HGRU INIT (SMALL)" script)."""

    session_layers: list[int] = dataclasses.field(default_factory=lambda: [100])
    user_layers: list[int] = dataclasses.field(default_factory=lambda: [100])
    loss: str = "top1"  # top1 | bpr | cross-entropy (reference) | bpr-max | top1-max (GRU4Rec 2018)
    final_act: str = "default"  # default: tanh (top1/bpr), elu (bpr-max/top1-max), softmax (XE) | linear | relu | tanh | elu
    elu_param: float = 0.5  # bpr-max/top1-max with elu, as GRU4Rec's elu-0.5
    bpreg: float = 1.0  # bpr-max score regularisation (GRU4Rec)
    hidden_act: str = "tanh"  # tanh | relu
    user_to_session_act: str = "tanh"  # tanh | relu
    user_propagation_mode: str = "init"  # init | all
    user_to_output: bool = False
    dropout_p_hidden_usr: float = 0.0
    dropout_p_hidden_ses: float = 0.1
    dropout_p_init: float = 0.0
    item_embedding: int = 0  # 0 = one-hot input (the reference default)
    n_sample: int = 0  # extra shared negatives (the scripts: 0)
    sample_alpha: float = 0.75
    drop_tail: bool = False  # True: the reference's epoch end (see departure 2)
    eval_slots: int = 1024  # parallel user slots when streaming histories at evaluation

    LOSSES = ("top1", "bpr", "cross-entropy", "bpr-max", "top1-max")
    FINAL_ACTS = ("default", "linear", "relu", "tanh", "elu")
    ACTS = ("tanh", "relu")
    PROPAGATION = ("init", "all")

    def validate(self) -> None:
        for name in ("session_layers", "user_layers"):
            value = getattr(self, name)
            if (
                not isinstance(value, list)
                or len(value) != 1
                or isinstance(value[0], bool)
                or not isinstance(value[0], int)
                or value[0] <= 0
            ):
                raise ConfigError(
                    f"model_params.{name}={value!r}: expected one positive layer size, e.g. [100] "
                    "(multi-layer HGRU4Rec is not supported, see tfpps/models/sequential/hrnn.py)"
                )
        choice(self, "loss", self.LOSSES)
        choice(self, "final_act", self.FINAL_ACTS)
        choice(self, "hidden_act", self.ACTS)
        choice(self, "user_to_session_act", self.ACTS)
        choice(self, "user_propagation_mode", self.PROPAGATION)
        probability(self, "dropout_p_hidden_usr", "dropout_p_hidden_ses", "dropout_p_init")
        non_negative(self, "item_embedding", "n_sample", "sample_alpha", "elu_param", "bpreg")
        if self.eval_slots <= 0:
            raise ConfigError(f"model_params.eval_slots={self.eval_slots!r}: must be > 0")
        if self.loss == "cross-entropy" and self.final_act in ("linear", "relu", "elu"):
            raise ConfigError(
                f"model_params.final_act={self.final_act!r}: cross-entropy uses a softmax "
                "(final_act default) or tanh + softmax (final_act tanh)"
            )


@register("hrnn", HRNNConfig)
class HRNN(SlotParallelModel):
    """HRNN / HGRU4Rec (Quadrana et al. 2017): session GRU initialised from a user GRU, user-parallel."""

    DISTRIBUTE_UNSUPPORTED = None  # departure 11: one user-parallel schedule per replica

    def __init__(self, params: HRNNConfig, info: DatasetInfo, run: Any, **kwargs):
        super().__init__(params, info, run, **kwargs)  # validates params; batch_size, seed, num_items
        p = params
        n = self.num_items
        hs, hu = int(p.session_layers[0]), int(p.user_layers[0])
        self.hs_units, self.hu_units = hs, hu
        seed = self.seed

        if p.item_embedding > 0:
            self.E = self.add_weight("E", [n, p.item_embedding], initializer=GateStackedUniform(1, seed + 1))
            in_dim, sparse = p.item_embedding, None
        else:
            in_dim, sparse = n, n
        self.ses_cell = ChoGRUCell(hs, sparse_input_dim=sparse, seed=seed + 10, activation=p.hidden_act, name="session_gru")
        with tf.name_scope(self.ses_cell.name):
            self.ses_cell.build(tf.TensorShape([None, in_dim]))
        self.usr_cell = ChoGRUCell(hu, seed=seed + 20, activation=p.hidden_act, name="user_gru")
        with tf.name_scope(self.usr_cell.name):
            self.usr_cell.build(tf.TensorShape([None, hs]))
        self.W_init = self.add_weight("Ws_init", [hu, hs], initializer=GateStackedUniform(1, seed + 30))
        self.b_init = self.add_weight("Bs_init", [hs], initializer="zeros")
        if p.user_propagation_mode == "all":
            # r|z blocks only: the reference's candidate block of Wu_to_s is never used
            self.W_u_to_s = self.add_weight("Wu_to_s_rz", [hu, 2 * hs], initializer=GateStackedUniform(2, seed + 40))
        self.Wy = self.add_weight("Wsy", [n, hs], initializer=GateStackedUniform(1, seed + 50))
        self.By = self.add_weight("By", [n], initializer="zeros")
        if p.user_to_output:
            self.Wuy = self.add_weight("Wuy", [n, hu], initializer=GateStackedUniform(1, seed + 60))

        self.h_s = self.state_variable("state_session", [self.batch_size, hs])
        self.h_u = self.state_variable("state_user", [self.batch_size, hu])
        self.step_counter = self.state_variable("sample_step", [], dtype=tf.int64)
        counts = np.asarray(info.item_counts, dtype=np.float64)
        self.sampler = PopularitySampler(counts, p.sample_alpha, p.n_sample, seed=seed) if p.n_sample > 0 else None
        self.loss_per_event = tf.keras.metrics.Mean(name="loss_per_event")
        self._init_act = tf.tanh if p.user_to_session_act == "tanh" else tf.nn.relu

    # ------------------------------------------------------------------ data
    @classmethod
    def make_train_dataset(cls, params: HRNNConfig, data: Any, run: Any, epoch_seed: int,
                           input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """The user-parallel schedule of the training split (the same every epoch); with an ``input_context``
        (tf.distribute) the schedules of this input pipeline's replicas, users shared out
        (:func:`~tfpps.data.examples.hrnn_examples.replica_batches`)."""
        b = int(train_section(run).batch_size)
        min_valid = 2 if params.n_sample == 0 else 1
        if input_context is not None:
            return hrnn_examples.replica_batches(data, b, min_valid, bool(params.drop_tail), input_context)
        return hrnn_examples.train_batches(data, b, min_valid, bool(params.drop_tail))

    # ------------------------------------------------------------------ pieces
    def _dropout(self, x: tf.Tensor, rate: float, seed) -> tf.Tensor:
        if rate <= 0 or seed is None:
            return x
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)

    def _project_items(self, ids: tf.Tensor) -> tf.Tensor:
        """``x W_x + b`` of the session GRU for item ids of any shape."""
        if self.params.item_embedding > 0:
            return self.ses_cell.project_inputs(tf.gather(self.E, ids))
        return self.ses_cell.project_inputs(ids)

    def _user_gate_bias(self, h_u: tf.Tensor) -> tf.Tensor:
        """``[B, 3H]`` addition to the session GRU's projected input ('all' mode: r and z only)."""
        rz = tf.matmul(h_u, self.W_u_to_s)
        return tf.concat([tf.zeros_like(rz[:, : self.hs_units]), rz], axis=-1)

    def session_init(self, h_u: tf.Tensor) -> tf.Tensor:
        return self._init_act(tf.matmul(h_u, self.W_init) + self.b_init)

    def step(self, x, sstart, ustart, h_s, h_u, seeds=None):
        """One network step for a batch of slots; returns the new ``(h_s, h_u)``.

        ``seeds`` (``[3, 2]``) switches on the three dropouts (training).
        """
        p = self.params
        sstart = tf.cast(sstart, tf.bool)[:, None]
        ustart = tf.cast(ustart, tf.bool)[:, None]
        u_new = self._dropout(self.usr_cell(h_s, h_u), p.dropout_p_hidden_usr, None if seeds is None else seeds[0])
        h_u = tf.where(sstart, u_new, h_u)
        h_u = tf.where(ustart, tf.zeros_like(h_u), h_u)
        s0 = self._dropout(self.session_init(h_u), p.dropout_p_init, None if seeds is None else seeds[1])
        h_s = tf.where(sstart, s0, h_s)
        h_s = tf.where(ustart, tf.zeros_like(h_s), h_s)
        vx = self._project_items(tf.cast(x, tf.int64))
        if p.user_propagation_mode == "all":
            vx = vx + self._user_gate_bias(h_u)
        h_s = self.ses_cell.recurrent_step(vx, h_s)
        h_s = self._dropout(h_s, p.dropout_p_hidden_ses, None if seeds is None else seeds[2])
        return h_s, h_u

    def output_scores(self, h_s: tf.Tensor, h_u: tf.Tensor, cols: tf.Tensor | None = None) -> tf.Tensor:
        """Pre-activation scores of ``cols`` (all items when ``None``)."""
        if cols is None:
            scores = tf.matmul(h_s, self.Wy, transpose_b=True) + self.By[None, :]
            if self.params.user_to_output:
                scores += tf.matmul(h_u, self.Wuy, transpose_b=True)
            return scores
        scores = tf.matmul(h_s, tf.gather(self.Wy, cols), transpose_b=True) + tf.gather(self.By, cols)[None, :]
        if self.params.user_to_output:
            scores += tf.matmul(h_u, tf.gather(self.Wuy, cols), transpose_b=True)
        return scores

    def _loss(self, scores: tf.Tensor, valid: tf.Tensor, col_mask: tf.Tensor) -> tf.Tensor:
        p = self.params
        act = p.final_act
        if p.loss == "cross-entropy":
            if act == "tanh":
                scores = tf.tanh(scores)
            return losses.cross_entropy(scores, row_mask=valid, col_mask=col_mask, batch_size=self.slots)
        if act == "default":
            act = "elu" if p.loss in ("bpr-max", "top1-max") else "tanh"
        scores = tf.nn.relu(scores) if act == "relu" else losses.final_activation(scores, act, p.elu_param)
        kwargs = {"row_mask": valid, "col_mask": col_mask, "batch_size": self.slots}
        if p.loss == "bpr-max":
            return losses.bpr_max(scores, p.bpreg, **kwargs)
        if p.loss == "top1-max":
            return losses.top1_max(scores, **kwargs)
        return (losses.top1 if p.loss == "top1" else losses.bpr)(scores, **kwargs)

    # ------------------------------------------------------------------ training
    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        p = self.params
        y = tf.cast(features["target_items"], tf.int64)
        valid = tf.cast(features["valid"], tf.bool)
        step = self.step_counter.assign_add(1) - 1 if training else tf.identity(self.step_counter)
        seeds = None
        if training:
            base = tf.stack([self.seed_key(2_000_003), tf.cast(step, tf.int64)])
            seeds = tf.random.experimental.stateless_split(base, num=3)
        h_s, h_u = self.step(features["input_items"], features["sstart"], features["ustart"],
                             self.own_rows(self.h_s), self.own_rows(self.h_u), seeds)
        self.set_own_rows(self.h_s, h_s)
        self.set_own_rows(self.h_u, h_u)

        cols, col_mask = y, valid
        if self.sampler is not None:
            neg = self.sampler(step)
            cols = tf.concat([y, neg.ids], axis=0)
            col_mask = tf.concat([valid, tf.ones([p.n_sample], tf.bool)], axis=0)
        loss = self._loss(self.output_scores(h_s, h_u, cols), valid, col_mask)
        self.log_slot_loss(loss, valid)
        return loss

    # ------------------------------------------------------------------ evaluation
    def eval_dataset(self, data: Any, split: str, run: Any) -> tf.data.Dataset:
        """Prediction points of ``split`` with their network states precomputed (see the module docstring)."""
        points = self.evaluation_points(data, split, run)
        return finish(tf.data.Dataset.from_tensor_slices(points).batch(int(run.eval.batch_size)), 4)

    def evaluation_points(self, data: Any, split: str, run: Any) -> dict:
        mask_history = bool(getattr(getattr(run, "eval", None), "mask_history", False))
        points = hrnn_examples.evaluation_schedule(data, split, int(self.params.eval_slots))
        hs_out, hu_out = self._stream_states(points.schedule, points.point_of_cell, points.n_points)
        out = {
            "session_state": hs_out,
            "user_state": hu_out,
            "target_item": points.targets(),
            "user_id": points.point_users(),
        }
        if mask_history:
            out["seen_items"] = points.seen_items()
        return out

    def _stream_states(self, sched, point_of_cell: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        """Run the schedule without dropout; the ``(h_s, h_u)`` after every prediction cell."""
        if not hasattr(self, "_stream_fn"):
            spec = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.bool),
                    tf.TensorSpec([None, None], tf.bool), tf.TensorSpec([None, None], tf.int32),
                    tf.TensorSpec([], tf.int32)]
            self._stream_fn = tf.function(self._stream, input_signature=spec, autograph=False)
        out_s, out_u = self._stream_fn(
            sched.input_items, sched.sstart, sched.ustart, point_of_cell.astype(np.int32), np.int32(n_points)
        )
        return out_s.numpy(), out_u.numpy()

    def _stream(self, x, ss, us, pc, n_points):
        b = tf.shape(x)[1]

        def body(t, h_s, h_u, out_s, out_u):
            h_s, h_u = self.step(x[t], ss[t], us[t], h_s, h_u)
            rows = pc[t]
            take = rows >= 0
            idx = tf.boolean_mask(rows, take)[:, None]
            out_s = tf.tensor_scatter_nd_update(out_s, idx, tf.boolean_mask(h_s, take))
            out_u = tf.tensor_scatter_nd_update(out_u, idx, tf.boolean_mask(h_u, take))
            return t + 1, h_s, h_u, out_s, out_u

        init = (
            tf.constant(0),
            tf.zeros(tf.stack([b, self.hs_units])),
            tf.zeros(tf.stack([b, self.hu_units])),
            tf.zeros(tf.stack([n_points, self.hs_units])),
            tf.zeros(tf.stack([n_points, self.hu_units])),
        )
        res = tf.while_loop(lambda t, *_: t < tf.shape(x)[0], body, init)
        return res[3], res[4]

    def _states(self, features) -> tuple[tf.Tensor, tf.Tensor]:
        """``(h_s, h_u)`` for a batch: precomputed by :meth:`eval_dataset`, or the history run as the
        user's first session (zero user state, as the reference starts a new user)."""
        if "session_state" in features:
            return tf.cast(features["session_state"], tf.float32), tf.cast(features["user_state"], tf.float32)
        ids = tf.cast(features["item_ids"], tf.int64)
        batch = tf.shape(ids)[0]
        mask = tf.sequence_mask(tf.cast(features["length"], tf.int32), tf.shape(ids)[1])
        _, last = _run_from_projection(self.ses_cell, self._project_items(ids), mask, tf.zeros(tf.stack([batch, self.hs_units])))
        return last, tf.zeros(tf.stack([batch, self.hu_units]))

    @tf.autograph.experimental.do_not_convert
    def score_items(self, features) -> tf.Tensor:
        """Scores ``[B, num_items]`` (pre-activation ``h_s W_y^T + b_y [+ h_u W_uy^T]``)."""
        h_s, h_u = self._states(features)
        return self.output_scores(h_s, h_u)

    def query_vectors(self, features) -> tf.Tensor:
        """``[h_s, 1 (, h_u)]`` so that ``query_vectors @ item_vectors^T == score_items``."""
        h_s, h_u = self._states(features)
        parts = [h_s, tf.ones_like(h_s[:, :1])] + ([h_u] if self.params.user_to_output else [])
        return tf.concat(parts, axis=1)

    def item_vectors(self) -> tf.Tensor:
        """``[W_y, b_y (, W_uy)]``."""
        parts = [self.Wy, self.By[:, None]] + ([self.Wuy] if self.params.user_to_output else [])
        return tf.concat(parts, axis=1)


def _run_from_projection(cell: ChoGRUCell, vx: tf.Tensor, mask: tf.Tensor, h0: tf.Tensor):
    vx_t = tf.transpose(vx, [1, 0, 2])
    mask_t = tf.transpose(tf.cast(mask, tf.bool), [1, 0])[:, :, None]

    def step(h_prev, inp):
        return tf.where(inp[1], cell.recurrent_step(inp[0], h_prev), h_prev)

    outs = tf.scan(step, (vx_t, mask_t), initializer=h0)
    last = tf.cond(tf.shape(outs)[0] > 0, lambda: outs[-1], lambda: h0)
    return outs, last
