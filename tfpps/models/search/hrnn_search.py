r"""HRNN-search: a hierarchical RNN over the user's query sessions with query-aware attention, for product search.

Songwei Ge, Zhicheng Dou, Zhengbao Jiang, Jian-Yun Nie, Ji-Rong Wen.
"Personalizing Search Results Using Hierarchical RNN with Query-aware
Attention", CIKM 2018, https://doi.org/10.1145/3269206.3271728. The paper
re-ranks web-search results from query logs; **no official code exists**, and
the paper's body could not be read here, so this module is a re-design for
product search from the abstract's description (short-term session RNN,
long-term RNN over sessions, attention over long-term states driven by the
current query). Every inferred choice is listed below. The only third-party
code found (``Wenjun-Peng/.../structures/HRNN.py``, reference notes 1.3) was
read for how others adapted it; nothing is copied.

Model, for a user with earlier training purchases
:math:`(q_k, i_k, t_k)_{k=1..L}` (query, item, time) and the current query
:math:`q` at time :math:`t`::

    x_k     = [enc(q_k) ; v_{i_k}]                             # one past search: its query and what was bought
    session = maximal runs of x_k with t_k - t_{k-1} <= gap    # 30 minutes by default
    s_k     = GRU_short(x_k, s_{k-1}), s reset to 0 at each session start
    l_j     = GRU_long(s_end(j), l_{j-1}) at the end of each completed session j
    short   = s_L if t - t_L <= gap (the current query continues the last session) else 0
    a_j     = softmax_j( w^T tanh(W_a [enc(q) ; l_j] + b_a) )  # query-aware attention over completed sessions
    long    = sum_j a_j l_j                                    (0 when there is none)
    u       = tanh(W_u [short ; long] + b_u)
    M_uq    = lambda enc(q) + (1 - lambda) u                   # then as HEM: s(i) = M_uq . v_i

Trained like the other search models, with HEM's recipe (SGD 0.1, clip 5,
zero-initialised item vectors, uniform item noise; see AEM's departure 2) (:mod:`tfpps.models.search.search_base`):
negative sampling for ``M_uq -> item`` plus the item -> word term.

Inferred (not from the paper or any official code)
--------------------------------------------------
1. **Inputs of a step.** Web-search HRNN reads a query and its clicked
   documents; here a step is a past purchase: its query vector (the same
   ``fs`` encoder as the current query) concatenated with the item vector.
2. **Session boundaries** from a time gap (``session_gap_minutes``) on the
   purchase times, as in session-based recommendation; query logs in the
   paper come with sessions. Data without times needs a gap below their
   spacing: the HEM qrels date a purchase by its qrels line (1 s apart, a
   user's lines together, test after training), so at the default 30
   minutes a user's whole history is ONE session that every training record
   continues (the short-term path) while every test record starts a new one
   (the long-term GRU and the attention, which training never reached).
   ``configs/models/hrnn_search_cellphones.yaml`` sets 0.01 minutes: every
   purchase is its own session, and training, validation and test take
   the same path (the attention over the long-term states).
3. **What the long-term RNN reads**: the short-term state at the end of each
   completed session (a session summary), i.e. HGRU4Rec's hierarchy.
4. **The current session** is not attended (it is the short-term part); if
   the current query starts a new session, ``short = 0``.
5. **Combination**: a learned ``tanh`` layer over ``[short ; long]`` mixed
   with the query by HEM's ``lambda`` (the third-party version uses fixed
   0.7/0.3 weights on separate scores instead).
6. **Scoring** by dot product with item vectors (the paper re-ranks
   documents with a learned scoring layer over several features).
7. History = the user's ``data.max_len`` most recent *training* purchases
   (as AEM/ZAM), so a session may be cut at its start.

Example::

    python -m tfpps.train --model=hrnn_search --dataset=synthetic-search
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError
from tfpps.data.dataset_dir import DatasetDir
from tfpps.models.search.search_base import SearchConfig, SearchModel


@dataclasses.dataclass
class HRNNSearchConfig(SearchConfig):
    embedding_size: int = 64
    hidden_size: int = 64  # short- and long-term GRU units
    attention_size: int = 64
    session_gap_minutes: float = 30.0

    def validate(self) -> None:
        super().validate()
        if self.hidden_size <= 0 or self.attention_size <= 0 or self.session_gap_minutes <= 0:
            raise ConfigError("hidden_size, attention_size and session_gap_minutes must be positive")


class _ResetGRUCell(tf.keras.layers.Layer):
    """A GRU cell whose input is ``[x ; flag]``; ``mode="reset"`` zeroes the state where flag = 1 before the
    step (a new session), ``mode="gate"`` only updates the state where flag = 1 (the end of a session)."""

    def __init__(self, units: int, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.units, self.mode = units, mode
        self.cell = tf.keras.layers.GRUCell(units)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        self.cell.build(tf.TensorShape([input_shape[0], input_shape[-1] - 1]))
        super().build(input_shape)

    def call(self, inputs, states):
        x, flag = inputs[:, :-1], inputs[:, -1:] > 0.5
        state = states[0] if isinstance(states, (list, tuple)) else states
        if self.mode == "reset":
            state = tf.where(flag, tf.zeros_like(state), state)
            out, _ = self.cell(x, [state])
            return out, [out]
        out, _ = self.cell(x, [state])
        new = tf.where(flag, out, state)
        return new, [new]


@registry.register("hrnn_search", HRNNSearchConfig, example_kind="search")
class HRNNSearch(SearchModel):
    """Hierarchical RNN with query-aware attention (Ge et al., CIKM 2018), re-designed for product search."""

    def __init__(self, params: HRNNSearchConfig, info, run, **kwargs):
        super().__init__(params, info, run, **kwargs)
        self.query_words = tf.constant(self._query_word_table(run))  # query id -> word ids
        self.short_rnn = tf.keras.layers.RNN(_ResetGRUCell(params.hidden_size, "reset"), return_sequences=True, name="short_gru")
        self.long_rnn = tf.keras.layers.RNN(_ResetGRUCell(params.hidden_size, "gate"), return_sequences=True, name="long_gru")
        self.attention_hidden = tf.keras.layers.Dense(params.attention_size, activation="tanh", name="W_a")
        self.attention_score = tf.keras.layers.Dense(1, use_bias=False, name="w_a")
        self.user_layer = tf.keras.layers.Dense(params.embedding_size, activation="tanh", name="W_u")

    @staticmethod
    def _query_word_table(run) -> np.ndarray:
        """``[num_queries, W]`` word ids of every query in the query vocabulary (PAD/OOV rows empty)."""
        if not run.data.dir:
            return np.zeros([2, 1], np.int64)
        data = DatasetDir(run.data.dir)
        words = {w: i for i, w in enumerate(data.vocab("words"))}
        rows = [[words.get(w, 1) for w in q.split(" ")] if i >= 2 else [] for i, q in enumerate(data.vocab("queries"))]
        table = np.zeros([len(rows), max([len(r) for r in rows] + [1])], np.int64)
        for i, r in enumerate(rows):
            table[i, : len(r)] = r
        return table

    def user_part(self, features, training: bool = False) -> tf.Tensor:
        query = self.query_encoder(features["query_word_ids"], training=training)
        hist = self.history_features(features)
        items = hist["items"]  # [B, L], left-aligned, 0-padded
        real = items > 0
        lengths = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
        width = tf.shape(items)[1]
        history_queries = tf.gather(self.query_words, hist["queries"][:, :width])
        b = tf.shape(items)[0]
        past_queries = self.query_encoder(tf.reshape(history_queries, [b * width, -1]), training=training)
        steps = tf.concat([tf.reshape(past_queries, [b, width, self.params.embedding_size]), self.item_embedding(items)], axis=-1)

        times = tf.cast(hist["timestamps"], tf.float32)[:, :width]
        gap = self.params.session_gap_minutes * 60.0
        previous = tf.concat([times[:, :1], times[:, :-1]], axis=1)
        starts = tf.logical_or(tf.equal(tf.range(width)[None, :], 0), times - previous > gap) & real
        last_time = tf.gather(times, tf.maximum(lengths - 1, 0), batch_dims=1)
        continues = (tf.cast(hist["now"], tf.float32) - last_time <= gap) & (lengths > 0)
        following_start = tf.concat([starts[:, 1:], tf.zeros_like(starts[:, :1])], axis=1)
        is_last = tf.equal(tf.range(width)[None, :], (lengths - 1)[:, None])
        # a completed session ends where the next step starts a session, or at the last step if the query starts a new one
        ends = real & (following_start | (is_last & ~continues[:, None]))

        flag = lambda m: tf.cast(m, tf.float32)[..., None]
        short_states = self.short_rnn(tf.concat([steps, flag(starts)], -1), mask=real, training=training)  # [B, L, h]
        long_states = self.long_rnn(tf.concat([short_states, flag(ends)], -1), mask=real, training=training)
        short = tf.gather(short_states, tf.maximum(lengths - 1, 0), batch_dims=1) * tf.cast(continues, tf.float32)[:, None]

        hidden = self.attention_hidden(tf.concat([tf.broadcast_to(query[:, None, :], tf.concat([tf.shape(long_states)[:2], tf.shape(query)[1:]], 0)),
                                                  long_states], -1))
        logits = tf.where(ends, self.attention_score(hidden)[..., 0], tf.fill(tf.shape(ends), -1e9))
        weights = tf.nn.softmax(logits, axis=1) * tf.cast(ends, tf.float32)
        long = tf.einsum("bl,blh->bh", weights, long_states)
        return self.user_layer(tf.concat([short, long], -1))
