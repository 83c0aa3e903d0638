"""Product search in the synthetic logs: purchase-after-search queries (step 9 of the generative story in
:mod:`tfpps.synthetic`) and the product text of ``items.jsonl``.

A purchase's query is made of words of its item's category pool (plus some
generic noise words): the query identifies the category; the user's history
picks the item. An item's title mixes a brand, words of the same pool, the
leaf noun and a model number.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfpps.synthetic.config import SyntheticConfig
from tfpps.synthetic.world import BRANDS, GENERIC, World

_QUERY_LEN_P = np.array([0.30, 0.35, 0.25, 0.10])


def draw_queries(
    cfg: SyntheticConfig, world: World, rng: np.random.Generator, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of the events of ``items`` are purchases after a search, and their queries.

    Returns ``(purchase [E] bool, query_offsets [P + 1], query_words)``: the words of the ``p``-th
    purchase's query are ``query_words[query_offsets[p]:query_offsets[p + 1]]`` (indices into
    ``world.words``).
    """
    E = len(items)
    purchase = rng.random(E) < cfg.purchase_rate
    P = int(purchase.sum())
    qlen = 1 + np.searchsorted(np.cumsum(_QUERY_LEN_P)[:-1], rng.random(P), side="right")
    qcat = np.repeat(world.item_cat[items[purchase]], qlen)
    nw = int(qlen.sum())
    from_pool = rng.random(nw) >= cfg.query_noise
    pool_pos = np.minimum((rng.random(nw) * world.pool_len[qcat]).astype(np.int64), world.pool_len[qcat] - 1)
    noise = world.noise_ids[rng.integers(0, len(world.noise_ids), nw)]
    qwords = np.where(from_pool, world.pool_ids[qcat, pool_pos], noise)
    qoff = np.concatenate([[0], np.cumsum(qlen)])
    return purchase, qoff, qwords


def write_items(cfg: SyntheticConfig, world: World, path: Path) -> None:
    """``items.jsonl``: each item's title (brand, words of its category's pool, leaf noun, model number) and
    category path; seeded by ``SeedSequence([seed, 2])``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    I = cfg.n_items
    brand = rng.integers(0, len(BRANDS), I)
    has_generic = rng.random(I) < 0.6
    generic = rng.integers(0, len(GENERIC), I)
    n_pool = rng.integers(1, 3, I)
    pool_u = rng.random((I, 2))
    model = rng.integers(10, 1000, I)
    paths_json = [json.dumps([list(p)]) for p in world.paths]
    leaf_noun = [p[2] for p in world.paths]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(I):
            c = int(world.item_cat[i])
            pool = world.pools[c]
            words = [BRANDS[brand[i]]]
            if has_generic[i]:
                words.append(GENERIC[generic[i]].capitalize())
            for j in range(int(n_pool[i])):
                words.append(pool[int(pool_u[i, j] * len(pool))].capitalize())
            words.append(leaf_noun[c])
            words.append(str(model[i]))
            f.write(f'{{"item_id": "i{i}", "title": {json.dumps(" ".join(words))}, '
                    f'"categories": {paths_json[c]}}}\n')
