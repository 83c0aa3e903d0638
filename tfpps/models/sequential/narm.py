"""NARM: Neural Attentive Session-based Recommendation.

Jing Li, Pengjie Ren, Zhumin Chen, Zhaochun Ren, Tao Lian, Jun Ma.
"Neural Attentive Session-based Recommendation", CIKM 2017,
https://doi.org/10.1145/3132847.3132926. Official code (Theano):
``lijingsdu/sessionRec_NARM`` (``NARM.py``, ``rsc2015_attention.py``), which
this module follows; RecBole's ``narm.py`` follows the paper and differs
where noted.

Model (``x_1..x_t`` the history, ``e_j`` the item embedding of ``x_j``)::

    e_j'  = dropout_0.25(e_j)
    z_j   = hs(e_j' W_z + h_{j-1} U_z + b_z)          # update gate
    r_j   = hs(e_j' W_r + h_{j-1} U_r + b_r)          # reset gate
    h~_j  = tanh(e_j' W_h + (r_j * h_{j-1}) U_h + b_h) # reset BEFORE the recurrent matmul
    h_j   = (1 - z_j) h_{j-1} + z_j h~_j               # padded steps keep h_{j-1}
    c_g   = h_t                                        # global encoder: last real state
    a_j   = v^T hs(A1 h_j + A2 h_t)                    # local encoder attention
    w_j   = exp(a_j) / sum_{k real} exp(a_k)           # 'masked_softmax' (official code)
          | a_j                                        # 'none' (paper eq. 8, RecBole)
    c_l   = sum_j w_j h_j
    c     = dropout_0.5([c_l ; c_g])
    s_i   = E_i . (B c)                                # bilinear decoder, E = the input embedding
    loss  = mean cross-entropy of softmax(s) over all real items
          | over the batch's targets + sampled items       # softmax: sampled (departure 9)

with ``hs`` Theano's / Keras 2's hard sigmoid ``clip(0.2 x + 0.5, 0, 1)``.

Initialisation as the official code: every non-recurrent matrix of shape
``(fan, .)`` is ``N(0, sd = sqrt(2 / fan))`` (the first dimension of the Theano
parameter: ``Wemb`` uses ``sqrt(2 / num_items)``, each GRU input block
``sqrt(2 / emb)``, ``A1``/``A2`` ``sqrt(2 / hidden)``, ``v`` ``sqrt(2)``,
``B`` ``sqrt(2 / emb)``); the recurrent blocks ``U_z``, ``U_r``, ``U_h`` are
separate random orthogonal matrices; GRU biases are 0; no other biases.
Dropout is Theano-style as in the code: at training a unit is kept with
probability ``p = 1 - rate`` and *not* rescaled; at inference every unit is
multiplied by ``p``.

The GRU is Keras's ``GRU(reset_after=False, recurrent_activation="hard_sigmoid")``
(the same cell, reset applied before the recurrent matmul; masked steps carry
the state) with the official initialisation. Keras's update gate is the
official ``1 - z`` (``h = z h_{j-1} + (1 - z) h~``): since
``hs(-a) = 1 - hs(a)``, the initial distributions are symmetric and Adam is
sign-equivariant, this is an exact reparametrisation (official weights load
with the ``z`` blocks negated), and on CPU it is as fast as a hand-written
BPTT (measured: within 10%, faster at batch 4096).

Departures from the official code
---------------------------------
1. **Truncation.** The official loader cuts every (prefix -> next item)
   input to its FIRST 19 items (``x[:maxlen]``, ``maxlen=19``). tfpps keeps
   the most recent ``data.max_len`` items (RecBole's protocol;
   ``truncate: last``, the default). ``truncate: first`` reproduces the
   official cut for the training examples this model builds; evaluation
   examples come from the shared evaluator, which always keeps the most
   recent items.
2. **PAD/OOV columns** (ids 0 and 1) are excluded from the training softmax.
   The official softmax runs over every row of ``Wemb``, padding row 0
   included. ``score_items`` still returns a score for every id; the
   evaluator excludes PAD/OOV. Training examples whose target is PAD/OOV are
   dropped.
3. **Loss** is ``log_softmax`` cross-entropy; the official code takes
   ``-log(softmax + 1e-8)`` (same value except for probabilities near 1e-8).
4. **Optimiser** is whatever the trainer builds from ``train.*`` (Keras 2
   Adam, ``epsilon=1e-7`` in the "epsilon hat" form); the official hand-written
   Adam uses ``eps=1e-8`` added to ``sqrt(v_hat)`` and a first-moment
   coefficient decayed by ``gamma = 1 - 1e-8`` per step (negligible).
5. **Shuffling** is streaming: records are read in shuffled shard order with a
   ``data.shuffle_buffer`` of records, and the prefix examples pass through a
   second buffer of the same size. The official code permutes all examples
   every epoch.
6. **Padding is time-trimmed**: the GRU runs over the longest history in the
   batch, not over ``max_len`` (padded steps only carry the state, so scores are
   unchanged; the official code also pads to the batch maximum).
7. **Validation split / early stopping** belong to the trainer and the dataset
   build (the official code holds out a random 10% of training examples and
   keeps the parameters with the best validation Recall@20).
8. The GRU gate / attention activations and the attention normalisation can be
   switched (``gate_activation``, ``attention_activation``,
   ``attention_normalisation``) to RecBole's choices (sigmoid, sigmoid, none);
   the defaults are the official ones.
9. ``softmax: sampled`` (not the default; for catalogue-scale data) replaces
   the full softmax of the loss by a sampled softmax over the batch's targets
   and ``n_sample`` shared negatives drawn ``∝ support^sample_alpha``, with the
   logQ correction (``logq``) and accidental hits removed
   (:mod:`tfpps.tasks.sampled_softmax`, whose docstring has the math). The
   query is the same ``B c`` and the candidates' vectors are rows of the tied
   ``Wemb``; scoring and evaluation still use every item. The negatives are
   keyed by (``train.seed``, optimizer step, replica), so runs resume exactly.
"""
from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from tfpps.config import choice, positive, probability
from tfpps.data.dataset_dir import cached
from tfpps.data.examples.prefix import prefix_examples
from tfpps.data.pipeline import finish, replica_epoch, training_records
from tfpps.spec.schema import FIRST_ID
from tfpps.models.base import DatasetInfo, SequentialModel, max_len_of, seed_of
from tfpps.registry import register
from tfpps.tasks.sampled_softmax import CatalogueSampledSoftmax, validate_softmax_params

_ACTIVATIONS = ("hard_sigmoid", "sigmoid")  # hard_sigmoid = Theano's / Keras 2's clip(0.2 x + 0.5, 0, 1)


@dataclasses.dataclass
class NARMConfig:
    """NARM hyper-parameters; defaults are the official code's (``train_gru`` / ``build_model``)."""

    embedding_size: int = 50  # dim_proj
    hidden_size: int = 100  # hidden_units
    dropout_embed: float = 0.25  # dropout_layer(emb, drop_p=0.25)
    dropout_context: float = 0.5  # dropout_layer([c_local; c_global], drop_p=0.5)
    attention_normalisation: str = "masked_softmax"  # masked_softmax (official code) | none (paper, RecBole)
    gate_activation: str = "hard_sigmoid"  # GRU z/r gates: hard_sigmoid (official) | sigmoid (RecBole)
    attention_activation: str = "hard_sigmoid"  # inside v^T act(A1 h_j + A2 h_t): hard_sigmoid (official) | sigmoid
    truncate: str = "last"  # training histories longer than max_len: last (RecBole) | first (official x[:19])
    softmax: str = "full"  # training loss over: full (all items, the paper) | sampled (catalogue scale, departure 9)
    n_sample: int = 2048  # softmax=sampled: shared popularity-sampled negatives per step (plus the in-batch targets)
    sample_alpha: float = 0.5  # softmax=sampled: negatives ~ support^sample_alpha (0 uniform, 1 popularity)
    logq: float = 1.0  # softmax=sampled: logQ correction strength (1 exact, 0 off)

    def validate(self) -> None:
        positive(self, "embedding_size", "hidden_size")
        probability(self, "dropout_embed", "dropout_context")
        choice(self, "attention_normalisation", ("masked_softmax", "none"))
        choice(self, "gate_activation", _ACTIVATIONS)
        choice(self, "attention_activation", _ACTIVATIONS)
        choice(self, "truncate", ("last", "first"))
        validate_softmax_params(self)


def _theano_dropout(x: tf.Tensor, rate: float, training: bool, seed: tf.Tensor | None = None) -> tf.Tensor:
    """The official ``dropout_layer``: keep-mask without rescaling at training, ``x * keep`` at inference.

    With ``seed`` (shape ``[2]``) the mask is stateless: the same seed draws the same mask in any process."""
    if rate == 0.0:
        return x
    keep = 1.0 - rate
    if training:
        u = tf.random.uniform(tf.shape(x)) if seed is None else tf.random.stateless_uniform(tf.shape(x), seed=seed)
        return x * tf.cast(u < keep, x.dtype)
    return x * keep


def narm_prefix_examples(records: tf.data.Dataset, max_len: int, truncate: str = "last") -> tf.data.Dataset:
    """Every (prefix -> next item) pair of each record, histories cut to ``max_len`` items.

    ``truncate="last"`` keeps the most recent items (as
    :func:`tfpps.data.examples.prefix.prefix_examples`); ``"first"`` keeps the first
    ones, as the official loader's ``x[:maxlen]``. Histories are left-aligned
    and 0-padded.
    """
    return prefix_examples(records, max_len, truncate=truncate)


def count_train_examples(data, input_context: tf.distribute.InputContext | None = None) -> int:
    """Number of training examples :meth:`NARM.make_train_dataset` yields: next items that are real items
    (of one input pipeline's file shard with ``input_context``). Counted once per process."""

    def count():
        extra = {} if input_context is None else {"input_context": input_context}
        records = data.records("train", **extra)
        counts = records.map(lambda r: tf.reduce_sum(tf.cast(r["item_ids"][1:] >= FIRST_ID, tf.int64)))
        return int(counts.reduce(tf.constant(0, tf.int64), lambda total, c: total + c).numpy())

    shard = None if input_context is None else (input_context.input_pipeline_id, input_context.num_input_pipelines)
    return cached(data, ("narm_train_examples", shard), count)


@register("narm", NARMConfig)
class NARM(SequentialModel):
    """NARM (Li et al. CIKM'17): GRU + attention hybrid encoder, bilinear decoder, full (or sampled) softmax."""

    DISTRIBUTE_UNSUPPORTED = None  # stateless prefix examples: trains under mirrored / multiworker

    def __init__(self, params: NARMConfig, info: DatasetInfo, run=None, **kwargs):
        super().__init__(params, info, run, **kwargs)
        params.validate()
        seed = seed_of(run)
        self._seed = seed
        emb, hid, n = params.embedding_size, params.hidden_size, info.num_items

        def normal(fan: int, k: int):
            return tf.keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan), seed=seed + k)

        def ortho_blocks(k: int):  # [U_z | U_r | U_h], three separate random orthogonal matrices
            inits = [tf.keras.initializers.Orthogonal(seed=seed + k + i) for i in range(3)]
            return lambda shape, dtype=None: tf.concat([f((hid, hid), dtype) for f in inits], axis=1)

        # Official parameter names: Wemb, gru_Wxrz / gru_Urz + gru_Uh / gru_b (the Keras GRU's kernel,
        # recurrent_kernel, bias; gate order z, r, h), W_encoder, W_decoder, bl_vector, bili.
        # Matrices are stored so that row vectors multiply from the left.
        self.item_embedding = self.add_weight("Wemb", shape=(n, emb), initializer=normal(n, 0))
        self.gru = tf.keras.layers.GRU(
            hid,
            activation="tanh",
            recurrent_activation=params.gate_activation,
            reset_after=False,  # h~ = tanh(x W_h + (r * h) U_h + b_h), as gru_layer._step
            kernel_initializer=normal(emb, 10),  # each of the 3 blocks N(0, 2 / emb)
            recurrent_initializer=ortho_blocks(20),
            bias_initializer="zeros",
            return_sequences=True,
            time_major=True,
            name="gru",
        )
        self.gru.build((None, None, emb))
        self.attn_a1 = self.add_weight("W_encoder", shape=(hid, hid), initializer=normal(hid, 40))
        self.attn_a2 = self.add_weight("W_decoder", shape=(hid, hid), initializer=normal(hid, 41))
        self.attn_v = self.add_weight("bl_vector", shape=(hid,), initializer=normal(1, 42))
        self.bilinear = self.add_weight("bili", shape=(2 * hid, emb), initializer=normal(emb, 43))
        self.sampled_softmax = None
        if params.softmax == "sampled":  # departure 9; holds no variables (checkpoints are unchanged)
            self.sampled_softmax = CatalogueSampledSoftmax(
                info.item_counts, params.n_sample, params.sample_alpha, seed=seed + 97, logq=params.logq
            )

    # ------------------------------------------------------------------ data
    @classmethod
    def make_train_dataset(
        cls, params: NARMConfig, data, run, epoch_seed: int, input_context: tf.distribute.InputContext | None = None
    ) -> tf.data.Dataset:
        """Prefix augmentation of the training records, shuffled (anew each epoch), batched by ``train.batch_size``.

        The dataset declares its cardinality (one counting pass over the
        records, once per process), so ``fit`` works with ``steps_per_execution > 1``.

        With an ``input_context`` (tf.distribute) this input pipeline reads
        only its shard of the files (:meth:`DatasetDir.records`) and batches by
        the per-replica batch (``train.batch_size`` is the global batch). Every
        pipeline yields the same number of batches, that of the smallest shard
        (:func:`~tfpps.data.pipeline.replica_epoch`).
        """
        records = training_records(data, run, epoch_seed, input_context=input_context)
        ds = prefix_examples(records, max_len_of(run), truncate=params.truncate)
        ds = ds.filter(lambda ex: ex["target_item"] >= FIRST_ID)
        if run.data.shuffle_buffer > 0:
            ds = ds.shuffle(run.data.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=True)
        batch_size = run.train.batch_size
        if input_context is not None:
            return replica_epoch(ds, lambda d, n: d.batch(n, drop_remainder=False), batch_size, input_context,
                                 lambda ctx: count_train_examples(data, ctx))
        num_batches = -(-count_train_examples(data) // batch_size)
        ds = ds.batch(batch_size, drop_remainder=False).apply(tf.data.experimental.assert_cardinality(num_batches))
        return finish(ds)

    # ------------------------------------------------------------------ encoder
    def encode(self, features, training: bool = False) -> dict:
        """GRU states ``[T', B, H]`` (time-major), attention weights ``[B, T']`` and context ``[B, 2H]``.

        ``T' = max(1, max length in the batch)``; steps past a row's length
        have weight 0.
        """
        ids = tf.cast(features["item_ids"], tf.int64)
        length = tf.cast(features["length"], tf.int32)
        steps = tf.maximum(tf.reduce_max(length), 1)
        mask = tf.transpose(tf.sequence_mask(length, steps, dtype=self.item_embedding.dtype))  # [T', B]

        # Everything below is time-major ([T', B, ...]).
        emb = tf.gather(self.item_embedding, tf.transpose(ids[:, :steps]))  # [T', B, emb]
        emb = _theano_dropout(emb, self.params.dropout_embed, training, self._dropout_seed(0) if training else None)
        states = self.gru(emb, mask=mask > 0)  # [T', B, H]; masked steps carry the state
        c_global = states[-1]  # the state is carried over padding: last step = last real state

        hid = self.params.hidden_size
        flat = tf.reshape(states, [-1, hid])
        if self.params.attention_activation == "hard_sigmoid":
            # v^T clip(0.2 (A1 h_j + A2 h_t) + 0.5, 0, 1) = (v / 6)^T relu6(h_j (1.2 A1) + h_t (1.2 A2) + 3)
            query = tf.matmul(c_global, 1.2 * self.attn_a2) + 3.0
            hidden = tf.nn.relu6(tf.reshape(tf.matmul(flat, 1.2 * self.attn_a1), tf.shape(states)) + query)
            v = self.attn_v / 6.0
        else:
            query = tf.matmul(c_global, self.attn_a2)
            hidden = tf.sigmoid(tf.reshape(tf.matmul(flat, self.attn_a1), tf.shape(states)) + query)
            v = self.attn_v
        scores = tf.reshape(tf.matmul(tf.reshape(hidden, [-1, hid]), v[:, None]), tf.shape(mask))  # [T', B]
        if self.params.attention_normalisation == "masked_softmax":
            # softmax over the real steps only = the official softmax(sim*mask)*mask, renormalised
            masked = tf.where(mask > 0, scores, tf.fill(tf.shape(scores), -1e9))
            e = tf.exp(masked - tf.reduce_max(masked, axis=0, keepdims=True)) * mask
            weights = e / tf.maximum(tf.reduce_sum(e, axis=0, keepdims=True), 1e-30)
        else:
            weights = scores * mask
        c_local = tf.reduce_sum(weights[:, :, None] * states, axis=0)
        context = tf.concat([c_local, c_global], axis=1)
        return {"states": states, "attention": tf.transpose(weights), "context": context}

    def attention_weights(self, features) -> tf.Tensor:
        """Attention weights ``[B, L]`` over the input's full width (0 past each length)."""
        weights = self.encode(features)["attention"]
        width = tf.shape(features["item_ids"])[1]
        return tf.pad(weights, [[0, 0], [0, tf.maximum(width - tf.shape(weights)[1], 0)]])[:, :width]

    def _query(self, features, training: bool) -> tf.Tensor:
        seed = self._dropout_seed(1) if training else None
        context = _theano_dropout(self.encode(features, training)["context"], self.params.dropout_context, training, seed)
        return tf.matmul(context, self.bilinear)  # B c, [B, emb]

    def _dropout_seed(self, salt: int) -> tf.Tensor:
        """Stateless dropout seed from (train.seed, ``salt``, replica, optimizer step).

        The step is ``optimizer.iterations``, which the backup checkpoint
        restores, so a resumed run draws exactly the masks of an uninterrupted
        one (stateful ``tf.random`` ops would restart their streams); replicas
        of a distributed run draw different masks.
        """
        step, replica = self.step_and_replica()
        base = tf.stack([tf.constant(self._seed, tf.int64), tf.constant(salt, tf.int64) + 16 * replica])
        return tf.random.experimental.stateless_fold_in(base, step)

    def _logits(self, features, training: bool) -> tf.Tensor:
        return tf.matmul(self._query(features, training), self.item_embedding, transpose_b=True)  # [B, num_items]

    # ------------------------------------------------------------------ contract
    # No tensor-dependent Python control flow in the step: AutoGraph is not needed, and converting the
    # model, TFRS and Keras internals costs ~10-25 s of tracing on a 2-core CPU, versus ~1 s unconverted.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, inputs):
        return super().train_step(inputs)

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        if self.sampled_softmax is not None:  # departure 9: softmax over in-batch + sampled candidates
            step, replica = self.step_and_replica()
            targets = tf.cast(features["target_item"], tf.int64)
            return self.sampled_softmax(self._query(features, training), targets, self.item_embedding, step=step,
                                        stream=replica)
        logits = self._logits(features, training)[:, FIRST_ID:]  # PAD/OOV columns out of the softmax
        target = tf.cast(features["target_item"], tf.int32) - FIRST_ID
        valid = tf.cast(target >= 0, logits.dtype)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(target, 0), logits=logits)
        return tf.reduce_sum(losses * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)

    @tf.autograph.experimental.do_not_convert  # see train_step (the evaluator traces this: ~20 s less)
    def score_items(self, features) -> tf.Tensor:
        return self._logits(features, training=False)

    def query_vectors(self, features) -> tf.Tensor:
        """``[B, emb]``: ``B c`` at inference, so that ``score_items == query_vectors @ Wemb^T``."""
        return self._query(features, training=False)

    def item_vectors(self) -> tf.Tensor:
        """``[num_items, emb]``: the (tied) item embedding ``Wemb``."""
        return tf.convert_to_tensor(self.item_embedding)

    def call(self, features, training: bool = False) -> tf.Tensor:
        return self._logits(features, training)
