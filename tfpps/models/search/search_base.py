r"""What the product-search models (HEM, QEM, AEM, ZAM, HRNN-search) share.

A search model maps a (user, query) pair to a *personalised query* vector
:math:`M_{uq}` and ranks every item :math:`i` by

.. math::
   s(i \mid u, q) = M_{uq} \cdot v_i \; (+\, b_i \text{ with score "bias_product"})

(``score: cosine`` L2-normalises the user part, the query part and the item
vectors separately first, as the HEM code does). It is trained with the
word2vec-style negative-sampling loss of :mod:`tfpps.tasks.negative_sampling`:
:math:`M_{uq}` must pick the purchased item against ``negatives`` item
negatives shared by the batch. With ``item_word_loss`` the item vector must
also predict a word of the item's text against word negatives
(``P(w) ∝ count(w)^0.75``): HEM's product->word language model, which ties
items to the query words.

``item_loss: softmax`` replaces the ``M_uq -> item`` negative-sampling term by
a softmax cross-entropy over every real item,

.. math::
   \ell = -\log \frac{\exp(M_{uq} \cdot v_i + b_i)}{\sum_{j} \exp(M_{uq} \cdot v_j + b_j)}

(a departure from HEM, for catalogues of up to some 10^5 items, where the
``[B, num_items]`` logits are cheap). ``item_loss: sampled_softmax`` is its catalogue-scale form: the same
softmax over the batch's purchased items plus ``n_sample`` shared popularity-sampled items, logQ-corrected
(:mod:`tfpps.tasks.sampled_softmax`). With HEM's 5 uniform negatives shared by
the batch, an item of a 10^4 catalogue is a negative about once per epoch but
a positive tens of times, so without review words to shape the space the
positive pull wins: every query and item vector drifts to one direction and
the ranking falls back to popularity (``docs/product_search.md`` has the
measurements on the official HEM benchmark).

The query part is :class:`tfpps.layers.query_encoder.QueryEncoder` (HEM's
``fs`` by default) over a word-embedding table shared with the word losses.

Subclasses implement :meth:`SearchModel.user_part` (``[B, d]``: a free user
vector in HEM, attention over purchases in AEM/ZAM, a hierarchical RNN in
HRNN-search) and may add loss terms with :meth:`SearchModel.extra_losses`.

Data: the Beam job's ``--kind=search`` records (:mod:`tfpps.data.examples.search`);
evaluation ranks all items for each held-out (user, query) with every item the
user bought with that query relevant and the user's training purchases removed
(the HEM protocol), via the trainer's multi-target evaluator.

Loss normalisation follows the HEM code: the sum over the batch of every
term plus ``l2`` times ``tf.nn.l2_loss`` of each term's looked-up vectors
(context, true target, sampled targets), divided by the batch size.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps.config import ConfigError, non_negative
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.examples import search as search_data
from tfpps.data.pipeline import batch_padded, finish, replica_epoch, training_records
from tfpps.spec.schema import FIRST_ID
from tfpps.layers.query_encoder import QUERY_ENCODERS, QUERY_PADDING, QueryEncoder
from tfpps.models.base import SequentialModel, max_len_of, seed_of
from tfpps.tasks.sampled_softmax import CatalogueSampledSoftmax
from tfpps.tasks.negative_sampling import UnigramSampler, negative_sampling_loss

SCORES = ("product", "bias_product", "cosine")
INITS = ("zeros", "uniform")
ITEM_LOSSES = ("negative_sampling", "softmax", "sampled_softmax")


@dataclasses.dataclass
class SearchConfig:
    """Settings every search model has (defaults: the official HEM code)."""

    embedding_size: int = 100
    query_encoder: str = "fs"  # fs | mean | gru
    query_padding: str = "masked"  # masked | hem (pad slots count in the mean, the official code's quirk)
    query_max_length: int = 12  # with query_padding=hem: queries are padded/truncated to this many words
    query_weight: float = 0.5  # lambda of M = lambda*q + (1-lambda)*u; < 0: learned sigmoid(w)
    score: str = "product"  # product | bias_product | cosine
    negatives: int = 5  # item negatives (and word negatives) per batch, shared by the batch
    item_loss: str = "negative_sampling"  # negative_sampling (HEM) | softmax (over every item) | sampled_softmax
    n_sample: int = 2048  # item_loss=sampled_softmax: shared popularity-sampled negatives per step (+ in-batch)
    sample_alpha: float = 0.5  # item_loss=sampled_softmax: negatives ~ support^sample_alpha
    logq: float = 1.0  # item_loss=sampled_softmax: logQ correction strength (1 exact, 0 off)
    item_noise_distortion: float = 0.0  # P(item) ∝ count^d; HEM: uniform (0), AEM/ZAM: 0.75
    word_noise_distortion: float = 0.75
    item_word_loss: bool = True  # item -> word of its text
    l2: float = 0.005
    init: str = "zeros"  # zeros: user/item vectors start at 0 (HEM); uniform: U(-0.5/d, 0.5/d) like the words
    repeats_per_record: int = 1  # each training record is seen this many times per epoch (HEM: once per review word)
    # history-based models read the user's data.max_len most recent training purchases (models.base.max_len_of)

    RENAMED_KEYS = {"history_length": "data.max_len"}  # one name for the history length, read in one place

    def validate(self) -> None:
        if self.embedding_size <= 0 or self.negatives <= 0 or self.repeats_per_record <= 0:
            raise ConfigError("embedding_size, negatives and repeats_per_record must be positive")
        for name, choices in (("query_encoder", QUERY_ENCODERS), ("query_padding", QUERY_PADDING),
                              ("score", SCORES), ("init", INITS), ("item_loss", ITEM_LOSSES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"model_params.{name}={getattr(self, name)!r}: expected one of {', '.join(choices)}")
        if self.query_weight > 1:
            raise ConfigError(f"model_params.query_weight={self.query_weight}: expected <= 1 (< 0 = learned)")
        if self.l2 < 0 or self.item_noise_distortion < 0 or self.word_noise_distortion < 0:
            raise ConfigError("l2 and the noise distortions must be >= 0")
        if self.query_max_length <= 0:
            raise ConfigError(f"model_params.query_max_length={self.query_max_length}: must be positive")
        non_negative(self, "n_sample", "sample_alpha", "logq")


def recent_items(ids: tf.Tensor, n: int) -> tf.Tensor:
    """The last ``n`` real items of left-aligned, 0-padded ``ids [B, L]``, left-aligned and 0-padded ``[B, n]``.

    >>> recent_items(tf.constant([[5, 6, 7, 0], [8, 0, 0, 0]]), 2).numpy().tolist()
    [[6, 7], [8, 0]]
    """
    lengths = tf.reduce_sum(tf.cast(ids > 0, tf.int32), axis=1)
    start = tf.maximum(lengths - n, 0)
    positions = start[:, None] + tf.range(n)[None, :]
    valid = positions < lengths[:, None]
    picked = tf.gather(ids, tf.minimum(positions, tf.shape(ids)[1] - 1), batch_dims=1)
    return tf.where(valid, picked, tf.zeros_like(picked))


def _uniform_init(dim: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.RandomUniform(-0.5 / dim, 0.5 / dim)


class SearchModel(SequentialModel):
    """Base of personalised product-search models; see the module docstring."""

    uses_user_part = True
    DISTRIBUTE_UNSUPPORTED = None  # stateless (purchase, query) examples: trains under mirrored / multiworker
    DENSE_DISTRIBUTED_GRADIENTS = True  # see SequentialModel: the sparse all-gather aborts for these models

    def __init__(self, params: SearchConfig, info, run, **kwargs):
        super().__init__(params, info, run, **kwargs)
        if info.kind != "search":
            raise ConfigError(
                f"model {run.model!r} needs a product-search dataset (Beam --kind=search), got a {info.kind!r} one;"
                " try --dataset=synthetic-search"
            )
        d = params.embedding_size
        num_words = max(info.num_words, FIRST_ID + 1)
        item_init = "zeros" if params.init == "zeros" else _uniform_init(d)
        self.word_embedding = tf.keras.layers.Embedding(num_words, d, embeddings_initializer=_uniform_init(d), name="word_emb")
        self.word_bias = tf.keras.layers.Embedding(num_words, 1, embeddings_initializer="zeros", name="word_bias")
        self.item_embedding = tf.keras.layers.Embedding(info.num_items, d, embeddings_initializer=item_init, name="product_emb")
        self.item_bias = tf.keras.layers.Embedding(info.num_items, 1, embeddings_initializer="zeros", name="product_bias")
        for table in (self.word_embedding, self.word_bias, self.item_embedding, self.item_bias):
            table.build((None,))  # built now: item_vectors() reads the tables before any call (export after load_weights)
        self.query_encoder = QueryEncoder(self.word_embedding, d, params.query_encoder, params.query_padding,
                                          params.query_max_length, name="query_encoder")
        if params.query_weight < 0:
            self.query_weight_logit = self.add_weight(name="query_weight_logit", shape=[], initializer="zeros")
        self.item_sampler = UnigramSampler(info.item_counts, params.item_noise_distortion, name="item_noise")
        self.sampled_item_softmax = None
        if params.item_loss == "sampled_softmax":  # holds no variables (checkpoints are unchanged)
            self.sampled_item_softmax = CatalogueSampledSoftmax(
                info.item_counts, params.n_sample, params.sample_alpha, seed=seed_of(run) + 97, logq=params.logq
            )
        self.word_sampler = UnigramSampler(self._word_counts(run), params.word_noise_distortion, name="word_noise")
        words, lengths = search_data.item_word_table(DatasetDir(run.data.dir), info.num_items) if run.data.dir else (
            np.zeros([info.num_items, 1], np.int64), np.zeros([info.num_items], np.int64))
        self.item_words = tf.constant(words)
        self.item_word_lengths = tf.constant(lengths)
        self.has_item_text = bool(lengths.sum() > 0)
        if not (self.has_item_text and self.trains_word_losses()):
            self.word_bias.trainable = False  # only the word losses read it: no gradient, no optimizer warning

    def trains_word_losses(self) -> bool:
        """Whether a ``context -> word`` term is on (given item text): ``item_word_loss`` here; HEM adds
        ``user_word_loss``."""
        return self.params.item_word_loss

    @staticmethod
    def _word_counts(run) -> np.ndarray:
        if not run.data.dir:
            return np.ones([FIRST_ID + 1])
        return DatasetDir(run.data.dir).vocab_counts("words")

    # ------------------------------------------------------------------ data
    @classmethod
    def steps_per_epoch(cls, params: SearchConfig, data, run) -> int:
        return -(-data.count("train") * params.repeats_per_record // run.train.batch_size)

    @classmethod
    def make_train_dataset(cls, params: SearchConfig, data, run, epoch_seed: int,
                           input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Shuffled (purchase, query) examples, each ``repeats_per_record`` times, padded batches.

        With an ``input_context`` (tf.distribute) this input pipeline reads only its shard of the files
        and batches by the per-replica batch, as many batches as every pipeline has
        (:func:`~tfpps.data.pipeline.replica_epoch`)."""
        records = training_records(data, run, epoch_seed, input_context=input_context)
        ds = search_data.train_examples(records, max_len_of(run))
        if params.repeats_per_record > 1:
            ds = ds.flat_map(lambda ex: tf.data.Dataset.from_tensors(ex).repeat(params.repeats_per_record))
            if run.data.shuffle_buffer > 0:
                ds = ds.shuffle(run.data.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=True)
        if input_context is not None:
            return replica_epoch(ds, lambda d, n: d.padded_batch(n), run.train.batch_size, input_context,
                                 lambda ctx: data.shard_count("train", ctx) * params.repeats_per_record)
        ds = ds.padded_batch(run.train.batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(cls.steps_per_epoch(params, data, run)))
        return finish(ds)

    def eval_dataset(self, data, split: str, run):
        records = data.records(split, num_parallel_reads=run.data.num_parallel_reads)
        return batch_padded(search_data.eval_examples(records, max_len_of(run)), run.eval.batch_size)

    # ------------------------------------------------------------------ encoders
    def history_features(self, features) -> dict:
        """The history features, with serving defaults: ``history_item_ids`` (else the most recent
        ``data.max_len`` items of ``item_ids``, as :mod:`tfpps.serving` requests carry them),
        ``history_query_ids`` (OOV when unknown), ``history_timestamps`` and ``timestamp`` (0 when unknown:
        the whole history is then one session that the query continues)."""
        if "history_item_ids" in features:
            items = tf.cast(features["history_item_ids"], tf.int64)
        else:
            items = recent_items(tf.cast(features["item_ids"], tf.int64), max_len_of(self.run_config))
        zeros = tf.zeros_like(items)
        out = {
            "items": items,
            "queries": tf.cast(features["history_query_ids"], tf.int64) if "history_query_ids" in features else tf.where(items > 0, zeros + 1, zeros),
            "timestamps": tf.cast(features["history_timestamps"], tf.int64) if "history_timestamps" in features else zeros,
            "now": tf.cast(features["timestamp"], tf.int64) if "timestamp" in features else tf.zeros_like(items[:, 0]),
        }
        return out

    def query_weight(self) -> tf.Tensor:
        if self.params.query_weight < 0:
            return tf.sigmoid(self.query_weight_logit)
        return tf.constant(self.params.query_weight, tf.float32)

    def user_part(self, features, training: bool = False) -> tf.Tensor:
        """``[B, d]``: the personal part of the query vector."""
        raise NotImplementedError

    def personalized_query(self, features, training: bool = False) -> tf.Tensor:
        """``M = lambda * q + (1 - lambda) * u`` (parts L2-normalised first with ``score: cosine``)."""
        query = self.query_encoder(features["query_word_ids"], training=training)
        lam = self.query_weight()
        if not self.uses_user_part:
            return tf.math.l2_normalize(query, -1) if self.params.score == "cosine" else query
        user = self.user_part(features, training=training)
        if self.params.score == "cosine":
            query, user = tf.math.l2_normalize(query, -1), tf.math.l2_normalize(user, -1)
        return lam * query + (1.0 - lam) * user

    # ------------------------------------------------------------------ scoring
    def item_vectors(self) -> tf.Tensor:
        vectors = self.item_embedding.embeddings
        if self.params.score == "cosine":
            vectors = tf.math.l2_normalize(vectors, -1)
        if self.params.score == "bias_product":
            vectors = tf.concat([vectors, self.item_bias.embeddings], axis=1)
        return vectors

    def query_vectors(self, features) -> tf.Tensor:
        query = self.personalized_query(features, training=False)
        if self.params.score == "bias_product":
            query = tf.concat([query, tf.ones_like(query[:, :1])], axis=1)
        return query

    def score_items(self, features) -> tf.Tensor:
        return tf.matmul(self.query_vectors(features), self.item_vectors(), transpose_b=True)

    def build_for_serving(self) -> None:
        """Create every lazily built weight (one call on a dummy request) so an export can track them all;
        weights loaded with ``load_weights`` before are restored into them as they are created."""
        self.score_items({"item_ids": tf.constant([[FIRST_ID]], tf.int64), "user_id": tf.constant([FIRST_ID], tf.int64),
                          "query_word_ids": tf.constant([[FIRST_ID]], tf.int64)})

    # ------------------------------------------------------------------ losses
    def _term(self, context, true_vectors, true_bias, negative_ids, table, bias_table, weights=None):
        """One negative-sampling term: (summed loss, its l2_loss regulariser). The regulariser of the
        batch-shared negatives is divided by the replicas in sync: each replica draws and regularises its own
        set, and over the replicas that must add up to one draw's, as in one process."""
        neg_vectors, neg_bias = table(negative_ids), bias_table(negative_ids)[:, 0]
        losses = negative_sampling_loss(context, true_vectors, true_bias, neg_vectors, neg_bias)
        replicas = float(tf.distribute.get_strategy().num_replicas_in_sync)
        l2 = tf.nn.l2_loss(context) + tf.nn.l2_loss(true_vectors) + tf.nn.l2_loss(neg_vectors) / replicas
        if weights is not None:
            losses, l2 = losses * weights, l2 * tf.reduce_mean(weights)
        return tf.reduce_sum(losses), l2

    def _softmax_term(self, context: tf.Tensor, items: tf.Tensor, true_vectors: tf.Tensor):
        """``M_uq -> item`` as a softmax over every real item (logit ``M_uq . v_i + b_i``, PAD/OOV excluded):
        (summed cross-entropy, l2_loss of the context and true vectors)."""
        table = self.item_embedding.embeddings
        if self.params.score == "cosine":
            table = tf.math.l2_normalize(table, -1)
        logits = tf.matmul(context, table, transpose_b=True) + self.item_bias.embeddings[:, 0][None, :]
        special = tf.range(tf.shape(logits)[1]) < FIRST_ID
        logits = tf.where(special[None, :], tf.constant(-1e9, logits.dtype), logits)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=items, logits=logits)
        return tf.reduce_sum(losses), tf.nn.l2_loss(context) + tf.nn.l2_loss(true_vectors)

    def _sampled_softmax_term(self, context: tf.Tensor, items: tf.Tensor, true_vectors: tf.Tensor):
        """``M_uq -> item`` as a softmax over the in-batch purchases and ``n_sample`` shared popularity-sampled
        items, logQ-corrected (:class:`~tfpps.tasks.sampled_softmax.CatalogueSampledSoftmax`): the
        ``softmax`` term's objective at a cost that does not grow with the catalogue (summed over the batch)."""
        step, replica = self.step_and_replica()
        mean = self.sampled_item_softmax(context, items, self.item_embedding.embeddings, step=step, stream=replica,
                                         bias=self.item_bias.embeddings, normalize_items=self.params.score == "cosine")
        batch = tf.cast(tf.shape(items)[0], mean.dtype)
        return mean * batch, tf.nn.l2_loss(context) + tf.nn.l2_loss(true_vectors)

    def sample_item_words(self, item_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One word of each item's text, uniformly (``[B]`` ids) and a ``[B]`` float mask of items that have text."""
        lengths = tf.gather(self.item_word_lengths, item_ids)
        pick = tf.cast(tf.floor(tf.random.uniform(tf.shape(item_ids)) * tf.cast(tf.maximum(lengths, 1), tf.float32)), tf.int64)
        words = tf.gather(tf.gather(self.item_words, item_ids), tf.minimum(pick, tf.maximum(lengths - 1, 0)), batch_dims=1)
        return words, tf.cast(lengths > 0, tf.float32)

    def word_term(self, context: tf.Tensor, words: tf.Tensor, has_word: tf.Tensor):
        """``context -> word`` negative-sampling term (HEM's item->word and user->word losses)."""
        negatives = self.word_sampler.sample(self.params.negatives)
        return self._term(context, self.word_embedding(words), self.word_bias(words)[:, 0], negatives,
                          self.word_embedding, self.word_bias, has_word)

    def extra_losses(self, features, words, has_word, training: bool):
        """Additional (summed loss, l2) terms; HEM adds user->word."""
        return []

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        items = tf.cast(features["item_id"], tf.int64)
        batch = tf.cast(tf.shape(items)[0], tf.float32)
        example = self.personalized_query(features, training=training)
        item_vectors = self.item_embedding(items)
        if self.params.score == "cosine":
            item_vectors = tf.math.l2_normalize(item_vectors, -1)
        if self.params.item_loss == "softmax":
            terms = [self._softmax_term(example, items, item_vectors)]
        elif self.sampled_item_softmax is not None:
            terms = [self._sampled_softmax_term(example, items, item_vectors)]
        else:
            terms = [self._term(example, item_vectors, self.item_bias(items)[:, 0],
                                self.item_sampler.sample(self.params.negatives), self.item_embedding, self.item_bias)]
        if self.has_item_text:
            words, has_word = self.sample_item_words(items)
            if self.params.item_word_loss:
                terms.append(self.word_term(self.item_embedding(items), words, has_word))
            terms.extend(self.extra_losses(features, words, has_word, training))
        loss = tf.add_n([t[0] for t in terms])
        if self.params.l2 > 0:
            loss += self.params.l2 * tf.add_n([t[1] for t in terms])
        return loss / batch
