"""Beam job: raw interaction logs -> TFRecord examples, vocabularies, splits and stats.

Usage::

    python -m beam_jobs.build_features --source=movielens \\
        --input=../shared/data/ml-100k/ml-100k.inter --output=data_out/ml-100k \\
        --min_rating=3 --min_user_interactions=10 --min_item_interactions=10 --split=loo

Every flag this job does not know is handed to Beam unchanged, so the same
command runs on Dataflow by adding ``--runner=DataflowRunner --project=P
--region=R --temp_location=gs://B/tmp --setup_file=./setup.py`` (and
``--output=gs://...``). Without ``--runner`` it uses the DirectRunner in
multi-process mode on all local cores.

Stages (each counted in ``stats.json`` and the printed summary):
read (bad rows -> ``dead_letter/``), rating / event-type filters, exact
de-duplication, iterative k-core, per-user ordering + sessionization,
split (``--split=loo|last_session|time|fo``), vocabularies (index 0 = PAD,
1 = OOV, then by training frequency), encoding with the shared feature spec
(:mod:`tfpps.data.schema`) and sharded gzip TFRecords per split.
The output directory appears only when the job succeeds (written to a
temporary sibling, then renamed), so a killed run never leaves a partial
dataset behind.
"""
from __future__ import annotations

import argparse
import hashlib
import posixpath
import json
import os
import shutil
import sys
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs import cleaning, examples, timelines
from beam_jobs.events import SourceError
from beam_jobs.reading import DEAD, ReadEventsFn, check_files, expand_inputs
from beam_jobs.sources import SOURCES, get_source

STATS_TMP = "_stats"


class JobError(ValueError):
    """Bad flags for the job; printed as one line."""


# ----------------------------------------------------------------------------- flags
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m beam_jobs.build_features",
        description="Turn raw interaction logs into tfpps TFRecord datasets. "
        "Unknown flags are passed to Apache Beam unchanged (e.g. --runner=DataflowRunner).",
    )
    p.add_argument("--source", required=True, help=f"input format: one of {', '.join(sorted(SOURCES))}")
    p.add_argument("--input", required=True, help="file or glob; several separated by commas")
    p.add_argument("--output", required=True, help="output dataset directory")
    p.add_argument("--metadata", default="", help="item metadata file(s) (titles, category paths)")
    p.add_argument("--kind", default="sequential", choices=["sequential", "basket", "search"], help="example kind to write")
    p.add_argument("--split", default="loo", choices=timelines.SPLIT_MODES, help="how to split train/valid/test")
    p.add_argument("--min_rating", type=float, default=None, help="drop events rated below this")
    p.add_argument("--event_types", default="", help="comma-separated event types to keep (default all)")
    p.add_argument("--dedup", default="exact", choices=["exact", "none"], help="drop exact duplicate events")
    p.add_argument("--dedup_consecutive", action="store_true", help="drop repeats of the same item in a row")
    p.add_argument("--min_user_interactions", type=int, default=0, help="k-core: users need this many events")
    p.add_argument("--min_item_interactions", type=int, default=0, help="k-core: items need this many events")
    p.add_argument("--kcore_iterations", type=int, default=5, help="rounds of the iterative k-core filter")
    p.add_argument("--session_gap_minutes", type=float, default=30.0, help="inactivity gap that starts a session")
    p.add_argument("--min_session_length", type=int, default=1, help="drop sessions shorter than this")
    p.add_argument("--test_days", type=float, default=1.0, help="--split=time: last N days are test")
    p.add_argument("--valid_days", type=float, default=0.0, help="--split=time: N days before test are valid")
    p.add_argument("--test_size", type=float, default=0.2, help="--split=fo: random share of all interactions for test")
    p.add_argument("--valid_size", type=float, default=0.1, help="--split=fo: random share of the rest for validation")
    p.add_argument("--split_seed", type=int, default=2021, help="--split=fo: seed of the random assignment")
    p.add_argument("--basket_by", default="id", choices=examples.BASKET_BY, help="--kind=basket: group baskets by basket_id, timestamp or day")
    p.add_argument("--queries_from", default="log", choices=["log", "categories"], help="--kind=search: queries from the log's query column or from item category paths (Ai et al.)")
    p.add_argument("--test_fraction", type=float, default=0.3, help="--kind=search: last fraction of each user's purchases for test")
    p.add_argument("--valid_fraction", type=float, default=0.1, help="--kind=search: fraction before the test part for validation")
    p.add_argument("--max_history", type=int, default=100, help="--kind=search: most recent purchases kept as history")
    p.add_argument("--num_shards", type=int, default=4, help="TFRecord shards per split (0 = runner decides)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    return p


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    args, beam_args = build_parser().parse_known_args(argv)
    if args.source not in SOURCES:
        raise JobError(f"--source={args.source!r}: unknown source; known: {', '.join(sorted(SOURCES))}")
    for name in ("min_user_interactions", "min_item_interactions", "num_shards"):
        if getattr(args, name) < 0:
            raise JobError(f"--{name}={getattr(args, name)}: must be >= 0")
    if args.kcore_iterations < 1:
        raise JobError(f"--kcore_iterations={args.kcore_iterations}: must be >= 1")
    if args.session_gap_minutes <= 0:
        raise JobError(f"--session_gap_minutes={args.session_gap_minutes}: must be > 0")
    try:
        examples.ExampleOptions(basket_by=args.basket_by, test_fraction=args.test_fraction, valid_fraction=args.valid_fraction)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if args.kind != "sequential" and args.split != "loo":
        raise JobError(f"--split={args.split} applies to --kind=sequential; {args.kind} examples have their own split (see --help)")
    if args.split == "time" and args.test_days <= 0:
        raise JobError(f"--test_days={args.test_days}: must be > 0 with --split=time")
    if not 0.0 < args.test_size < 1.0:
        raise JobError(f"--test_size={args.test_size}: must be in (0, 1)")
    if not 0.0 <= args.valid_size < 1.0:
        raise JobError(f"--valid_size={args.valid_size}: must be in [0, 1)")
    return args, beam_args


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the unknown flags, unchanged; local defaults are only added when absent:
    DirectRunner in multi-process mode on all cores, and quiet worker logs."""
    given = " ".join(beam_args)
    defaults = []
    if "--runner" not in given:
        defaults.append("--runner=DirectRunner")
    runner = "DirectRunner" if "--runner" not in given else PipelineOptions(beam_args).view_as(StandardOptions).runner
    if runner in ("DirectRunner", "direct"):
        if "--direct_running_mode" not in given:
            defaults.append("--direct_running_mode=multi_processing")
        if "--direct_num_workers" not in given:
            defaults.append(f"--direct_num_workers={os.cpu_count() or 1}")
        if "--default_sdk_harness_log_level" not in given:
            defaults.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(defaults + list(beam_args))


# ----------------------------------------------------------------------------- helpers
def session_hash(key: str) -> int:
    """Stable positive 63-bit id of a session key (0 is reserved for 'unknown')."""
    return (int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1) or 1


def counted(pcoll, name: str):
    """A one-element PCollection ``(name, count)``."""
    return pcoll | f"Count_{name}" >> beam.combiners.Count.Globally() | f"Name_{name}" >> beam.Map(lambda n: (name, n))


def make_vocab(counts: list[tuple[str, int]], keep_zero: bool) -> list[tuple[str, int]]:
    """Sort ``(token, train_count)`` by descending count then token; index 0/1 are PAD/OOV."""
    from tfpps.data import schema

    rows = [(t, c) for t, c in counts if keep_zero or c > 0]
    rows.sort(key=lambda tc: (-tc[1], tc[0]))
    return [(schema.PAD_TOKEN, 0), (schema.OOV_TOKEN, 0)] + rows


def vocab_lines(vocab: list[tuple[str, int]]):
    for i, (token, count) in enumerate(vocab):
        yield f"{i}\t{token}\t{count}"


class EncodeFn(beam.DoFn):
    """(split, record with string tokens) -> (split, serialized tf.train.Example); drops unusable records."""

    def __init__(self, kind: str, drop_unseen_eval_items: bool, min_train_items: int = 2):
        self.kind, self.drop_unseen, self.min_train_items = kind, drop_unseen_eval_items, min_train_items

    def process(self, element, item_vocab, user_vocab, word_vocab, query_vocab):
        from tfpps.data import schema

        split, rec = element
        user = user_vocab.get(rec["user_id"], schema.OOV_ID)
        if self.kind == "sequential":
            example = yield from self._sequential(split, rec, item_vocab)
            if example is None:
                return
            example["user_id"] = user
            n = len(example["item_ids"]) + (1 if example["target_item"] else 0) + len(example.get("target_items", ()))
        elif self.kind == "basket":
            baskets = [[item_vocab.get(t, schema.OOV_ID) for t in b] for b in rec["baskets"]]
            example = {
                "user_id": user,
                "baskets": baskets,
                "basket_timestamps": rec["basket_timestamps"],
                "target_items": [item_vocab.get(t, schema.OOV_ID) for t in rec["target_items"]],
            }
            n = sum(map(len, baskets)) + len(example["target_items"])
        else:
            example = {
                "user_id": user,
                "query_id": query_vocab.get(rec["query"], schema.OOV_ID),
                "query_word_ids": [word_vocab.get(w, schema.OOV_ID) for w in rec["query_words"]],
                "item_id": item_vocab.get(rec["item_id"], schema.OOV_ID),
                "history_item_ids": [item_vocab.get(t, schema.OOV_ID) for t in rec["history_item_ids"]],
                "timestamp": rec["timestamp"],
            }
            n = 1
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_records", 1))
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_interactions", n))
        yield split, schema.encode_example(self.kind, example)

    def _sequential(self, split, rec, item_vocab):
        from tfpps.data import schema

        items = [item_vocab.get(t, schema.OOV_ID) for t in rec["item_ids"]]
        times, starts = rec["timestamps"], rec["session_starts"]
        if self.drop_unseen and split != "train":
            keep = [i for i, it in enumerate(items) if it != schema.OOV_ID]
            dropped = len(items) - len(keep)
            if dropped:
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_unseen_items_removed", dropped))
            items, times, starts = [items[i] for i in keep], [times[i] for i in keep], [starts[i] for i in keep]
            if starts:
                starts[0] = 1
            if len(items) < 2:
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_records_too_short", 1))
                return None
        if split == "train" and len(items) < self.min_train_items:
            yield beam.pvalue.TaggedOutput("counts", ("train_records_too_short", 1))
            return None
        target = item_vocab.get(rec["target_item"], schema.OOV_ID) if rec["target_item"] is not None else schema.PAD_ID
        example = {
            "session_id": session_hash(rec["session_key"]),
            "item_ids": items,
            "timestamps": times,
            "session_starts": starts,
            "target_item": target,
        }
        if "target_items" in rec:  # multi-target evaluation record (--split=fo)
            example["target_items"] = [item_vocab.get(t, schema.OOV_ID) for t in rec["target_items"]]
        return example


# ----------------------------------------------------------------------------- pipeline
def build_pipeline(p: beam.Pipeline, args: argparse.Namespace, files: list[str], meta_files: list[str], tmp_out: str):
    from tfpps.data import schema

    opts = timelines.TimelineOptions(
        split=args.split,
        session_gap_seconds=int(args.session_gap_minutes * 60),
        min_session_length=args.min_session_length,
        min_user_interactions=args.min_user_interactions,
        dedup_consecutive=args.dedup_consecutive,
        test_days=args.test_days,
        valid_days=args.valid_days,
        test_size=args.test_size,
        valid_size=args.valid_size,
        split_seed=args.split_seed,
    )
    ex_opts = examples.ExampleOptions(
        basket_by=args.basket_by,
        test_fraction=args.test_fraction,
        valid_fraction=args.valid_fraction,
        max_history=args.max_history,
    )
    stats = []

    read = (
        p
        | "InputFiles" >> beam.Create(files)
        | "ReshuffleFiles" >> beam.Reshuffle()
        | "ReadEvents" >> beam.ParDo(ReadEventsFn(args.source)).with_outputs(DEAD, main="events")
    )
    events, dead = read.events, read[DEAD]
    if meta_files:
        meta = (
            p
            | "MetaFiles" >> beam.Create(meta_files)
            | "ReadMeta" >> beam.ParDo(ReadEventsFn(args.source, metadata=True)).with_outputs(DEAD, main="meta")
        )
        dead = (dead, meta[DEAD]) | "AllDead" >> beam.Flatten()
        stats.append(counted(meta.meta, "metadata_items"))
        (
            meta.meta
            | "MetaJson" >> beam.Map(json.dumps, sort_keys=True)
            | "WriteMeta" >> beam.io.WriteToText(f"{tmp_out}/{schema.VOCAB_DIR}/item_meta", file_name_suffix=".jsonl", num_shards=1, shard_name_template="")
        )
    stats.append(counted(events, "events_parsed"))
    stats.append(counted(dead, "rows_dead_lettered"))
    stats.append(
        dead
        | "DeadReason" >> beam.Map(lambda d: ("dead_letter_reason:" + d["reason"].split(":")[0], 1))
        | "DeadReasonCount" >> beam.CombinePerKey(sum)
    )
    dead | "DeadJson" >> beam.Map(json.dumps) | "WriteDead" >> beam.io.WriteToText(
        f"{tmp_out}/{schema.DEAD_LETTER_DIR}/part", file_name_suffix=".jsonl"
    )

    if args.min_rating is not None:
        min_rating = args.min_rating
        events = events | "MinRating" >> beam.Filter(lambda e: e.get("rating") is None or e["rating"] >= min_rating)
        stats.append(counted(events, "after_rating_filter"))
    if args.event_types:
        keep_types = {t.strip() for t in args.event_types.split(",") if t.strip()}
        events = events | "EventTypes" >> beam.Filter(lambda e: e.get("event_type") in keep_types)
        stats.append(counted(events, "after_event_type_filter"))
    if args.dedup == "exact":
        events = events | "Dedup" >> cleaning.DropDuplicates()
        stats.append(counted(events, "after_dedup"))
    if args.min_user_interactions > 1 or args.min_item_interactions > 1:
        events, rounds = events | "KCore" >> cleaning.KCore(
            args.min_user_interactions, args.min_item_interactions, args.kcore_iterations
        )
        for i, r in enumerate(rounds):
            stats.append(counted(r, f"after_kcore_round_{i + 1}"))

    if args.kind == "search" and args.queries_from == "categories":
        if not meta_files:
            raise JobError("--queries_from=categories needs --metadata (the item category paths)")
        events = attach_category_queries(events, meta.meta)

    max_ts = None
    if args.split == "time":
        max_ts = beam.pvalue.AsSingleton(
            events | "Times" >> beam.Map(lambda e: e["timestamp"]) | "MaxTime" >> beam.CombineGlobally(max)
        )
    grouped = events | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e)) | "GroupByUser" >> beam.GroupByKey()
    timeline = grouped | "PerUser" >> beam.ParDo(
        _PerUserFn(args.kind, opts, ex_opts), max_timestamp=max_ts if max_ts is not None else 0
    ).with_outputs("counts", main="records")
    records = timeline.records
    stats.append(timeline.counts | "TimelineCounts" >> beam.CombinePerKey(sum))

    # vocabularies, counted on training records (the support used for popularity sampling)
    keep_zero = not (args.kind == "sequential" and args.split in timelines.SESSION_SPLITS)
    vocabs = {
        "items": records | "ItemOccurrences" >> beam.FlatMap(lambda sr, k=args.kind: item_occurrences(k, *sr)),
        "users": records
        | "UserOccurrences" >> beam.Map(lambda sr, k=args.kind: (sr[1]["user_id"], user_weight(k, *sr))),
    }
    if args.kind == "search":
        word_sources = [records | "WordOccurrences" >> beam.FlatMap(lambda sr: [(w, int(sr[0] == "train")) for w in sr[1]["query_words"]])]
        if meta_files:
            word_sources.append(meta.meta | "ItemTextWords" >> beam.FlatMap(lambda m: [(w, 1) for w in examples.item_text_words(m)]))
        vocabs["words"] = word_sources | "AllWords" >> beam.Flatten()
        vocabs["queries"] = records | "QueryOccurrences" >> beam.Map(lambda sr: (sr[1]["query"], int(sr[0] == "train")))
    index = {}
    for name, occurrences in vocabs.items():
        vocab = (
            occurrences
            | f"{name}Counts" >> beam.CombinePerKey(sum)
            | f"{name}List" >> beam.combiners.ToList()
            | f"{name}Vocab" >> beam.Map(make_vocab, keep_zero=keep_zero or name != "items")
        )
        (
            vocab
            | f"{name}Lines" >> beam.FlatMap(vocab_lines)
            | f"Write{name}" >> beam.io.WriteToText(
                f"{tmp_out}/{schema.VOCAB_DIR}/{schema.VOCAB_FILES[name]}", num_shards=1, shard_name_template=""
            )
        )
        stats.append(vocab | f"{name}Size" >> beam.Map(lambda v, n=name: (f"vocab_{n}", len(v))))
        index[name] = beam.pvalue.AsSingleton(vocab | f"{name}Index" >> beam.Map(lambda v: {t: i for i, (t, _) in enumerate(v)}))
    empty = beam.pvalue.AsSingleton(p | "NoVocab" >> beam.Create([{}]))
    encoded = records | "Encode" >> beam.ParDo(
        EncodeFn(args.kind, not keep_zero, min_train_items=1 if args.split == "fo" else 2),
        item_vocab=index["items"],
        user_vocab=index["users"],
        word_vocab=index.get("words", empty),
        query_vocab=index.get("queries", empty),
    ).with_outputs("counts", main="examples")
    stats.append(encoded.counts | "EncodeCounts" >> beam.CombinePerKey(sum))

    for split in schema.SPLITS:
        (
            encoded.examples
            | f"Only_{split}" >> beam.Filter(lambda se, s=split: se[0] == s)
            | f"Bytes_{split}" >> beam.Map(lambda se: se[1])
            | f"Write_{split}"
            >> beam.io.WriteToTFRecord(
                f"{tmp_out}/{schema.split_file_prefix(split)}",
                file_name_suffix=schema.TFRECORD_SUFFIX,
                num_shards=args.num_shards,
            )
        )
    if args.kind == "search" and meta_files:
        item_text = meta.meta | "EncodeItemText" >> beam.FlatMap(
            encode_item_text, item_vocab=index["items"], word_vocab=index["words"]
        )
        stats.append(counted(item_text, "item_text_records"))
        item_text | "WriteItemText" >> beam.io.WriteToTFRecord(
            f"{tmp_out}/{schema.ITEM_TEXT_DIR}/part", file_name_suffix=schema.TFRECORD_SUFFIX, num_shards=1
        )

    (
        stats
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombinePerKey(sum)
        | "StatsJson" >> beam.Map(lambda kv: json.dumps({"key": kv[0], "value": kv[1]}))
        | "WriteStats" >> beam.io.WriteToText(f"{tmp_out}/{STATS_TMP}", file_name_suffix=".jsonl", num_shards=1, shard_name_template="")
    )


def item_occurrences(kind: str, split: str, rec: dict) -> list[tuple[str, int]]:
    """(item token, training count increment) for every item a record mentions."""
    train = int(split == "train")
    if kind == "sequential":
        out = [(t, train) for t in rec["item_ids"]] + [(t, 0) for t in rec.get("target_items", ())]
        return out + ([(rec["target_item"], 0)] if rec["target_item"] is not None else [])
    if kind == "basket":
        return [(t, train) for b in rec["baskets"] for t in b] + [(t, 0) for t in rec["target_items"]]
    return [(rec["item_id"], train)] + [(t, 0) for t in rec["history_item_ids"]]


def user_weight(kind: str, split: str, rec: dict) -> int:
    if split != "train":
        return 0
    if kind == "sequential":
        return len(rec["item_ids"])
    if kind == "basket":
        return sum(len(b) for b in rec["baskets"])
    return 1


def attach_category_queries(events, metas):
    """Give every event without a query the queries of its item's category paths (Ai et al.)."""
    queries = metas | "CategoryQueries" >> beam.Map(lambda m: (m["item_id"], examples.category_queries(m)))
    keyed = events | "KeyByItemForQueries" >> beam.Map(lambda e: (e["item_id"], e))

    def attach(kv):
        _, grouped = kv
        qs = next(iter(grouped["queries"]), [])
        for e in grouped["events"]:
            if not (e.get("query") or "").strip():
                e = {**e, "queries": qs}
            yield e

    return {"events": keyed, "queries": queries} | "JoinQueries" >> beam.CoGroupByKey() | "Attach" >> beam.FlatMap(attach)


def encode_item_text(meta: dict, item_vocab: dict, word_vocab: dict):
    from tfpps.data import schema

    item = item_vocab.get(meta["item_id"])
    if item is None:
        return
    words = [word_vocab.get(w, schema.OOV_ID) for w in examples.item_text_words(meta)]
    yield schema.encode_example(schema.ITEM_TEXT, {"item_id": item, "word_ids": words})


class _PerUserFn(beam.DoFn):
    """One user's events -> (split, record) pairs of the job's example kind, plus counters."""

    def __init__(self, kind: str, opts: timelines.TimelineOptions, ex_opts: examples.ExampleOptions):
        self.kind, self.opts, self.ex_opts = kind, opts, ex_opts

    def process(self, kv, max_timestamp=0):
        user, evs = kv
        if self.kind == "sequential":
            out = timelines.build_user_records(user, evs, self.opts, max_timestamp or 0)
            by_split, counters = out.by_split(), out.counters
        elif self.kind == "basket":
            by_split, counters = examples.build_basket_records(user, evs, self.ex_opts)
        else:
            by_split, counters = examples.build_search_records(user, evs, self.ex_opts)
        for split, recs in by_split.items():
            for rec in recs:
                yield split, rec
        for name, value in counters.items():
            if value:
                yield beam.pvalue.TaggedOutput("counts", (name, value))


# ----------------------------------------------------------------------------- driver
def _read_text(path: str) -> str | None:
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as fh:
        return fh.read().decode("utf-8")


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def read_stats(tmp_out: str) -> dict:
    stats = {}
    path = f"{tmp_out}/{STATS_TMP}.jsonl"
    text = _read_text(path)
    if text is not None:
        for line in text.splitlines():
            row = json.loads(line)
            stats[row["key"]] = row["value"]
        FileSystems.delete([path])
    return stats


def _vocab_rows(tmp_out: str, name: str) -> list[list[str]]:
    from tfpps.data import schema

    text = _read_text(f"{tmp_out}/{schema.VOCAB_DIR}/{schema.VOCAB_FILES[name]}")
    # split on "\n" only: str.splitlines() would also break ids containing U+2028 / U+2029
    return [line.split("\t") for line in text.split("\n") if line] if text is not None else []


def finalize(tmp_out: str, args: argparse.Namespace, stats: dict, elapsed: float, files: list[str]) -> dict:
    """Write stats.json and dataset.json next to the shards; returns the stats."""
    from tfpps.data import schema

    items, users = _vocab_rows(tmp_out, "items"), _vocab_rows(tmp_out, "users")
    top = sorted(items[2:], key=lambda r: -int(r[2]))[:20]
    shards = {s: FileSystems.match([f"{tmp_out}/{s}/part-*"])[0].metadata_list for s in schema.SPLITS}
    per_split = {
        s: {"records": stats.get(f"{s}_records", 0), "interactions": stats.get(f"{s}_interactions", 0), "shards": len(shards[s])}
        for s in schema.SPLITS
    }
    full = {
        "source": args.source,
        "inputs": files,
        "kind": args.kind,
        "split": args.split,
        "elapsed_seconds": round(elapsed, 2),
        "stages": {k: v for k, v in sorted(stats.items()) if not k.startswith("dead_letter_reason:")},
        "dead_letter_reasons": {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dead_letter_reason:")},
        "splits": per_split,
        "num_items": len(items),
        "num_users": len(users),
        "item_popularity_top20": [{"item": r[1], "train_count": int(r[2])} for r in top],
        "train_item_counts_total": sum(int(r[2]) for r in items),
    }
    _write_text(f"{tmp_out}/{schema.STATS_FILE}", json.dumps(full, indent=2) + "\n")
    meta = {
        "kind": args.kind,
        "split": args.split,
        "source": args.source,
        "num_items": len(items),
        "num_users": len(users),
        "num_words": len(_vocab_rows(tmp_out, "words")),
        "num_queries": len(_vocab_rows(tmp_out, "queries")),
        "counts": {s: per_split[s]["records"] for s in schema.SPLITS},
        "has_item_meta": FileSystems.exists(f"{tmp_out}/{schema.VOCAB_DIR}/item_meta.jsonl"),
        "eval_targets": "multi" if args.split == "fo" else "single",
        "flags": {k: v for k, v in vars(args).items() if k not in ("input", "output")},
        "format_version": 1,
    }
    _write_text(f"{tmp_out}/{schema.DATASET_FILE}", json.dumps(meta, indent=2) + "\n")
    return full


def is_local(path: str) -> bool:
    return "://" not in path


def publish(tmp_out: str, out: str) -> None:
    """Move the finished temp output to its final place.

    Locally this is one atomic directory rename. Object stores have no
    directories: files are renamed one by one and ``dataset.json`` last, so a
    reader that sees ``dataset.json`` sees a complete dataset.
    """
    if is_local(out):
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp_out, out)
        return
    from tfpps.data import schema

    if FileSystems.exists(f"{out}/{schema.DATASET_FILE}"):
        FileSystems.delete([out])
    srcs = sorted(m.path for m in FileSystems.match([f"{tmp_out}/**"])[0].metadata_list)
    marker = [p for p in srcs if p.endswith("/" + schema.DATASET_FILE)]
    rest = [p for p in srcs if p not in marker]
    for group in (rest, marker):
        if group:
            FileSystems.rename(group, [out + p[len(tmp_out):] for p in group])
    FileSystems.delete([tmp_out])


def summary_table(stats: dict) -> str:
    st = stats["stages"]
    rows = [("rows read -> events parsed", st.get("events_parsed", 0)), ("rows dead-lettered", st.get("rows_dead_lettered", 0))]
    rows += [(f"  dead letter: {k}", v) for k, v in stats["dead_letter_reasons"].items()]
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
        if k.endswith(("_unseen_items_removed", "_records_too_short")) or k in ("short_sessions_removed", "short_users_removed") or k.startswith("fo_"):
            rows.append((k.replace("_", " "), st[k]))
    rows.append(("elapsed seconds", stats["elapsed_seconds"]))
    width = max(len(r[0]) for r in rows)
    lines = [f"tfpps dataset summary ({stats['source']}, split={stats['split']})", "-" * (width + 14)]
    lines += [f"{name:<{width}}  {value:>12}" for name, value in rows]
    return "\n".join(lines)


def run(argv: list[str]) -> dict:
    """Run the job; returns the stats dict. Raises JobError / SourceError with one-line messages."""
    args, beam_args = parse_args(argv)
    get_source(args.source)
    files = expand_inputs([s for s in args.input.split(",") if s.strip()])
    check_files(args.source, files)
    meta_files = expand_inputs([s for s in args.metadata.split(",") if s.strip()]) if args.metadata else []
    out = args.output.rstrip("/")
    if (FileSystems.exists(out) if not is_local(out) else os.path.exists(out)) and not args.overwrite:
        raise JobError(f"--output={args.output}: already exists (pass --overwrite to replace it)")
    parent, name = posixpath.split(out) if not is_local(out) else os.path.split(os.path.abspath(out))
    tmp_out = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    if is_local(tmp_out):
        os.makedirs(tmp_out)
    start = time.time()
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as p:
            build_pipeline(p, args, files, meta_files, tmp_out)
        stats = finalize(tmp_out, args, read_stats(tmp_out), time.time() - start, files)
        publish(tmp_out, out if not is_local(out) else os.path.abspath(out))
    finally:
        if is_local(tmp_out) and os.path.exists(tmp_out):
            shutil.rmtree(tmp_out, ignore_errors=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        stats = run(argv)
    except (JobError, SourceError) as exc:
        print(f"build_features: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(stats))
    print(f"wrote {build_parser().parse_known_args(argv)[0].output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
