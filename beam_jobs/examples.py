"""Basket and product-search records from one user's events (pure Python, like :mod:`timelines`).

Basket records (``--kind=basket``)
    events are grouped into baskets by ``basket_id`` (or, when the log has
    none, by identical timestamp or by calendar day: ``--basket_by``). Split is
    leave-one-basket-out: the last basket is the test target, the second-last
    the validation target, earlier baskets the training record.

Search records (``--kind=search``), after Ai et al. (SIGIR 2017)
    every purchase with a query gives one (user, query, item) example; the
    query text is tokenized, Porter-stemmed and de-duplicated the same way for
    logged queries and for queries built from category paths. Each user's
    purchases are split in time order: the last ``test_fraction`` go to test,
    the ``valid_fraction`` before them to validation. ``history_item_ids`` of
    an example are the user's *training* purchases made before it, so
    evaluation never sees the held-out items as history.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from beam_jobs.sources import porter_stem, tokenize
from beam_jobs.timelines import order_events

BASKET_BY = ("id", "timestamp", "day")


@dataclasses.dataclass(frozen=True)
class ExampleOptions:
    basket_by: str = "id"
    min_baskets: int = 1
    test_fraction: float = 0.3
    valid_fraction: float = 0.1
    max_history: int = 100

    def __post_init__(self):
        if self.basket_by not in BASKET_BY:
            raise ValueError(f"unknown basket grouping {self.basket_by!r}; expected one of {', '.join(BASKET_BY)}")
        if not 0 < self.test_fraction < 1 or not 0 <= self.valid_fraction < 1 or self.test_fraction + self.valid_fraction >= 1:
            raise ValueError("test_fraction and valid_fraction must be in (0, 1) and sum to less than 1")


def normalize_words(text: str) -> list[str]:
    """Lower-case, split on non-alphanumerics, Porter-stem, de-duplicate (first occurrence kept)."""
    seen: dict[str, None] = {}
    for tok in tokenize(text or ""):
        seen.setdefault(porter_stem(tok), None)
    return list(seen)


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
def build_search_records(user: str, events: Iterable[dict], opts: ExampleOptions) -> tuple[dict[str, list[dict]], dict]:
    """One record per (purchase, query); see the module docstring for the split."""
    purchases = [e for e in order_events(events) if e.get("queries") or (e.get("query") or "").strip()]
    counters = {"users_in": 1, "events_without_query": 0}
    out: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    if not purchases:
        counters["short_users_removed"] = 1
        return out, counters
    n = len(purchases)
    n_test = max(1, math.floor(n * opts.test_fraction + 0.5)) if n >= 2 else 0
    n_valid = math.floor(n * opts.valid_fraction + 0.5) if n - n_test >= 2 else 0
    n_train = n - n_test - n_valid
    counters.update(users=1, interactions=n)
    history: list[str] = []
    for i, e in enumerate(purchases):
        split = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
        queries = e.get("queries") or [e["query"]]
        for q in queries:
            words = normalize_words(q)
            if not words:
                counters["empty_queries"] = counters.get("empty_queries", 0) + 1
                continue
            out[split].append(
                {
                    "user_id": user,
                    "query": " ".join(words),
                    "query_words": words,
                    "item_id": e["item_id"],
                    "history_item_ids": history[-opts.max_history :],
                    "timestamp": int(e["timestamp"]),
                }
            )
        if split == "train":
            history.append(e["item_id"])
    return out, counters


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
