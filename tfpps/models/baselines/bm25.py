r"""BM25 product search: items ranked by the lexical match of their text with the query.

The non-personalised lexical baseline of the product-search papers (HEM, Ai et
al., SIGIR 2017; ZAM, Ai et al., CIKM 2019): Okapi BM25 as presented by
Robertson & Zaragoza (2009), "The Probabilistic Relevance Framework: BM25 and
Beyond", Foundations and Trends in Information Retrieval 3(4), with Lucene's
non-negative idf. Every user gets the same ranking for the same query.

Math
----
The documents are the items: item :math:`i`'s text is the list of word ids
the Beam job wrote for it in the dataset's ``item_text/`` table
(:func:`tfpps.data.examples.search.item_word_table`: title, category paths and
description of the item metadata, or, for the official HEM benchmark data, the
words of the item's training queries). For a query word :math:`w`:

.. math::

   \mathrm{score}(i \mid q) = \sum_{w \in q} \mathrm{idf}(w)\,
       \frac{\mathrm{tf}(w, i)\,(k_1 + 1)}
            {\mathrm{tf}(w, i) + k_1 \left(1 - b + b\,\frac{|i|}{\mathrm{avgdl}}\right)},
   \qquad
   \mathrm{idf}(w) = \ln\!\left(1 + \frac{N - \mathrm{df}(w) + 0.5}{\mathrm{df}(w) + 0.5}\right)

* :math:`\mathrm{tf}(w, i)`: how often :math:`w` occurs in item :math:`i`'s
  text. The Beam job de-duplicates each item's words
  (``tfpps.spec.text.normalize_words``), so with its tables tf is 0 or 1;
  a table that repeats words gives counts, and they are used as counts.
* :math:`|i|`: the number of words of item :math:`i`'s text;
  :math:`\mathrm{avgdl}`: its mean over the items that have text.
* :math:`N`: the number of items that have text (Lucene's ``docCount``);
  :math:`\mathrm{df}(w)`: the number of items whose text contains :math:`w`.
  This idf is never negative, unlike Robertson & Zaragoza's
  :math:`\ln\frac{N - \mathrm{df} + 0.5}{\mathrm{df} + 0.5}`.
* ``k1`` (default 1.2) saturates repeated words (0: binary match, only the
  idf counts); ``b`` (default 0.75) normalises by text length (0: none, 1:
  full). With tf in {0, 1}, ``k1`` and ``b`` still matter: the weight of a
  match is :math:`\mathrm{idf}(w)(k_1+1) / (1 + k_1(1 - b + b|i|/\mathrm{avgdl}))`,
  higher for short texts.
* The sum runs over the query's word positions (a repeated query word counts
  twice; the Beam job's queries hold distinct words). PAD (0), OOV (1) and
  ids outside the word vocabulary contribute 0.

Ties. The evaluator's default ``ties: standard`` ranks a target optimistically
among items of equal score, and most items share the score 0 (no query word
in their text). ``popularity_tiebreak`` :math:`\epsilon` (default ``1e-6``)
therefore adds :math:`\epsilon\, n_i / \max_j n_j` (:math:`n_i`: the item's
training count, the ``pop`` baseline's ranking): items with equal BM25 score
(0 above all) rank by popularity, and no pair of items whose BM25 scores
differ by more than :math:`\epsilon` changes order. In float32 the addition
is exact against 0 but rounds away for scores above about 8, where equal
scores may stay tied. ``0`` gives the raw BM25 scores.

Implementation: :meth:`BM25.fit_data` builds, with NumPy, the weight of every
(word, item) pair that occurs (the sparse ``[num_words, num_items]`` matrix,
stored row by row as postings lists); :meth:`BM25.score_items` gathers the
postings of a batch's query words and sums them per (row, item) with one
segment sum, graph-compatible and without per-example Python.

Example::

    python -m tfpps.train --model=bm25 --dataset=synthetic-search
    python -m tfpps.train --model=bm25 --dataset=synthetic-search --set k1=0.9 --set b=0.4

>>> import numpy as np
>>> words = np.array([[0, 0], [0, 0], [2, 3], [2, 0]])  # items 2 and 3 have text (items 0, 1: PAD, OOV)
>>> splits, items, weights = bm25_postings(words, np.array([0, 0, 2, 1]), num_words=4, k1=1.2, b=0.0)
>>> splits.tolist(), items.tolist()  # word 2 -> items 2, 3; word 3 -> item 2
([0, 0, 0, 2, 3], [2, 3, 2])
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps import registry
from tfpps.models.base import NonNeuralModel
from tfpps.config import ConfigError
from tfpps.data.examples import search as search_data
from tfpps.spec.schema import FIRST_ID


@dataclasses.dataclass
class BM25Config:
    k1: float = 1.2  # term-frequency saturation (Robertson & Zaragoza's usual 1.2); 0 = binary match
    b: float = 0.75  # length normalisation in [0, 1]; 0 = none, 1 = full
    popularity_tiebreak: float = 1e-6  # + this * count / max count: equal BM25 scores rank by popularity; 0 = off

    def validate(self) -> None:
        if not self.k1 >= 0:
            raise ConfigError(f"model_params.k1={self.k1!r}: must be >= 0")
        if not 0.0 <= self.b <= 1.0:
            raise ConfigError(f"model_params.b={self.b!r}: must be in [0, 1]")
        if not self.popularity_tiebreak >= 0:
            raise ConfigError(f"model_params.popularity_tiebreak={self.popularity_tiebreak!r}: must be >= 0")


def bm25_postings(words: np.ndarray, lengths: np.ndarray, num_words: int, k1: float, b: float):
    """BM25 weights of every (word, item) pair that occurs, as postings lists (CSR by word).

    ``words [num_items, W]`` / ``lengths [num_items]``: each item's text, 0-padded (as
    :func:`tfpps.data.examples.search.item_word_table` returns it). Returns ``(splits [num_words + 1],
    items, weights)``: the items containing word ``w`` are ``items[splits[w]:splits[w + 1]]``
    (ascending) with their weights ``idf(w) * tf (k1 + 1) / (tf + k1 (1 - b + b |i| / avgdl))``.
    Word ids below ``FIRST_ID`` or ``>= num_words`` are ignored (not counted in ``|i|``).
    """
    num_items = words.shape[0]
    in_text = np.arange(words.shape[1])[None, :] < np.asarray(lengths)[:, None]
    entry_items = np.nonzero(in_text)[0].astype(np.int64)  # row-major: the item of each text word
    entry_words = words[in_text].astype(np.int64)
    known = (entry_words >= FIRST_ID) & (entry_words < num_words)
    entry_items, entry_words = entry_items[known], entry_words[known]

    doc_length = np.bincount(entry_items, minlength=num_items).astype(np.float64)
    has_text = doc_length > 0
    num_docs = int(has_text.sum())
    avgdl = doc_length[has_text].mean() if num_docs else 1.0

    pairs, term_counts = np.unique(entry_words * num_items + entry_items, return_counts=True)  # sorted by word, item
    pair_words, pair_items = pairs // num_items, pairs % num_items
    df = np.bincount(pair_words, minlength=num_words)
    idf = np.log1p((num_docs - df + 0.5) / (df + 0.5))
    term_freq = term_counts.astype(np.float64)
    norm = k1 * (1.0 - b + b * doc_length[pair_items] / avgdl)
    weights = idf[pair_words] * term_freq * (k1 + 1.0) / (term_freq + norm)
    splits = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
    return splits, pair_items.astype(np.int64), weights.astype(np.float32)


@registry.register("bm25", BM25Config, family=registry.NONNEURAL, example_kind="search")
class BM25(NonNeuralModel):
    """BM25 over item text (Robertson & Zaragoza, 2009): the non-personalised lexical search baseline."""

    def __init__(self, params: BM25Config, info, run):
        if info.kind != "search":
            raise ConfigError(
                f"model {run.model!r} needs a product-search dataset (Beam --kind=search), got a {info.kind!r} one;"
                " try --dataset=synthetic-search"
            )
        self.params, self.info, self.run_config = params, info, run
        self.num_items = int(info.num_items)
        self.num_words = max(int(info.num_words), FIRST_ID)
        counts = np.asarray(info.item_counts, dtype=np.float64)
        peak = counts.max() if counts.size and counts.max() > 0 else 1.0
        self.tiebreak = tf.constant(params.popularity_tiebreak * counts / peak, tf.float32)
        self.splits = None

    def fit_data(self, data) -> None:
        """Builds the postings from the dataset's item text; ConfigError when the dataset has none."""
        words, lengths = search_data.item_word_table(data, self.num_items)
        if lengths.sum() == 0:
            raise ConfigError(
                f"{data.path}: no item text (item_text/) for BM25; build the search dataset with --metadata"
            )
        splits, items, weights = bm25_postings(words, lengths, self.num_words, self.params.k1, self.params.b)
        self.set_postings(splits, items, weights)

    def set_postings(self, splits: np.ndarray, items: np.ndarray, weights: np.ndarray) -> None:
        self.splits = tf.constant(splits, tf.int64)
        self.posting_items = tf.constant(items, tf.int64)
        self.posting_weights = tf.constant(weights, tf.float32)

    def score_items(self, features) -> tf.Tensor:
        """``[B, num_items]``: BM25 of every item for each row's ``query_word_ids [B, Q]`` (+ the tie-break)."""
        if self.splits is None:
            raise RuntimeError("BM25.score_items: call fit_data(data) first")
        query = tf.cast(features["query_word_ids"], tf.int64)
        batch, query_length = tf.shape(query, out_type=tf.int64)[0], tf.shape(query, out_type=tf.int64)[1]
        known = (query >= FIRST_ID) & (query < self.num_words)
        query = tf.reshape(tf.where(known, query, tf.zeros_like(query)), [-1])  # PAD's postings list is empty
        positions = tf.ragged.range(tf.gather(self.splits, query), tf.gather(self.splits, query + 1))
        rows = positions.value_rowids() // tf.maximum(query_length, 1)  # the batch row of each gathered posting
        cells = rows * self.num_items + tf.gather(self.posting_items, positions.flat_values)
        bm25 = tf.math.unsorted_segment_sum(tf.gather(self.posting_weights, positions.flat_values), cells,
                                            batch * self.num_items)
        return tf.reshape(bm25, tf.stack([batch, self.num_items])) + self.tiebreak[None, :]
