"""The job's stats: read back from the pipeline, written to ``stats.json`` / ``dataset.json``
(:func:`finalize`), printed (:func:`summary_table`), and the one-line reason a build ended empty
(:func:`empty_dataset_reason`)."""
from __future__ import annotations

import argparse
import heapq
import json
import re

from apache_beam.io.filesystems import FileSystems

from beam_jobs import cleaning
from beam_jobs.flags import split_name
from beam_jobs.publish import read_text, write_text
from tfpps.spec import ownership

STATS_TMP = "_stats"


def read_stats(tmp_out: str) -> dict:
    stats = {}
    path = f"{tmp_out}/{STATS_TMP}.jsonl"
    text = read_text(path)
    if text is not None:
        for line in text.splitlines():
            row = json.loads(line)
            stats[row["key"]] = row["value"]
        FileSystems.delete([path])
    return stats


def _vocab_rows(tmp_out: str, name: str):
    """The rows of a vocabulary file, streamed (the user vocabulary can be as large as the user base)."""
    from tfpps.spec import schema

    path = f"{tmp_out}/{schema.VOCAB_DIR}/{schema.VOCAB_FILES[name]}"
    if not FileSystems.exists(path):
        return
    with FileSystems.open(path) as fh:
        for raw in fh:  # binary lines end at b"\n" only, so ids containing U+2028 / U+2029 stay whole
            line = raw.decode("utf-8").rstrip("\n")
            if line:
                yield line.split("\t")


def _vocab_size(tmp_out: str, name: str) -> int:
    return sum(1 for _ in _vocab_rows(tmp_out, name))


def finalize(tmp_out: str, args: argparse.Namespace, stats: dict, elapsed: float, files: list[str]) -> dict:
    """Write stats.json, the ``.tfpps`` marker and dataset.json next to the shards; returns the stats."""
    from tfpps.spec import schema

    num_items, item_count_total = 0, 0

    def item_rows():
        nonlocal num_items, item_count_total
        for i, row in enumerate(_vocab_rows(tmp_out, "items")):
            num_items, item_count_total = num_items + 1, item_count_total + int(row[2])
            if i >= 2:  # PAD, OOV
                yield i, row

    # the 20 most frequent items (ties in index order), without holding the vocabulary
    top = [row for _, row in heapq.nsmallest(20, item_rows(), key=lambda ir: (-int(ir[1][2]), ir[0]))]
    num_users = _vocab_size(tmp_out, "users")
    shards = {s: FileSystems.match([f"{tmp_out}/{s}/part-*"])[0].metadata_list for s in schema.SPLITS}
    per_split = {
        s: {"records": stats.get(f"{s}_records", 0), "interactions": stats.get(f"{s}_interactions", 0), "shards": len(shards[s])}
        for s in schema.SPLITS
    }
    full = {
        "source": args.source,
        "inputs": files,
        "kind": args.kind,
        "split": split_name(args),
        "elapsed_seconds": round(elapsed, 2),
        "stages": {k: v for k, v in sorted(stats.items()) if not k.startswith(("dead_letter_reason:", cleaning.CHECK_PREFIX))},
        "dead_letter_reasons": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dead_letter_reason:")},
        "splits": per_split,
        "num_items": num_items,
        "num_users": num_users,
        "item_popularity_top20": [{"item": r[1], "train_count": int(r[2])} for r in top],
        "train_item_counts_total": item_count_total,
    }
    write_text(f"{tmp_out}/{schema.STATS_FILE}", json.dumps(full, indent=2) + "\n")
    meta = {
        "kind": args.kind,
        "split": split_name(args),
        "source": args.source,
        "num_items": num_items,
        "num_users": num_users,
        "num_words": _vocab_size(tmp_out, "words"),
        "num_queries": _vocab_size(tmp_out, "queries"),
        "counts": {s: per_split[s]["records"] for s in schema.SPLITS},
        "has_item_meta": FileSystems.exists(f"{tmp_out}/{schema.VOCAB_DIR}/item_meta.jsonl"),
        "eval_targets": "multi" if args.split == "fo" or args.kind == "search" else "single",
        "flags": {k: v for k, v in vars(args).items()
                  if k not in ("input", "output", "train_input", "valid_input", "test_input", "file_splits")},
        "format_version": 1,
        "job_version": schema.JOB_VERSION,
    }
    write_text(f"{tmp_out}/{ownership.MARKER}", ownership.marker_text(ownership.DATASET))  # tfpps made it
    write_text(f"{tmp_out}/{schema.DATASET_FILE}", json.dumps(meta, indent=2) + "\n")
    return full


# search counters worth a summary line: the HEM benchmark's purchases, the given split's held-out queries and
# their words without an id, the items with text
_SEARCH_SUMMARY_KEYS = ("qrels_purchases", "valid_purchases_carved", "valid_only_queries", "pairs_dropped_valid_query_holdout",
                        "test_only_queries", "test_queries_seen_in_training",
                        "test_query_words", "test_query_words_oov", "item_text_records", "train_reviews_used")


def summary_table(stats: dict) -> str:
    st = stats["stages"]
    rows = [("rows read", st.get("rows_read", 0)), ("events parsed", st.get("events_parsed", 0)), ("rows dead-lettered", st.get("rows_dead_lettered", 0))]
    rows += [(f"  dead letter: {k}", v) for k, v in stats["dead_letter_reasons"].items()]
    rows.append(("rows skipped: blank / header", f"{st.get('rows_blank', 0)} / {st.get('rows_header', 0)}"))
    for key in ("after_rating_filter", "after_event_type_filter", "after_dedup"):
        if key in st:
            rows.append((key.replace("_", " "), st[key]))
    rows += [(k.replace("_", " "), v) for k, v in st.items() if k.startswith("after_kcore_round")]
    rows += [
        ("users kept", st.get("users", 0)),
        ("sessions kept" if "baskets" not in st else "baskets kept", st.get("sessions", st.get("baskets", 0))),
        ("interactions kept", st.get("interactions", 0)),
        ("item vocabulary (incl. PAD/OOV)", stats["num_items"]),
        ("user vocabulary (incl. PAD/OOV)", stats["num_users"]),
    ]
    for s, v in stats["splits"].items():
        rows.append((f"{s}: records / interactions / shards", f"{v['records']} / {v['interactions']} / {v['shards']}"))
    for k in sorted(st):
        if k.endswith(("_unseen_items_removed", "_records_too_short")) or k in ("short_sessions_removed", "short_users_removed") or k.startswith("fo_") \
                or k in _SEARCH_SUMMARY_KEYS:
            rows.append((k.replace("_", " "), st[k]))
    rows.append(("elapsed seconds", stats["elapsed_seconds"]))
    width = max(len(r[0]) for r in rows)
    lines = [f"tfpps dataset summary ({stats['source']}, split={stats['split']})", "-" * (width + 14)]
    lines += [f"{name:<{width}}  {value:>12}" for name, value in rows]
    return "\n".join(lines)


def _counts(stats: dict, prefix: str, top: int = 3) -> str:
    rows = sorted(((k[len(prefix):], v) for k, v in stats.items() if k.startswith(prefix) and v), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v}" for k, v in rows[:top])


def empty_dataset_reason(stats: dict, args: argparse.Namespace, files: list[str]) -> str | None:
    """Why the finished pipeline wrote no examples at all (a search dataset: no training examples, each of
    which has a query), in one line naming the stage that emptied it; None when it has some. Such a
    dataset used to publish with exit status 0, and training then crashed on it."""
    from tfpps.spec import schema

    kept = stats.get("train_records", 0) if args.kind == "search" else sum(stats.get(f"{s}_records", 0) for s in schema.SPLITS)
    if kept > 0:
        return None
    parsed = stats.get("events_parsed", 0)
    if parsed == 0:
        dead = stats.get("rows_dead_lettered", 0)
        reasons = _counts(stats, "dead_letter_reason:")
        return (f"no events: 0 rows parsed from {len(files)} file(s) ({stats.get('rows_read', 0)} rows read: "
                f"{stats.get('rows_header', 0)} header, {stats.get('rows_blank', 0)} blank, {dead} dead-lettered"
                + (f"; top reasons: {reasons}" if reasons else "") + "); nothing written")
    kcore = f"k-core round {{}} (--min_user_interactions={args.min_user_interactions} --min_item_interactions={args.min_item_interactions})"
    stages = [("after_rating_filter", f"--min_rating={args.min_rating}"), ("after_event_type_filter", f"--event_types={args.event_types}"),
              ("after_dedup", "de-duplication"),
              ("after_sessions_first", f"--filter_order=sessions_first (--min_session_length={args.min_session_length})")]
    stages += sorted(((k, kcore.format(k.rsplit("_", 1)[1])) for k in stats if re.fullmatch(r"after_kcore_round_\d+", k)),
                     key=lambda kv: int(kv[0].rsplit("_", 1)[1]))
    before = f"{parsed} events parsed"
    for key, label in stages:
        if key not in stats:
            continue
        if stats[key] == 0:
            return f"no events left after {label}: {before}, 0 after it; nothing written"
        before = f"{stats[key]} events {key.replace('_', ' ')}"
    n_events = stats.get(f"{cleaning.CHECK_PREFIX}group_by_user:expected", parsed)
    if args.kind == "search" and stats.get("events_with_query", 0) == 0:
        if args.queries_from == "log":
            why = (f"none of the {n_events} events has a query (the log's query column is missing or empty; "
                   "--queries_from=categories with --metadata makes queries from item category paths)")
        elif stats.get("items_with_category_queries", 0) == 0:
            why = (f"no item of the {stats.get('metadata_items', 0)} in --metadata has a category path of two or "
                   "more levels (--queries_from=categories)")
        else:
            why = (f"none of the {n_events} events is of an item with a category path in --metadata "
                   f"({stats['items_with_category_queries']} items have one; are the item ids the same?)")
        return f"no queries: {why}; nothing written"
    users_in = stats.get("users_in", 0)
    if stats.get("users", 0) == 0:
        needs = {"sequential": f"at least max(1, --min_user_interactions={args.min_user_interactions}) events in sessions "
                               f"of --min_session_length={args.min_session_length} or more",
                 "basket": "enough baskets", "search": "a purchase with a query"}[args.kind]
        return f"no examples: all {users_in} users were removed as too short (each needs {needs}); nothing written"
    counters = ", ".join(f"{k.replace('_', ' ')} {stats[k]}" for k in ("train_records_too_short", "users_train_only", "short_users_removed")
                         if stats.get(k))
    what = "training examples" if args.kind == "search" else "examples"
    return (f"no {what}: {stats.get('users', 0)} users kept, but every record was dropped"
            + (f" ({counters})" if counters else "") + "; nothing written")
