r"""AEM and ZAM: attention over the user's purchases, for personalised product search.

Qingyao Ai, Daniel N. Hill, S. V. N. Vishwanathan, W. Bruce Croft.
"A Zero Attention Model for Personalized Product Search", CIKM 2019,
https://arxiv.org/abs/1908.11322. The authors' code is not available; the
model follows the paper's equations as third-party code implements them
(``Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search``,
``structures/ZAM.py``; reference notes 1.2), read, not copied.

One architecture, two settings (``zero_attention``)::

    q        = tanh(W mean(w_j : j in query) + b)              # as HEM ("fs")
    f(q, i)  = (v_i^T tanh(W_f q + b_f)) W_h                   # W_f: d x d x beta, W_h: beta
    a_i      = exp f(q, i) / (Z + sum_{h in H_u} exp f(q, h))   # H_u: the user's earlier purchases
    u        = sum_{i in H_u} a_i v_i
    M_uq     = lambda q + (1 - lambda) u
    AEM: Z = 0          (a plain softmax over the history)
    ZAM: Z = exp(0) = 1 (the zero vector joins the history: its score f(q, 0) = 0 and its value 0)

So ZAM can shrink ``u`` towards 0 when no purchase is relevant to the query
(no personalisation), while AEM always returns a convex combination of
purchase vectors. ZAM has **no learned key for the zero slot** (one third-party
version learns one; the paper's zero vector has f(q, 0) = 0 by construction).
A user with no earlier purchase gets ``u = 0`` in both.

Losses (as HEM, :mod:`tfpps.models.search.search_base`): negative sampling for
``M_uq -> item`` with item noise ``∝ count^0.75`` and the item -> word term of
the item's text; there is no free user vector and no user->word term. The
same item table holds the attended history vectors and the target vectors.

Departures / inferred details
-----------------------------
1. The history is the user's most recent ``data.max_len`` *training*
   purchases before the example (the Beam job's ``history_item_ids``);
   the paper attends over all earlier purchases.
2. **Optimisation as HEM, not as the third-party code.** The third-party
   settings (Adam 0.01, U(-0.5/d, 0.5/d) item vectors, item noise
   ``∝ count^0.75``, no L2) did not learn on tfpps's synthetic search data
   (validation NDCG@10 at chance after 3-6 epochs): negatives drawn by
   popularity without a log-noise correction teach the scores to rank
   unpopular items first, and random item vectors drown the small updates.
   The shipped ``configs/models/{aem,zam}.yaml`` use HEM's recipe: SGD 0.1,
   clip 5, zero-initialised item vectors, uniform item noise, L2 0.005. The
   embedding size (200), 10 negatives, beta = 5 and lambda = 0.5 are the
   third-party values.
3. Item -> word predicts a word of the item's text (title, categories) as in
   tfpps's HEM, not of a review.
4. **On the official HEM benchmark** (``amazon-cellphones-hem``) that recipe
   falls to popularity, as HEM's does (``docs/product_search.md``): the
   ``configs/models/{aem,zam}_cellphones.yaml`` recipes, picked on
   validation, use ``item_loss: softmax`` (every item a negative), Adam and
   uniform initialisation.

Example::

    python -m tfpps.train --model=zam --dataset=synthetic-search
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError
from tfpps.models.search.search_base import SearchConfig, SearchModel


@dataclasses.dataclass
class AEMConfig(SearchConfig):
    embedding_size: int = 200
    negatives: int = 10
    att_hidden_units_num: int = 5  # beta
    zero_attention: bool = False

    def validate(self) -> None:
        super().validate()
        if self.att_hidden_units_num <= 0:
            raise ConfigError(f"model_params.att_hidden_units_num={self.att_hidden_units_num}: must be positive")


@dataclasses.dataclass
class ZAMConfig(AEMConfig):
    zero_attention: bool = True


def attention_weights(scores: tf.Tensor, mask: tf.Tensor, zero_attention: bool) -> tf.Tensor:
    r"""``[B, H]`` weights :math:`e^{s_h} / (Z + \sum_{h'} e^{s_{h'}})` over the real slots (``mask``).

    ``Z = 1`` with ``zero_attention`` (ZAM), else 0 (AEM; all-padding rows get 0 weights).

    Example:
      >>> w = attention_weights(tf.constant([[0.0, 0.0]]), tf.constant([[True, True]]), zero_attention=True)
      >>> [round(x, 4) for x in w.numpy()[0]]
      [0.3333, 0.3333]
    """
    scores = tf.where(mask, scores, tf.fill(tf.shape(scores), -1e9))
    if zero_attention:  # the zero item: logit 0 joins the normaliser, its weight is dropped
        scores = tf.concat([scores, tf.zeros_like(scores[:, :1])], axis=1)
    top = tf.stop_gradient(tf.reduce_max(scores, axis=1, keepdims=True))
    exp = tf.exp(scores - top)
    weights = exp / tf.reduce_sum(exp, axis=1, keepdims=True)
    if zero_attention:
        weights = weights[:, :-1]
    return weights * tf.cast(mask, weights.dtype)


@registry.register("aem", AEMConfig, example_kind="search")
class AEM(SearchModel):
    """Attention-based Embedding Model (Ai et al., CIKM 2019); ``zam`` adds the zero vector to the attention."""

    def __init__(self, params: AEMConfig, info, run, **kwargs):
        super().__init__(params, info, run, **kwargs)
        d, beta = params.embedding_size, params.att_hidden_units_num
        self.attention_projection = tf.keras.layers.Dense(d * beta, activation="tanh", name="W_f")
        self.attention_output = self.add_weight(
            name="W_h", shape=[beta], initializer=tf.keras.initializers.RandomUniform(-1.0 / beta**0.5, 1.0 / beta**0.5))

    def attention(self, query: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(weights [B, H], history vectors [B, H, d])`` for encoded queries ``[B, d]`` and history ids ``[B, H]``."""
        history = tf.cast(history, tf.int64)
        vectors = self.item_embedding(history)
        d, beta = self.params.embedding_size, self.params.att_hidden_units_num
        projected = tf.reshape(self.attention_projection(query), [-1, d, beta])  # tanh(W_f q + b_f)
        scores = tf.einsum("bhd,bdk,k->bh", vectors, projected, self.attention_output)  # f(q, i)
        return attention_weights(scores, history > 0, self.params.zero_attention), vectors

    def user_part(self, features, training: bool = False) -> tf.Tensor:
        query = self.query_encoder(features["query_word_ids"], training=training)
        weights, vectors = self.attention(query, self.history_features(features)["items"])
        return tf.einsum("bh,bhd->bd", weights, vectors)


@registry.register("zam", ZAMConfig, example_kind="search")
class ZAM(AEM):
    """Zero Attention Model (Ai et al., CIKM 2019): AEM whose attention can pick a zero vector (no personalisation)."""
