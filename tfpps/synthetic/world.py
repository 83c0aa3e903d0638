"""The seeded world shared by all users (steps 1-4 of the generative story in :mod:`tfpps.synthetic`).

The taxonomy and each leaf category's word pool, the items and their
popularity, and the sparse item-to-item transitions; built from
``SeedSequence([seed, 0])`` by :func:`build_world`, independent of users,
shards and output format. ``BRANDS`` and ``GENERIC`` are the extra words of
product titles (:func:`tfpps.synthetic.search.write_items`).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from tfpps.synthetic.config import SyntheticConfig

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
BRANDS = ("Acme", "Nordic", "Zenith", "Orion", "Lumen", "Vertex", "Harbor", "Atlas", "Nova", "Pioneer",
           "Summit", "Cobalt", "Maple", "Aurora", "Evergreen", "Granite")
GENERIC = ("premium", "classic", "pro", "deluxe", "essential", "ultra", "compact", "original", "plus",
            "max", "lite", "eco", "smart", "vintage", "modern", "edition")
_NOISE = ("best", "cheap", "new", "sale", "gift", "good", "top", "quality", "deal", "buy", "online", "review")
_SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")


def tokenize(text: str) -> list[str]:
    """The tokenisation the word pools assume: lower case, split on non-alphanumerics."""
    return [t for t in re.split(r"[^0-9a-z]+", text.lower()) if t]


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
    used = {w for p in pools for w in p} | set(_NOISE) | {g for g in GENERIC} | {b.lower() for b in BRANDS}
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
