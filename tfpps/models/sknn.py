"""Session-KNN: score items by the most similar training sequences (S-KNN and V-SKNN).

S-KNN ("session-based kNN") as evaluated by Jannach & Ludewig (RecSys 2017,
"When recurrent neural networks meet the neighborhood for session-based
recommendation") and V-SKNN ("vector multiplication session-based kNN") of
Ludewig & Jannach (UMUAI 2018, "Evaluation of session-based recommendation
algorithms", Sec. 3.2). Reference implementations: ``algorithms/knn/sknn.py``
(``ContextKNN``) and ``algorithms/knn/vsknn.py`` (``VMContextKNN``) of the
session-rec framework (``rn5l/session-rec``).

Registered twice: ``sknn`` (binary history, cosine) and ``vsknn`` (position-
weighted history, dot product); both are :class:`SessionKNN` with different
defaults.

Math
----
Every training record (or session, with ``split_sessions``) is a set of items
:math:`c` with a time :math:`t_c` (its last timestamp). For an evaluation
history :math:`h_1..h_n` (oldest first; the ``max_len`` most recent items) let
:math:`H` be its distinct items and give item :math:`i \\in H` the weight of
its most recent position :math:`p_i`:

=============  =========================================  ====================
``weighting``  :math:`w_i`                                session-rec name
=============  =========================================  ====================
none           :math:`1`                                  ``same`` / S-KNN
linear         :math:`p_i / n`                            ``div`` (default)
quadratic      :math:`(p_i / n)^2`                        ``quadratic``
log            :math:`1 / \\log_{10}(n - p_i + 1.7)`       ``log``
=============  =========================================  ====================

``linear`` is the linear decay of V-SKNN: the newest item has weight 1, the
oldest :math:`1/n`.

1. Candidates :math:`C`: the ``sample_size`` most recent training sequences
   (largest :math:`t_c`; ties: the later record) among those sharing at least
   one item with :math:`H` (all of them for ``sample_size=0``).
2. Similarity, with :math:`o_c = \\sum_{i \\in H \\cap c} w_i` (the overlap
   :math:`|H \\cap c|` when unweighted):

   * ``cosine``  :math:`o_c / \\sqrt{|H|\\,|c|}` (S-KNN),
   * ``jaccard`` :math:`o_c / (|H| + |c| - |H \\cap c|)`,
   * ``dot``     :math:`o_c / |H|`: the weighted history vector times the
     binary vector of :math:`c` (V-SKNN; session-rec's ``vec``).

3. Neighbours :math:`N`: the ``k`` candidates of largest similarity (> 0;
   ties, up to 1e-12: the more recent first).
4. :math:`\\mathrm{score}(j) = \\sum_{c \\in N,\\, j \\in c} \\mathrm{sim}(H, c)\\,d_c`,
   where :math:`d_c = 1` unless ``weighting_score`` decays by the distance
   :math:`s_c = n + 1 - \\max_{i \\in H \\cap c} p_i` (1 = the newest history
   item is in :math:`c`): ``div`` :math:`1/s`, ``linear``
   :math:`\\max(0, 1 - 0.1 s)`, ``quadratic`` :math:`1/s^2`, ``log``
   :math:`1/\\log_{10}(s + 1.7)` (session-rec's ``*_score`` functions).

History items keep their scores by default (``remind=True``, the default of
session-rec's ``VMContextKNN``; ``ContextKNN``'s ``remind`` is an unrelated
reminder boost, not implemented);
with ``remind=False`` they score 0 (session-rec skips them when summing), which
matters where items are never consumed twice (MovieLens under leave-one-out:
every neighbour shares the history's items, so they would fill the top of the
list) and the protocol does not mask the history.

Zero scores: with ``fallback='popularity'`` (default) items without a
positive score get :math:`-1 + \\tfrac12 n_j/\\max_k n_k` (training counts),
below every positive score, so the evaluator's optimistic ``ties='standard'``
does not reward a target nobody scored; see :mod:`tfpps.models.itemknn`.

Departures from the references
------------------------------
* ``exclude_same_user`` (default ``True``, not in session-rec): training
  sequences with the evaluated example's user id (ids >= 2) are no
  candidates. Under leave-one-out or last-session-out splits a user's own
  training record is a prefix of the evaluated history and would be its
  nearest "neighbour"; in session-based data (every session its own user, or
  user id PAD/OOV) it excludes nothing.
* The reference ``cosine`` computes ``li / sqrt(la) * sqrt(lb)`` (a
  precedence slip); it differs from the true cosine used here by the factor
  :math:`|H|`, constant per history, so neighbours and rankings are equal.
* The reference ``weighting='linear'`` (:math:`1 - 0.1 (n - p)` for
  :math:`p \\le 10`, else 0) is not offered: our ``linear`` is its ``div``;
  the reference ``linear_score`` goes negative for :math:`10 < s \\le 100`,
  ours is clipped at 0.
* The history is the evaluation window (``data.max_len`` most recent items),
  not a session grown click by click; the candidate set is the union over its
  items, as the reference's accumulated ``relevant_sessions`` would be.
* Not implemented: random sampling, ``idf_weighting``, ``dwelling_time``,
  ``last_n_days``, ``extend``, ``pop_boost``, the reminder boosts
  (``push_reminders``/``add_reminders``) and score normalisation (which does
  not change rankings).

Implementation: sequences are re-indexed by recency rank, the inverted index
item -> ranks is sorted, and (since the ``sample_size`` most recent sequences
of the union are among the first ``sample_size`` of every item's list) each
list is cut to ``sample_size`` (+ the most sequences any user has, for
``exclude_same_user``): per history, the candidates and their overlaps come
from one ``np.unique``/``np.bincount`` over the concatenated lists.
:meth:`SessionKNN.score_items` runs this NumPy code per example inside
``tf.numpy_function`` (graph-compatible; executes on the CPU, one Python loop
iteration per example: 2-4 ms per ml-100k history on a busy 2-core CPU). On ml-100k the scores
of S-KNN and V-SKNN equal (to float32 rounding) a naive set-based
re-statement of the reference logic with exact rational similarities
(checked once on 60 test histories, not part of the tests).
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import choice, non_negative, positive
from tfpps.data.schema import FIRST_ID
from tfpps.models.itemknn import FALLBACKS, apply_fallback, expand_rows, fallback_floor, inverted_index, read_sequences

WEIGHTINGS = ("none", "linear", "quadratic", "log")
SCORE_WEIGHTINGS = ("none", "div", "linear", "quadratic", "log")
SIMILARITIES = ("cosine", "jaccard", "dot")


@dataclasses.dataclass
class SKNNConfig:
    k: int = 100  # neighbours (session-rec example config: k=100)
    sample_size: int = 500  # most recent candidate sequences (session-rec example: 500); 0 = all
    similarity: str = "cosine"  # cosine | jaccard | dot (Jannach & Ludewig 2017: cosine)
    weighting: str = "none"  # history item weights by position: none | linear | quadratic | log
    weighting_score: str = "none"  # neighbour decay by its newest shared item: none | div | linear | quadratic | log
    remind: bool = True  # history items keep their scores (session-rec remind=True); False: they score 0
    exclude_same_user: bool = True  # the evaluated user's own training sequences are no neighbours
    fallback: str = "popularity"  # items with score <= 0: popularity order below the positives | none
    split_sessions: bool = False  # neighbours are sessions (session_starts) instead of whole records

    def validate(self) -> None:
        positive(self, "k")
        non_negative(self, "sample_size")
        choice(self, "similarity", SIMILARITIES)
        choice(self, "weighting", WEIGHTINGS)
        choice(self, "weighting_score", SCORE_WEIGHTINGS)
        choice(self, "fallback", FALLBACKS)


@dataclasses.dataclass
class VSKNNConfig(SKNNConfig):
    similarity: str = "dot"  # V-SKNN: weighted history vector . binary neighbour vector (session-rec vec)
    weighting: str = "linear"  # V-SKNN: linear decay, newest item 1 (session-rec weighting='div', its default)


def position_weights(positions: np.ndarray, n: int, weighting: str) -> np.ndarray:
    """Weights of 1-based history ``positions`` in a history of length ``n``."""
    p = positions.astype(np.float64)
    if weighting == "linear":
        return p / n
    if weighting == "quadratic":
        return (p / n) ** 2
    if weighting == "log":
        return 1.0 / np.log10(n - p + 1.7)
    return np.ones_like(p)


def score_decay(steps: np.ndarray, weighting: str) -> np.ndarray:
    """Neighbour score decay for 1-based distances ``steps`` of its newest shared history item."""
    s = steps.astype(np.float64)
    if weighting == "div":
        return 1.0 / s
    if weighting == "linear":
        return np.maximum(0.0, 1.0 - 0.1 * s)
    if weighting == "quadratic":
        return 1.0 / (s * s)
    if weighting == "log":
        return 1.0 / np.log10(s + 1.7)
    return np.ones_like(s)


@registry.register("sknn", SKNNConfig, family=registry.NONNEURAL)
class SessionKNN:
    """S-KNN (Jannach & Ludewig 2017): items of the k most similar training sequences, weighted by cosine."""

    def __init__(self, params, info, run):
        self.params, self.info, self.run_config = params, info, run
        self.num_items = int(info.num_items)
        self.floor = fallback_floor(info.item_counts)
        self.fitted = False

    # ------------------------------------------------------------------ fit
    def fit_data(self, data) -> None:
        """Indexes the training sequences (by recency) and the item -> sequences lists."""
        p = self.params
        seqs = read_sequences(data, self.num_items, split_sessions=p.split_sessions)
        count = seqs.num_sequences
        order = np.lexsort((-np.arange(count), -seqs.time))  # rank 0 = most recent; ties: later record
        items, _ = expand_rows(seqs.offsets, seqs.items, order)
        lens = seqs.lengths[order]
        self.seq_order = order  # rank -> index of the sequence in read order
        self.seq_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        self.seq_items = items
        self.seq_len = lens.astype(np.float64)
        self.seq_user = seqs.user[order]
        ranked = dataclasses.replace(seqs, offsets=self.seq_offsets, items=items)
        offsets, ranks = inverted_index(ranked, self.num_items)  # ranks ascending within every item
        if p.sample_size > 0:
            keep_n = p.sample_size
            if p.exclude_same_user:
                users = self.seq_user[self.seq_user >= FIRST_ID]
                keep_n += int(np.bincount(users).max()) if users.size else 0
            sizes = np.diff(offsets)
            within = np.arange(len(ranks)) - np.repeat(offsets[:-1], sizes)
            ranks = ranks[within < keep_n]
            offsets = np.concatenate([[0], np.cumsum(np.minimum(sizes, keep_n))]).astype(np.int64)
        self.item_offsets, self.item_ranks = offsets, ranks
        self.fitted = True

    # ------------------------------------------------------------------ one history
    def neighbours(self, history, user_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sequences, similarities, decays)`` of the neighbours of one history (oldest item first).

        ``sequences`` index the training sequences in read order (records of
        ``data.records("train")`` when none is empty), best first.
        """
        ranks, sims, decays = self._neighbour_ranks(np.asarray(history, dtype=np.int64), int(user_id))
        return self.seq_order[ranks], sims, decays

    def _neighbour_ranks(self, history: np.ndarray, user_id: int):
        p = self.params
        empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        n = len(history)
        positions = np.arange(1, n + 1)
        valid = (history >= FIRST_ID) & (history < self.num_items)
        items, pos = history[valid][::-1], positions[valid][::-1]
        distinct, first = np.unique(items, return_index=True)  # first in reversed order = most recent
        if distinct.size == 0:
            return empty
        last = pos[first]
        weights = position_weights(last, n, p.weighting)
        ranks, owner = expand_rows(self.item_offsets, self.item_ranks, distinct)
        if ranks.size == 0:
            return empty
        cand, inverse = np.unique(ranks, return_inverse=True)  # ascending rank = most recent first
        overlap_w = np.bincount(inverse, weights=weights[owner], minlength=len(cand))
        overlap_n = np.bincount(inverse, minlength=len(cand)).astype(np.float64)
        newest = np.zeros(len(cand), dtype=np.int64)
        np.maximum.at(newest, inverse, last[owner])
        if p.exclude_same_user and user_id >= FIRST_ID:
            keep = self.seq_user[cand] != user_id
            cand, overlap_w, overlap_n, newest = cand[keep], overlap_w[keep], overlap_n[keep], newest[keep]
        if p.sample_size > 0:
            cand, overlap_w = cand[: p.sample_size], overlap_w[: p.sample_size]
            overlap_n, newest = overlap_n[: p.sample_size], newest[: p.sample_size]
        size_h, size_c = float(len(distinct)), self.seq_len[cand]
        if p.similarity == "cosine":
            sims = overlap_w / np.sqrt(size_h * size_c)
        elif p.similarity == "jaccard":
            sims = overlap_w / (size_h + size_c - overlap_n)
        else:
            sims = overlap_w / size_h
        # rounded keys: equal similarities summed in different orders still tie (-> the more recent first)
        order = np.argsort(-np.round(sims, 12), kind="stable")[: p.k]
        order = order[sims[order] > 0]
        decays = score_decay(n + 1 - newest[order], p.weighting_score)
        return cand[order], sims[order], decays

    def score_history(self, history, user_id: int = 0) -> np.ndarray:
        """Raw scores ``[num_items]`` (float32) of one history, before the zero-score fallback."""
        ranks, sims, decays = self._neighbour_ranks(np.asarray(history, dtype=np.int64), int(user_id))
        items, owner = expand_rows(self.seq_offsets, self.seq_items, ranks)
        scores = np.bincount(items, weights=(sims * decays)[owner], minlength=self.num_items)
        if not self.params.remind:
            history = np.asarray(history, dtype=np.int64)
            scores[history[(history >= 0) & (history < self.num_items)]] = 0.0
        return scores.astype(np.float32)

    # ------------------------------------------------------------------ batched scoring
    def _score_batch(self, item_ids, length, user_id) -> np.ndarray:
        out = np.zeros((len(length), self.num_items), dtype=np.float32)
        for b in range(len(length)):
            out[b] = self.score_history(item_ids[b, : int(length[b])], int(user_id[b]))
        return out

    def score_items(self, features) -> tf.Tensor:
        """Scores ``[B, num_items]``; NumPy per example inside ``tf.numpy_function`` (CPU)."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.score_items: call fit_data(data) first")
        item_ids = tf.cast(features["item_ids"], tf.int64)
        length = tf.cast(features["length"], tf.int64)
        user_id = tf.cast(features["user_id"], tf.int64) if "user_id" in features else tf.zeros_like(length)
        scores = tf.numpy_function(self._score_batch, [item_ids, length, user_id], tf.float32, stateful=False)
        scores = tf.ensure_shape(scores, [None, self.num_items])
        if self.params.fallback == "popularity":
            scores = apply_fallback(scores, self.floor)
        return scores


@registry.register("vsknn", VSKNNConfig, family=registry.NONNEURAL)
class VSKNN(SessionKNN):
    """V-SKNN (Ludewig & Jannach 2018): S-KNN with a linearly position-weighted history and dot-product similarity."""
