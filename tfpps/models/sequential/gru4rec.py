"""GRU4Rec, faithful to the official implementation.

Papers:

* B. Hidasi, A. Karatzoglou, L. Baltrunas, D. Tikk. *Session-based
  Recommendations with Recurrent Neural Networks.* ICLR 2016 (arXiv:1511.06939).
* B. Hidasi, A. Karatzoglou. *Recurrent Neural Networks with Top-k Gains for
  Session-based Recommendations.* CIKM 2018 (arXiv:1706.03847): BPR-max,
  TOP1-max, additional shared negatives, constrained embeddings.
* B. Hidasi, Á. T. Czapp. *The Effect of Third Party Implementations on
  Reproducibility.* RecSys 2023 (why the details below matter).

Reference code read: ``hidasib/GRU4Rec`` (Theano original),
``hidasib/GRU4Rec_PyTorch_Official`` and ``hidasib/GRU4Rec_Tensorflow_Official``.

Model (per step, session-parallel; ``x`` input item, ``Y = [targets; samples]``)::

    e   = dropout_embed(W_y[x])                  # constrained_embedding (tied); or E[x]; or one-hot
    h_l = GRU_l(h_{l-1}, state_l);  h_l = dropout_hidden(h_l);  state_l <- h_l   # gru_cell: cho | reset_after
    r   = h_L W_y[Y]^T + b_y[Y]                  # [B, B + n_sample]
    loss = sum_valid_rows loss(r) / batch_size   # XE(+logQ) | BPR-max(ELU) | TOP1-max

Training (``train_mode='session_parallel'``): :mod:`tfpps.data.examples.session_parallel`
builds the official session-parallel schedule; the hidden state of every layer
lives in a non-trainable ``[B, H]`` variable, zeroed where a slot starts a new
session, never back-propagated across steps (the official ``H.detach_()``).
The extra negatives are one shared set per step drawn ``∝ support^sample_alpha``
(:class:`tfpps.layers.samplers.PopularitySampler`). Training pairs with
``tfpps.optimizers.adagrad_momentum.AdagradM`` (the official optimiser); the
embedding-like tables (``W_y``, ``b_y``, ``E`` or the one-hot input weights)
are read with ``tf.gather`` so their gradients are ``IndexedSlices`` and
only touched rows are updated.

Evaluation: all items are scored with ``h W_y^T + b_y``
(:meth:`GRU4Rec.score_items`), ``h`` the state after the history, run from a
zero state (reset per test session, as the official evaluation). The trainer
gets its evaluation batches from :meth:`GRU4Rec.eval_dataset`, which streams
(:class:`StreamedEvalBatches`): like the official session-parallel evaluation
(one GRU step per click), each evaluation record (a test session, or a history
with its target) is run through the GRU ONCE with its state carried, and scored
after every prefix that the standard prefix evaluation
(:func:`tfpps.data.examples.prefix.eval_examples`, every prefix re-encoded from zero:
``O(L^2)`` steps per session) scores: the same examples, ranks and metrics. Histories
longer than ``data.max_len`` are cut to their last ``max_len`` items as in the
prefix evaluation (the official evaluation never cuts: set ``max_len`` at least
the longest test session to match it). Where the data allows it (single targets,
no ``mask_history``, no validation sample) the trainer calls
:meth:`GRU4Rec.evaluate_eagerly` instead (:mod:`tfpps.models.sequential.gru4rec_eager_eval`):
the same streams and ranks computed eagerly, with no tf.function to trace or
XLA ranking to compile, which is what makes scoring a YOOCHOOSE-sized test
set cost about what the official evaluation costs.

Departures from the official code:

1. **Fixed batch with masks instead of shrinking.** When sessions run out the
   official iterator drops slots (``H = H[valid_mask]``), which changes the
   batch shape (a retrace per shape in the TF port). Here every step has ``B``
   slots; finished slots are marked invalid: their rows give no loss and their
   target columns are not used as negatives, which gives the same loss and
   gradients (up to float summation order). The tail of an epoch costs ``B``
   slots per step instead of fewer.
2. **Sampling in-graph per step** from a stateless RNG keyed by
   ``(train.seed, step)`` instead of a pre-drawn 10^7-id sample store. Same
   distribution, different random stream; reproducible and resumable. Items
   with zero training support, PAD and OOV are never drawn (the official item
   map only contains training items).
3. **Vocabulary rows.** Tables have ``num_items`` rows including PAD (0) and
   OOV (1), so init scales use ``num_items`` (2 more than the official item
   count). ``score_items`` returns raw scores for every column; the
   evaluator excludes PAD and OOV from the candidates.
4. **Initialisation** uses seeded TF initialisers with the official
   distributions (per-gate Glorot-uniform ``sqrt(6/(fan_in + H))``, biases 0,
   ``W_y ~ U(±sqrt(6/(num_items + H)))``), not the numpy ``seed(42)``
   "compatibility mode" stream. For layers after the first, fan-in is the
   previous layer's size (the TF port's compatibility mode uses the input
   size for every layer, which only works when they are equal).
5. **Duplicate sparse gradients are summed** before the Adagrad/momentum row
   update (PyTorch port's ``grad.coalesce()``). The TF port's "correct" path
   accumulates ``sum g_k^2`` and adds the velocity once per occurrence.
6. **Dropout** is stateless (keyed by seed and step) with the official
   placement: ``dropout_p_embed`` on the input embedding and
   ``dropout_p_hidden`` on every layer's output, which is also the carried
   state. In one-hot input mode (``embedding=0``, unconstrained) the first
   layer's output gets ``dropout_p_embed``, as in the PyTorch/TF ports (the
   Theano original used ``dropout_p_hidden`` there).
7. **Session order**: first-event timestamp, ties kept in record order
   (stable sort; the official ``np.argsort`` is not stable).
8. **Cross-entropy numerics**: computed through ``tfrs.tasks.Retrieval``
   (log-softmax) without the official ``log(p + 1e-24)`` floor, which only
   differs once ``p < 1e-24``.
9. **Options**: ``top1-max`` and ``final_act`` come from the Theano original
   (the PyTorch/TF ports only have cross-entropy and BPR-max with ELU);
   ``logq`` is only allowed with cross-entropy (as the PyTorch/TF ports use
   it; the Theano original applied it to any loss).
10. ``train_mode='prefix'`` is not official: it trains RecBole/Tan-style on every
    prefix -> next item with a full softmax (mean over the batch), to compare
    under RecBole's protocol. Its GRU, embeddings and dropout are the same.
11. **GRU cell** (``gru_cell``). ``reset_after`` (the default): PyTorch's
    ``nn.GRUCell``, which the official PyTorch port uses for every layer
    (:class:`tfpps.layers.reset_after_gru.ResetAfterGRUCell`): the reset gate
    multiplies the recurrent product, ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``,
    separate input and recurrent biases ``b_ih``, ``b_hh``,
    ``h' = (1 - z) n + z h``; initialised as the port's default
    ``compatibility_mode`` (per-gate ``U(±sqrt(6/(fan_in + H)))``, biases 0); in
    one-hot input mode its first layer has no ``b_hh``, as the port's
    ``GRUEmbedding``. ``cho``: the GRU of Cho et al. as the Theano original and
    the official TF port implement it (:class:`tfpps.layers.cho_gru.ChoGRUCell`):
    the reset gate multiplies ``h`` BEFORE the recurrent matmul,
    ``h~ = tanh(x W_h + (r * h) U_h + b_h)``, one bias, ``h' = (1 - z) h + z h~``.
    Same matrices, different functions; the weights of one do not load into the
    other. ``reset_after`` is the default because it measures best: on the
    official YOOCHOOSE-100k files (``python -m benchmarks.references.compare_official_gru4rec``,
    3 seeds each) it scores R@20 0.577 against ``cho``'s 0.561 with the RSC15
    BPR-max setting (MRR@20 0.287 against 0.280), while with the cross-entropy
    setting ``cho`` is ahead by less (R@20 0.682 against 0.679, MRR@20 0.361
    against 0.357).
12. Logging: Keras' ``loss`` is the last step's value; the metric
    ``loss_per_event`` is the epoch's summed row loss per training event (the
    official log prints ``sum_t(L_t * n_t) / sum_t(n_t)`` of the per-step
    losses ``L_t = sum / batch_size``).
13. **tf.distribute** (not official; ``--strategy=mirrored|multiworker``): each replica walks its own
    session-parallel schedule of ``batch_size / replicas`` slots over its input pipeline's file shard
    (sessions in first-event order, dealt round-robin to the pipeline's local replicas), all schedules
    padded with empty steps to the longest
    (:func:`tfpps.data.examples.session_parallel.replica_schedules`). Each replica's loss is its slots'
    sum over ``batch_size / replicas`` and the all-reduced gradient that of the global sum over
    ``batch_size``, as in one process. Two things differ from one process with the same global batch:
    the in-batch negatives of a row are the targets of its own replica's slots only (the
    ``n_sample`` shared negatives are the same draw on every replica), and the slots of different
    replicas are filled from different session streams. Dropout masks are keyed by replica too.
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any

import numpy as np

import tensorflow as tf

from tfpps.config import ConfigError, choice, non_negative, probability
from tfpps.data.examples import session_parallel
from tfpps.data.examples.prefix import prefix_examples
from tfpps.data.pipeline import concat_rows, finish
from tfpps.layers.cho_gru import ChoGRUCell, GateStackedUniform
from tfpps.layers.reset_after_gru import ResetAfterGRUCell
from tfpps.layers.samplers import PopularitySampler
from tfpps.models.sequential import gru4rec_eager_eval
from tfpps.models.base import DatasetInfo, max_len_of
from tfpps.models.sequential._slot_parallel import SlotParallelModel, train_section
from tfpps.registry import register
from tfpps.tasks import losses

@dataclasses.dataclass
class GRU4RecConfig:
    """GRU4Rec hyperparameters, named as in the official code (defaults: official TF/PyTorch constructor)."""

    layers: list[int] = dataclasses.field(default_factory=lambda: [100])  # GRU units per layer
    loss: str = "cross-entropy"  # cross-entropy | bpr-max | top1-max
    final_act: str = "elu"  # bpr-max/top1-max only: elu (elu_param; 0 = linear) | linear | tanh
    elu_param: float = 0.5
    n_sample: int = 2048  # extra negatives shared by the mini-batch
    sample_alpha: float = 0.5  # negatives drawn ∝ support ** sample_alpha
    logq: float = 0.0  # logQ correction strength (cross-entropy only)
    bpreg: float = 1.0  # BPR-max score regularisation
    embedding: int = 0  # separate input embedding size; 0 = none (tied if constrained, else one-hot)
    constrained_embedding: bool = True  # input embedding = output weights W_y
    dropout_p_embed: float = 0.0
    dropout_p_hidden: float = 0.0
    train_mode: str = "session_parallel"  # session_parallel (official) | prefix (RecBole-style)
    gru_cell: str = "reset_after"  # reset_after (PyTorch nn.GRUCell, the default) | cho (Theano original: reset before the matmul)

    LOSSES = ("cross-entropy", "bpr-max", "top1-max")
    FINAL_ACTS = ("elu", "linear", "tanh")
    TRAIN_MODES = ("session_parallel", "prefix")
    GRU_CELLS = ("cho", "reset_after")

    def validate(self) -> None:
        if not self.layers or any(isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in self.layers):
            raise ConfigError(f"model_params.layers={self.layers!r}: expected a non-empty list of positive integers")
        choice(self, "loss", self.LOSSES)
        choice(self, "final_act", self.FINAL_ACTS)
        choice(self, "train_mode", self.TRAIN_MODES)
        choice(self, "gru_cell", self.GRU_CELLS)
        non_negative(self, "elu_param", "n_sample", "sample_alpha", "logq", "bpreg", "embedding")
        probability(self, "dropout_p_embed", "dropout_p_hidden")
        if self.logq > 0 and self.loss != "cross-entropy":
            raise ConfigError(f"model_params.logq={self.logq!r}: the logQ correction is only used with loss=cross-entropy")
        if self.constrained_embedding and self.embedding > 0:
            raise ConfigError(
                f"model_params.embedding={self.embedding!r}: has no effect with constrained_embedding=true "
                "(the input embedding is W_y); set embedding: 0 or constrained_embedding: false"
            )


def _count_prefix_examples(data: Any) -> int:
    """Number of (prefix -> next item) examples of the training split (cached), so Keras knows the epoch size."""
    from tfpps.data.dataset_dir import cached

    def count() -> int:
        sizes = data.records("train").map(lambda r: tf.maximum(tf.size(r["item_ids"], out_type=tf.int64) - 1, 0))
        return int(sizes.reduce(tf.constant(0, tf.int64), lambda a, x: a + x).numpy())

    return cached(data, "gru4rec_prefix_examples", count)


@register("gru4rec", GRU4RecConfig)
class GRU4Rec(SlotParallelModel):
    """GRU4Rec (Hidasi et al. 2016/2018): session-parallel GRU with sampled ranking losses."""

    DISTRIBUTE_UNSUPPORTED = None  # departure 13: one session-parallel schedule per replica

    def __init__(self, params: GRU4RecConfig, info: DatasetInfo, run: Any, **kwargs):
        super().__init__(params, info, run, **kwargs)  # validates params; batch_size, seed, num_items
        p = params
        n = self.num_items
        sizes = [int(x) for x in p.layers]
        seed = self.seed

        self.Wy = self.add_weight("Wy", [n, sizes[-1]], initializer=GateStackedUniform(1, seed))
        self.By = self.add_weight("By", [n], initializer="zeros")
        self.one_hot_input = not p.constrained_embedding and p.embedding == 0
        if p.constrained_embedding:
            in_dim = sizes[-1]
        elif p.embedding > 0:
            self.E = self.add_weight("E", [n, p.embedding], initializer=GateStackedUniform(1, seed + 1))
            in_dim = p.embedding
        else:
            in_dim = n
        self.cells = []
        for i, units in enumerate(sizes):
            sparse = n if (i == 0 and self.one_hot_input) else None
            if p.gru_cell == "reset_after":  # nn.GRUCell; one-hot input: GRUEmbedding (no recurrent bias)
                cell = ResetAfterGRUCell(units, sparse_input_dim=sparse, seed=seed + 10 * (i + 1),
                                         recurrent_bias=sparse is None, name=f"gru_{i}")
            else:
                cell = ChoGRUCell(units, sparse_input_dim=sparse, seed=seed + 10 * (i + 1), name=f"gru_{i}")
            with tf.name_scope(cell.name):
                cell.build(tf.TensorShape([None, in_dim if i == 0 else sizes[i - 1]]))
            self.cells.append(cell)
        self.states = [self.state_variable(f"state_{i}", [self.batch_size, units]) for i, units in enumerate(sizes)]
        self.step_counter = self.state_variable("sample_step", [], dtype=tf.int64)

        counts = np.asarray(info.item_counts, dtype=np.float64)
        self._log_support = tf.constant(np.log(np.maximum(counts, 1.0)), tf.float32)
        self.sampler = (
            PopularitySampler(counts, p.sample_alpha, p.n_sample, seed=seed) if p.n_sample > 0 else None
        )
        self.xe_task = losses.SampledSoftmaxRetrieval()
        # BPR-max / TOP1-max are ~15 elementwise passes over the [B, B + n_sample] score matrix;
        # XLA fuses them (forward and backward): 1.8 ms -> 0.5 ms per step on CPU for 32 x 2080.
        self._ranking_loss = tf.function(self._ranking_loss_fn, jit_compile=True, autograph=False)
        # Keras' "loss" log is the last step's value; this is the epoch's loss per training event
        # (sum of row losses / number of valid slot-steps), comparable across batch sizes.
        self.loss_per_event = tf.keras.metrics.Mean(name="loss_per_event")
        self._not_pad = tf.constant(np.arange(n) != 0)  # prefix training: OOV stays a class, PAD does not

    # ------------------------------------------------------------------ data
    @classmethod
    def make_train_dataset(cls, params: GRU4RecConfig, data: Any, run: Any, epoch_seed: int,
                           input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """One epoch: the session-parallel schedule (the same every epoch), or shuffled prefix batches
        (``train_mode: prefix``). With an ``input_context`` (tf.distribute) the schedules of this input
        pipeline's replicas (:func:`~tfpps.data.examples.session_parallel.replica_dataset`)."""
        train = train_section(run)
        if input_context is not None:
            if params.train_mode == "prefix":
                raise ConfigError("gru4rec: model_params.train_mode=prefix does not train under --strategy=mirrored|"
                                  "multiworker (session-parallel training does); use --strategy=default")
            ds = session_parallel.replica_dataset(data, int(train.batch_size), int(params.n_sample), input_context)
            return finish(ds, 256)
        if params.train_mode == "prefix":
            data_cfg = getattr(run, "data", None)
            max_len = max_len_of(run)
            buffer = int(getattr(data_cfg, "shuffle_buffer", 100_000))
            try:
                records = data.records("train", shuffle=True, seed=epoch_seed)
            except TypeError:
                records = data.records("train")
            examples = prefix_examples(records, max_len)
            if buffer > 0:
                examples = examples.shuffle(buffer, seed=epoch_seed)
            b = int(train.batch_size)
            num_batches = -(-_count_prefix_examples(data) // b)
            batches = examples.batch(b).apply(tf.data.experimental.assert_cardinality(num_batches))
            return finish(batches, 16)
        ds, _ = session_parallel.session_parallel_dataset(data, int(train.batch_size), int(params.n_sample))
        return finish(ds, 256)

    # ------------------------------------------------------------------ pieces
    def _dropout(self, x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
        if rate <= 0:
            return x
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)

    def _seeds(self, step: tf.Tensor, n: int) -> tf.Tensor:
        """``n`` stateless seeds of a training step (and, distributed, of this replica)."""
        base = tf.stack([self.seed_key(1_000_003), tf.cast(step, tf.int64)])
        return tf.random.experimental.stateless_split(base, num=n)

    def _input_embedding(self, ids: tf.Tensor) -> tf.Tensor:
        if self.params.constrained_embedding:
            return tf.gather(self.Wy, ids)
        if self.params.embedding > 0:
            return tf.gather(self.E, ids)
        return ids  # one-hot mode: the first cell gathers its own input weights

    # ------------------------------------------------------------------ training
    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        if self.params.train_mode == "prefix":
            loss = self._prefix_loss(features, training)
            n = tf.cast(tf.shape(features["target_item"])[0], loss.dtype)
            self.loss_per_event.update_state(loss, sample_weight=n)
            return loss
        loss = self._session_parallel_loss(features, training)
        self.log_slot_loss(loss, features["valid"])
        return loss

    def _session_parallel_loss(self, f, training: bool) -> tf.Tensor:
        p = self.params
        b = self.slots
        x = tf.cast(f["input_items"], tf.int64)
        y = tf.cast(f["target_items"], tf.int64)
        reset = tf.cast(f["reset"], tf.bool)[:, None]
        valid = tf.cast(f["valid"], tf.bool)
        if training:
            step = self.step_counter.assign_add(1) - 1
        else:
            step = tf.identity(self.step_counter)

        cols = y
        neg = None
        if self.sampler is not None:
            neg = self.sampler(step)
            cols = tf.concat([y, neg.ids], axis=0)
        if p.constrained_embedding:  # one gather for inputs and outputs: one IndexedSlices for W_y
            rows = tf.gather(self.Wy, tf.concat([x, cols], axis=0))
            emb, out_w = rows[:b], rows[b:]
        else:
            out_w = tf.gather(self.Wy, cols)
            emb = self._input_embedding(x)
        out_b = tf.gather(self.By, cols)

        seeds = self._seeds(step, len(self.cells) + 1) if training else None
        h = emb
        if training and not self.one_hot_input:
            h = self._dropout(h, p.dropout_p_embed, seeds[0])
        for i, cell in enumerate(self.cells):
            state = self.own_rows(self.states[i])
            prev = tf.where(reset, tf.zeros_like(state), state)
            h = cell(h, prev)
            if training:
                rate = p.dropout_p_embed if (i == 0 and self.one_hot_input) else p.dropout_p_hidden
                h = self._dropout(h, rate, seeds[i + 1])
            self.set_own_rows(self.states[i], h)

        n_extra = 0 if neg is None else p.n_sample
        col_mask = tf.concat([valid, tf.ones([n_extra], tf.bool)], axis=0)
        if p.loss == "cross-entropy":
            log_q = None
            if p.logq > 0:
                log_q = tf.gather(self._log_support, y)
                if neg is not None:
                    log_q = tf.concat([log_q, neg.log_weight], axis=0)
            return self.xe_task(
                h, out_w, out_b, row_mask=valid, col_mask=col_mask, log_q=log_q, logq=p.logq, batch_size=b
            )
        scores = tf.matmul(h, out_w, transpose_b=True) + out_b[None, :]
        return self._ranking_loss(scores, valid, col_mask)

    def _ranking_loss_fn(self, scores: tf.Tensor, valid: tf.Tensor, col_mask: tf.Tensor) -> tf.Tensor:
        p = self.params
        scores = losses.final_activation(scores, p.final_act, p.elu_param)
        if p.loss == "bpr-max":
            return losses.bpr_max(scores, p.bpreg, row_mask=valid, col_mask=col_mask, batch_size=self.slots)
        return losses.top1_max(scores, row_mask=valid, col_mask=col_mask, batch_size=self.slots)

    # ------------------------------------------------------------------ sequences (prefix training, evaluation)
    def encode(self, item_ids: tf.Tensor, length: tf.Tensor, training: bool = False, step=None) -> tf.Tensor:
        """Last hidden state ``[B, H]`` of the GRU run from zero over left-aligned, 0-padded ``item_ids``."""
        return self.run_layers(item_ids, length, training=training, step=step)[1]

    def run_layers(self, item_ids: tf.Tensor, length: tf.Tensor, training: bool = False, step=None):
        """``(outputs [B, L, H], last [B, H])`` of the last layer, every layer run from zero over the
        left-aligned, 0-padded ``item_ids``; ``outputs[:, t]`` is the state after ``t + 1`` items
        (padding steps carry the state)."""
        p = self.params
        ids = tf.cast(item_ids, tf.int64)
        max_len = tf.shape(ids)[1]
        mask = tf.sequence_mask(tf.cast(length, tf.int32), max_len)
        h = self._input_embedding(ids)
        seeds = self._seeds(step, len(self.cells) + 1) if training else None
        if training and not self.one_hot_input:
            h = self._dropout(h, p.dropout_p_embed, seeds[0])
        last = None
        for i, cell in enumerate(self.cells):
            drop_mask = None
            rate = p.dropout_p_embed if (i == 0 and self.one_hot_input) else p.dropout_p_hidden
            if training and rate > 0:
                ones = tf.ones(tf.stack([tf.shape(ids)[0], max_len, cell.units]))
                drop_mask = self._dropout(ones, rate, seeds[i + 1])
            h, last = cell.run_sequence(h, mask=mask, output_dropout_mask=drop_mask)
        return h, last

    def _all_scores(self, h: tf.Tensor) -> tf.Tensor:
        return tf.matmul(h, self.Wy, transpose_b=True) + self.By[None, :]

    def _prefix_loss(self, f, training: bool) -> tf.Tensor:
        step = self.step_counter.assign_add(1) - 1 if training else tf.identity(self.step_counter)
        h = self.encode(f["item_ids"], f["length"], training=training, step=step)
        logits = self._all_scores(h)
        logits = tf.where(self._not_pad[None, :], logits, losses.NEG_INF)
        target = tf.cast(f["target_item"], tf.int64)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits))

    def _state(self, features) -> tf.Tensor:
        """``h`` ``[B, H]``: streamed by :meth:`eval_dataset` (``gru_state``), or the GRU run from zero over the history."""
        if STATE_FEATURE in features:
            return tf.cast(features[STATE_FEATURE], tf.float32)
        return self.encode(features["item_ids"], features["length"], training=False)

    @tf.autograph.experimental.do_not_convert
    def score_items(self, features) -> tf.Tensor:
        """Scores ``[B, num_items]`` (``h W_y^T + b_y``) after running the GRU from zero over each history
        (or of the ``gru_state`` rows that :meth:`eval_dataset` streamed)."""
        return self._all_scores(self._state(features))

    def query_vectors(self, features) -> tf.Tensor:
        """``[B, H + 1]``: ``[h, 1]``, so that ``query_vectors @ item_vectors^T == score_items`` (b_y folded in)."""
        h = self._state(features)
        return tf.concat([h, tf.ones_like(h[:, :1])], axis=1)

    def item_vectors(self) -> tf.Tensor:
        """``[num_items, H + 1]``: ``[W_y, b_y]``."""
        return tf.concat([self.Wy, self.By[:, None]], axis=1)

    # ------------------------------------------------------------------ streaming evaluation
    def eval_dataset(self, data: Any, split: str, run: Any):
        """Evaluation batches with the GRU state of every example streamed (see :class:`StreamedEvalBatches`);
        ``None`` (the trainer's standard prefix batches) for multi-target, basket or search data."""
        kind = getattr(data, "kind", "sequential")
        if kind != "sequential" or getattr(data, "multi_target", False):
            return None
        return StreamedEvalBatches(self, data, split, run)

    def evaluate_eagerly(self, data: Any, split: str, run: Any, ks=(5, 10, 20), ties: str = "standard"):
        """Metrics of ``split`` computed eagerly, streamed as the official evaluation (see
        :mod:`tfpps.models.sequential.gru4rec_eager_eval`); ``None`` where :meth:`eval_dataset`'s traced path applies."""
        return gru4rec_eager_eval.evaluate_eagerly(self, data, split, run, ks=ks, ties=ties)

    def stream_states(self, items, length, points, targets):
        """Run a batch of streams once and return the states at their scoring points (in-graph, batched).

        ``items`` ``[S, L]`` (left-aligned, 0-padded), ``length`` ``[S]``; ``points`` bool ``[S, P]`` marks the
        positions ``e`` (state after ``e`` items, ``e = 0``: the zero state) to score, ``targets`` ``[S, P]``
        their targets. Returns ``(states [M, H], targets [M], stream_of_row [M])`` for the ``M`` marked
        positions, in row-major order.
        """
        fn = _STREAM_FNS.get(self)
        if fn is None:  # kept off the model (SavedModel export would save it) and holding the model weakly
            spec = [tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64),
                    tf.TensorSpec([None, None], tf.bool), tf.TensorSpec([None, None], tf.int64)]
            fn = tf.function(functools.partial(_stream_states, weakref.ref(self)), input_signature=spec, autograph=False)
            _STREAM_FNS[self] = fn
        return fn(items, length, points, targets)


STATE_FEATURE = "gru_state"
PARALLEL_MAP = 2  # tf.data map parallelism of the evaluation streams
_STREAM_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> traced GRU4Rec.stream_states


def _stream_states(model_ref, items, length, points, targets):
    # at least one step (a scan over none cannot stack its outputs); padding steps carry the state
    steps = tf.cast(tf.reduce_max(tf.concat([length, tf.ones([1], tf.int64)], 0)), tf.int32)
    model = model_ref()
    outputs, _ = model.run_layers(items[:, :steps], length, training=False)  # [S, steps, H]
    zero = tf.zeros(tf.stack([tf.shape(items)[0], 1, model.cells[-1].units]), outputs.dtype)
    states = tf.concat([zero, outputs], axis=1)  # [S, steps + 1, H]: the state after e items, e = 0..steps
    where = tf.where(points[:, : steps + 1])  # [M, 2]
    return tf.gather_nd(states, where), tf.gather_nd(targets[:, : steps + 1], where), where[:, 0]


def eval_streams(records: tf.data.Dataset, max_len: int, batch_size: int, with_seen: bool = False) -> tf.data.Dataset:
    """Batches of GRU runs that reproduce :func:`tfpps.data.examples.prefix.eval_examples` (one run per record).

    A record's examples are ``full[:e] -> full[e]`` for its ends ``e`` (``full`` = ``item_ids`` plus the
    target when it has one: then one end, ``len(item_ids)``; else every ``e = 1..n-1``), each history cut
    to its last ``max_len`` items. Every end ``e <= max_len`` reads the state after ``e`` items of ONE
    run over ``full[:max(e)]`` (the record's "main" stream). An end ``e > max_len`` has a cut history
    ``full[e - max_len:e]`` whose zero-state run shares no prefix with the others: it is a stream of its
    own (``max_len`` steps, scored at the end), as in the prefix evaluation.

    ``batch_size`` records at a time are turned into streams with batched ops. Elements: ``items``
    ``[S, max_len]`` (0-padded), ``length [S]``, ``points`` bool ``[S, max_len + 1]`` (the positions
    ``e`` to score: the state after ``e`` items), ``targets [S, max_len + 1]`` and, with
    ``with_seen``, ``seen_items [S, W]``: the record's ``item_ids`` (for ``mask_history``, as
    :func:`~tfpps.data.examples.prefix.eval_examples` gives them). Streams are ordered by record, then main
    before cut, then end, so the scored rows come in the order of the prefix evaluation's examples.
    """
    m = int(max_len)

    def slim(rec):
        items = tf.cast(rec["item_ids"], tf.int64)
        return {"item_ids": items, "n": tf.size(items, out_type=tf.int64), "target_item": tf.cast(rec["target_item"], tf.int64)}

    def to_streams(batch):
        items, n0, target = batch["item_ids"], batch["n"], batch["target_item"]  # [R, W], [R], [R]
        rows = tf.shape(items)[0]
        width = tf.maximum(tf.shape(items)[1] + 1, m + 1)
        cols = tf.range(width, dtype=tf.int64)[None, :]  # positions e = 0..width-1
        padded = tf.pad(items, [[0, 0], [0, width - tf.shape(items)[1]]])
        has_target = (target > 0)[:, None]
        full = tf.where(has_target & tf.equal(cols, n0[:, None]), target[:, None], padded)  # [R, width]
        is_end = tf.where(has_target, tf.equal(cols, n0[:, None]), (cols >= 1) & (cols < n0[:, None]))
        # main streams: one run over full[:max end <= m], scored at every end <= m
        main_points = (is_end & (cols <= m))[:, : m + 1]  # [R, m + 1]
        main_len = tf.reduce_max(tf.where(main_points, cols[:, : m + 1], 0), axis=1)
        main_items = tf.where(cols[:, :m] < main_len[:, None], full[:, :m], 0)
        main_targets = tf.where(main_points, full[:, : m + 1], 0)
        has_main = tf.reduce_any(main_points, axis=1)
        # cut streams: full[e - m:e] for every end e > m, scored after all m items
        cut = tf.where(is_end & (cols > m))  # [C, 2]: (record, e)
        cut_rec, cut_end = cut[:, 0], cut[:, 1]
        window = cut_end[:, None] - m + tf.range(m, dtype=tf.int64)[None, :]
        cut_items = tf.gather_nd(full, tf.stack([tf.broadcast_to(cut_rec[:, None], tf.shape(window)), window], -1))
        last = tf.equal(tf.range(m + 1), m)[None, :]
        cut_target = tf.gather_nd(full, cut)
        n_cut = tf.shape(cut)[0]
        main_rec = tf.range(tf.cast(rows, tf.int64), dtype=tf.int64)
        out = {
            "items": tf.concat([main_items, cut_items], 0),
            "length": tf.concat([main_len, tf.fill([n_cut], tf.constant(m, tf.int64))], 0),
            "points": tf.concat([main_points, tf.tile(last, [n_cut, 1])], 0),
            "targets": tf.concat([main_targets, tf.where(last, cut_target[:, None], tf.zeros([1, 1], tf.int64))], 0),
        }
        record = tf.concat([main_rec, cut_rec], 0)
        keep = tf.concat([has_main, tf.ones([n_cut], tf.bool)], 0)
        order_key = record * tf.cast(width + 1, tf.int64) + tf.concat([tf.zeros_like(main_rec), cut_end], 0)
        order = tf.argsort(order_key, stable=True)
        order = tf.boolean_mask(order, tf.gather(keep, order))  # records without a main end have no main stream
        out = {name: tf.gather(value, order) for name, value in out.items()}
        if with_seen:
            out["seen_items"] = tf.gather(items, tf.gather(record, order))
        return out

    fields = records.map(slim, num_parallel_calls=PARALLEL_MAP)
    return fields.padded_batch(int(batch_size)).map(to_streams, num_parallel_calls=PARALLEL_MAP)



class StreamedEvalBatches:
    """Evaluation batches of :class:`GRU4Rec` whose GRU states are streamed: each record is run ONCE,
    its state carried from item to item, and scored after every prefix the prefix evaluation scores.

    The standard evaluation (:func:`tfpps.data.examples.prefix.eval_examples`) re-encodes every prefix of a
    test session from a zero state (``O(L^2)`` GRU steps per session, each history padded to
    ``max_len``). Streaming, like the official session-parallel evaluation (one GRU step per click,
    the state reset at each session start), gives the same examples in the same order with the same
    states, so the same per-example ranks and metrics. Histories the prefix evaluation cuts to
    ``max_len`` items are re-run from zero as it does (see :func:`eval_streams`).

    Iterating yields feature dicts of at most ``eval.batch_size`` rows: ``gru_state [B, H]``,
    ``target_item [B]`` and with ``eval.mask_history`` ``seen_items [B, M]``;
    :meth:`GRU4Rec.score_items` scores ``gru_state`` directly. The streams are built in-graph by
    tf.data and run ``eval.batch_size`` at a time through one traced function (no per-example Python).
    """

    def __init__(self, model: "GRU4Rec", data: Any, split: str, run: Any):
        self.model, self.data, self.split, self.run = model, data, split, run
        data_cfg = getattr(run, "data", None)
        eval_cfg = getattr(run, "eval", None)
        self.max_len = max_len_of(run)
        self.num_parallel_reads = int(getattr(data_cfg, "num_parallel_reads", 4))
        self.batch_size = int(getattr(eval_cfg, "batch_size", 512))
        self.with_seen = bool(getattr(eval_cfg, "mask_history", False))

    def streams(self) -> tf.data.Dataset:
        records = self.data.records(self.split, num_parallel_reads=self.num_parallel_reads)
        return finish(eval_streams(records, self.max_len, self.batch_size, self.with_seen))

    def __iter__(self):
        pending: list[dict] = []
        count = 0
        for batch in self.streams():
            states, targets, rows = self.model.stream_states(batch["items"], batch["length"], batch["points"], batch["targets"])
            piece = {STATE_FEATURE: states, "target_item": targets}
            if self.with_seen:
                piece["seen_items"] = tf.gather(batch["seen_items"], rows)
            pending.append(piece)
            count += int(targets.shape[0])
            while count >= self.batch_size:
                full = concat_rows(pending)
                yield {name: v[: self.batch_size] for name, v in full.items()}
                count -= self.batch_size
                pending = [{name: v[self.batch_size :] for name, v in full.items()}] if count else []
        if count:
            yield concat_rows(pending)
