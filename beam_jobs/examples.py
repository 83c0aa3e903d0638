"""Basket and product-search records from one user's events (pure Python, like :mod:`timelines`).

Basket records (``--kind=basket``)
    events are grouped into baskets by ``basket_id`` (or, when the log has
    none, by identical timestamp or by calendar day: ``--basket_by``). Split is
    leave-one-basket-out: the last basket is the test target, the second-last
    the validation target, earlier baskets the training record.

Search records (``--kind=search``), after Ai et al. (SIGIR 2017)
    every purchase with a query gives (user, query, item) pairs; the query
    text is tokenized, Porter-stemmed and de-duplicated the same way for
    logged queries and for queries built from category paths.

    A user's repeat purchases of an item are dropped (the first is kept):
    the Amazon dumps hold one review per (user, item), and the evaluation
    removes the user's training purchases from the ranking, so a repeat could
    never be retrieved.

    *Purchases* are split per user (``search_split``): ``time`` puts the last
    ``test_fraction`` of each user's purchases in test and the
    ``valid_fraction`` before them in validation; ``random`` draws them at
    random, with a draw fixed by (``split_seed``, user) so every runner makes
    the same one (``scripts/split_train_test_data.py`` of the HEM code draws
    30% of each user's reviews at random). ``given`` keeps the split each event
    carries (its ``split`` field, e.g. ``--source=hem_qrels``: the official
    train / test qrels): training purchases train, test purchases test, and a
    seeded ``valid_fraction`` of each user's training purchases (users with 2
    or more, at least one left in training) become validation; see
    :func:`given_split`.

    *Queries* can be held out too (``test_query_fraction``, 0.3 in the HEM
    code): that share of the distinct queries is test-only, except that every
    product keeps at least one training query (one of its queries is
    released back when all of them were drawn). Training pairs then use only
    training queries and evaluation pairs only held-out ones, so every
    evaluation query is unseen in training, as in the HEM data. The held-out
    set is computed by the Beam job (:func:`query_uniform`,
    :func:`released_query`) and passed to :func:`build_search_records`.

    With ``search_split=given``, *validation* queries can be held out the same
    way (``valid_query_fraction``): a seeded share of the distinct training
    queries (drawn by :func:`query_uniform` under the salted seed
    :func:`valid_query_seed`, one released per product as above) never
    trains: a seeded ``valid_fraction`` of the training purchases bought
    with such a query become validation purchases (their pairs with other
    queries are dropped), and the others keep only their pairs with training
    queries. Every validation query is then unseen in training, as every
    test query of the HEM benchmark is: a validation that predicts the test
    instead of rewarding memorised training queries.

    Training records are one per (purchase, query) with ``history_item_ids``
    = the user's training purchases made before it (the ``max_history``
    most recent), ``history_queries`` the (first training) query of each and
    ``history_timestamps`` their times (for HRNN-search's query sessions). Evaluation records are one per (user, query) of the split,
    with ``target_items`` = every item the user bought with that query in the
    split (the qrels of the HEM evaluation) and ``history_item_ids`` = ALL the
    user's training purchases (the items removed from the ranking; models
    keep only the most recent ones as input).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from typing import Collection, Iterable

from beam_jobs.timelines import order_events
from tfpps.spec.text import normalize_words

BASKET_BY = ("id", "timestamp", "day")
SEARCH_SPLITS = ("time", "random", "given")


@dataclasses.dataclass(frozen=True)
class ExampleOptions:
    basket_by: str = "id"
    min_baskets: int = 1
    test_fraction: float = 0.3
    valid_fraction: float = 0.1
    max_history: int = 100
    search_split: str = "time"
    test_query_fraction: float = 0.0
    valid_query_fraction: float = 0.0
    split_seed: int = 2021

    def __post_init__(self):
        if self.basket_by not in BASKET_BY:
            raise ValueError(f"unknown basket grouping {self.basket_by!r}; expected one of {', '.join(BASKET_BY)}")
        if self.search_split not in SEARCH_SPLITS:
            raise ValueError(f"unknown search split {self.search_split!r}; expected one of {', '.join(SEARCH_SPLITS)}")
        if not 0 <= self.test_query_fraction < 1:
            raise ValueError(f"test_query_fraction={self.test_query_fraction}: must be in [0, 1)")
        if not 0 <= self.valid_query_fraction < 1:
            raise ValueError(f"valid_query_fraction={self.valid_query_fraction}: must be in [0, 1)")
        if not 0 < self.test_fraction < 1 or not 0 <= self.valid_fraction < 1:
            raise ValueError("test_fraction and valid_fraction must be in (0, 1)")
        if self.search_split != "given" and self.test_fraction + self.valid_fraction >= 1:  # given: no test draw
            raise ValueError("test_fraction and valid_fraction must sum to less than 1")


# ----------------------------------------------------------------------------- baskets
def group_baskets(events: list[dict], by: str) -> list[tuple[int, list[str]]]:
    """Time-ordered ``(timestamp, items)`` baskets; items de-duplicated inside a basket."""
    groups: dict[object, tuple[int, dict[str, None]]] = {}
    for e in order_events(events):
        if by == "id" and e.get("basket_id") not in (None, ""):
            key = ("id", str(e["basket_id"]))
        elif by == "day":
            key = ("day", int(e["timestamp"]) // 86400)
        else:
            key = ("ts", int(e["timestamp"]))
        ts, items = groups.setdefault(key, (int(e["timestamp"]), {}))
        items.setdefault(e["item_id"], None)
    return sorted(((ts, list(items)) for ts, items in groups.values()), key=lambda b: b[0])


def build_basket_records(user: str, events: Iterable[dict], opts: ExampleOptions) -> tuple[dict[str, list[dict]], dict]:
    baskets = group_baskets(list(events), opts.basket_by)
    counters = {"users_in": 1}
    out: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    if len(baskets) < max(1, opts.min_baskets):
        counters["short_users_removed"] = 1
        return out, counters
    counters.update(users=1, baskets=len(baskets), interactions=sum(len(b) for _, b in baskets))

    def rec(bs, target=None):
        return {
            "user_id": user,
            "baskets": [b for _, b in bs],
            "basket_timestamps": [t for t, _ in bs],
            "target_items": list(target or []),
        }

    if len(baskets) < 3:
        out["train"].append(rec(baskets))
        counters["users_train_only"] = 1
        return out, counters
    out["train"].append(rec(baskets[:-2]))
    out["valid"].append(rec(baskets[:-2], baskets[-2][1]))
    out["test"].append(rec(baskets[:-1], baskets[-1][1]))
    return out, counters


# ----------------------------------------------------------------------------- search
def event_queries(event: dict) -> list[str]:
    """The normalised, de-duplicated queries of one event (its ``queries`` list, else its ``query``)."""
    out: dict[str, None] = {}
    for q in event.get("queries") or [event.get("query") or ""]:
        words = normalize_words(q)
        if words:
            out.setdefault(" ".join(words), None)
    return list(out)


def _uniform(*parts: object) -> float:
    key = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


def query_uniform(seed: int, query: str) -> float:
    """A uniform number in ``[0, 1)`` fixed by (seed, query); a query is a test candidate when it is below the fraction."""
    return _uniform(seed, "query", query)


def released_query(seed: int, item: str, queries: Collection[str], fraction: float) -> str | None:
    """The query given back to training when ALL of ``item``'s queries were drawn for test (else None).

    Which one is a seeded draw fixed by (seed, item, query), like the HEM script's random pick.
    """
    if not queries or any(query_uniform(seed, q) >= fraction for q in queries):
        return None
    return min(sorted(queries), key=lambda q: _uniform(seed, "release", item, q))


def valid_query_seed(split_seed: int) -> str:
    """The seed of the validation-query draw: ``split_seed`` salted, so it never repeats the test-query draw."""
    return f"{split_seed}:valid"


def _eval_positions(user: str, n: int, opts: ExampleOptions) -> tuple[set[int], set[int]]:
    """(test, valid) purchase positions of a user with ``n`` purchases."""
    n_test = max(1, math.floor(n * opts.test_fraction + 0.5)) if n >= 2 else 0
    n_valid = math.floor(n * opts.valid_fraction + 0.5) if n - n_test >= 2 else 0
    if opts.search_split == "time":
        order = list(range(n - 1, -1, -1))
    else:
        order = list(range(n))
        random.Random(f"{opts.split_seed}\x1f{user}").shuffle(order)
    return set(order[:n_test]), set(order[n_test : n_test + n_valid])


def given_split(user: str, purchases: list[dict], opts: ExampleOptions,
                valid_queries: Collection[str] | None = None) -> list[str]:
    """``search_split=given``: the split of each purchase: its own (``train`` when it has none), with a
    seeded share (``valid_fraction``, draw fixed by (``split_seed``, user)) of the user's training purchases
    moved to ``valid``; a user keeps at least one training purchase. With ``valid_queries`` (the held-out
    validation queries) the candidates are instead the training purchases bought with one of them, and
    each is ``valid`` with probability ``valid_fraction`` (a draw fixed by (``split_seed``, user, item)); the
    others stay in training, where their held-out queries are dropped, as the benchmark's test queries are
    absent from the training purchases of the same items (so every item keeps its training purchases).

    >>> evs = [{"split": "train"}] * 9 + [{"split": "test"}]
    >>> given_split("u", evs, ExampleOptions(search_split="given", valid_fraction=0.2)).count("valid")
    2
    >>> evs = [{"item_id": "h", "query": "hat"}, {"item_id": "j", "query": "hat"}, {"item_id": "k", "queries": ["hat", "cap"]}]
    >>> given_split("u", evs, ExampleOptions(valid_fraction=0.5), {"hat"})  # draws: h 0.81, j 0.75, k 0.19
    ['train', 'train', 'valid']
    """
    split_of = [e.get("split") or "train" for e in purchases]
    if valid_queries is not None:
        held = set(valid_queries)
        return ["valid" if s == "train" and held & set(event_queries(e))
                and _uniform(opts.split_seed, "valid", user, e["item_id"]) < opts.valid_fraction else s
                for e, s in zip(purchases, split_of)]
    train_pos = [i for i, s in enumerate(split_of) if s == "train"]
    n = len(train_pos)
    n_valid = min(math.floor(n * opts.valid_fraction + 0.5), n - 1) if n >= 2 else 0
    random.Random(f"{opts.split_seed}\x1fvalid\x1f{user}").shuffle(train_pos)
    for i in train_pos[:n_valid]:
        split_of[i] = "valid"
    return split_of


def build_search_records(
    user: str, events: Iterable[dict], opts: ExampleOptions, test_queries: Collection[str] | None = None,
    valid_queries: Collection[str] | None = None,
) -> tuple[dict[str, list[dict]], dict]:
    """Training pairs and per-(user, query) evaluation records; see the module docstring.

    ``test_queries``: the held-out queries (``None``: no query hold-out). With ``search_split=given`` the
    events' own split is kept (:func:`given_split`), repeats are dropped within a split only, and test
    records' history is every purchase of the user's given training part (validation ones included:
    they are training purchases of the benchmark), validation records' the purchases left in training.
    ``valid_queries`` (``search_split=given`` only): the training queries held out for validation; a pair
    of a training purchase with one, and a pair of a validation purchase without one, is dropped (counted
    as ``pairs_dropped_valid_query_holdout``).
    """
    given = opts.search_split == "given"
    purchases, bought = [], set()
    counters = {"users_in": 1}
    for e in order_events(events):
        if not event_queries(e):
            continue
        key = (e.get("split") or "train", e["item_id"]) if given else e["item_id"]
        if key in bought:  # one example per (user, item), like one review per (user, item) in Amazon dumps
            counters["repeat_purchases_dropped"] = counters.get("repeat_purchases_dropped", 0) + 1
            continue
        bought.add(key)
        purchases.append(e)
    out: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    if not purchases:
        counters["short_users_removed"] = 1
        return out, counters
    n = len(purchases)
    if given:
        split_of = given_split(user, purchases, opts, valid_queries)
        counters["valid_purchases_carved"] = sum(s == "valid" and (e.get("split") or "train") == "train"
                                                 for e, s in zip(purchases, split_of))
    else:
        test_pos, valid_pos = _eval_positions(user, n, opts)
        split_of = ["test" if i in test_pos else "valid" if i in valid_pos else "train" for i in range(n)]
    not_training = test_queries if valid_queries is None else valid_queries  # queries a history may not name
    train_history = [_history_entry(e, not_training) for e, s in zip(purchases, split_of) if s == "train"]
    eval_history = {"valid": train_history, "test": train_history}
    if given:  # the benchmark's whole training part: the items a test ranking must leave out
        eval_history["test"] = [_history_entry(e, not_training) for e in purchases if (e.get("split") or "train") == "train"]
    counters.update(users=1, interactions=n)

    def count(name: str) -> None:
        counters[name] = counters.get(name, 0) + 1

    history: list[tuple[str, str, int]] = []
    grouped: dict[tuple[str, str], dict] = {}
    for e, split in zip(purchases, split_of):
        for query in event_queries(e):
            held_out = test_queries is not None and query in test_queries
            if test_queries is not None and held_out != (split != "train"):
                count("pairs_dropped_query_holdout")
                continue
            if valid_queries is not None and split != "test" and (query in valid_queries) != (split == "valid"):
                count("pairs_dropped_valid_query_holdout")
                continue
            if split == "train":
                out["train"].append({
                    "user_id": user, "query": query, "query_words": query.split(" "), "item_id": e["item_id"],
                    **_history_fields(history[-opts.max_history :]), "timestamp": int(e["timestamp"]),
                    "target_items": [],
                })
                continue
            rec = grouped.get((split, query))
            if rec is None:
                rec = grouped[(split, query)] = {
                    "user_id": user, "query": query, "query_words": query.split(" "), "item_id": e["item_id"],
                    **_history_fields(eval_history[split]), "timestamp": int(e["timestamp"]), "target_items": [],
                }
                out[split].append(rec)
            if e["item_id"] not in rec["target_items"]:
                rec["target_items"].append(e["item_id"])
        if split == "train":
            history.append(_history_entry(e, not_training))
    return out, counters


def _history_entry(event: dict, test_queries: Collection[str] | None) -> tuple[str, str, int]:
    """(item, the first training query it was bought with ("" if none), timestamp) of a training purchase."""
    queries = [q for q in event_queries(event) if test_queries is None or q not in test_queries]
    return event["item_id"], (queries[0] if queries else ""), int(event["timestamp"])


def _history_fields(history: list[tuple[str, str, int]]) -> dict:
    return {
        "history_item_ids": [h[0] for h in history],
        "history_queries": [h[1] for h in history],
        "history_timestamps": [h[2] for h in history],
    }


def item_text_words(meta: dict, max_words: int = 200) -> list[str]:
    """Words describing an item (title, category paths, description), stemmed, de-duplicated."""
    parts = [meta.get("title") or ""]
    parts += [" ".join(path) for path in meta.get("categories") or []]
    parts.append(meta.get("description") or "")
    return normalize_words(" ".join(parts))[:max_words]


def category_queries(meta: dict) -> list[str]:
    """Ai et al.'s queries: one per category path of the item (paths of one level are skipped)."""
    queries = []
    for path in meta.get("categories") or []:
        if len(path) < 2:
            continue
        words = normalize_words(" ".join(path))
        if words and " ".join(words) not in queries:
            queries.append(" ".join(words))
    return queries
