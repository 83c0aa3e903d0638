r"""HEM: the Hierarchical Embedding Model for personalised product search (and QEM, its query-only ablation).

Qingyao Ai, Yongfeng Zhang, Keping Bi, Xu Chen, W. Bruce Croft.
"Learning a Hierarchical Embedding Model for Personalized Product Search",
SIGIR 2017, https://doi.org/10.1145/3077136.3080813. Faithful to the official
TF1 code ``QingyaoAi/Hierarchical-Embedding-Model-for-Personalized-Product-Search``
(``HEM/PersonalizedEmbedding.py``, net_struct ``simplified_fs``), read, not copied.

Model (:mod:`tfpps.models.search.search_base` has the shared parts)::

    q      = tanh(W_f mean(w_j : j in query) + b_f)            # query encoder "fs" (mean, gru too)
    M_uq   = lambda q + (1 - lambda) u                        # lambda fixed (0.5) or sigmoid(learned)
    s(i)   = M_uq . v_i   (+ b_i: bias_product; cosine: normalised parts)
    loss   = NS(M_uq -> i) + NS(v_i -> w) + NS(u -> w)        # NS: word2vec negative sampling,
                                                               #  one shared draw of 5 per batch

Item negatives are uniform over the catalogue (the code's
``product_distribute = ones``), word negatives ``∝ count^0.75``. User and
item vectors and all biases start at 0, word vectors at U(-0.5/d, 0.5/d).
The faithful optimiser is SGD, lr 0.5 decaying linearly per step to 1e-4 of
it, global-norm clip 5 (``configs/models/hem.yaml``), L2 0.005 on the looked-up
vectors of every term, loss / batch size.

Departures
----------
1. **Words come from the item's text, not from the review.** The official
   instance is (user, product, query, one word of the user's review of the
   product); the user->word and product->word terms predict that review
   word. tfpps's Beam job writes product text (title, category paths,
   description), so both terms predict a word drawn uniformly from the
   purchased item's text. Word sub-sampling (``subsampling_rate``) is not
   applied.
2. **Instances per purchase.** The official code repeats the (user, query,
   product) loss once per kept review word; tfpps sees each (purchase, query)
   record ``repeats_per_record`` times per epoch (each time with a fresh
   word), so an "epoch" is not the same amount of work as in the paper.
3. **Query padding.** The code left-pads queries with a trainable extra word
   that counts in the mean; ``query_padding: hem`` reproduces it, the default
   ``masked`` averages the real words only.
4. **A recipe for data without reviews.** On the official HEM benchmark,
   whose reviews are not distributed, the faithful recipe (SGD from zero
   vectors, 5 batch-shared uniform negatives) ends at popularity's level.
   ``configs/models/{hem,qem}_cellphones.yaml``, picked on validation, use
   ``item_loss: softmax`` (a softmax over every item), Adam, uniform
   initialisation and one pass per record; ``docs/product_search.md`` has
   the diagnosis, one change at a time.

QEM (``--model=qem``) is the same network without the user: ``M = q``
(no user vector, no user->word term), the query-only, non-personalised
baseline of the HEM paper.

Example::

    python -m tfpps.train --model=hem --dataset=synthetic-search
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError
from tfpps.models.search.search_base import SearchConfig, SearchModel


@dataclasses.dataclass
class HEMConfig(SearchConfig):
    user_word_loss: bool = True  # u -> w (net_struct without "nuw")


@dataclasses.dataclass
class QEMConfig(SearchConfig):
    query_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.query_weight != 1.0:
            raise ConfigError("qem is query-only: model_params.query_weight must be 1.0 (use hem for a mix)")


@registry.register("hem", HEMConfig, example_kind="search")
class HEM(SearchModel):
    """Hierarchical Embedding Model (Ai et al., SIGIR 2017): a free user vector mixed with the encoded query."""

    def __init__(self, params: HEMConfig, info, run, **kwargs):
        super().__init__(params, info, run, **kwargs)
        init = "zeros" if params.init == "zeros" else tf.keras.initializers.RandomUniform(
            -0.5 / params.embedding_size, 0.5 / params.embedding_size)
        self.user_embedding = tf.keras.layers.Embedding(info.num_users, params.embedding_size,
                                                        embeddings_initializer=init, name="user_emb")
        self.user_embedding.build((None,))

    def user_part(self, features, training: bool = False) -> tf.Tensor:
        return self.user_embedding(tf.cast(features["user_id"], tf.int64))

    def trains_word_losses(self) -> bool:
        return self.params.item_word_loss or self.params.user_word_loss

    def extra_losses(self, features, words, has_word, training: bool):
        if not self.params.user_word_loss:
            return []
        return [self.word_term(self.user_part(features), words, has_word)]


@registry.register("qem", QEMConfig, example_kind="search")
class QEM(SearchModel):
    """Query-only embedding model: HEM without the user (the non-personalised search baseline)."""

    uses_user_part = False
