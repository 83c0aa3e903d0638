"""Command line: ``python -m tfpps.synthetic --out=DIR [--events=N | --users=N] [--shards=K] [--format=csv]``."""
from __future__ import annotations

import argparse
import math
import os
import sys

from tfpps.synthetic.config import FORMATS, SyntheticConfig
from tfpps.synthetic.output import generate

DESCRIPTION = "Seeded synthetic interaction logs with learnable structure."


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
    p = argparse.ArgumentParser(prog="python -m tfpps.synthetic", description=DESCRIPTION)
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
