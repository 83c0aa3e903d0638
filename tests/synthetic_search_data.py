"""A small product-search dataset for tests: the synthetic generator's shop log through the Beam job
(``--kind=search``, random query hold-out), in memory."""
from __future__ import annotations

from pathlib import Path

from beam_jobs import cli
from tfpps import synthetic


def write_search_dataset(tmp: Path, n_users: int) -> Path:
    """Generate ``n_users`` synthetic shoppers under ``tmp/raw`` and build their search dataset in ``tmp/dataset``."""
    raw = tmp / "raw"
    synthetic.generate(synthetic.SyntheticConfig(n_users=n_users, n_items=200, n_categories=10, seed=5,
                                                 events_per_user=40, purchase_rate=0.4), raw)
    out = tmp / "dataset"
    cli.run([
        "--source=csv", f"--input={raw}/events-*.csv", f"--metadata={raw}/items.jsonl", f"--output={out}",
        "--kind=search", "--search_split=random", "--test_query_fraction=0.3",
        "--min_user_interactions=5", "--min_item_interactions=3", "--direct_running_mode=in_memory",
    ])
    return out
