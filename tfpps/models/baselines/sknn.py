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
does not reward a target nobody scored; see :mod:`tfpps.models.baselines.itemknn`.

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
``exclude_same_user``).

:meth:`SessionKNN.score_items` is TensorFlow ops over constant tensors built
by ``fit_data`` (so graph-compatible, batched, and exportable as a
SavedModel: ``tfpps.export`` serves it with ``top_k`` over these scores).
Per batch of histories, ``rows_per_chunk`` at a time (``tf.map_fn``; one
chunk unless ``rows x max(S, N)`` exceeds 4M cells):

1. the distinct items of every history with their most recent position and
   weight (``tf.unique``), all in float64 as the reference;
2. candidates and overlaps, by one of two equivalent strategies chosen at fit
   time (``SessionKNN.strategy``, default ``auto``):

   * ``dense``: the overlap of every history with every training sequence
     is one sparse-dense product ``[S, N] (cut lists) x [N, rows]`` (and a
     second one with unit weights for Jaccard's :math:`|H \\cap c|`); the
     candidates are its non-zeros, already ordered by row, then rank;
   * ``lists``: the cut lists of the history items concatenated, the
     (row, sequence) pairs made unique (``tf.unique``), their overlaps (and
     counts and newest positions) summed per pair, sorted by row, then rank;

   ``auto`` takes ``dense`` when the training sequences number at most 4x
   the expected list entries per history (long histories, few sequences:
   ml-100k, Ta-Feng), else ``lists`` (short sessions, many sequences:
   YOOCHOOSE), whichever was faster on the benchmark datasets;
3. the users' own sequences dropped, the ``sample_size`` first candidates of
   every row kept, the similarities, and ``tf.math.top_k`` over the
   similarities rounded to 1e-12 (as the reference; equal keys keep the
   lower index, i.e. the more recent sequence, first); the newest shared
   position for ``weighting_score`` (``dense``: the neighbour's items looked
   up by ``tf.searchsorted``);
4. the scores: ``[N, S] x [S, rows]`` neighbour weights (``dense``), or the
   neighbours' items gathered and summed (``lists``), cast to float32.

The NumPy code of ``_neighbour_ranks``/``score_history`` (one history at a
time) is kept as the readable reference: ``tests/test_export.py`` checks that
the TensorFlow scores equal it (1e-5; in practice bit-identical) on random
data under both strategies and every weighting, similarity and decay. Scoring
time per test history (batch 512, busy 2-core CPU, ``python`` loop of the
reference in ``tf.numpy_function`` vs TensorFlow): ml-100k S-KNN 1.09 vs 0.23
ms, V-SKNN 0.54 vs 0.11 ms; ml-100k-sessions 0.32 vs 0.10 ms;
yoochoose-100k 0.16 vs 0.11 ms; Ta-Feng 0.40 vs 0.26 ms. On ml-100k the
scores of S-KNN and V-SKNN equal (to float32 rounding) a naive set-based
re-statement of the reference logic with exact rational similarities
(checked once on 60 test histories, not part of the tests).
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps import registry
from tfpps.models.base import NonNeuralModel, max_len_of
from tfpps.config import choice, non_negative, positive
from tfpps.spec.schema import FIRST_ID
from tfpps.data.examples.knn_sequences import expand_rows, read_sequences, recency_index
from tfpps.models.baselines.itemknn import FALLBACKS, apply_fallback, fallback_floor, zero_history

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


STRATEGIES = ("auto", "dense", "lists")  # how the TensorFlow scorer finds candidates (module docstring)
_DENSE_RATIO = 4.0  # auto: dense when S <= this x the expected list entries per history (measured)
_CHUNK_CELLS = 1 << 22  # histories per chunk x max(S or 1, N): a float64 [S, rows] matrix is at most 32 MiB
_LN10 = float(np.log(10.0))


def position_weights_tf(positions: tf.Tensor, n: tf.Tensor, weighting: str) -> tf.Tensor:
    """:func:`position_weights` in TensorFlow (float64; ``positions`` and ``n`` broadcast)."""
    p, n = tf.cast(positions, tf.float64), tf.cast(n, tf.float64)
    if weighting == "linear":
        return p / n
    if weighting == "quadratic":
        return (p / n) ** 2
    if weighting == "log":
        return _LN10 / tf.math.log(n - p + 1.7)
    return tf.ones_like(p)


def score_decay_tf(steps: tf.Tensor, weighting: str) -> tf.Tensor:
    """:func:`score_decay` in TensorFlow (float64)."""
    s = tf.cast(steps, tf.float64)
    if weighting == "div":
        return 1.0 / s
    if weighting == "linear":
        return tf.maximum(tf.constant(0.0, tf.float64), 1.0 - 0.1 * s)
    if weighting == "quadratic":
        return 1.0 / (s * s)
    if weighting == "log":
        return _LN10 / tf.math.log(s + 1.7)
    return tf.ones_like(s)


@registry.register("sknn", SKNNConfig, family=registry.NONNEURAL)
class SessionKNN(NonNeuralModel):
    """S-KNN (Jannach & Ludewig 2017): items of the k most similar training sequences, weighted by cosine."""

    strategy = "auto"  # TensorFlow candidate search: auto | dense | lists (set before fit_data; same results)

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
        index = recency_index(seqs, self.num_items, p.sample_size, p.exclude_same_user)
        items, lens, offsets, ranks = index.items, index.lengths, index.item_offsets, index.item_ranks
        self.seq_order = index.order  # rank -> index of the sequence in read order
        self.seq_offsets = index.offsets
        self.seq_items = items
        self.seq_len = lens.astype(np.float64)
        self.seq_user = index.user
        self.item_offsets, self.item_ranks = offsets, ranks
        # constant tensors for the TensorFlow scorer (and so for the SavedModel)
        n, n_seqs = self.num_items, max(count, 1)
        rank_of = np.repeat(np.arange(count, dtype=np.int64), lens)  # rank of every entry of seq_items
        self.num_sequences = count
        self.t_seq_len = tf.constant(np.concatenate([self.seq_len, np.ones(n_seqs - count)]), tf.float64)
        self.t_seq_user = tf.constant(np.concatenate([self.seq_user, np.zeros(n_seqs - count, np.int64)]), tf.int64)
        self.dense = self._use_dense(offsets)
        if self.dense:
            item_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
            self.t_candidates = _sparse_ones(ranks, item_of, [n_seqs, n])  # [S, N]: the (cut) item -> sequences lists
            self.t_members = _sparse_ones(items, rank_of, [n, n_seqs])  # [N, S]: the items of every sequence
            self.t_member_keys = tf.constant(rank_of * n + items, tf.int64)  # ascending: by rank, then item
            self.rows_per_chunk = max(1, _CHUNK_CELLS // max(n_seqs, n))
        else:
            ragged = tf.RaggedTensor.from_row_splits
            self.t_item_lists = ragged(tf.constant(ranks, tf.int64), tf.constant(offsets, tf.int64))  # cut lists
            self.t_seq_lists = ragged(tf.constant(items, tf.int64), tf.constant(self.seq_offsets, tf.int64))  # items
            self.rows_per_chunk = max(1, _CHUNK_CELLS // n)
        self.fitted = True

    def _use_dense(self, offsets: np.ndarray) -> bool:
        """``strategy='auto'``: dense when ``S`` is at most ``_DENSE_RATIO`` x the expected list entries per
        history (distinct items of a training sequence, cut to ``max_len``, x the mean list length of an
        item drawn by frequency)."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if self.strategy != "auto":
            return self.strategy == "dense"
        if self.num_sequences == 0:
            return True
        max_len = max_len_of(self.run_config)
        freq = np.bincount(self.seq_items, minlength=self.num_items).astype(np.float64)
        mean_list = float((freq * np.diff(offsets)).sum() / max(freq.sum(), 1.0))
        entries = float(np.minimum(self.seq_len, max_len).mean()) * mean_list
        return self.num_sequences <= _DENSE_RATIO * entries

    # ------------------------------------------------------------------ one history
    def neighbours(self, history, user_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sequences, similarities, decays)`` of the neighbours of one history (oldest item first),
        from the TensorFlow scorer (:meth:`neighbour_tensors`).

        ``sequences`` index the training sequences in read order (records of
        ``data.records("train")`` when none is empty), best first.
        """
        self._check_fitted("neighbours")
        history = np.asarray(history, dtype=np.int64).reshape(1, -1)
        ranks, sims, decays, valid = self.neighbour_tensors(
            tf.constant(history), tf.constant([history.shape[1]], tf.int64), tf.constant([int(user_id)], tf.int64)
        )
        keep = valid.numpy()[0]
        return self.seq_order[ranks.numpy()[0][keep]], sims.numpy()[0][keep], decays.numpy()[0][keep]

    def reference_neighbours(self, history, user_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`neighbours` by the NumPy reference (one history at a time)."""
        ranks, sims, decays = self._neighbour_ranks(np.asarray(history, dtype=np.int64), int(user_id))
        return self.seq_order[ranks], sims, decays

    def _neighbour_ranks(self, history: np.ndarray, user_id: int):
        """NumPy reference of the neighbour search (the readable statement :meth:`neighbour_tensors` is tested against)."""
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
        """NumPy reference: raw scores ``[num_items]`` (float32) of one history, before the zero-score fallback."""
        ranks, sims, decays = self._neighbour_ranks(np.asarray(history, dtype=np.int64), int(user_id))
        items, owner = expand_rows(self.seq_offsets, self.seq_items, ranks)
        scores = np.bincount(items, weights=(sims * decays)[owner], minlength=self.num_items)
        if not self.params.remind:
            history = np.asarray(history, dtype=np.int64)
            scores[history[(history >= 0) & (history < self.num_items)]] = 0.0
        return scores.astype(np.float32)

    # ------------------------------------------------------------------ batched scoring (TensorFlow)
    def _check_fitted(self, what: str) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__}.{what}: call fit_data(data) first")

    def neighbour_tensors(self, item_ids: tf.Tensor, length: tf.Tensor, user_id: tf.Tensor):
        """The neighbours of a batch of left-aligned histories (TensorFlow ops over the fitted index).

        Returns ``(ranks, sims, decays, found)``, each ``[B, min(k, S)]`` (``S``
        training sequences), best first: recency ranks of the neighbour
        sequences, similarities and score decays (float64), and which slots
        hold a neighbour. The same steps as the NumPy reference
        :meth:`_neighbour_ranks` (see the module docstring, "Implementation").
        """
        self._check_fitted("neighbour_tensors")
        k = min(self.params.k, max(self.num_sequences, 1))
        spec = tuple(tf.TensorSpec([None, k], dtype) for dtype in (tf.int64, tf.float64, tf.float64, tf.bool))
        return self._by_chunks(self._chunk_neighbours, spec, item_ids, length, user_id)

    def _by_chunks(self, fn, spec, item_ids, length, user_id):
        """``fn(ids, length, user)`` over the batch, ``rows_per_chunk`` rows at a time (one chunk whenever the batch fits)."""
        ids = tf.cast(item_ids, tf.int64)
        length = tf.cast(length, tf.int64)
        user = tf.cast(user_id, tf.int64)
        batch = tf.shape(ids, out_type=tf.int64)[0]
        chunk = tf.maximum(tf.minimum(batch, self.rows_per_chunk), 1)
        chunks = (batch + chunk - 1) // chunk
        pad = chunks * chunk - batch  # empty histories
        ids = tf.reshape(tf.pad(ids, [[0, pad], [0, 0]]), tf.stack([chunks, chunk, -1]))
        length = tf.reshape(tf.pad(length, [[0, pad]]), tf.stack([chunks, chunk]))
        user = tf.reshape(tf.pad(user, [[0, pad]]), tf.stack([chunks, chunk]))
        out = tf.map_fn(lambda x: fn(*x), (ids, length, user), fn_output_signature=spec, parallel_iterations=1)
        return tf.nest.map_structure(lambda t: tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))[:batch], out)

    def _chunk_neighbours(self, ids: tf.Tensor, length: tf.Tensor, user: tf.Tensor):
        p = self.params
        n_seqs = max(self.num_sequences, 1)
        rows = tf.shape(ids, out_type=tf.int64)[0]
        pos = tf.broadcast_to(tf.range(1, tf.shape(ids, out_type=tf.int64)[1] + 1)[None, :], tf.shape(ids))  # 1-based
        row_of = tf.broadcast_to(tf.range(rows)[:, None], tf.shape(ids))
        valid = (pos <= length[:, None]) & (ids >= FIRST_ID) & (ids < self.num_items)
        # the distinct items of every history, the most recent position of each and its weight
        keys, at = tf.unique(tf.boolean_mask(ids * rows + row_of, valid), out_idx=tf.int64)  # item * rows + row
        last = tf.math.unsorted_segment_max(tf.boolean_mask(pos, valid), at, tf.size(keys, out_type=tf.int64))
        h_row = keys % rows
        weights = position_weights_tf(last, tf.gather(length, h_row), p.weighting)
        rows32 = tf.cast(rows, tf.int32)  # (bincount lengths)
        size_h = tf.cast(tf.math.bincount(tf.cast(h_row, tf.int32), minlength=rows32, maxlength=rows32), tf.float64)  # |H|
        # candidates (the sequences sharing an item), by row, then rank (most recent first), and their overlaps
        find = self._dense_candidates if self.dense else self._list_candidates
        cand = find(keys, rows, weights, last, p.similarity == "jaccard", p.weighting_score != "none")
        if p.exclude_same_user:
            c_user = tf.gather(user, cand["row"])
            keep = ~((c_user >= FIRST_ID) & (tf.gather(self.t_seq_user, cand["rank"]) == c_user))
            cand = {name: tf.boolean_mask(t, keep) for name, t in cand.items()}
        counts = tf.math.bincount(tf.cast(cand["row"], tf.int32), minlength=rows32, maxlength=rows32, dtype=tf.int64)
        if p.sample_size > 0:  # the sample_size most recent candidates of every row
            within = tf.range(tf.size(cand["row"], out_type=tf.int64)) - tf.gather(tf.cumsum(counts, exclusive=True), cand["row"])
            cand = {name: tf.boolean_mask(t, within < p.sample_size) for name, t in cand.items()}
            counts = tf.minimum(counts, p.sample_size)
        size_hc = tf.gather(size_h, cand["row"])
        size_c = tf.gather(self.t_seq_len, cand["rank"])
        if p.similarity == "cosine":
            sims = cand["overlap"] / tf.sqrt(size_hc * size_c)
        elif p.similarity == "jaccard":
            sims = cand["overlap"] / (size_hc + size_c - cand["count"])
        else:
            sims = cand["overlap"] / size_hc
        # the k best of every row: top_k over [rows, candidates in recency order] with the keys rounded to
        # 1e-12 (as the reference) so that equal similarities tie; top_k puts the lower index (more recent) first
        k = min(p.k, n_seqs)
        ranked = tf.RaggedTensor.from_row_lengths(tf.round(sims * 1e12), counts, validate=False).to_tensor(-np.inf)
        ranked = tf.pad(ranked, [[0, 0], [0, tf.maximum(k - tf.shape(ranked)[1], 0)]], constant_values=-np.inf)
        top = tf.cast(tf.math.top_k(ranked, k=k).indices, tf.int64)
        found = top < counts[:, None]
        flat = tf.where(found, tf.cumsum(counts, exclusive=True)[:, None] + top, tf.size(sims, out_type=tf.int64))
        top_sims = tf.gather(tf.concat([sims, [0.0]], 0), flat)  # the index past the end: no neighbour
        found &= top_sims > 0
        top = tf.where(found, tf.gather(tf.concat([cand["rank"], [0]], 0), flat), 0)
        if p.weighting_score == "none":
            decays = tf.where(found, tf.constant(1.0, tf.float64), 0.0)
        else:  # by the newest history position whose item the neighbour holds
            if "newest" in cand:
                newest = tf.gather(tf.concat([cand["newest"], [0]], 0), flat)
            else:
                newest = self._newest(top, ids, valid, pos)
            steps = tf.where(found, tf.cast(length[:, None] + 1 - newest, tf.float64), 1.0)
            decays = tf.where(found, score_decay_tf(steps, p.weighting_score), 0.0)
        return top, top_sims, decays, found

    def _newest(self, top, ids, valid, pos):
        """Newest position ``[rows, k]`` of a history item held by each neighbour ``top``: every (neighbour,
        history item) pair looked up in the sorted ``rank * N + item`` keys."""
        query = top[:, :, None] * self.num_items + ids[:, None, :]  # [rows, k, L]
        at = tf.searchsorted(self.t_member_keys, tf.reshape(query, [-1]), out_type=tf.int64)
        at = tf.minimum(at, tf.size(self.t_member_keys, out_type=tf.int64) - 1)
        held = tf.reshape(tf.gather(self.t_member_keys, at), tf.shape(query)) == query
        return tf.reduce_max(tf.where(held & valid[:, None, :], pos[:, None, :], 0), axis=2)

    def _dense_candidates(self, keys, rows, weights, last, counted, newest) -> dict:
        """Candidates from ``[S, N] x [N, rows]`` sparse-dense products (the overlaps with every sequence)."""
        n = self.num_items
        cells = tf.cast(keys, tf.int32)  # item * rows + row
        size = n * tf.cast(rows, tf.int32)

        def overlaps(values):  # [S, rows]
            history = tf.math.bincount(cells, weights=values, minlength=size, maxlength=size)
            return tf.sparse.sparse_dense_matmul(self.t_candidates, tf.reshape(history, tf.stack([n, rows])))

        overlap = overlaps(weights)
        where = tf.where(tf.transpose(overlap > 0))  # (row, rank), ascending; every weight is positive
        cand = {"row": where[:, 0], "rank": where[:, 1], "overlap": tf.gather_nd(overlap, tf.reverse(where, [1]))}
        if counted:
            cand["count"] = tf.gather_nd(overlaps(tf.ones_like(weights)), tf.reverse(where, [1]))
        return cand

    def _list_candidates(self, keys, rows, weights, last, counted, newest) -> dict:
        """Candidates from the concatenated item -> sequences lists of the history items (``tf.unique``)."""
        n_seqs = max(self.num_sequences, 1)
        lists = tf.gather(self.t_item_lists, keys // rows)
        owner = _value_rows(lists.row_splits)
        found, at = tf.unique(tf.gather(keys % rows * n_seqs, owner) + lists.flat_values, out_idx=tf.int32)
        size = tf.size(found)
        cand = {"overlap": tf.math.bincount(at, weights=tf.gather(weights, owner), minlength=size, maxlength=size)}
        if counted:
            cand["count"] = tf.math.bincount(at, minlength=size, maxlength=size, dtype=tf.float64)
        if newest:
            cand["newest"] = tf.math.unsorted_segment_max(tf.gather(last, owner), at, size)
        order = tf.argsort(found)  # by row, then rank
        found = tf.gather(found, order)
        cand = {name: tf.gather(t, order) for name, t in cand.items()}
        return {"row": found // n_seqs, "rank": found % n_seqs, **cand}

    def _chunk_scores(self, ids: tf.Tensor, length: tf.Tensor, user: tf.Tensor) -> tf.Tensor:
        top, sims, decays, found = self._chunk_neighbours(ids, length, user)
        rows = tf.shape(ids, out_type=tf.int64)[0]
        row_of = tf.boolean_mask(tf.broadcast_to(tf.range(rows)[:, None], tf.shape(top)), found)
        top, weights = tf.boolean_mask(top, found), tf.boolean_mask(sims * decays, found)
        n = self.num_items
        if self.dense:  # [N, S] x [S, rows] neighbour weights
            neighbours = tf.scatter_nd(tf.stack([top, row_of], axis=1), weights, tf.stack([max(self.num_sequences, 1), rows]))
            scores = tf.transpose(tf.sparse.sparse_dense_matmul(self.t_members, neighbours))
        else:  # the items of every neighbour, summed
            members = tf.gather(self.t_seq_lists, top)
            owner = _value_rows(members.row_splits)
            cells = tf.cast(tf.gather(row_of * n, owner) + members.flat_values, tf.int32)
            size = tf.cast(rows, tf.int32) * n
            scores = tf.math.bincount(cells, weights=tf.gather(weights, owner), minlength=size, maxlength=size)
            scores = tf.reshape(scores, tf.stack([rows, n]))
        return tf.cast(scores, tf.float32)

    def score_items(self, features) -> tf.Tensor:
        """Scores ``[B, num_items]`` by TensorFlow ops over constant tensors (graph-compatible, exportable)."""
        self._check_fitted("score_items")
        item_ids = tf.cast(features["item_ids"], tf.int64)
        length = tf.cast(features["length"], tf.int64)
        user_id = tf.cast(features["user_id"], tf.int64) if "user_id" in features else tf.zeros_like(length)
        scores = self._by_chunks(self._chunk_scores, tf.TensorSpec([None, self.num_items], tf.float32), item_ids, length, user_id)
        if not self.params.remind:
            scores = zero_history(scores, item_ids, length)
        if self.params.fallback == "popularity":
            scores = apply_fallback(scores, self.floor)
        return scores


def _value_rows(splits: tf.Tensor) -> tf.Tensor:
    """The row of every value of a ragged tensor with ``splits`` (``value_rowids`` by binary search,
    without the ``[rows, longest row]`` mask of ``tf.repeat``)."""
    return tf.searchsorted(splits[1:], tf.range(splits[-1]), side="right", out_type=tf.int64)


def _sparse_ones(rows: np.ndarray, cols: np.ndarray, shape: list[int]) -> tf.SparseTensor:
    """A constant float64 0/1 SparseTensor with ones at ``(rows, cols)`` (canonical order)."""
    indices = np.stack([np.asarray(rows, np.int64), np.asarray(cols, np.int64)], axis=1)
    indices = indices[np.lexsort((indices[:, 1], indices[:, 0]))] if len(indices) else indices.reshape(0, 2)
    return tf.SparseTensor(tf.constant(indices, tf.int64), tf.ones([len(indices)], tf.float64), shape)


@registry.register("vsknn", VSKNNConfig, family=registry.NONNEURAL)
class VSKNN(SessionKNN):
    """V-SKNN (Ludewig & Jannach 2018): S-KNN with a linearly position-weighted history and dot-product similarity."""
