"""The synthetic generator's settings (:class:`SyntheticConfig`) and the names of the files and columns it writes."""
from __future__ import annotations

import dataclasses

COLUMNS = ("user_id", "item_id", "timestamp", "session_id", "query", "basket_id", "event_type")
FORMATS = ("csv", "jsonl", "parquet")
ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"
CLICK, PURCHASE = "click", "purchase"


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
