"""The exported recommender: raw string ids in, the top-k item ids and their scores out.

:class:`RecommenderModule` is the ``tf.Module`` that :mod:`tfpps.export` saves.
Everything a request needs happens in the graph:

1. **lookup**: user and history item ids (strings) -> vocabulary indices with
   ``tf.lookup.StaticHashTable`` s built from the dataset's vocabularies
   (empty strings are padding and dropped, unknown ids -> ``OOV_ID``; see
   :mod:`tfpps.serving.vocab`);
2. **features**: the most recent ``max_len`` items, left-aligned and 0-padded,
   exactly as :func:`tfpps.serving.requests.encode_requests` builds them in Python;
3. **retrieval**: for dot-product models (``query_vectors``/``item_vectors``,
   :mod:`tfpps.models.base`) a TFRS top-k index over the real items
   (``tfrs.layers.factorized_top_k.BruteForce``, exact, or ``ScaNN``,
   approximate, with ``--index=auto`` when the ``scann`` package is installed
   and the catalog has at least :data:`SCANN_MIN_ITEMS` items); for other models
   whose ``score_items`` is pure TensorFlow (popularity, item-KNN, S-KNN and
   V-SKNN: ops over constant tensors built at fit time) ``top_k`` over
   ``score_items``. PAD and OOV are never returned: they are not in the
   index (not among the ``top_k`` columns).

Signatures (all take a batch):

``serving_default``  ``user_id`` string ``[B]``, ``history`` string ``[B, L]`` (oldest first, ``""``-padded)
``recommend_csv``    ``user_id`` string ``[B]``, ``history`` string ``[B]`` of comma-joined item ids
``lookup_items`` / ``lookup_users``  ``ids`` string ``[N]`` -> ``index`` int64 ``[N]`` (``OOV_ID`` = unknown)

Product-search models (``--kind=search`` data) take a third input in both
recommend signatures: ``query`` string ``[B]``, the query *normalised* as the
Beam job does (:func:`tfpps.serving.requests.normalize_query`: Porter stemming
is not a TensorFlow op, so clients stem; the graph splits on spaces and looks
the words up, unknown words -> ``OOV_ID``).

The two recommend signatures return ``item_ids`` string ``[B, k]``, ``scores``
float32 ``[B, k]`` (best first), ``known_user`` bool ``[B]`` and
``unknown_history_items`` int32 ``[B]`` (history ids not in the vocabulary).
"""
from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf
from tensorflow_recommenders.layers import factorized_top_k

from tfpps.spec.schema import FIRST_ID, OOV_ID, PAD_ID
from tfpps.models.base import has_item_vectors
from tfpps.serving.vocab import Vocabulary

INDEX_KINDS = ("auto", "brute-force", "scann")
SCANN_MISSING = "ScaNN not installed; using BruteForce"
SCANN_MIN_ITEMS = 1000  # below this, --index=auto uses BruteForce even when ScaNN is installed
SCORES_RETRIEVAL = "score_items+top_k"
_PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
_FEATURE_SPEC = {
    "item_ids": tf.TensorSpec([None, None], tf.int64),
    "length": tf.TensorSpec([None], tf.int64),
    "user_id": tf.TensorSpec([None], tf.int64),
    "target_item": tf.TensorSpec([None], tf.int64),
}


class ExportError(ValueError):
    """The run cannot be exported as asked; the message is one line."""


def scann_available() -> bool:
    """Whether TFRS found the ``scann`` package (its TF ops) when it was imported."""
    return bool(getattr(factorized_top_k, "_HAVE_SCANN", False))


def choose_index(kind: str, num_items: int, log: Callable[[str], None] = print) -> str:
    """The index to build: ``auto`` -> ``scann`` when installed and the catalog has at least
    :data:`SCANN_MIN_ITEMS` items, else ``brute-force`` (saying why in one line)."""
    if kind not in INDEX_KINDS:
        raise ExportError(f"--index={kind!r}: expected one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        if not scann_available():
            log(SCANN_MISSING)
            return "brute-force"
        if num_items < SCANN_MIN_ITEMS:
            log(f"ScaNN skipped: {num_items} items < {SCANN_MIN_ITEMS} (exact BruteForce is as fast); using BruteForce")
            return "brute-force"
        return "scann"
    if kind == "scann" and not scann_available():
        raise ExportError(
            "--index=scann: the scann package is not installed (pip install scann==1.3.2 for TensorFlow 2.16); "
            "use --index=brute-force"
        )
    return kind


def python_ops(score_fn: Callable, takes_query: bool = False) -> set[str]:
    """Python-callback op types (``tf.numpy_function``/``py_function``) in the traced ``score_fn``: not exportable.
    ``takes_query``: traced with the ``query_word_ids [B, Q]`` a search model is served with."""
    spec = {**_FEATURE_SPEC, "query_word_ids": tf.TensorSpec([None, None], tf.int64)} if takes_query else _FEATURE_SPEC
    graph = tf.function(score_fn, autograph=False).get_concrete_function(spec).graph
    return {op.type for op in graph.get_operations()} & _PYTHON_OPS


def build_index(kind: str, vectors: tf.Tensor, identifiers: tf.Tensor, k: int) -> factorized_top_k.TopK:
    """A TFRS top-k index over ``vectors [n, d]`` returning ``identifiers``; ``kind`` is ``brute-force`` or ``scann``."""
    if kind == "brute-force":
        return factorized_top_k.BruteForce(k=k, name="brute_force").index(vectors, identifiers)
    n = int(vectors.shape[0])
    leaves = max(1, int(round(math.sqrt(n))))
    # search a quarter of the ~sqrt(n) partitions, and enough of them to hold ~4k items on average
    # (so that a query always finds k candidates); the final order uses exact dot products.
    search = min(leaves, max(-(-leaves // 4), -(-4 * k * leaves // n)))
    index = factorized_top_k.ScaNN(
        k=k,
        num_leaves=leaves,
        num_leaves_to_search=search,
        num_reordering_candidates=min(n, max(100, 10 * k)),
        name="scann",
    )
    return index.index(vectors, identifiers)


class RecommenderModule(tf.Module):
    """Lookup + features + top-k retrieval for one trained model (see the module docstring)."""

    def __init__(self, model, items: Vocabulary, users: Vocabulary, max_len: int, k: int, index_kind: str = "brute-force",
                 words: Vocabulary | None = None):
        super().__init__(name="tfpps_recommender")
        self.takes_query = words is not None
        self.word_table = words.table() if words is not None else None
        real = len(items) - FIRST_ID
        if real < 1:
            raise ExportError("the item vocabulary has no real items")
        if max_len < 1:
            raise ExportError(f"max_len={max_len}: must be >= 1")
        self.k = min(int(k), real)
        self.max_len = int(max_len)
        self.item_table = items.table()
        self.user_table = users.table()
        self.item_tokens = tf.Variable(tf.constant(items.real_tokens), trainable=False, name="item_tokens")
        getattr(model, "build_for_serving", lambda: None)()  # lazily built layers must exist before we track them
        self.model_variables = list(getattr(model, "variables", []) or [])  # tracked, so the SavedModel holds them
        if has_item_vectors(model):
            self.retrieval = index_kind
            vectors = tf.convert_to_tensor(model.item_vectors())[FIRST_ID:]
            self.index = build_index(index_kind, vectors, tf.constant(items.real_tokens), self.k)
            self._query_fn = model.query_vectors
            self._score_fn = None
        else:
            found = python_ops(model.score_items, self.takes_query)
            if found:
                raise ExportError(f"its scores are computed in Python ({', '.join(sorted(found))} ops), which a SavedModel cannot hold")
            self.retrieval = SCORES_RETRIEVAL
            self.index = None
            self._query_fn = None
            self._score_fn = model.score_items

    # ------------------------------------------------------------------ graph pieces
    def _answer(self, user_id: tf.Tensor, tokens: tf.RaggedTensor, query: tf.Tensor | None = None) -> dict:
        """Top-k for ``user_id [B]`` and ``tokens`` (ragged ``[B, None]`` history item ids, no empty strings);
        search models also get ``query [B]`` (normalised words joined by spaces)."""
        ids = tf.ragged.map_flat_values(self.item_table.lookup, tokens)
        unknown = tf.reduce_sum(tf.cast(ids == OOV_ID, tf.int32), axis=1)
        ids = ids[:, -self.max_len :]
        dense = ids.to_tensor(default_value=PAD_ID)
        dense = tf.pad(dense, [[0, 0], [0, tf.maximum(1 - tf.shape(dense)[1], 0)]])  # width >= 1
        users = self.user_table.lookup(user_id)
        features = {
            "item_ids": dense,
            "length": ids.row_lengths(),
            "user_id": users,
            "target_item": tf.zeros_like(users),
        }
        if self.takes_query and query is None:  # the query-less signatures of a search model: an empty query
            query = tf.fill(tf.shape(user_id), "")
        if not self.takes_query:  # (the search signatures of other models are traced on save, never served)
            query = None
        if query is not None:
            words = self._non_empty(tf.strings.split(query, " "))
            ids = tf.ragged.map_flat_values(self.word_table.lookup, words).to_tensor(default_value=PAD_ID)
            features["query_word_ids"] = tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])
        if self.index is not None:
            scores, items = self.index(self._query_fn(features), k=self.k)
        else:
            scores, top = tf.math.top_k(self._score_fn(features)[:, FIRST_ID:], k=self.k)
            items = tf.gather(self.item_tokens, top)
        return {
            "item_ids": items,
            "scores": scores,
            "known_user": users != OOV_ID,
            "unknown_history_items": unknown,
        }

    @staticmethod
    def _non_empty(tokens: tf.RaggedTensor) -> tf.RaggedTensor:
        return tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)

    # ------------------------------------------------------------------ signatures
    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="user_id"), tf.TensorSpec([None, None], tf.string, name="history")],
        autograph=False,
    )
    def recommend(self, user_id, history):
        return self._answer(user_id, self._non_empty(tf.RaggedTensor.from_tensor(history)))

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="user_id"), tf.TensorSpec([None], tf.string, name="history")],
        autograph=False,
    )
    def recommend_csv(self, user_id, history):
        tokens = tf.ragged.map_flat_values(tf.strings.strip, tf.strings.split(history, ","))
        return self._answer(user_id, self._non_empty(tokens))

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="user_id"), tf.TensorSpec([None, None], tf.string, name="history"),
                         tf.TensorSpec([None], tf.string, name="query")],
        autograph=False,
    )
    def search(self, user_id, history, query):
        return self._answer(user_id, self._non_empty(tf.RaggedTensor.from_tensor(history)), query)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="user_id"), tf.TensorSpec([None], tf.string, name="history"),
                         tf.TensorSpec([None], tf.string, name="query")],
        autograph=False,
    )
    def search_csv(self, user_id, history, query):
        tokens = tf.ragged.map_flat_values(tf.strings.strip, tf.strings.split(history, ","))
        return self._answer(user_id, self._non_empty(tokens), query)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="ids")], autograph=False)
    def lookup_items(self, ids):
        return {"index": self.item_table.lookup(ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="ids")], autograph=False)
    def lookup_users(self, ids):
        return {"index": self.user_table.lookup(ids)}

    def signatures(self) -> dict:
        if self.takes_query:  # product search: the query is part of every request
            return {
                "serving_default": self.search,
                "recommend_csv": self.search_csv,
                "lookup_items": self.lookup_items,
                "lookup_users": self.lookup_users,
            }
        return {
            "serving_default": self.recommend,
            "recommend_csv": self.recommend_csv,
            "lookup_items": self.lookup_items,
            "lookup_users": self.lookup_users,
        }
