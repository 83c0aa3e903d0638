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
"""
from __future__ import annotations

import dataclasses
import math

import tfpps  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from tfpps.config import choice, positive, probability
from tfpps.data.pipeline import AUTOTUNE
from tfpps.data.schema import FIRST_ID
from tfpps.models.base import DatasetInfo, SequentialModel
from tfpps.registry import register

_ACTIVATIONS = {
    "hard_sigmoid": lambda x: tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0),  # Theano T.nnet.hard_sigmoid
    "sigmoid": tf.sigmoid,
}


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

    def validate(self) -> None:
        positive(self, "embedding_size", "hidden_size")
        probability(self, "dropout_embed", "dropout_context")
        choice(self, "attention_normalisation", ("masked_softmax", "none"))
        choice(self, "gate_activation", tuple(_ACTIVATIONS))
        choice(self, "attention_activation", tuple(_ACTIVATIONS))
        choice(self, "truncate", ("last", "first"))


def _theano_dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    """The official ``dropout_layer``: keep-mask without rescaling at training, ``x * keep`` at inference."""
    if rate == 0.0:
        return x
    keep = 1.0 - rate
    if training:
        return x * tf.cast(tf.random.uniform(tf.shape(x)) < keep, x.dtype)
    return x * keep


_GRU_CACHE: dict = {}


def official_gru(gate_activation: str = "hard_sigmoid"):
    """The official NARM GRU recurrence with a hand-written backward pass (BPTT).

    Returns ``f(x_proj [T, B, 3H], mask [T, B, 1], u_rz [H, 2H], u_h [H, H]) -> states [T, B, H]``
    where ``x_proj = x W_xrz + b`` holds the input projections of the gates
    ``[z | r | h~]`` (computed outside, as one matmul). Per step::

        z, r = act(h U_rz + x_proj[:, :2H]);  h~ = tanh((r * h) U_h + x_proj[:, 2H:])
        h    = h + m * z * (h~ - h)            # = m ((1 - z) h + z h~) + (1 - m) h

    The gradient is exact (it equals automatic differentiation of the
    forward loop) but keeps only the two ``dh`` matmuls inside the reverse
    loop; the weight gradients are two large matmuls after it. About twice
    as fast as autodiff through ``tf.scan`` on CPU.
    """
    if gate_activation in _GRU_CACHE:
        return _GRU_CACHE[gate_activation]
    act = _ACTIVATIONS[gate_activation]
    if gate_activation == "hard_sigmoid":

        def act_grad(y):  # derivative of clip(0.2 x + 0.5, 0, 1) from its output
            return 0.2 * tf.cast((y > 0.0) & (y < 1.0), y.dtype)

    else:

        def act_grad(y):
            return y * (1.0 - y)

    @tf.custom_gradient
    def gru(x_proj, mask, u_rz, u_h):
        hid = u_h.shape[0]  # static
        zeros = tf.zeros([tf.shape(x_proj)[1], hid], x_proj.dtype)

        def step(carry, inputs):
            h_prev = carry[0]
            xp, m = inputs
            pre = tf.matmul(h_prev, u_rz) + xp[:, : 2 * hid]
            z, r = act(pre[:, :hid]), act(pre[:, hid:])
            h_cand = tf.tanh(tf.matmul(h_prev * r, u_h) + xp[:, 2 * hid :])
            return h_prev + m * z * (h_cand - h_prev), z, r, h_cand

        states, zs, rs, cands = tf.scan(step, (x_proj, mask), initializer=(zeros, zeros, zeros, zeros))

        def grad(d_states):
            h_prevs = tf.concat([zeros[None], states[:-1]], axis=0)

            def back(carry, inputs):
                dh_out, h_prev, z, r, h_cand, m = inputs
                g = dh_out + carry[0]  # from the output at t and from step t + 1
                gm = g * m
                d_a = gm * z * (1.0 - h_cand * h_cand)  # through tanh
                d_hr = tf.matmul(d_a, u_h, transpose_b=True)  # d (r * h_prev)
                d_pre = tf.concat([gm * (h_cand - h_prev) * act_grad(z), d_hr * h_prev * act_grad(r)], axis=1)
                dh_prev = g * (1.0 - m * z) + d_hr * r + tf.matmul(d_pre, u_rz, transpose_b=True)
                return dh_prev, d_pre, d_a

            init = (zeros, tf.zeros([tf.shape(zeros)[0], 2 * hid], zeros.dtype), zeros)
            _, d_pres, d_as = tf.scan(back, (d_states, h_prevs, zs, rs, cands, mask), initializer=init, reverse=True)
            d_urz = tf.einsum("tbh,tbg->hg", h_prevs, d_pres)
            d_uh = tf.einsum("tbh,tbg->hg", h_prevs * rs, d_as)
            return tf.concat([d_pres, d_as], axis=2), None, d_urz, d_uh

        return states, grad

    _GRU_CACHE[gate_activation] = gru
    return gru


def narm_prefix_examples(records: tf.data.Dataset, max_len: int, truncate: str = "last") -> tf.data.Dataset:
    """Every (prefix -> next item) pair of each record, histories cut to ``max_len`` items.

    ``truncate="last"`` keeps the most recent items (as
    :func:`tfpps.data.pipeline.prefix_examples`); ``"first"`` keeps the first
    ones, as the official loader's ``x[:maxlen]``. Histories are left-aligned
    and 0-padded.
    """

    def expand(rec):
        items = rec["item_ids"]
        n = tf.shape(items, out_type=tf.int64)[0]
        ends = tf.range(1, n, dtype=tf.int64)  # target positions
        lengths = tf.minimum(ends, max_len)
        starts = ends - lengths if truncate == "last" else tf.zeros_like(ends)
        idx = starts[:, None] + tf.range(max_len, dtype=tf.int64)[None, :]
        valid = tf.range(max_len, dtype=tf.int64)[None, :] < lengths[:, None]
        hist = tf.where(valid, tf.gather(items, tf.minimum(idx, tf.maximum(n - 1, 0))), tf.zeros_like(idx))
        return tf.data.Dataset.from_tensor_slices(
            {
                "item_ids": hist,
                "length": lengths,
                "target_item": tf.gather(items, ends),
                "user_id": tf.fill(tf.shape(ends), rec["user_id"]),
            }
        )

    return records.flat_map(expand)


@register("narm", NARMConfig)
class NARM(SequentialModel):
    """NARM (Li et al. CIKM'17): GRU + attention hybrid encoder, bilinear decoder, full softmax."""

    def __init__(self, params: NARMConfig, info: DatasetInfo, run=None, **kwargs):
        super().__init__(params, info, run, **kwargs)
        params.validate()
        seed = int(getattr(getattr(run, "train", None), "seed", 42))
        emb, hid, n = params.embedding_size, params.hidden_size, info.num_items

        def normal(fan: int, k: int):
            return tf.keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan), seed=seed + k)

        def ortho_blocks(blocks: int, k: int):
            inits = [tf.keras.initializers.Orthogonal(seed=seed + k + i) for i in range(blocks)]
            return lambda shape, dtype=None: tf.concat([f((hid, hid), dtype) for f in inits], axis=1)

        def stacked_normal(k: int):  # Wxrz = [W_z | W_r | W_h], each block N(0, 2/emb)
            inits = [normal(emb, k + i) for i in range(3)]
            return lambda shape, dtype=None: tf.concat([f((emb, hid), dtype) for f in inits], axis=1)

        # Names follow the official parameters (Wemb, gru_Wxrz, gru_Urz, gru_Uh, gru_b, W_encoder,
        # W_decoder, bl_vector, bili); matrices are stored so that rows multiply from the left.
        self.item_embedding = self.add_weight("Wemb", shape=(n, emb), initializer=normal(n, 0))
        self.gru_kernel = self.add_weight("gru_Wxrz", shape=(emb, 3 * hid), initializer=stacked_normal(10))
        self.gru_recurrent_rz = self.add_weight("gru_Urz", shape=(hid, 2 * hid), initializer=ortho_blocks(2, 20))
        self.gru_recurrent_h = self.add_weight("gru_Uh", shape=(hid, hid), initializer=ortho_blocks(1, 30))
        self.gru_bias = self.add_weight("gru_b", shape=(3 * hid,), initializer="zeros")
        self.attn_a1 = self.add_weight("W_encoder", shape=(hid, hid), initializer=normal(hid, 40))
        self.attn_a2 = self.add_weight("W_decoder", shape=(hid, hid), initializer=normal(hid, 41))
        self.attn_v = self.add_weight("bl_vector", shape=(hid,), initializer=normal(1, 42))
        self.bilinear = self.add_weight("bili", shape=(2 * hid, emb), initializer=normal(emb, 43))
        self._gate = _ACTIVATIONS[params.gate_activation]
        self._attn_act = _ACTIVATIONS[params.attention_activation]

    # ------------------------------------------------------------------ data
    @classmethod
    def make_train_dataset(cls, params: NARMConfig, data, run, epoch_seed: int) -> tf.data.Dataset:
        """Shuffled prefix augmentation of the training records, batched by ``train.batch_size``."""
        records = data.records(
            "train",
            shuffle=True,
            seed=epoch_seed,
            shuffle_buffer=run.data.shuffle_buffer,
            num_parallel_reads=run.data.num_parallel_reads,
        )
        ds = narm_prefix_examples(records, run.data.max_len, params.truncate)
        ds = ds.filter(lambda ex: ex["target_item"] >= FIRST_ID)
        if run.data.shuffle_buffer > 0:
            ds = ds.shuffle(run.data.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        return ds.batch(run.train.batch_size, drop_remainder=False).prefetch(AUTOTUNE)

    # ------------------------------------------------------------------ encoder
    def _gru(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Official GRU over time-major inputs ``x [T, B, emb]``, ``mask [T, B, 1]``; returns ``[T, B, H]``."""
        x_proj = tf.einsum("tbe,eg->tbg", x, self.gru_kernel) + self.gru_bias  # all input matmuls at once
        gru = official_gru(self.params.gate_activation)
        return gru(x_proj, mask, tf.convert_to_tensor(self.gru_recurrent_rz), tf.convert_to_tensor(self.gru_recurrent_h))

    def encode(self, features, training: bool = False) -> dict:
        """Hidden states ``[B, T', H]``, attention weights ``[B, T']`` and context ``[B, 2H]``.

        ``T' = max(1, max length in the batch)``; steps past a row's length
        have weight 0.
        """
        ids = tf.cast(features["item_ids"], tf.int64)
        length = tf.cast(features["length"], tf.int32)
        steps = tf.maximum(tf.reduce_max(length), 1)
        ids = ids[:, :steps]
        mask = tf.sequence_mask(length, steps, dtype=self.item_embedding.dtype)  # [B, T']

        emb = tf.gather(self.item_embedding, tf.transpose(ids))  # [T', B, emb]
        emb = _theano_dropout(emb, self.params.dropout_embed, training)
        states = self._gru(emb, tf.transpose(mask)[:, :, None])  # [T', B, H]
        c_global = states[-1]  # the state is carried over padding: last step = last real state
        states = tf.transpose(states, [1, 0, 2])  # [B, T', H]

        q = tf.einsum("bth,hk->btk", states, self.attn_a1) + tf.matmul(c_global, self.attn_a2)[:, None, :]
        scores = tf.einsum("btk,k->bt", self._attn_act(q), self.attn_v)
        if self.params.attention_normalisation == "masked_softmax":
            # softmax over real steps only = the official softmax(sim*mask)*mask renormalised
            masked = tf.where(mask > 0, scores, tf.fill(tf.shape(scores), -1e9))
            e = tf.exp(masked - tf.reduce_max(masked, axis=1, keepdims=True)) * mask
            weights = e / tf.maximum(tf.reduce_sum(e, axis=1, keepdims=True), 1e-30)
        else:
            weights = scores * mask
        c_local = tf.einsum("bt,bth->bh", weights, states)
        context = tf.concat([c_local, c_global], axis=1)
        return {"states": states, "attention": weights, "context": context}

    def attention_weights(self, features) -> tf.Tensor:
        """Attention weights ``[B, L]`` over the input's full width (0 past each length)."""
        weights = self.encode(features)["attention"]
        width = tf.shape(features["item_ids"])[1]
        return tf.pad(weights, [[0, 0], [0, tf.maximum(width - tf.shape(weights)[1], 0)]])[:, :width]

    def _logits(self, features, training: bool) -> tf.Tensor:
        context = _theano_dropout(self.encode(features, training)["context"], self.params.dropout_context, training)
        query = tf.matmul(context, self.bilinear)  # B c, [B, emb]
        return tf.matmul(query, self.item_embedding, transpose_b=True)  # [B, num_items]

    # ------------------------------------------------------------------ contract
    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        logits = self._logits(features, training)[:, FIRST_ID:]  # PAD/OOV columns out of the softmax
        target = tf.cast(features["target_item"], tf.int32) - FIRST_ID
        valid = tf.cast(target >= 0, logits.dtype)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(target, 0), logits=logits)
        return tf.reduce_sum(losses * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)

    def score_items(self, features) -> tf.Tensor:
        return self._logits(features, training=False)

    def call(self, features, training: bool = False) -> tf.Tensor:
        return self._logits(features, training)
