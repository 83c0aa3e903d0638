"""Does ``configs/datasets/diginetica.yaml`` prepare DIGINETICA exactly as SR-GNN's ``datasets/preprocess.py``?

    python -m benchmarks.references.srgnn_preprocess_check --srgnn-dir /work/.mirror/CRIPAC-DIG+SR-GNN/repo

Writes a synthetic raw ``train-item-views.csv`` (a few thousand rows, seeded) full of the cases where the two
could part: sessions of one click, rare items, an item whose fifth click is in a one-click session, sessions that
the item filter shortens below 2, duplicate (session, item, timeframe) rows, clicks of one item milliseconds
apart, same-timeframe ties, rows out of timeframe order, sessions split over two blocks of the file, items clicked
only in test sessions or only on the cut day, sessions dated on the cut day and either side of it, a late session
that the filters remove (so it must not set the last date), sessions longer than 24 hours. Then it runs

* SR-GNN's script, unmodified, from ``--srgnn-dir`` (a checkout, or a bare git directory: ``git show
  HEAD:datasets/preprocess.py``), with ``--dataset=diginetica`` in a temporary directory under ``TZ=UTC``
  (``--tz``). Two shims, both outside the script: the file it reads gets the header of SR-GNN's own sample file
  (``session_id;user_id;item_id;timeframe;eventdate``; the script reads those names, the raw file says
  ``sessionId;userId;itemId``), and the script runs through ``runpy`` so that its item re-numbering
  (``item_dict``, never written to disk) can be read back to map its outputs to raw item ids;
* the Beam job with the recipe's flags on the raw fixture (``--set KEY=VALUE`` changes one, e.g.
  ``--set filter_order=kcore_first`` to watch the check fail);

and compares the training sessions (SR-GNN's ``all_train_seq.txt`` against tfpps's training + validation
sessions: validation is carved from SR-GNN's training part), the test (prefix, label) pairs (``test.txt``
against tfpps's test sessions expanded prefix by prefix, as the tf.data reader evaluates them), each as a
multiset of raw item ids, and the item vocabulary. Prints a table; exits 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import table

RAW_HEADER = "sessionId;userId;itemId;timeframe;eventdate"
SRGNN_HEADER = "session_id;user_id;item_id;timeframe;eventdate"  # SR-GNN's sample_train-item-views.csv
LAST_DAY = dt.date(2016, 6, 1)  # D: the last date of a session that survives the filters
N_DAYS = 30
TEST_DAYS = 7
HOUR_MS = 3_600_000

_RUNNER = """\
import json, runpy, sys
sys.argv = ["preprocess.py", "--dataset=diginetica"]
g = runpy.run_path("preprocess.py", run_name="__main__")
with open("item_dict.json", "w") as fh:
    json.dump(g["item_dict"], fh)
clicks = {}
for seq in g["sess_clicks"].values():  # the sessions left by the filters, before the split
    for i in seq:
        clicks[i] = clicks.get(i, 0) + 1
with open("after_filters.json", "w") as fh:
    json.dump({"items_under_5": sum(1 for n in clicks.values() if n < 5)}, fh)
"""


# ----------------------------------------------------------------------------- the fixture
def make_fixture(seed: int, n_sessions: int) -> tuple[list[tuple], dict]:
    """Rows ``(session, user, item, timeframe, date)`` in file order, and counts of the edge cases in them."""
    rng = random.Random(seed)
    cut = LAST_DAY - dt.timedelta(days=TEST_DAYS)
    days = [LAST_DAY - dt.timedelta(days=k) for k in range(N_DAYS)]
    weights = [4 if d in (cut, cut - dt.timedelta(days=1), cut + dt.timedelta(days=1)) else 1 for d in days]
    items = [str(i) for i in rng.sample(range(1000, 99999), 420)]
    popularity = [1.0 / (r + 3) ** 1.1 for r in range(len(items))]  # a long tail: many items under 5 clicks
    users = [str(u) for u in range(1, 120)]
    sessions: dict[str, dict] = {}
    edge = collections.Counter()

    def new_session(date: dt.date, user: str | None = None) -> dict:
        sid = str(len(sessions) + 1)
        s = {"id": sid, "user": user or ("NA" if rng.random() < 0.6 else rng.choice(users)), "date": date, "rows": []}
        sessions[sid] = s
        return s

    for _ in range(n_sessions):
        s = new_session(rng.choices(days, weights)[0])
        length = 1 if rng.random() < 0.15 else min(1 + int(rng.expovariate(0.35)), 15)
        frame = rng.choice([0, rng.randrange(1, 60_000)])
        prev = None
        for _ in range(length):
            item = prev if prev is not None and rng.random() < 0.12 else rng.choices(items, popularity)[0]
            s["rows"].append([item, frame])
            prev = item
            step = rng.choice([0, rng.randrange(1, 1000), rng.randrange(1000, 600_000), rng.randrange(1000, 60_000)])
            frame += step
    plain = list(sessions.values())
    many = [s for s in plain if len(s["rows"]) >= 2]
    for s in rng.sample(many, 25):  # exact duplicate rows: SR-GNN keeps both
        s["rows"].append(list(rng.choice(s["rows"])))
        edge["duplicate (session, item, timeframe) rows"] += 1
    for s in rng.sample(many, 25):  # the same item again a few ms later, in the same second
        item, frame = rng.choice(s["rows"])
        ms = frame % 1000
        s["rows"].append([item, frame + rng.randrange(1, 1000 - ms) if ms < 999 else frame - rng.randrange(1, 999)])
        edge["same item again < 1 s later"] += 1
    for s in rng.sample(many, 25):  # another item at exactly the same timeframe: file order decides
        s["rows"].append([rng.choices(items, popularity)[0], rng.choice(s["rows"])[1]])
        edge["same-timeframe ties"] += 1
    # an item with 5 clicks, one of them in a one-click session: SR-GNN counts 4 and drops it
    straddle = "77777"
    for date in rng.sample(days[8:], 4):
        new_session(date)["rows"] += [[straddle, 1000], [rng.choices(items, popularity)[0], 5000]]
    new_session(days[10])["rows"].append([straddle, 0])
    edge["item whose 5th click is in a one-click session"] = 1
    # items clicked >= 5 times, all in test sessions: they pass the support filter but are unseen in training
    for k, item in enumerate(("88001", "88002")):
        for j in range(6):
            s = new_session(LAST_DAY - dt.timedelta(days=j % TEST_DAYS))
            s["rows"] += [[item, 0], [rng.choices(items, popularity)[0], 30_000 + k]]
        edge["items only in test sessions (6 clicks each)"] += 1
    for _ in range(5):  # an item clicked only on the cut day: in no training session either
        new_session(cut)["rows"] += [["88003", 500], [rng.choices(items, popularity)[0], 9_000]]
    edge["item only on the cut day"] = 1
    # sessions that last more than 24 hours: dated by their first click (= their eventdate)
    for date in (cut, cut - dt.timedelta(days=1), LAST_DAY):
        s = new_session(date)
        s["rows"] += [[rng.choices(items, popularity)[0], f] for f in (10_000, 20 * HOUR_MS, 26 * HOUR_MS, 30 * HOUR_MS)]
        edge["sessions longer than 24 h"] += 1
    # later than D: removed by the filters, so they must not set the last date
    new_session(LAST_DAY + dt.timedelta(days=1))["rows"].append([items[0], 0])
    new_session(LAST_DAY + dt.timedelta(days=2))["rows"] += [[items[0], 0], ["99991", 4000]]  # 1 click after the item filter
    edge["late sessions the filters remove"] = 2

    lines: list[tuple] = []
    tails: list[tuple] = []
    for s in sessions.values():
        rows = [(s["id"], s["user"], item, frame, s["date"].isoformat()) for item, frame in s["rows"]]
        if rng.random() < 0.5:
            rng.shuffle(rows)  # not in timeframe order in the file (as in the published file)
        if len(rows) >= 3 and rng.random() < 0.04:  # the session's last rows come again at the end of the file
            k = rng.randrange(1, len(rows) - 1)
            rows, tail = rows[:k], rows[k:]
            tails.extend(tail)
            edge["sessions split over two blocks of the file"] += 1
        lines.extend(rows)
    lines.extend(tails)
    per_session = collections.Counter(r[0] for r in lines)
    edge["one-click sessions"] = sum(1 for n in per_session.values() if n == 1)
    clicks = collections.Counter(r[2] for r in lines)
    edge["items with < 5 clicks"] = sum(1 for n in clicks.values() if n < 5)
    edge["sessions dated on the cut day"] = sum(1 for s in sessions.values() if s["date"] == cut)
    return lines, dict(edge)


def write_fixture(path: Path, rows: list[tuple], header: str) -> None:
    path.write_text(header + "\n" + "".join(f"{s};{u};{i};{f};{d}\n" for s, u, i, f, d in rows))


# ----------------------------------------------------------------------------- SR-GNN
def srgnn_script(srgnn_dir: Path) -> str:
    """``datasets/preprocess.py`` of a checkout, or of HEAD in a bare git directory."""
    plain = srgnn_dir / "datasets" / "preprocess.py"
    if plain.exists():
        return plain.read_text()
    return subprocess.run(["git", "-C", str(srgnn_dir), "show", "HEAD:datasets/preprocess.py"], check=True,
                          capture_output=True, text=True).stdout


def run_srgnn(script: str, rows: list[tuple], work: Path, tz: str) -> dict:
    """SR-GNN's outputs mapped back to raw item ids: training sessions, test (prefix, label) pairs, items."""
    work.mkdir(parents=True)
    (work / "preprocess.py").write_text(script)
    (work / "run_preprocess.py").write_text(_RUNNER)
    write_fixture(work / "train-item-views.csv", rows, SRGNN_HEADER)
    proc = subprocess.run([sys.executable, "run_preprocess.py"], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "TZ": tz})
    (work / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"SR-GNN's preprocess.py failed (log: {work / 'log.txt'}):\n{proc.stderr[-2000:]}")
    raw = {v: k for k, v in json.loads((work / "item_dict.json").read_text()).items()}
    with open(work / "diginetica" / "all_train_seq.txt", "rb") as fh:
        train = pickle.load(fh)
    with open(work / "diginetica" / "test.txt", "rb") as fh:
        prefixes, labels = pickle.load(fh)
    return {
        "after_filters": json.loads((work / "after_filters.json").read_text()),
        "train": collections.Counter(tuple(raw[i] for i in s) for s in train),
        "pairs": collections.Counter((tuple(raw[i] for i in p), raw[y]) for p, y in zip(prefixes, labels)),
        "items": set(raw.values()),
    }


# ----------------------------------------------------------------------------- tfpps
def recipe_argv(fixture: Path, out: Path, overrides: list[str]) -> list[str]:
    from tfpps.config import dataset_config_path, load_yaml

    flags = dict(load_yaml(dataset_config_path("diginetica"))["build"]["flags"])
    for item in overrides:
        key, _, value = item.partition("=")
        flags[key.strip().lstrip("-")] = value
    flags["input"] = str(fixture)
    return [f"--{k}={v}" for k, v in flags.items()] + [f"--output={out}", "--direct_running_mode=in_memory"]


def run_tfpps(argv: list[str]) -> dict:
    from beam_jobs import build_features
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.data.examples.prefix import eval_examples

    stats = build_features.run(argv)
    ds = DatasetDir(next(a.split("=", 1)[1] for a in argv if a.startswith("--output=")))
    vocab = ds.vocab("items")

    def sessions(split: str) -> list[tuple]:
        if not ds.files(split):
            return []
        return [tuple(vocab[int(i)] for i in r["item_ids"]) for r in ds.records(split).as_numpy_iterator()]

    train, valid, test = sessions("train"), sessions("valid"), sessions("test")
    pairs = collections.Counter((s[:k], s[k]) for s in test for k in range(1, len(s)))
    n_eval = sum(1 for _ in eval_examples(ds.records("test"), max_len=50)) if test else 0
    if n_eval != sum(pairs.values()):
        raise SystemExit(f"the tf.data reader gives {n_eval} test examples, the expansion here {sum(pairs.values())}")
    return {"train": collections.Counter(train + valid), "pairs": pairs, "items": set(vocab[2:]),
            "n_valid": len(valid), "n_test_sessions": len(test), "stats": stats}


# ----------------------------------------------------------------------------- compare
def mismatches(a, b) -> int:
    if isinstance(a, set):
        return len(a ^ b)
    return sum(((a - b) + (b - a)).values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--srgnn-dir", required=True, help="SR-GNN checkout or bare git directory")
    p.add_argument("--sessions", type=int, default=1100, help="random sessions in the fixture (plus the crafted ones)")
    p.add_argument("--seed", type=int, default=2016)
    p.add_argument("--tz", default="UTC", help="time zone SR-GNN runs in (it dates with local-time mktime)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one of the recipe's flags")
    p.add_argument("--keep", default="", help="keep the fixture and both outputs in this directory")
    args = p.parse_args(argv)

    rows, edge = make_fixture(args.seed, args.sessions)
    script = srgnn_script(Path(args.srgnn_dir))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        fixture = work / "train-item-views.csv"
        write_fixture(fixture, rows, RAW_HEADER)
        t0 = time.time()
        theirs = run_srgnn(script, rows, work / "srgnn", args.tz)
        t1 = time.time()
        argv_job = recipe_argv(fixture, work / "tfpps", args.set)
        ours = run_tfpps(argv_job)
        t2 = time.time()

    print(f"fixture: {len(rows):,} rows, {len({r[0] for r in rows}):,} sessions, {len({r[2] for r in rows}):,} items "
          f"(seed {args.seed}); SR-GNN {t1 - t0:.1f} s (TZ={args.tz}), tfpps {t2 - t1:.1f} s")
    edge["items left with < 5 clicks by the session filter after the item filter (not iterated)"] = \
        theirs["after_filters"]["items_under_5"]
    print(table([{"edge case": k, "count": v} for k, v in edge.items()], ["edge case", "count"]))
    print()
    print("tfpps flags: " + " ".join(a for a in argv_job if not a.startswith(("--input=", "--output=", "--direct_"))))
    stages = ours["stats"]["stages"]
    print(f"tfpps: {ours['n_valid']} of the training sessions carved as validation, {ours['n_test_sessions']} test "
          f"sessions, {stages.get('cut_day_sessions_dropped', 0)} cut-day sessions dropped, "
          f"{stages.get('test_unseen_items_removed', 0)} unseen test clicks removed, "
          f"{stages.get('test_records_too_short', 0)} test sessions then too short")
    rows_out = []
    for key, what in (("train", "training sessions (item sequences)"), ("pairs", "test (prefix, label) pairs"),
                      ("items", "item vocabulary")):
        a, b = theirs[key], ours[key]
        n = len if isinstance(a, set) else (lambda c: sum(c.values()))
        rows_out.append({"compared": what, "SR-GNN": n(a), "tfpps": n(b), "mismatches": mismatches(a, b)})
    print(table(rows_out, ["compared", "SR-GNN", "tfpps", "mismatches"]))
    bad = sum(r["mismatches"] for r in rows_out)
    for key in ("train", "pairs"):
        only_theirs, only_ours = theirs[key] - ours[key], ours[key] - theirs[key]
        for label, diff in (("only SR-GNN", only_theirs), ("only tfpps", only_ours)):
            for value, count in list(diff.items())[:3]:
                print(f"  {key} {label}: {value} x{count}")
    for label, diff in (("only SR-GNN", theirs["items"] - ours["items"]), ("only tfpps", ours["items"] - theirs["items"])):
        if diff:
            print(f"  items {label}: {sorted(diff)[:10]}")
    print("MATCH" if bad == 0 else f"MISMATCH: {bad} differences")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
