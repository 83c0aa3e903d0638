"""Writing the synthetic logs: :func:`generate` writes the event shards, ``items.jsonl`` and ``summary.json``.

Users are generated one block at a time (:func:`tfpps.synthetic.logs.generate_block`)
and each block's rows are written to the shards that hold its users; a
shard is closed as soon as its last user is written, so memory stays bounded
at any size. Columns are built with pyarrow string kernels.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfpps.synthetic.config import CLICK, COLUMNS, ITEMS_FILE, PURCHASE, SUMMARY_FILE, SyntheticConfig, shard_name
from tfpps.synthetic.logs import Block, generate_block
from tfpps.synthetic.search import write_items
from tfpps.synthetic.world import World, build_world


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
    write_items(cfg, world, out / ITEMS_FILE)
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
