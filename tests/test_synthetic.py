"""The synthetic generator: determinism, schema, popularity skew and learnable sequential signal."""
from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tfpps import synthetic
from tfpps.synthetic import COLUMNS, SyntheticConfig, generate
from tfpps.synthetic import output as synthetic_output

SESSION_GAP = 30 * 60


def _digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def _read_csv_events(out: Path) -> dict[str, np.ndarray]:
    rows: list[list[str]] = []
    for path in sorted(out.glob("events-*.csv")):
        with open(path, newline="") as f:
            reader = csv.reader(f)
            assert tuple(next(reader)) == COLUMNS
            rows.extend(reader)
    cols = {c: np.array([r[i] for r in rows], dtype=object) for i, c in enumerate(COLUMNS)}
    cols["timestamp"] = cols["timestamp"].astype(np.int64)
    return cols


@pytest.fixture(scope="module")
def default_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_default")
    t0 = time.perf_counter()
    summary = generate(SyntheticConfig(), out)
    elapsed = time.perf_counter() - t0
    return out, summary, _read_csv_events(out), elapsed


def test_default_sizes_and_summary(default_data):
    out, summary, ev, elapsed = default_data
    assert summary["n_users"] == 600 and summary["n_items"] == 1000
    assert 40_000 <= summary["n_events"] <= 60_000, summary["n_events"]
    assert len(ev["user_id"]) == summary["n_events"]
    assert len(set(ev["user_id"])) == 600
    assert json.loads((out / "summary.json").read_text())["n_events"] == summary["n_events"]
    assert elapsed < 15, elapsed


def test_determinism(tmp_path):
    cfg = SyntheticConfig(n_users=150, n_items=300, seed=3, shards=3)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(cfg, a)
    generate(cfg, b)
    generate(SyntheticConfig(n_users=150, n_items=300, seed=4, shards=3), c)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert sorted(da) == ["events-00000-of-00003.csv", "events-00001-of-00003.csv", "events-00002-of-00003.csv",
                          "items.jsonl", "summary.json"]
    assert da == db
    for name in da:
        assert da[name] != dc[name], name


def test_shards_and_formats_hold_the_same_events(tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    cfg = dict(n_users=70, n_items=200, seed=5, users_per_block=16)
    generate(SyntheticConfig(**cfg), tmp_path / "one")
    generate(SyntheticConfig(**cfg, shards=4, format="jsonl"), tmp_path / "jl")
    generate(SyntheticConfig(**cfg, shards=3, format="parquet"), tmp_path / "pq")
    one = _read_csv_events(tmp_path / "one")
    one_df = pd.DataFrame({c: list(v) for c, v in one.items()})
    jl_files = sorted((tmp_path / "jl").glob("events-*.jsonl"))
    assert len(jl_files) == 4
    users_per_shard = []
    frames = []
    for p in jl_files:
        recs = [json.loads(line) for line in p.read_text().splitlines()]
        assert all(list(r) == list(COLUMNS) for r in recs)
        users_per_shard.append({r["user_id"] for r in recs})
        frames.append(pd.DataFrame(recs))
    for i in range(4):  # a user's rows stay in one shard
        for j in range(i + 1, 4):
            assert not users_per_shard[i] & users_per_shard[j]
    jl = pd.concat(frames, ignore_index=True)
    pq_df = pd.concat([pq.read_table(p).to_pandas() for p in sorted((tmp_path / "pq").glob("events-*.parquet"))],
                      ignore_index=True)
    for df in (jl, pq_df):
        df = df.astype({"timestamp": "int64"})
        for c in COLUMNS:
            assert list(df[c]) == list(one_df[c]), c


def test_schema_and_time_structure(default_data):
    out, summary, ev, _ = default_data
    for c in ("user_id", "item_id", "session_id", "basket_id"):
        assert all(isinstance(v, str) and v for v in ev[c][:1000])
    assert ev["user_id"][0].startswith("u") and ev["item_id"][0].startswith("i")
    assert set(ev["event_type"]) == {"click", "purchase"}
    ts, user, sess, basket = ev["timestamp"], ev["user_id"], ev["session_id"], ev["basket_id"]
    assert ts.min() >= 1704067200  # 2024-01-01
    same_user = user[1:] == user[:-1]
    # users are contiguous (a user's rows are together) and in time order
    assert len(set(user)) == 1 + int((~same_user).sum())
    d = np.diff(ts)
    assert (d[same_user] >= 0).all()
    same_sess = sess[1:] == sess[:-1]
    assert len(set(sess)) == 1 + int((~same_sess).sum())
    assert (same_sess <= same_user).all()
    assert (d[same_sess] < SESSION_GAP).all()
    assert (d[same_sess] <= 600).all()
    assert (d[same_user & ~same_sess] > SESSION_GAP).all()
    # sessionising by a 30-minute gap recovers the sessions exactly
    recovered = ~same_user | (d > SESSION_GAP)
    assert (recovered == ~same_sess).all()
    # baskets: consecutive rows of one session sharing a timestamp, 1..4 items
    same_basket = basket[1:] == basket[:-1]
    assert (same_basket <= same_sess).all()
    assert (d[same_basket] == 0).all()
    assert (d[same_sess & ~same_basket] >= 10).all()
    _, sizes = np.unique(basket, return_counts=True)
    assert sizes.max() <= 4 and 1.2 < sizes.mean() < 2.5
    assert len(sizes) == 1 + int((~same_basket).sum())


def test_queries(default_data):
    out, summary, ev, _ = default_data
    purchase = ev["event_type"] == "purchase"
    query = ev["query"]
    assert all(q == "" for q in query[~purchase])
    assert all(q != "" for q in query[purchase])
    assert 0.05 < purchase.mean() < 0.25
    items = {}
    for line in (out / "items.jsonl").read_text().splitlines():
        rec = json.loads(line)
        items[rec["item_id"]] = rec
        assert set(rec) == {"item_id", "title", "categories"}
        assert len(rec["categories"]) == 1 and len(rec["categories"][0]) == 3 and rec["title"]
    assert len(items) == 1000
    pools = {tuple(t["path"]): set(t["words"]) for t in summary["taxonomy"]}
    in_pool = total = 0
    for q, item in zip(query[purchase], ev["item_id"][purchase]):
        words = q.split(" ")
        assert 1 <= len(words) <= 4
        pool = pools[tuple(items[item]["categories"][0])]
        in_pool += sum(w in pool for w in words)
        total += len(words)
    assert in_pool / total > 0.8
    # titles use the category's words
    title_hits = [any(w in pools[tuple(r["categories"][0])] for w in synthetic.tokenize(r["title"]))
                  for r in items.values()]
    assert np.mean(title_hits) > 0.99


def test_power_law_popularity(default_data):
    _, summary, ev, _ = default_data
    _, counts = np.unique(ev["item_id"], return_counts=True)
    counts = np.sort(counts)[::-1]
    share = counts[:100].sum() / counts.sum()
    assert share > 0.4, share
    assert counts[0] > 20 * np.median(counts)


def markov_vs_popularity(ev: dict[str, np.ndarray], k: int = 10) -> tuple[float, float]:
    """Recall@k on each user's last event: first-order transition counts vs most popular."""
    _, user = np.unique(ev["user_id"], return_inverse=True)
    names, item = np.unique(ev["item_id"], return_inverse=True)
    n_items = len(names)
    last = np.ones(len(user), dtype=bool)
    last[:-1] = user[1:] != user[:-1]  # rows are grouped by user, in time order
    train = ~last
    pop = np.bincount(item[train], minlength=n_items)
    top_pop = np.argsort(-pop, kind="stable")[:k]
    # transitions between consecutive training events of one user
    pair = train[:-1] & train[1:] & (user[1:] == user[:-1])
    trans = np.zeros((n_items, n_items), dtype=np.int64)
    np.add.at(trans, (item[:-1][pair], item[1:][pair]), 1)
    test_idx = np.flatnonzero(last)
    prev, target = item[test_idx - 1], item[test_idx]
    # rank successors by count, ties (and unseen rows) broken by popularity
    score = trans[prev] * (pop.max() + 1.0) + pop[None, :]
    top_markov = np.argsort(-score, axis=1, kind="stable")[:, :k]
    r_markov = float((top_markov == target[:, None]).any(axis=1).mean())
    r_pop = float(np.isin(target, top_pop).mean())
    return r_markov, r_pop


def test_sequential_signal_beats_popularity(default_data):
    _, _, ev, _ = default_data
    r_markov, r_pop = markov_vs_popularity(ev)
    print(f"Recall@10 markov={r_markov:.3f} popularity={r_pop:.3f}")
    assert r_markov > 2 * r_pop + 0.05, (r_markov, r_pop)
    assert r_markov > 0.3


def test_generation_streams_block_by_block_into_shards(tmp_path, monkeypatch):
    """Users are generated one block at a time and every shard is closed as soon as its users are done, so
    a 10M-event run holds one block of events (plus at most two open shard writers), never the whole log."""
    log: list[tuple[str, object]] = []
    real_block, real_writer = synthetic_output.generate_block, synthetic_output._ShardWriter

    def block(cfg, world, b):
        log.append(("block", b))
        return real_block(cfg, world, b)

    class Writer(real_writer):
        def __init__(self, path, fmt):
            log.append(("open", path.name))
            super().__init__(path, fmt)

        def close(self):
            log.append(("close", self.path.name))
            super().close()

    monkeypatch.setattr(synthetic_output, "generate_block", block)
    monkeypatch.setattr(synthetic_output, "_ShardWriter", Writer)
    cfg = SyntheticConfig(n_users=200, n_items=100, seed=2, events_per_user=10, shards=5, users_per_block=16)
    summary = generate(cfg, tmp_path)
    files = sorted(tmp_path.glob("events-*.csv"))
    assert [p.name for p in files] == summary["files"] and len(files) == 5
    rows = [sum(1 for _ in open(p)) - 1 for p in files]  # minus the header
    assert rows == summary["rows_per_shard"] and sum(rows) == summary["n_events"] > 0
    assert [e for e in log if e[0] == "block"] == [("block", b) for b in range(13)]  # ceil(200 / 16)
    open_now = peak_open = blocks_done = 0
    for kind, what in log:
        if kind == "block":
            blocks_done += 1
        elif kind == "open":
            open_now += 1
            peak_open = max(peak_open, open_now)
        else:
            open_now -= 1
            k = int(str(what).split("-")[1])
            # shard k (users [40k, 40k + 40)) closes right after the block holding its last user
            assert blocks_done == -(-(40 * (k + 1)) // 16), (what, blocks_done)
    assert open_now == 0 and peak_open <= 2


def test_cli_events_target(tmp_path, capsys):
    code = synthetic.main(["--out", str(tmp_path), "--events=3000", "--events-per-user=10", "--shards=3",
                           "--items=80", "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_users"] == 300 and summary["shards"] == 3
    assert len(list(tmp_path.glob("events-*-of-00003.csv"))) == 3
    assert "n_events" in capsys.readouterr().out
