r"""Seeded synthetic interaction logs with learnable structure.

This is tfpps's embedded default dataset (``make demo``, the tests) and a
volume generator for scaling benchmarks. Everything is vectorised numpy plus
pyarrow string kernels; users are generated in fixed blocks that are written
and freed one at a time, so memory stays bounded at any size.

Output (in ``out_dir``)
-----------------------
``events-SSSSS-of-NNNNN.{csv,jsonl,parquet}``
    the canonical raw log read by the Beam job's ``csv``/``jsonl``/``parquet``
    sources, columns ``user_id,item_id,timestamp,session_id,query,basket_id,
    event_type``. Ids are strings (``u17``, ``i45``, session ``u17-3``, basket
    ``u17-3-0``), ``timestamp`` is integer epoch seconds, ``query`` is empty
    unless ``event_type == "purchase"``. Users are split into contiguous
    ranges, one per shard, so a user's rows stay in one shard, in time order.
``items.jsonl``
    ``{"item_id": "i45", "title": "...", "categories": [["Electronics",
    "Audio", "Headphones"]]}`` per item.
``summary.json``
    counts, the config and the ground-truth taxonomy (category paths and
    word pools). It holds no wall-clock values, so it is byte-identical
    across runs with the same config, like the event and item files.

Text is meant to be tokenised by lower-casing and splitting on anything
that is not a letter or digit (``"Home & Kitchen"`` -> ``home``, ``kitchen``).

Generative story
----------------
Notation: :math:`K` leaf categories, :math:`I` items, :math:`U` users.

1. **Taxonomy.** Leaf :math:`c` has a path (top level, sub-category, leaf)
   and a word pool :math:`W_c` = the path's tokens plus a few synonyms. The
   first 20 leaves are hand written (5 top levels x 2 sub-categories x 2
   leaves); more are made of seeded pseudo-words.
2. **Category weights.** :math:`w_c \propto \pi_c^{-a}` with :math:`\pi` a
   random ranking of the categories and :math:`a` = ``category_zipf``;
   the category prior is :math:`m_c = (1-\lambda)/K + \lambda w_c`
   (:math:`\lambda` = ``category_skew``).
3. **Items.** Category sizes :math:`n_c = 1 + \mathrm{Mult}(I-K, m)`; item
   ids are assigned in random order. Within its category item :math:`i` has
   a random rank :math:`r_i \in \{1..n_c\}` and popularity
   :math:`q_i = r_i^{-s} / \sum_{j \in c} r_j^{-s}` (:math:`s` =
   ``zipf_exponent``, ~1.1): a power law within each category, and since
   categories differ in size and weight, across categories too.
4. **Transitions.** Each item :math:`i` gets :math:`k` = ``n_successors``
   distinct successors :math:`\sigma_{i1..ik}`: each in :math:`c(i)` with
   probability :math:`\rho` = ``successor_same_category`` (else in a category
   drawn from :math:`m`), drawn within the category with weight
   :math:`q^\beta` (:math:`\beta` = ``successor_popularity_power``, so
   successors are not just the popular items), never :math:`i` itself.
   Successor :math:`j` is taken with weight
   :math:`\omega_j \propto \delta^{j-1}` (:math:`\delta` =
   ``successor_decay``). This is a sparse item-to-item transition matrix.
5. **Users.** Taste :math:`\theta_u \sim \mathrm{Dir}(\alpha K m)` with a
   small :math:`\alpha` = ``taste_concentration``, so each user prefers a few
   categories; the user's background distribution is
   :math:`P_u(i) = \theta_{u,c(i)}\, q_i`. Each user also has
   :math:`F` = ``n_favorites`` favourite items :math:`f_{u1..uF} \sim P_u`.
6. **Sessions.** User :math:`u` has :math:`N_u \sim \mathrm{Geom}(1/S)`
   sessions, :math:`S = E/\bar L` (:math:`E` = ``events_per_user``,
   :math:`\bar L` = ``mean_session_length``); a session has
   :math:`L = \min(L_{max}, 1 + \mathrm{Geom}(1/(\bar L - 1)))` events
   (at least 2).
7. **Items in a session.** :math:`x_1 = f_{u,j}` (:math:`j` uniform) with
   probability :math:`\varphi` = ``p_favorite``, else :math:`x_1 \sim P_u`.
   For :math:`t > 1` a new basket starts with probability
   :math:`1/\bar B` (``mean_basket_size``), and always when the current one
   holds ``max_basket_size`` items. On a new basket

   .. math::
      P(x_t \mid x_{t-1}, u) = p_m \sum_j \omega_j [x_t = \sigma_{x_{t-1} j}]
          + \frac{\varphi}{F} \sum_j [x_t = f_{uj}]
          + (1 - p_m - \varphi)\, P_u(x_t)

   (:math:`p_m` = ``p_markov``). Inside a basket the item is complementary:
   a successor of :math:`x_{t-1}` with probability ``p_complement``, else
   drawn from :math:`q` within :math:`c(x_{t-1})`.
   So a first-order sequence model can reach a next-item hit rate of about
   :math:`p_m` while popularity gets only the head of the marginal, and a
   model that knows :math:`\theta_u` and :math:`f_u` beats a
   non-personalised one on the remaining :math:`1 - p_m` of the mass.
8. **Time.** User start :math:`T_u \sim U(T_0, T_0 + D)` (:math:`T_0` =
   2024-01-01). Between baskets of a session the gap is log-uniform on
   [``min_event_gap``, ``max_event_gap``] = [10 s, 10 min]; items of one
   basket share the timestamp. Between sessions the gap is
   :math:`g_{min} + \mathrm{Exp}(\bar g - g_{min})` with :math:`g_{min}` =
   1 h and :math:`\bar g` = 36 h, so a 30-minute inactivity rule recovers the
   sessions exactly.
9. **Search.** Each event is a purchase-after-search with probability
   ``purchase_rate`` (else a click with an empty query). Its query has
   :math:`\ell \in \{1,2,3,4\}` words with probabilities (.3, .35, .25, .1);
   each word is uniform from :math:`W_{c(x)}` with probability
   :math:`1 - \varepsilon` (``query_noise``), else a generic noise word. The
   query identifies the category; the user's history picks the item.

Randomness: the world (taxonomy, items, transitions) comes from
``SeedSequence([seed, 0])`` and user block :math:`b` (``users_per_block``
users) from ``SeedSequence([seed, 1, b])``, so the events do not depend on
the number of shards or the output format.

>>> import tempfile
>>> s = generate(SyntheticConfig(n_users=20, n_items=60, seed=1), tempfile.mkdtemp())
>>> s["n_users"], s["n_items"], s["n_events"] > 0
(20, 60, True)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("user_id", "item_id", "timestamp", "session_id", "query", "basket_id", "event_type")
FORMATS = ("csv", "jsonl", "parquet")
ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"
CLICK, PURCHASE = "click", "purchase"

# (top level, sub-category, leaf, synonyms of the leaf)
_TAXONOMY: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Electronics", "Audio", "Headphones", ("earphones", "earbuds", "headset", "wireless")),
    ("Electronics", "Audio", "Speakers", ("speaker", "soundbar", "bluetooth", "subwoofer")),
    ("Electronics", "Computers", "Laptops", ("notebook", "ultrabook", "laptop", "chromebook")),
    ("Electronics", "Computers", "Keyboards", ("keyboard", "mechanical", "keys", "typing")),
    ("Home & Kitchen", "Kitchen", "Cookware", ("pan", "skillet", "pot", "nonstick")),
    ("Home & Kitchen", "Kitchen", "Coffee Makers", ("espresso", "brewer", "grinder", "coffee")),
    ("Home & Kitchen", "Bedding", "Pillows", ("pillow", "cushion", "memory", "foam")),
    ("Home & Kitchen", "Bedding", "Blankets", ("throw", "duvet", "quilt", "fleece")),
    ("Sports & Outdoors", "Camping", "Tents", ("tent", "shelter", "backpacking", "canopy")),
    ("Sports & Outdoors", "Camping", "Sleeping Bags", ("sleeping", "mummy", "down", "insulated")),
    ("Sports & Outdoors", "Fitness", "Yoga", ("mat", "stretching", "pilates", "block")),
    ("Sports & Outdoors", "Fitness", "Weights", ("dumbbell", "kettlebell", "barbell", "plates")),
    ("Books", "Fiction", "Mystery", ("detective", "thriller", "crime", "suspense")),
    ("Books", "Fiction", "Fantasy", ("dragons", "magic", "epic", "wizard")),
    ("Books", "Nonfiction", "Cooking", ("recipes", "cookbook", "chef", "baking")),
    ("Books", "Nonfiction", "History", ("ancient", "war", "biography", "empire")),
    ("Clothing", "Men", "Jackets", ("jacket", "coat", "parka", "windbreaker")),
    ("Clothing", "Men", "Sneakers", ("sneaker", "running", "trainers", "shoes")),
    ("Clothing", "Women", "Dresses", ("dress", "gown", "maxi", "floral")),
    ("Clothing", "Women", "Handbags", ("handbag", "purse", "tote", "clutch")),
)
_BRANDS = ("Acme", "Nordic", "Zenith", "Orion", "Lumen", "Vertex", "Harbor", "Atlas", "Nova", "Pioneer",
           "Summit", "Cobalt", "Maple", "Aurora", "Evergreen", "Granite")
_GENERIC = ("premium", "classic", "pro", "deluxe", "essential", "ultra", "compact", "original", "plus",
            "max", "lite", "eco", "smart", "vintage", "modern", "edition")
_NOISE = ("best", "cheap", "new", "sale", "gift", "good", "top", "quality", "deal", "buy", "online", "review")
_QUERY_LEN_P = np.array([0.30, 0.35, 0.25, 0.10])
_SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")


# --------------------------------------------------------------------------- config
@dataclasses.dataclass
class SyntheticConfig:
    """All knobs of the generative story (see the module docstring)."""

    n_users: int = 600
    n_items: int = 1000
    n_categories: int = 20
    seed: int = 0
    # sessions and volume
    events_per_user: float = 80.0  # mean; sessions per user = events_per_user / mean_session_length
    mean_session_length: float = 8.0  # mean events per session (>= 2)
    max_session_length: int = 40
    # popularity
    zipf_exponent: float = 1.1  # within-category item popularity ~ rank^-s
    category_zipf: float = 1.0  # category weights ~ rank^-a
    category_skew: float = 0.5  # lambda: mix of uniform and Zipf category weights in the prior m
    # users
    taste_concentration: float = 0.1  # Dirichlet alpha per category (theta ~ Dir(alpha K m))
    n_favorites: int = 5
    p_favorite: float = 0.1
    # Markov structure
    n_successors: int = 3
    successor_decay: float = 0.6
    successor_same_category: float = 0.85
    successor_popularity_power: float = 0.5
    p_markov: float = 0.6
    # baskets
    mean_basket_size: float = 1.6
    max_basket_size: int = 4
    p_complement: float = 0.8
    # search
    purchase_rate: float = 0.12
    query_noise: float = 0.1
    # time
    start_time: int = 1704067200  # 2024-01-01T00:00:00Z
    start_spread_days: float = 30.0
    min_event_gap: float = 10.0  # seconds between baskets of a session (log-uniform)
    max_event_gap: float = 600.0
    min_session_gap: float = 3600.0  # seconds between sessions: min + Exp(mean - min)
    mean_session_gap: float = 36 * 3600.0
    # output
    shards: int = 1
    format: str = "csv"
    users_per_block: int = 2048  # users generated (and held in memory) at a time; part of the seed stream

    def validate(self) -> None:
        def bad(name: str, want: str) -> None:
            raise ValueError(f"SyntheticConfig.{name}={getattr(self, name)!r}: expected {want}")

        for name in ("n_users", "n_items", "n_categories", "shards", "users_per_block", "n_successors",
                     "n_favorites", "max_basket_size"):
            if int(getattr(self, name)) < 1:
                bad(name, "a positive integer")
        if self.n_items < self.n_categories:
            bad("n_items", f">= n_categories ({self.n_categories})")
        if self.events_per_user < 2:
            bad("events_per_user", ">= 2")
        if self.mean_session_length < 2:
            bad("mean_session_length", ">= 2")
        if self.max_session_length < 2:
            bad("max_session_length", ">= 2")
        if self.mean_basket_size < 1:
            bad("mean_basket_size", ">= 1")
        for name in ("p_favorite", "p_markov", "p_complement", "purchase_rate", "query_noise",
                     "successor_same_category", "category_skew"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                bad(name, "a probability in [0, 1]")
        if self.p_markov + self.p_favorite > 1.0:
            bad("p_markov", f"p_markov + p_favorite <= 1 (p_favorite={self.p_favorite})")
        if not 0 < self.min_event_gap <= self.max_event_gap:
            bad("min_event_gap", "0 < min_event_gap <= max_event_gap")
        if not self.max_event_gap < self.min_session_gap <= self.mean_session_gap:
            bad("min_session_gap", "max_event_gap < min_session_gap <= mean_session_gap")
        if self.format not in FORMATS:
            bad("format", " | ".join(FORMATS))
        if self.taste_concentration <= 0 or self.successor_decay <= 0 or self.zipf_exponent < 0:
            bad("taste_concentration", "taste_concentration > 0, successor_decay > 0, zipf_exponent >= 0")


def shard_name(shard: int, shards: int, fmt: str) -> str:
    return f"events-{shard:05d}-of-{shards:05d}.{fmt}"


def tokenize(text: str) -> list[str]:
    """The tokenisation the word pools assume: lower case, split on non-alphanumerics."""
    return [t for t in re.split(r"[^0-9a-z]+", text.lower()) if t]


# --------------------------------------------------------------------------- world
@dataclasses.dataclass
class _Sampler:
    """Draws an item of a given category with probability proportional to ``weights``."""

    order: np.ndarray  # items sorted by category
    cum: np.ndarray  # cumulative weights in that order
    start: np.ndarray  # per category: first position in order
    end: np.ndarray  # per category: one past the last position
    lo: np.ndarray  # cumulative weight before the category
    mass: np.ndarray  # the category's total weight

    @classmethod
    def build(cls, item_cat: np.ndarray, weights: np.ndarray, n_cat: int) -> "_Sampler":
        order = np.argsort(item_cat, kind="stable")
        cum = np.cumsum(weights[order])
        counts = np.bincount(item_cat, minlength=n_cat)
        end = np.cumsum(counts)
        start = end - counts
        cum0 = np.concatenate([[0.0], cum])
        return cls(order, cum, start, end, cum0[start], cum0[end] - cum0[start])

    def sample(self, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
        target = self.lo[cats] + u * self.mass[cats]
        pos = np.searchsorted(self.cum, target, side="right")
        pos = np.clip(pos, self.start[cats], self.end[cats] - 1)
        return self.order[pos]


@dataclasses.dataclass
class World:
    """Everything shared by all users: taxonomy, items, popularity, transitions."""

    paths: list[tuple[str, str, str]]  # per category
    pools: list[list[str]]  # per category: query/title word pool
    prior: np.ndarray  # m, (K,)
    item_cat: np.ndarray  # (I,)
    item_pop: np.ndarray  # q, normalised within category, (I,)
    successors: np.ndarray  # (I, n_successors)
    successor_cum: np.ndarray  # cumulative omega, (n_successors,)
    pop_sampler: _Sampler
    words: np.ndarray  # global word list (object array of str)
    pool_ids: np.ndarray  # (K, max pool) indices into words
    pool_len: np.ndarray  # (K,)
    noise_ids: np.ndarray  # indices into words


def _pseudo_word(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        n = int(rng.integers(2, 4))
        w = "".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n))
        if w not in used:
            used.add(w)
            return w


def _taxonomy(n_cat: int, rng: np.random.Generator) -> tuple[list[tuple[str, str, str]], list[list[str]]]:
    paths: list[tuple[str, str, str]] = []
    pools: list[list[str]] = []
    for top, mid, leaf, syn in _TAXONOMY[:n_cat]:
        paths.append((top, mid, leaf))
        pools.append(list(dict.fromkeys(tokenize(f"{top} {mid} {leaf}") + list(syn))))
    used = {w for p in pools for w in p} | set(_NOISE) | {g for g in _GENERIC} | {b.lower() for b in _BRANDS}
    top = mid = ""
    for k in range(len(paths), n_cat):
        j = k - len(_TAXONOMY)
        if j % 4 == 0:
            top = _pseudo_word(rng, used).capitalize()
        if j % 2 == 0:
            mid = _pseudo_word(rng, used).capitalize()
        leaf = _pseudo_word(rng, used).capitalize()
        syn = [_pseudo_word(rng, used) for _ in range(4)]
        paths.append((top, mid, leaf))
        pools.append(list(dict.fromkeys([top.lower(), mid.lower(), leaf.lower()] + syn)))
    return paths, pools


def build_world(cfg: SyntheticConfig) -> World:
    """The seeded world of ``cfg`` (independent of users, shards and format)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    K, I = cfg.n_categories, cfg.n_items
    paths, pools = _taxonomy(K, rng)

    w = (rng.permutation(K) + 1.0) ** -cfg.category_zipf
    prior = (1 - cfg.category_skew) / K + cfg.category_skew * w / w.sum()
    prior /= prior.sum()

    sizes = 1 + rng.multinomial(I - K, prior)
    item_cat = rng.permutation(np.repeat(np.arange(K), sizes))
    # within-category random rank -> Zipf popularity, normalised per category
    rank = np.empty(I, dtype=np.int64)
    order = np.argsort(item_cat, kind="stable")
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for c in range(K):  # K is small next to I; the work per category is vectorised
        idx = order[start[c]:start[c] + sizes[c]]
        rank[idx] = rng.permutation(sizes[c]) + 1
    raw = rank.astype(np.float64) ** -cfg.zipf_exponent
    cat_total = np.bincount(item_cat, weights=raw, minlength=K)
    item_pop = raw / cat_total[item_cat]
    pop_sampler = _Sampler.build(item_cat, item_pop, K)
    succ_sampler = _Sampler.build(item_cat, item_pop ** cfg.successor_popularity_power, K)

    # sparse transition matrix: n_successors distinct successors per item, never itself
    prior_cum = np.cumsum(prior)
    S = cfg.n_successors
    succ = np.empty((I, S), dtype=np.int64)
    items = np.arange(I)
    for j in range(S):
        todo = items
        for attempt in range(8):
            n = len(todo)
            same = rng.random(n) < cfg.successor_same_category
            other = np.minimum(np.searchsorted(prior_cum, rng.random(n) * prior_cum[-1], side="right"), K - 1)
            cats = np.where(same, item_cat[todo], other)
            if attempt >= 4:  # small categories: look elsewhere
                cats = other
            succ[todo, j] = succ_sampler.sample(cats, rng.random(n))
            clash = succ[todo, j] == todo
            for k in range(j):
                clash |= succ[todo, j] == succ[todo, k]
            todo = todo[clash]
            if len(todo) == 0:
                break
        if len(todo):  # degenerate tiny worlds: any other item
            succ[todo, j] = (todo + 1 + j) % I
    dec = cfg.successor_decay ** np.arange(S)
    successor_cum = np.cumsum(dec / dec.sum())
    successor_cum[-1] = 1.0

    vocab = list(dict.fromkeys([w for p in pools for w in p] + list(_NOISE)))
    index = {w: i for i, w in enumerate(vocab)}
    plen = np.array([len(p) for p in pools])
    pool_ids = np.zeros((K, plen.max()), dtype=np.int64)
    for c, p in enumerate(pools):
        pool_ids[c, :len(p)] = [index[w] for w in p]
    return World(paths, pools, prior, item_cat, item_pop, succ, successor_cum, pop_sampler,
                 np.array(vocab, dtype=object), pool_ids, plen, np.array([index[w] for w in _NOISE]))


# --------------------------------------------------------------------------- users
@dataclasses.dataclass
class Block:
    """The events of one block of users, in user/time order (numpy columns)."""

    user: np.ndarray  # global user index
    item: np.ndarray
    timestamp: np.ndarray
    session: np.ndarray  # session number within the user
    basket: np.ndarray  # basket number within the session
    purchase: np.ndarray  # bool
    query_offsets: np.ndarray  # (n_purchases + 1,) into query_words
    query_words: np.ndarray  # word indices, purchases in event order

    def __len__(self) -> int:
        return len(self.user)


def _taste_draw(world: World, cum_theta: np.ndarray, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    K = cum_theta.shape[1]
    cats = np.minimum((cum_theta < u1[:, None]).sum(axis=1), K - 1)
    return world.pop_sampler.sample(cats, u2)


def generate_block(cfg: SyntheticConfig, world: World, block: int) -> Block:
    """Events of users ``[block * users_per_block, ...)``; deterministic given (seed, block)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1, block]))
    u0 = block * cfg.users_per_block
    U = min(cfg.users_per_block, cfg.n_users - u0)
    K = cfg.n_categories

    alpha = np.maximum(cfg.taste_concentration * K * world.prior, 1e-3)
    theta = rng.dirichlet(alpha, size=U)
    cum_theta = np.cumsum(theta, axis=1)
    cum_theta[:, -1] = 1.0 + 1e-9
    F = cfg.n_favorites
    fav_users = np.repeat(np.arange(U), F)
    fav = _taste_draw(world, cum_theta[fav_users], rng.random(U * F), rng.random(U * F)).reshape(U, F)

    mean_sessions = max(cfg.events_per_user / cfg.mean_session_length, 1.0)
    n_sess = rng.geometric(1.0 / mean_sessions, size=U)
    S = int(n_sess.sum())
    sess_user = np.repeat(np.arange(U), n_sess)
    first_sess = np.cumsum(n_sess) - n_sess
    sess_num = np.arange(S) - first_sess[sess_user]
    extra = cfg.mean_session_length - 1.0
    L = np.minimum(1 + rng.geometric(1.0 / extra, size=S), cfg.max_session_length)
    Lmax = int(L.max())

    # the chain, one position at a time, vectorised over the sessions still running
    ordS = np.argsort(-L, kind="stable")
    Ls = L[ordS]
    usr = sess_user[ordS]
    n_active = np.searchsorted(-Ls, -np.arange(Lmax), side="left")  # sessions with L > t
    items = np.zeros((S, Lmax), dtype=np.int64)
    newb = np.zeros((S, Lmax), dtype=bool)
    cur = np.zeros(S, dtype=np.int64)
    bsize = np.zeros(S, dtype=np.int64)
    p_new = 1.0 / cfg.mean_basket_size
    pm, pf = cfg.p_markov, cfg.p_favorite
    for t in range(Lmax):
        n = int(n_active[t])
        r = rng.random((n, 5))
        c, uu, bs = cur[:n], usr[:n], bsize[:n]
        nxt = np.empty(n, dtype=np.int64)
        if t == 0:
            new = np.ones(n, dtype=bool)
            m_succ = np.zeros(n, dtype=bool)
            m_fav = r[:, 1] < pf
        else:
            new = (r[:, 0] < p_new) | (bs >= cfg.max_basket_size)
            m_succ = np.where(new, r[:, 1] < pm, r[:, 1] < cfg.p_complement)
            m_fav = new & ~m_succ & (r[:, 1] < pm + pf)
        m_taste = new & ~m_succ & ~m_fav
        m_same = ~new & ~m_succ
        if m_succ.any():
            k = np.searchsorted(world.successor_cum, r[m_succ, 2], side="right")
            nxt[m_succ] = world.successors[c[m_succ], np.minimum(k, cfg.n_successors - 1)]
        if m_fav.any():
            nxt[m_fav] = fav[uu[m_fav], np.minimum((r[m_fav, 2] * F).astype(np.int64), F - 1)]
        if m_taste.any():
            nxt[m_taste] = _taste_draw(world, cum_theta[uu[m_taste]], r[m_taste, 3], r[m_taste, 4])
        if m_same.any():
            nxt[m_same] = world.pop_sampler.sample(world.item_cat[c[m_same]], r[m_same, 4])
        bsize[:n] = np.where(new, 1, bs + 1)
        cur[:n] = nxt
        items[:n, t] = nxt
        newb[:n, t] = new
    inv = np.empty(S, dtype=np.int64)
    inv[ordS] = np.arange(S)
    items, newb = items[inv], newb[inv]

    # time: gaps between baskets inside sessions, gaps between sessions
    valid = np.arange(Lmax)[None, :] < L[:, None]
    lo, hi = math.log(cfg.min_event_gap), math.log(cfg.max_event_gap)
    gaps = np.rint(np.exp(lo + (hi - lo) * rng.random((S, Lmax)))).astype(np.int64)
    gaps[:, 0] = 0
    gaps[~newb | ~valid] = 0
    offs = np.cumsum(gaps, axis=1)
    duration = offs[np.arange(S), L - 1]
    sgap = np.rint(cfg.min_session_gap + rng.exponential(cfg.mean_session_gap - cfg.min_session_gap, S))
    inc = duration + sgap.astype(np.int64)  # from this session's start to the next one's
    cs = np.cumsum(inc)
    excl = cs - inc
    sess_start = excl - excl[first_sess][sess_user]
    user_start = cfg.start_time + np.rint(rng.random(U) * cfg.start_spread_days * 86400).astype(np.int64)
    sess_start = sess_start + user_start[sess_user]
    ts = sess_start[:, None] + offs

    basket = np.cumsum(newb, axis=1) - 1
    ev_user = np.broadcast_to(sess_user[:, None], (S, Lmax))[valid] + u0
    ev_item = items[valid]
    ev_ts = ts[valid]
    ev_sess = np.broadcast_to(sess_num[:, None], (S, Lmax))[valid]
    ev_basket = basket[valid]
    E = len(ev_item)

    # purchase-after-search events and their queries
    purchase = rng.random(E) < cfg.purchase_rate
    P = int(purchase.sum())
    qlen = 1 + np.searchsorted(np.cumsum(_QUERY_LEN_P)[:-1], rng.random(P), side="right")
    qcat = np.repeat(world.item_cat[ev_item[purchase]], qlen)
    nw = int(qlen.sum())
    from_pool = rng.random(nw) >= cfg.query_noise
    pool_pos = np.minimum((rng.random(nw) * world.pool_len[qcat]).astype(np.int64), world.pool_len[qcat] - 1)
    noise = world.noise_ids[rng.integers(0, len(world.noise_ids), nw)]
    qwords = np.where(from_pool, world.pool_ids[qcat, pool_pos], noise)
    qoff = np.concatenate([[0], np.cumsum(qlen)])
    return Block(ev_user, ev_item, ev_ts, ev_sess, ev_basket, purchase, qoff, qwords)


# --------------------------------------------------------------------------- writing
def _arrow_columns(block: Block, world: World, item_ids, lo: int, hi: int) -> dict:
    """pyarrow string columns of events [lo, hi) of ``block``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    sl = slice(lo, hi)
    n = hi - lo
    users = pc.binary_join_element_wise("u", pa.array(block.user[sl]).cast(pa.string()), "")
    items = item_ids.take(pa.array(block.item[sl]))
    sess = pc.binary_join_element_wise(users, pa.array(block.session[sl]).cast(pa.string()), "-")
    bask = pc.binary_join_element_wise(sess, pa.array(block.basket[sl]).cast(pa.string()), "-")
    purchase = block.purchase[sl]
    # queries of the purchases in [lo, hi): purchase ranks before lo are skipped
    p_before = int(block.purchase[:lo].sum())
    p_here = int(purchase.sum())
    qo = block.query_offsets[p_before:p_before + p_here + 1]
    words = pa.array(world.words[block.query_words[qo[0]:qo[-1]]].tolist(), type=pa.string())
    qlists = pa.ListArray.from_arrays(pa.array(qo - qo[0], type=pa.int32()), words)
    qstr = pc.binary_join(qlists, " ")
    take = np.zeros(n, dtype=np.int64)
    take[purchase] = 1 + np.arange(p_here)
    query = pa.concat_arrays([pa.array([""], type=pa.string()), qstr.cast(pa.string())]).take(pa.array(take))
    etype = pa.array([CLICK, PURCHASE], type=pa.string()).take(pa.array(purchase.astype(np.int64)))
    return {
        "user_id": users, "item_id": items, "timestamp": pa.array(block.timestamp[sl], type=pa.int64()),
        "session_id": sess, "query": query, "basket_id": bask, "event_type": etype,
    }


class _ShardWriter:
    def __init__(self, path: Path, fmt: str):
        import pyarrow as pa

        self.path, self.fmt, self.rows = path, fmt, 0
        self.schema = pa.schema([(c, pa.int64() if c == "timestamp" else pa.string()) for c in COLUMNS])
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(str(path), self.schema, compression="snappy")
        else:
            self.f = open(path, "wb")
            if fmt == "csv":
                self.f.write((",".join(COLUMNS) + "\n").encode())

    def write(self, cols: dict) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv

        table = pa.table(cols, schema=self.schema)
        self.rows += table.num_rows
        if self.fmt == "parquet":
            self.writer.write_table(table)
        elif self.fmt == "csv":
            pcsv.write_csv(table, self.f, pcsv.WriteOptions(include_header=False, quoting_style="none"))
        else:  # jsonl: our strings never need escaping, so the lines are assembled by string kernels
            parts: list[Any] = []
            for i, c in enumerate(COLUMNS):
                parts.append(("{" if i == 0 else ",") + f'"{c}":' + ("" if c == "timestamp" else '"'))
                parts.append(cols[c].cast(pa.string()))
                parts.append("" if c == "timestamp" else '"')
            parts[-1] = parts[-1] + "}\n"
            lines = pc.binary_join_element_wise(*parts, "")
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
            self.f.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])

    def close(self) -> None:
        if self.fmt == "parquet":
            self.writer.close()
        else:
            self.f.close()


def _write_items(cfg: SyntheticConfig, world: World, path: Path) -> None:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    I = cfg.n_items
    brand = rng.integers(0, len(_BRANDS), I)
    has_generic = rng.random(I) < 0.6
    generic = rng.integers(0, len(_GENERIC), I)
    n_pool = rng.integers(1, 3, I)
    pool_u = rng.random((I, 2))
    model = rng.integers(10, 1000, I)
    paths_json = [json.dumps([list(p)]) for p in world.paths]
    leaf_noun = [p[2] for p in world.paths]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(I):
            c = int(world.item_cat[i])
            pool = world.pools[c]
            words = [_BRANDS[brand[i]]]
            if has_generic[i]:
                words.append(_GENERIC[generic[i]].capitalize())
            for j in range(int(n_pool[i])):
                words.append(pool[int(pool_u[i, j] * len(pool))].capitalize())
            words.append(leaf_noun[c])
            words.append(str(model[i]))
            f.write(f'{{"item_id": "i{i}", "title": {json.dumps(" ".join(words))}, '
                    f'"categories": {paths_json[c]}}}\n')


def generate(config: SyntheticConfig | None = None, out_dir: str | os.PathLike = "data_out/synthetic_raw",
             verbose: bool = False) -> dict:
    """Write the events shards, ``items.jsonl`` and ``summary.json`` into ``out_dir``.

    Returns the summary (as written, plus ``seconds`` and ``events_per_second``).
    """
    cfg = config or SyntheticConfig()
    cfg.validate()
    import pyarrow as pa

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("events-*-of-*.*"):  # stale shards of an earlier run with other settings
        old.unlink()
    world = build_world(cfg)
    _write_items(cfg, world, out / ITEMS_FILE)
    item_ids = pa.array([f"i{i}" for i in range(cfg.n_items)], type=pa.string())

    K_sh = cfg.shards
    bounds = [(k * cfg.n_users) // K_sh for k in range(K_sh + 1)]  # shard k holds users [bounds[k], bounds[k+1])
    writers: dict[int, _ShardWriter] = {}
    done: set[int] = set()
    rows = [0] * K_sh
    item_counts = np.zeros(cfg.n_items, dtype=np.int64)
    n_events = n_sessions = n_baskets = n_purchases = 0
    ts_min, ts_max = None, None
    n_blocks = -(-cfg.n_users // cfg.users_per_block)

    def writer(k: int) -> _ShardWriter:
        if k not in writers:
            writers[k] = _ShardWriter(out / shard_name(k, K_sh, cfg.format), cfg.format)
        return writers[k]

    for b in range(n_blocks):
        blk = generate_block(cfg, world, b)
        E = len(blk)
        n_events += E
        n_purchases += int(blk.purchase.sum())
        new_sess = np.ones(E, dtype=bool)
        new_sess[1:] = (blk.user[1:] != blk.user[:-1]) | (blk.session[1:] != blk.session[:-1])
        n_sessions += int(new_sess.sum())
        new_bask = new_sess.copy()
        new_bask[1:] |= blk.basket[1:] != blk.basket[:-1]
        n_baskets += int(new_bask.sum())
        item_counts += np.bincount(blk.item, minlength=cfg.n_items)
        lo_t, hi_t = int(blk.timestamp.min()), int(blk.timestamp.max())
        ts_min = lo_t if ts_min is None else min(ts_min, lo_t)
        ts_max = hi_t if ts_max is None else max(ts_max, hi_t)
        # split the block's rows (users ascending) at shard boundaries
        first_user = int(blk.user[0]) if E else b * cfg.users_per_block
        last_user = int(blk.user[-1]) if E else first_user
        k_lo = int(np.searchsorted(bounds, first_user, side="right")) - 1
        k_hi = int(np.searchsorted(bounds, last_user, side="right")) - 1
        for k in range(k_lo, k_hi + 1):
            lo = int(np.searchsorted(blk.user, bounds[k], side="left"))
            hi = int(np.searchsorted(blk.user, bounds[k + 1], side="left"))
            if hi > lo:
                writer(k).write(_arrow_columns(blk, world, item_ids, lo, hi))
                rows[k] += hi - lo
        for k in [k for k in writers if bounds[k + 1] <= (b + 1) * cfg.users_per_block]:
            writers.pop(k).close()  # shard complete
            done.add(k)
        if verbose and n_blocks > 1:
            el = time.perf_counter() - t0
            print(f"  block {b + 1}/{n_blocks}: {n_events:,} events, {n_events / el:,.0f} events/s",
                  file=sys.stderr, flush=True)
    for k in range(K_sh):  # shards left open, or empty ones (more shards than users)
        if k not in done:
            writer(k).close()
            writers.pop(k)

    sorted_counts = np.sort(item_counts)[::-1]
    top = max(1, cfg.n_items // 10)
    summary: dict[str, Any] = {
        "n_users": cfg.n_users,
        "n_items": cfg.n_items,
        "n_categories": cfg.n_categories,
        "n_events": n_events,
        "n_sessions": n_sessions,
        "n_baskets": n_baskets,
        "n_purchases": n_purchases,
        "events_per_user": round(n_events / cfg.n_users, 3),
        "events_per_session": round(n_events / max(n_sessions, 1), 3),
        "items_per_basket": round(n_events / max(n_baskets, 1), 3),
        "items_seen": int((item_counts > 0).sum()),
        "top10pct_item_share": round(float(sorted_counts[:top].sum() / max(n_events, 1)), 4),
        "first_timestamp": ts_min,
        "last_timestamp": ts_max,
        "format": cfg.format,
        "shards": K_sh,
        "files": [shard_name(k, K_sh, cfg.format) for k in range(K_sh)],
        "rows_per_shard": rows,
        "items_file": ITEMS_FILE,
        "config": dataclasses.asdict(cfg),
        "taxonomy": [{"path": list(p), "words": w} for p, w in zip(world.paths, world.pools)],
    }
    with open(out / SUMMARY_FILE, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    seconds = time.perf_counter() - t0
    return {**summary, "seconds": round(seconds, 3), "events_per_second": round(n_events / max(seconds, 1e-9))}


# --------------------------------------------------------------------------- CLI
def format_summary(summary: dict, out_dir: str | os.PathLike = "") -> str:
    rows = [("output", str(out_dir))] if out_dir else []
    for key in ("n_users", "n_items", "n_categories", "n_events", "n_sessions", "n_baskets", "n_purchases",
                "events_per_user", "events_per_session", "items_per_basket", "items_seen",
                "top10pct_item_share", "format", "shards", "seconds", "events_per_second"):
        if key in summary:
            v = summary[key]
            rows.append((key, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)))
    span = (summary["last_timestamp"] - summary["first_timestamp"]) / 86400 if summary.get("n_events") else 0
    rows.insert(len(rows) - 2 if "seconds" in summary else len(rows), ("time_span_days", f"{span:.1f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(prog="python -m tfpps.data.synthetic", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--users", type=int, default=d.n_users)
    p.add_argument("--events", type=int, default=0,
                   help="approximate total events instead of --users: users = ceil(events / events-per-user); "
                        "e.g. --events=10000000 --shards=64 (generated block by block, memory stays flat)")
    p.add_argument("--items", type=int, default=d.n_items)
    p.add_argument("--categories", type=int, default=d.n_categories)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--shards", type=int, default=d.shards)
    p.add_argument("--format", choices=FORMATS, default=d.format)
    p.add_argument("--events-per-user", type=float, default=d.events_per_user, help="mean events per user")
    p.add_argument("--session-length", type=float, default=d.mean_session_length, help="mean events per session")
    p.add_argument("--zipf", type=float, default=d.zipf_exponent, help="within-category popularity exponent")
    p.add_argument("--p-markov", type=float, default=d.p_markov)
    p.add_argument("--purchase-rate", type=float, default=d.purchase_rate)
    p.add_argument("--users-per-block", type=int, default=d.users_per_block)
    p.add_argument("--quiet", action="store_true", help="no per-block progress")
    a = p.parse_args(argv)
    if a.events < 0:
        p.error(f"--events={a.events}: must be >= 0")
    if a.events:
        a.users = max(1, math.ceil(a.events / a.events_per_user))
    cfg = SyntheticConfig(n_users=a.users, n_items=a.items, n_categories=a.categories, seed=a.seed,
                          shards=a.shards, format=a.format, events_per_user=a.events_per_user,
                          mean_session_length=a.session_length, zipf_exponent=a.zipf, p_markov=a.p_markov,
                          purchase_rate=a.purchase_rate, users_per_block=a.users_per_block)
    try:
        summary = generate(cfg, a.out, verbose=not a.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
