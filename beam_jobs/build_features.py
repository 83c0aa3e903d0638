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
split (``--split=loo|last_session|time``), vocabularies (index 0 = PAD,
1 = OOV, then by training frequency), encoding with the shared feature spec
(:mod:`tfpps.data.schema`) and sharded gzip TFRecords per split.
The output directory appears only when the job succeeds (written to a
temporary sibling, then renamed), so a killed run never leaves a partial
dataset behind.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs import cleaning, timelines
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
    p.add_argument("--kind", default="sequential", choices=["sequential"], help="example kind to write")
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
    if args.split == "time" and args.test_days <= 0:
        raise JobError(f"--test_days={args.test_days}: must be > 0 with --split=time")
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
    """(split, record with string tokens) -> serialized tf.train.Example; drops unusable eval records."""

    def __init__(self, kind: str, session_split: bool):
        self.kind, self.session_split = kind, session_split

    def process(self, element, item_vocab, user_vocab):
        from tfpps.data import schema

        split, rec = element
        items = [item_vocab.get(t, schema.OOV_ID) for t in rec["item_ids"]]
        times, starts = rec["timestamps"], rec["session_starts"]
        if self.session_split and split != "train":
            keep = [i for i, it in enumerate(items) if it != schema.OOV_ID]
            dropped = len(items) - len(keep)
            if dropped:
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_unseen_items_removed", dropped))
            items = [items[i] for i in keep]
            times = [times[i] for i in keep]
            starts = [starts[i] for i in keep]
            if starts:
                starts[0] = 1
            if len(items) < 2:
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_records_too_short", 1))
                return
        target = item_vocab.get(rec["target_item"], schema.OOV_ID) if rec["target_item"] is not None else schema.PAD_ID
        if split == "train" and len(items) < 2:
            yield beam.pvalue.TaggedOutput("counts", ("train_records_too_short", 1))
            return
        example = {
            "user_id": user_vocab.get(rec["user_id"], schema.OOV_ID),
            "session_id": session_hash(rec["session_key"]),
            "item_ids": items,
            "timestamps": times,
            "session_starts": starts,
            "target_item": target,
        }
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_records", 1))
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_interactions", len(items) + (1 if target else 0)))
        yield split, schema.encode_example(self.kind, example)


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

    max_ts = None
    if args.split == "time":
        max_ts = beam.pvalue.AsSingleton(
            events | "Times" >> beam.Map(lambda e: e["timestamp"]) | "MaxTime" >> beam.CombineGlobally(max)
        )

    grouped = events | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e)) | "GroupByUser" >> beam.GroupByKey()
    timeline = (
        grouped
        | "TimelinesTagged"
        >> beam.ParDo(_PerUserFn(opts), max_timestamp=max_ts if max_ts is not None else 0).with_outputs("counts", main="records")
    )
    records = timeline.records
    stats.append(timeline.counts | "TimelineCounts" >> beam.CombinePerKey(sum))

    # vocabularies: items counted on training records (support for popularity sampling)
    session_split = args.split in timelines.SESSION_SPLITS
    item_counts = (
        records
        | "ItemOccurrences"
        >> beam.FlatMap(
            lambda sr: [(t, 1 if sr[0] == "train" else 0) for t in sr[1]["item_ids"]]
            + ([(sr[1]["target_item"], 0)] if sr[1]["target_item"] is not None else [])
        )
        | "ItemCounts" >> beam.CombinePerKey(sum)
    )
    user_counts = (
        records
        | "UserOccurrences" >> beam.Map(lambda sr: (sr[1]["user_id"], len(sr[1]["item_ids"]) if sr[0] == "train" else 0))
        | "UserCounts" >> beam.CombinePerKey(sum)
    )
    item_vocab = item_counts | "ItemList" >> beam.combiners.ToList() | "ItemVocab" >> beam.Map(make_vocab, keep_zero=not session_split)
    user_vocab = user_counts | "UserList" >> beam.combiners.ToList() | "UserVocab" >> beam.Map(make_vocab, keep_zero=True)
    for name, vocab in (("items", item_vocab), ("users", user_vocab)):
        (
            vocab
            | f"{name}Lines" >> beam.FlatMap(vocab_lines)
            | f"Write{name}" >> beam.io.WriteToText(
                f"{tmp_out}/{schema.VOCAB_DIR}/{schema.VOCAB_FILES[name]}", num_shards=1, shard_name_template=""
            )
        )
        stats.append(vocab | f"{name}Size" >> beam.Map(lambda v, n=name: (f"vocab_{n}", len(v))))

    to_index = lambda v: {t: i for i, (t, _) in enumerate(v)}  # noqa: E731
    encoded = records | "Encode" >> beam.ParDo(
        EncodeFn(args.kind, session_split),
        item_vocab=beam.pvalue.AsSingleton(item_vocab | "ItemIndex" >> beam.Map(to_index)),
        user_vocab=beam.pvalue.AsSingleton(user_vocab | "UserIndex" >> beam.Map(to_index)),
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

    (
        stats
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombinePerKey(sum)
        | "StatsJson" >> beam.Map(lambda kv: json.dumps({"key": kv[0], "value": kv[1]}))
        | "WriteStats" >> beam.io.WriteToText(f"{tmp_out}/{STATS_TMP}", file_name_suffix=".jsonl", num_shards=1, shard_name_template="")
    )


class _PerUserFn(beam.DoFn):
    def __init__(self, opts: timelines.TimelineOptions):
        self.opts = opts

    def process(self, kv, max_timestamp=0):
        user, evs = kv
        out = timelines.build_user_records(user, evs, self.opts, max_timestamp or 0)
        for split, recs in out.by_split().items():
            for rec in recs:
                yield split, rec
        for name, value in out.counters.items():
            if value:
                yield beam.pvalue.TaggedOutput("counts", (name, value))


# ----------------------------------------------------------------------------- driver
def read_stats(tmp_out: Path) -> dict:
    stats = {}
    path = tmp_out / f"{STATS_TMP}.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            stats[row["key"]] = row["value"]
        path.unlink()
    return stats


def finalize(tmp_out: Path, args: argparse.Namespace, stats: dict, elapsed: float, files: list[str]) -> dict:
    """Write stats.json and dataset.json next to the shards; returns the stats."""
    from tfpps.data import schema

    vocab_dir = tmp_out / schema.VOCAB_DIR
    items = [line.split("\t") for line in (vocab_dir / schema.VOCAB_FILES["items"]).read_text().splitlines()]
    users = (vocab_dir / schema.VOCAB_FILES["users"]).read_text().splitlines()
    top = sorted(items[2:], key=lambda r: -int(r[2]))[:20]
    shards = {s: sorted(p.name for p in (tmp_out / s).glob("part-*")) for s in schema.SPLITS}
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
    (tmp_out / schema.STATS_FILE).write_text(json.dumps(full, indent=2) + "\n")
    meta = {
        "kind": args.kind,
        "split": args.split,
        "source": args.source,
        "num_items": len(items),
        "num_users": len(users),
        "num_words": 0,
        "counts": {s: per_split[s]["records"] for s in schema.SPLITS},
        "has_item_meta": (vocab_dir / "item_meta.jsonl").exists(),
        "flags": {k: v for k, v in vars(args).items() if k not in ("input", "output")},
        "format_version": 1,
    }
    (tmp_out / schema.DATASET_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return full


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
        ("sessions kept", st.get("sessions", 0)),
        ("interactions kept", st.get("interactions", 0)),
        ("item vocabulary (incl. PAD/OOV)", stats["num_items"]),
        ("user vocabulary (incl. PAD/OOV)", stats["num_users"]),
    ]
    for s, v in stats["splits"].items():
        rows.append((f"{s}: records / interactions / shards", f"{v['records']} / {v['interactions']} / {v['shards']}"))
    for k in sorted(st):
        if k.endswith(("_unseen_items_removed", "_records_too_short")) or k in ("short_sessions_removed", "short_users_removed"):
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
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise JobError(f"--output={args.output}: already exists (pass --overwrite to replace it)")
    tmp_out = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_out.mkdir(parents=True)
    start = time.time()
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as p:
            build_pipeline(p, args, files, meta_files, str(tmp_out))
        stats = finalize(tmp_out, args, read_stats(tmp_out), time.time() - start, files)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp_out, out)
    finally:
        if tmp_out.exists():
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
    print(f"wrote {Path(build_parser().parse_known_args(argv)[0].output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
