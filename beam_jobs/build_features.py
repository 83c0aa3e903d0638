"""Beam job: raw interaction logs -> TFRecord examples, vocabularies, splits and stats.

Usage::

    python -m beam_jobs.build_features --source=movielens \\
        --input=../shared/data/ml-100k/ml-100k.inter --output=data_out/ml-100k \\
        --min_rating=3 --min_user_interactions=10 --min_item_interactions=10 --split=loo

Every flag this job does not define is handed to Beam unchanged, so the same
command runs on Dataflow by adding ``--runner=DataflowRunner --project=P
--region=R --temp_location=gs://B/tmp --setup_file=./setup.py`` (and
``--output=gs://...``); a flag that Beam does not know either (a typo such as
``--test_queries``) is refused in one line instead of being discarded.
Without ``--runner`` it uses the DirectRunner (see :func:`pipeline_options`).
Beam's own log messages and warnings are hidden unless ``--verbose`` is given
(:func:`quiet_beam_logging`); the job's errors and summary always print.

Stages (each counted in ``stats.json`` and the printed summary):
read (bad rows -> ``dead_letter/``), rating / event-type filters, exact
de-duplication, iterative k-core, per-user ordering + sessionization,
split (``--split=loo|last_session|time|fo|given``; search data: ``--search_split=time|random|given``,
``given`` keeping each event's own split, as ``--source=hem_qrels`` does with the official HEM
benchmark: :mod:`beam_jobs.hem_qrels`), vocabularies (index 0 = PAD,
1 = OOV, then by training frequency), encoding with the shared feature spec
(:mod:`tfpps.spec.schema`) and sharded gzip TFRecords per split.
Before publishing, the job checks that no step lost or duplicated data:
each hand-over (dedup, k-core filters, per-user grouping, encoder) received
what the step before sent, and the written shards, dead letters and
vocabularies hold what the pipeline counted (:mod:`beam_jobs.output_checks`).
The output directory appears only when the job succeeds (written to a
temporary sibling, then renamed), so a killed run never leaves a partial
dataset behind.

The job never loses a user's data and never publishes a useless dataset:
``--overwrite`` replaces only a directory tfpps created (its
``.tfpps`` marker or ``dataset.json``; :mod:`tfpps.ownership`), every dataset it
publishes carries the marker; a build that ends with no examples (no events
parsed, every event filtered away, a search dataset without queries) is
refused with the stage that emptied it (:func:`empty_dataset_reason`); a disk
that fills up or refuses writes ends the job with one line and nothing
published (:func:`write_error`).
"""
from __future__ import annotations

import argparse
import difflib
import errno
import glob
import hashlib
import heapq
import logging
import posixpath
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
import warnings


def _beam_noise(record: logging.LogRecord) -> bool:
    """Logging filter: False for a message below ERROR that Beam's own code logs straight to the root
    logger (``apitools not found, ...`` when Beam is imported). Installed before Beam's import; see
    :func:`quiet_beam_logging`."""
    return record.levelno >= logging.ERROR or f"{os.sep}apache_beam{os.sep}" not in record.pathname


if logging.getLogger().level >= logging.WARNING:  # a user who lowered the root level sees everything
    logging.getLogger().addFilter(_beam_noise)

import apache_beam as beam  # noqa: E402  (after the filter: Beam warns while it is imported)
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs import cleaning, examples, hem_qrels, output_checks, timelines
from beam_jobs.events import SourceError
from beam_jobs.reading import (
    COUNTS, DEAD, ReadEventsFn, check_files, expand_inputs, raise_source_errors, source_error_from_runner,
)
from beam_jobs.sources import get_source, known_sources
from tfpps import ownership

STATS_TMP = "_stats"


class JobError(ValueError):
    """Bad flags for the job; printed as one line."""


# ----------------------------------------------------------------------------- flags
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m beam_jobs.build_features",
        description="Turn raw interaction logs into tfpps TFRecord datasets. "
        "Flags the job does not define are passed to Apache Beam unchanged (e.g. --runner=DataflowRunner); "
        "a flag Beam does not know either is an error.",
    )
    p.add_argument("--source", required=True, help=f"input format: one of {', '.join(sorted(known_sources()))}")
    p.add_argument("--input", default="", help="file or glob; several separated by commas (with --split=given: "
                   "files whose events have a 'split' column)")
    p.add_argument("--train_input", default="", help="--split=given: the training files (globs, commas), same --source format")
    p.add_argument("--valid_input", default="", help="--split=given: the validation files (optional; without them "
                   "validation is the last --valid_days of training)")
    p.add_argument("--test_input", default="", help="--split=given: the test files")
    p.add_argument("--filter_eval", default="false", choices=["true", "false"],
                   help="--split=given: apply the rating / de-duplication / k-core / session filters to the validation "
                   "and test parts too (default: training part only; eval items unseen in training are dropped either way)")
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
    p.add_argument("--filter_order", default="kcore_first", choices=["kcore_first", "sessions_first"],
                   help="kcore_first: --min_session_length applies to the sessions left after the k-core; "
                   "sessions_first: also to the sessions before it, so their events never count towards the k-core "
                   "(SR-GNN: length-1 sessions go before item supports are counted)")
    p.add_argument("--test_days", type=float, default=1.0, help="--split=time: last N days are test; --split=days: "
                   "sessions dated after the last date - N are test (whole days)")
    p.add_argument("--valid_days", type=float, default=None, help="--split=time: N days before test are valid "
                   "(default 0: no validation); --split=given without --valid_input: the last N training days are "
                   "valid (default 1.0)")
    p.add_argument("--test_size", type=float, default=0.2, help="--split=fo: random share of all interactions for test")
    p.add_argument("--valid_size", type=float, default=0.1, help="--split=fo: random share of the rest for validation")
    p.add_argument("--split_seed", type=int, default=2021, help="--split=fo and --kind=search: seed of the random assignments")
    p.add_argument("--basket_by", default="id", choices=examples.BASKET_BY, help="--kind=basket: group baskets by basket_id, timestamp or day")
    p.add_argument("--queries_from", default="log", choices=["log", "categories"], help="--kind=search: queries from the log's query column or from item category paths (Ai et al.)")
    p.add_argument("--test_fraction", type=float, default=0.3, help="--kind=search: last fraction of each user's purchases for test")
    p.add_argument("--valid_fraction", type=float, default=0.1, help="--kind=search: fraction before the test part for validation")
    p.add_argument("--max_history", type=int, default=100, help="--kind=search: most recent purchases kept as history")
    p.add_argument("--search_split", default=None, choices=examples.SEARCH_SPLITS, help="--kind=search: each user's test purchases are the last ones (time), a seeded random draw (random, as the HEM code) or the split each event carries (given: a 'split' column, or the official train/test qrels of --source=hem_qrels, its default); default time")
    p.add_argument("--reviews", default="", help="--source=hem_qrels: the 5-core review dump (reviews_*_5.json.gz); item text = the "
                   "words of each item's training reviews (the lines train_review_id.txt.gz lists) instead of its training queries")
    p.add_argument("--test_query_fraction", type=float, default=0.0, help="--kind=search: share of distinct queries held out for evaluation only (HEM: 0.3); every product keeps a training query")
    p.add_argument("--num_shards", type=int, default=4, help="TFRecord shards per split (0 = runner decides)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory (only one tfpps created)")
    p.add_argument("--verbose", action="store_true", help="show Apache Beam's own log messages and warnings (hidden by default)")
    return p


def _beam_option_names(beam_args: list[str]) -> set[str]:
    """Every option name (dest, without ``--``) Beam's PipelineOptions define, as ``get_all_options`` sees
    them: the options of every PipelineOptions subclass imported so far, and of the ``--runner``'s module."""
    runner = next((a.split("=", 1)[1] if "=" in a else (beam_args[i + 1] if i + 1 < len(beam_args) else "")
                   for i, a in enumerate(beam_args) if a == "--runner" or a.startswith("--runner=")), "")
    if runner:
        try:  # importing the runner registers its own options (e.g. FlinkRunnerOptions)
            from apache_beam.runners.runner import create_runner

            create_runner(runner)
        except Exception:  # an unknown runner is Beam's error to report, not this check's
            pass
    return set(PipelineOptions([]).get_all_options())  # no flags: nothing to discard, no warning


def reject_unknown_flags(beam_args: list[str], parser: argparse.ArgumentParser) -> None:
    """Raise :class:`JobError` (one line) for the first of ``beam_args`` (what the job's parser left) that
    Beam's PipelineOptions do not know either; Beam would discard it with a warning and run on.
    Handles ``--flag=value``, ``--flag value`` and a stray word; suggests close matches."""
    if not beam_args:
        return
    job_flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    single = next((a for a in beam_args if a.startswith("-") and not a.startswith("--") and a != "-"
                   and not re.fullmatch(r"-[\d.]+", a)), None)  # not a negative number
    if single is not None:  # Beam has none; it would discard it with a warning
        raise JobError(f"unknown flag {single.split('=', 1)[0]} (flags are --name=value; see --help)")
    known = _beam_option_names(beam_args)
    # get_all_options(retain_unknown_options=True) adds the unknown flags too: the difference is exactly them
    unknown = set(PipelineOptions(beam_args).get_all_options(retain_unknown_options=True)) - known
    for i, arg in enumerate(beam_args):
        if arg == "--":
            break
        if not arg.startswith("-"):
            prev = beam_args[i - 1] if i else ""
            if prev.startswith("-") and "=" not in prev:  # the value of the flag before it
                continue
            raise JobError(f"unexpected argument {arg!r} (flags are --name=value; see --help)")
        name = arg.lstrip("-").split("=", 1)[0]
        if name.replace("-", "_") not in unknown:
            continue
        close = difflib.get_close_matches(f"--{name}", job_flags + [f"--{k}" for k in known], n=2, cutoff=0.75)
        hint = f"; did you mean {' or '.join(close)}? see --help" if close else "; see --help"
        raise JobError(f"unknown flag --{name} (not a job flag nor a Beam pipeline option{hint})")


# Flags that would change the official HEM data (--source=hem_qrels): (flag, is it set?)
_HEM_FILTERS = (
    ("min_rating", lambda a: a.min_rating is not None),
    ("event_types", lambda a: bool(a.event_types)),
    ("min_user_interactions", lambda a: a.min_user_interactions > 1),
    ("min_item_interactions", lambda a: a.min_item_interactions > 1),
    ("dedup_consecutive", lambda a: a.dedup_consecutive),
)


def check_hem_flags(args: argparse.Namespace) -> None:
    """Resolve ``--search_split`` (``given`` for ``--source=hem_qrels``, else ``time``) and refuse, in one line,
    what would not keep the HEM benchmark's official split and data: another kind or search split, a
    filter, a random query hold-out, ``--reviews`` without the source."""
    hem = args.source == hem_qrels.SOURCE_NAME
    if args.search_split is None:
        args.search_split = "given" if hem else "time"
    if args.reviews and not hem:
        raise JobError(f"--reviews applies to --source={hem_qrels.SOURCE_NAME} (the training reviews of its benchmark)")
    if args.search_split == "given" and args.test_query_fraction > 0:
        raise JobError("--test_query_fraction applies to --search_split=time|random; --search_split=given keeps the "
                       "test queries of the given test part")
    if not hem:
        return
    if args.kind != "search":
        raise JobError(f"--source={hem_qrels.SOURCE_NAME} is a product-search benchmark: it needs --kind=search")
    if args.search_split != "given":
        raise JobError(f"--source={hem_qrels.SOURCE_NAME} keeps the benchmark's official split: --search_split=given "
                       f"(not {args.search_split})")
    for flag, is_set in _HEM_FILTERS:
        if is_set(args):
            raise JobError(f"--{flag}={getattr(args, flag)}: --source={hem_qrels.SOURCE_NAME} keeps the official "
                           "benchmark data as it is (no filter may change it)")


def split_name(args: argparse.Namespace) -> str:
    """The split a dataset really used, for ``dataset.json`` / ``stats.json``: ``--split`` for sequential and basket
    data; for search data its ``--search_split`` (``time``, ``random``, ``given``; ``hem_given`` for the HEM
    benchmark's official split)."""
    if args.kind != "search":
        return args.split
    if args.search_split == "given" and args.source == hem_qrels.SOURCE_NAME:
        return "hem_given"
    return args.search_split


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    reject_unknown_flags(beam_args, parser)
    if args.source not in known_sources():
        raise JobError(f"--source={args.source!r}: unknown source; known: {', '.join(sorted(known_sources()))}")
    for name in ("min_user_interactions", "min_item_interactions", "num_shards"):
        if getattr(args, name) < 0:
            raise JobError(f"--{name}={getattr(args, name)}: must be >= 0")
    if args.kcore_iterations < 1:
        raise JobError(f"--kcore_iterations={args.kcore_iterations}: must be >= 1")
    if args.session_gap_minutes <= 0:
        raise JobError(f"--session_gap_minutes={args.session_gap_minutes}: must be > 0")
    check_hem_flags(args)
    try:
        examples.ExampleOptions(
            basket_by=args.basket_by, test_fraction=args.test_fraction, valid_fraction=args.valid_fraction,
            search_split=args.search_split, test_query_fraction=args.test_query_fraction,
        )
    except ValueError as exc:
        raise JobError(str(exc)) from None
    if args.kind != "sequential" and args.split != "loo":
        raise JobError(f"--split={args.split} applies to --kind=sequential; {args.kind} examples have their own split (see --help)")
    if args.kind != "sequential" and args.filter_order != "kcore_first":
        raise JobError(f"--filter_order={args.filter_order} applies to --kind=sequential (sessions)")
    if args.split == "days":
        for name in ("test_days", "valid_days"):
            value = getattr(args, name)
            if value is not None and (value != int(value) or value < (1 if name == "test_days" else 0)):
                raise JobError(f"--{name}={value}: --split=days counts whole days (an integer >= "
                               f"{1 if name == 'test_days' else 0})")
    given_inputs = any((args.train_input, args.valid_input, args.test_input))
    if args.split == "given":
        if given_inputs and args.input:
            raise JobError("--split=given: pass either --input (files with a 'split' column) or "
                           "--train_input/--valid_input/--test_input, not both")
        if given_inputs and not (args.train_input and args.test_input):
            raise JobError("--split=given needs both --train_input and --test_input (--valid_input is optional)")
        if not given_inputs and not args.input:
            raise JobError("--split=given needs --train_input and --test_input, or --input with a 'split' column")
    else:
        if given_inputs:
            raise JobError("--train_input/--valid_input/--test_input apply to --split=given")
        if not args.input:
            raise JobError("--input is required (file or glob; several separated by commas)")
    if args.valid_days is not None and args.valid_days < 0:
        raise JobError(f"--valid_days={args.valid_days}: must be >= 0")
    if args.split == "time" and args.test_days <= 0:
        raise JobError(f"--test_days={args.test_days}: must be > 0 with --split=time")
    if not 0.0 < args.test_size < 1.0:
        raise JobError(f"--test_size={args.test_size}: must be in (0, 1)")
    if not 0.0 <= args.valid_size < 1.0:
        raise JobError(f"--valid_size={args.valid_size}: must be in [0, 1)")
    return args, beam_args


DASK_UNSUPPORTED = (
    "--runner=DaskRunner: Beam's DaskRunner cannot run this job: it maps each transform to one Dask bag, so the "
    "dead-letter side outputs (ParDo.with_outputs) flow into the main outputs, it computes only the last "
    "transform's bag (the other sinks are never written) and it has no counters (metrics() is not implemented); "
    "see docs/scale.md")


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the unknown flags, unchanged; local defaults are only added when absent:
    DirectRunner, in its single-process ``in_memory`` mode, and quiet worker logs.

    The multi-process mode is not the default: it has lost events in this job's volume runs
    (``benchmarks/scale/beam_multiprocess_repro.py``). Asked for explicitly it is kept, with all cores unless
    ``--direct_num_workers`` is given, and a one-line warning on stderr."""
    from apache_beam.options.pipeline_options import DirectOptions

    given = " ".join(beam_args)
    defaults = []
    if "--runner" not in given:
        defaults.append("--runner=DirectRunner")
    runner = "DirectRunner" if "--runner" not in given else PipelineOptions(beam_args).view_as(StandardOptions).runner
    if runner and (runner == "DaskRunner" or runner.endswith(".DaskRunner")):
        raise JobError(DASK_UNSUPPORTED)
    if runner in ("DirectRunner", "direct"):
        mode = PipelineOptions(beam_args).view_as(DirectOptions).direct_running_mode if "--direct_running_mode" in given else None
        if mode is None:
            defaults.append("--direct_running_mode=in_memory")
        elif mode != "in_memory" and "--direct_num_workers" not in given:
            defaults.append(f"--direct_num_workers={os.cpu_count() or 1}")
        if mode == "multi_processing":
            print(
                "warning: --direct_running_mode=multi_processing can lose data: Beam's multi-process DirectRunner "
                "dropped events in this job's volume runs (0.25% to 53% of one step's events, cause inside Beam "
                "not pinned down); the job's self-checks catch it and refuse to publish. The default in_memory "
                "mode is correct and about 1.3x slower.",
                file=sys.stderr,
            )
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
    from tfpps.spec import schema

    rows = [(t, c) for t, c in counts if keep_zero or c > 0]
    rows.sort(key=lambda tc: (-tc[1], tc[0]))
    return [(schema.PAD_TOKEN, 0), (schema.OOV_TOKEN, 0)] + rows


class VocabCombineFn(beam.CombineFn):
    """``(token, training count)`` pairs (one per token, after ``CombinePerKey(sum)``) -> the vocabulary of
    :func:`make_vocab`. The accumulator holds only the kept ``(token, count)`` pairs, i.e. the vocabulary
    itself (zero-count tokens are dropped as they arrive unless ``keep_zero``); nothing else of the
    PCollection reaches the worker that merges it."""

    def __init__(self, keep_zero: bool):
        self.keep_zero = keep_zero

    def create_accumulator(self):
        return []

    def add_input(self, acc, token_count):
        if self.keep_zero or token_count[1] > 0:
            acc.append(tuple(token_count))
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        merged = next(accs, [])
        for acc in accs:
            merged.extend(acc)
        return merged

    def extract_output(self, acc):
        return make_vocab(acc, keep_zero=True)  # already filtered in add_input


def vocab_lines(vocab: list[tuple[str, int]]):
    for i, (token, count) in enumerate(vocab):
        yield f"{i}\t{token}\t{count}"


class EncodeFn(beam.DoFn):
    """(split, record with string tokens) -> (split, serialized tf.train.Example); drops unusable records."""

    def __init__(self, kind: str, drop_unseen_eval_items: bool, min_train_items: int = 2):
        self.kind, self.drop_unseen, self.min_train_items = kind, drop_unseen_eval_items, min_train_items

    def process(self, element, item_vocab, user_vocab, word_vocab, query_vocab):
        from tfpps.spec import schema

        split, rec = element
        yield beam.pvalue.TaggedOutput("counts", (f"{cleaning.CHECK_PREFIX}encode:kept", 1))  # arrived here
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
                "history_query_ids": [query_vocab.get(q, schema.OOV_ID) for q in rec["history_queries"]],
                "history_timestamps": rec["history_timestamps"],
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
                "target_items": [item_vocab.get(t, schema.OOV_ID) for t in rec["target_items"]],
                "history_query_ids": [query_vocab.get(q, schema.OOV_ID) for q in rec["history_queries"]],
                "history_timestamps": rec["history_timestamps"],
            }
            n = max(1, len(example["target_items"]))
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_records", 1))
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_interactions", n))
        yield split, schema.encode_example(self.kind, example)

    def _sequential(self, split, rec, item_vocab):
        from tfpps.spec import schema

        items = [item_vocab.get(t, schema.OOV_ID) for t in rec["item_ids"]]
        times, starts = rec["timestamps"], rec["session_starts"]
        if self.drop_unseen and split != "train":
            keep = [i for i, it in enumerate(items) if it != schema.OOV_ID]
            dropped = len(items) - len(keep)
            given_target = rec["target_item"] is not None  # --split=given (srgnn): prefix -> target as given
            if given_target and item_vocab.get(rec["target_item"], schema.OOV_ID) == schema.OOV_ID:
                dropped += 1  # a target never seen in training cannot be ranked: the record goes
                keep = []
            if dropped:
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_unseen_items_removed", dropped))
            items, times, starts = [items[i] for i in keep], [times[i] for i in keep], [starts[i] for i in keep]
            if starts:
                starts[0] = 1
            if len(items) < (1 if given_target else 2):
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
    from tfpps.spec import schema

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
        filter_eval=args.filter_eval == "true",
        carve_valid_days=getattr(args, "carve_valid_days", 0.0),
    )
    ex_opts = examples.ExampleOptions(
        basket_by=args.basket_by,
        test_fraction=args.test_fraction,
        valid_fraction=args.valid_fraction,
        max_history=args.max_history,
        search_split=args.search_split,
        test_query_fraction=args.test_query_fraction,
        split_seed=args.split_seed,
    )
    stats = []

    read = (
        p
        | "InputFiles" >> beam.Create(list(enumerate(files)))
        | "ReshuffleFiles" >> beam.Reshuffle()
        | "ReadEvents" >> beam.ParDo(ReadEventsFn(
            args.source, count_rows=True, file_splits=getattr(args, "file_splits", {}),
            require_split=args.split == "given" or (args.kind == "search" and args.search_split == "given"))).with_outputs(DEAD, COUNTS, main="events")
    )
    events, dead = read.events, read[DEAD]
    stats.append(read[COUNTS])  # rows_read == events_parsed + rows_dead_lettered + rows_blank + rows_header
    item_words = None  # (item, text words) of --source=hem_qrels: its training queries or training reviews
    if args.reviews:  # --source=hem_qrels: item text from the training reviews; their bad lines are dead letters
        reviews = hem_qrels.TrainingReviewText(args.reviews, hem_qrels.review_ids_file(args.input))
        item_words = p | "TrainingReviewText" >> reviews
        stats.append(reviews.counts | "ReviewCounts" >> beam.CombinePerKey(sum))
        dead = (dead, reviews.dead) | "WithReviewDead" >> beam.Flatten()
    if meta_files:
        meta = (
            p
            | "MetaFiles" >> beam.Create(meta_files)
            | "ReadMeta" >> beam.ParDo(ReadEventsFn(args.source, metadata=True, count_rows=True)).with_outputs(DEAD, COUNTS, main="meta")
        )
        stats.append(meta[COUNTS])  # metadata_rows_read, ...
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
    if args.source == hem_qrels.SOURCE_NAME:  # one qrels line per (user, query, item): one event per purchase
        events = events | "QrelsPurchases" >> hem_qrels.PurchasesFromQrels()
        stats.append(counted(events, "qrels_purchases"))
        if item_words is None:
            item_words = events | "TrainingQueryText" >> hem_qrels.TrainingQueryText()

    eval_events = None
    if args.split == "given" and args.filter_eval != "true":  # the filters below see the training part only
        parts = events | "GivenSplit" >> beam.Partition(lambda e, n: 0 if e.get("split", "train") == "train" else 1, 2)
        events, eval_events = parts[0], parts[1]
    if args.min_rating is not None:
        min_rating = args.min_rating
        events = events | "MinRating" >> beam.Filter(lambda e: e.get("rating") is None or e["rating"] >= min_rating)
        stats.append(counted(events, "after_rating_filter"))
    if args.event_types:
        keep_types = {t.strip() for t in args.event_types.split(",") if t.strip()}
        events = events | "EventTypes" >> beam.Filter(lambda e: e.get("event_type") in keep_types)
        stats.append(counted(events, "after_event_type_filter"))
    if args.dedup == "exact":
        dedup_checks = []
        events = events | "Dedup" >> cleaning.DropDuplicates(checks=dedup_checks)
        stats.extend(dedup_checks)
        stats.append(counted(events, "after_dedup"))
    if args.filter_order == "sessions_first" and args.min_session_length > 1:
        events = events | "SessionsFirst" >> SessionsFirst(opts, stats)
    if args.min_user_interactions > 1 or args.min_item_interactions > 1:
        checks = []  # kept events == sum of the kept keys' counts, per filter; verified in run()
        events, rounds = events | "KCore" >> cleaning.KCore(
            args.min_user_interactions, args.min_item_interactions, args.kcore_iterations, checks=checks
        )
        stats.extend(checks)
        for i, r in enumerate(rounds):
            stats.append(counted(r, f"after_kcore_round_{i + 1}"))

    if eval_events is not None:
        events = (events, eval_events) | "WithEvalEvents" >> beam.Flatten()

    if args.kind == "search" and args.queries_from == "categories":
        if not meta_files:
            raise JobError("--queries_from=categories needs --metadata (the item category paths)")
        events = attach_category_queries(events, meta.meta)
        stats.append(counted(meta.meta | "WithCategoryQueries" >> beam.Filter(examples.category_queries), "items_with_category_queries"))
    if args.kind == "search":  # a search dataset needs queries: run() names why there are none
        stats.append(counted(events | "WithQuery" >> beam.Filter(examples.event_queries), "events_with_query"))

    grouped = None
    max_ts = None
    if args.split == "days":  # the latest date of a session that passes every filter (SR-GNN's maxdate)
        grouped = events | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e)) | "GroupByUser" >> beam.GroupByKey()
        max_ts = beam.pvalue.AsSingleton(
            grouped
            | "KeptSessionDays" >> beam.FlatMap(lambda kv, o=opts: timelines.kept_session_days(kv[1], o))
            | "LastDay" >> beam.CombineGlobally(lambda days: max(days, default=0))
        )
    elif args.split == "time":
        max_ts = beam.pvalue.AsSingleton(
            events | "Times" >> beam.Map(lambda e: e["timestamp"]) | "MaxTime" >> beam.CombineGlobally(max)
        )
    elif args.split == "given" and opts.carve_valid_days > 0:  # the latest training event
        max_ts = beam.pvalue.AsSingleton(
            events
            | "TrainTimes" >> beam.FlatMap(lambda e: [e["timestamp"]] if e.get("split", "train") == "train" else [])
            | "MaxTrainTime" >> beam.CombineGlobally(lambda ts: max(ts, default=0))
        )
    test_queries = None
    if args.kind == "search" and args.search_split == "given":  # the given test queries; none is drawn
        given_test = events | "GivenTestQueries" >> GivenTestQueries()
        stats.append(given_test | "GivenTestQueryCounts" >> beam.CombinePerKey(sum))
    if args.kind == "search" and args.test_query_fraction > 0:
        held_out = events | "HeldOutQueries" >> HeldOutQueries(args.test_query_fraction, args.split_seed)
        stats.append(counted(held_out, "test_only_queries"))
        test_queries = beam.pvalue.AsSingleton(held_out | "QuerySet" >> beam.combiners.ToSet())
    stats.append(counted(events, f"{cleaning.CHECK_PREFIX}group_by_user:expected"))  # == the events _PerUserFn gets
    if grouped is None:
        grouped = events | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e)) | "GroupByUser" >> beam.GroupByKey()
    timeline = grouped | "PerUser" >> beam.ParDo(
        _PerUserFn(args.kind, opts, ex_opts), max_timestamp=max_ts if max_ts is not None else 0, test_queries=test_queries
    ).with_outputs("counts", main="records")
    records = timeline.records
    stats.append(timeline.counts | "TimelineCounts" >> beam.CombinePerKey(sum))

    # vocabularies, counted on training records (the support used for popularity sampling)
    drop_unseen = args.kind == "sequential" and args.split in timelines.SESSION_SPLITS
    # --split=given / days: the item vocabulary is the training INPUT / part (also the sessions carved off for
    # validation, with count 0), so carving never turns a test item into an "unseen" one; valid / test input items
    # are not counted
    given = args.kind == "sequential" and args.split in ("given", "days")
    keep_zero = not drop_unseen or given
    vocabs = {
        "items": records | "ItemOccurrences" >> beam.FlatMap(
            lambda sr, k=args.kind, g=given: given_item_occurrences(*sr) if g else item_occurrences(k, *sr)),
        "users": records
        | "UserOccurrences" >> beam.Map(lambda sr, k=args.kind: (sr[1]["user_id"], user_weight(k, *sr))),
    }
    given_search = args.kind == "search" and args.search_split == "given"
    if args.kind == "search":
        # --search_split=given: validation queries are training queries too (their words count); words only in
        # test queries get no id (OOV), so test queries say nothing the training data does not
        training_splits = ("train", "valid") if given_search else ("train",)
        word_sources = [records | "WordOccurrences" >> beam.FlatMap(
            lambda sr, t=training_splits: [(w, int(sr[0] in t)) for w in sr[1]["query_words"]])]
        if meta_files:
            word_sources.append(meta.meta | "ItemTextWords" >> beam.FlatMap(lambda m: [(w, 1) for w in examples.item_text_words(m)]))
        if item_words is not None:
            word_sources.append(item_words | "HemItemTextWords" >> beam.FlatMap(lambda iw: [(w, 1) for w in iw[1]]))
        vocabs["words"] = word_sources | "AllWords" >> beam.Flatten()
        vocabs["queries"] = records | "QueryOccurrences" >> beam.Map(lambda sr: (sr[1]["query"], int(sr[0] == "train")))
    index = {}
    for name, occurrences in vocabs.items():
        vocab = (
            occurrences
            | f"{name}Counts" >> beam.CombinePerKey(sum)
            | f"{name}Vocab" >> beam.CombineGlobally(VocabCombineFn(
                keep_zero=(keep_zero or name != "items") and not (given_search and name == "words")))
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
    stats.append(counted(records, f"{cleaning.CHECK_PREFIX}encode:expected"))  # == the records EncodeFn gets
    encoded = records | "Encode" >> beam.ParDo(
        EncodeFn(args.kind, drop_unseen, min_train_items=1 if args.split == "fo" else 2),
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
    if given_search:  # how many distinct test query words have no id (they occur in no training text)
        stats.append(
            records
            | "TestQueryWords" >> beam.FlatMap(lambda sr: sr[1]["query_words"] if sr[0] == "test" else [])
            | "DistinctTestQueryWords" >> beam.Distinct()
            | "TestQueryWordOov" >> beam.FlatMap(
                lambda w, words: [("test_query_words", 1), ("test_query_words_oov", int(w not in words))],
                words=index["words"])
            | "TestQueryWordCounts" >> beam.CombinePerKey(sum)
        )
    item_text = None
    if args.kind == "search" and item_words is not None:
        item_text = item_words | "EncodeItemText" >> beam.FlatMap(
            encode_item_words, item_vocab=index["items"], word_vocab=index["words"]
        )
    elif args.kind == "search" and meta_files:
        item_text = meta.meta | "EncodeItemText" >> beam.FlatMap(
            encode_item_text, item_vocab=index["items"], word_vocab=index["words"]
        )
    if item_text is not None:
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


class SessionsFirst(beam.PTransform):
    """``--filter_order=sessions_first``: drop the sessions shorter than ``--min_session_length`` before the
    k-core counts (per user: :func:`timelines.long_sessions`). ``stats`` gets the hand-over check (events
    sent == events the per-user grouping delivered), ``sessions_removed_before_kcore`` and ``after_sessions_first``."""

    def __init__(self, opts: timelines.TimelineOptions, stats: list):
        super().__init__()
        self.opts, self.stats = opts, stats

    def expand(self, events):
        opts = self.opts

        def keep(kv):
            evs = list(kv[1])
            yield beam.pvalue.TaggedOutput("counts", (f"{cleaning.CHECK_PREFIX}sessions_first:kept", len(evs)))
            kept, removed = timelines.long_sessions(evs, opts)
            if removed:
                yield beam.pvalue.TaggedOutput("counts", ("sessions_removed_before_kcore", removed))
            yield from kept

        self.stats.append(counted(events, f"{cleaning.CHECK_PREFIX}sessions_first:expected"))
        out = (
            events
            | "KeyByUser" >> beam.Map(lambda e: (e["user_id"], e))
            | "GroupByUser" >> beam.GroupByKey()
            | "LongSessions" >> beam.FlatMap(keep).with_outputs("counts", main="events")
        )
        self.stats.append(out.counts | "Counts" >> beam.CombinePerKey(sum))
        self.stats.append(counted(out.events, "after_sessions_first"))
        return out.events


def given_item_occurrences(split: str, rec: dict) -> list[tuple[str, int]]:
    """``--split=given``: (item, training count) of the training input's records only: training records count,
    records carved off for validation add their items with count 0; validation / test inputs add nothing."""
    if split == "train":
        return [(t, 1) for t in rec["item_ids"]]
    return [(t, 0) for t in rec["item_ids"]] if rec.get("carved") else []


def item_occurrences(kind: str, split: str, rec: dict) -> list[tuple[str, int]]:
    """(item token, training count increment) for every item a record mentions."""
    train = int(split == "train")
    if kind == "sequential":
        out = [(t, train) for t in rec["item_ids"]] + [(t, 0) for t in rec.get("target_items", ())]
        return out + ([(rec["target_item"], 0)] if rec["target_item"] is not None else [])
    if kind == "basket":
        return [(t, train) for b in rec["baskets"] for t in b] + [(t, 0) for t in rec["target_items"]]
    return [(rec["item_id"], train)] + [(t, 0) for t in rec["history_item_ids"] + rec["target_items"]]


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


class HeldOutQueries(beam.PTransform):
    """Events -> the distinct queries held out for evaluation (``--test_query_fraction``), as the HEM split does:
    a seeded share of all distinct queries, minus one query given back to every product whose queries were all drawn.
    Works on (item, query) pairs and per-item groups only; no step holds more than one item's queries."""

    def __init__(self, fraction: float, seed: int):
        super().__init__()
        self.fraction, self.seed = fraction, seed

    def expand(self, events):
        fraction, seed = self.fraction, self.seed
        pairs = (
            events
            | "ItemQueryPairs" >> beam.FlatMap(lambda e: [(e["item_id"], q) for q in examples.event_queries(e)])
            | "DistinctPairs" >> beam.Distinct()
        )
        released = (
            pairs
            | "QueriesPerItem" >> beam.GroupByKey()
            | "Release" >> beam.FlatMap(lambda kv: [q] if (q := examples.released_query(seed, kv[0], set(kv[1]), fraction)) else [])
            | "ReleasedKeyed" >> beam.Map(lambda q: (q, "released"))
        )
        drawn = (
            pairs
            | "Queries" >> beam.Values()
            | "DistinctQueries" >> beam.Distinct()
            | "Drawn" >> beam.Filter(lambda q: examples.query_uniform(seed, q) < fraction)
            | "DrawnKeyed" >> beam.Map(lambda q: (q, "drawn"))
        )
        return (
            (drawn, released)
            | "BothKinds" >> beam.Flatten()
            | "ByQuery" >> beam.GroupByKey()
            | "NotReleased" >> beam.FlatMap(lambda kv: [kv[0]] if "released" not in set(kv[1]) else [])
        )


def encode_item_text(meta: dict, item_vocab: dict, word_vocab: dict):
    """An item metadata record -> its ``item_text`` example (:func:`examples.item_text_words`)."""
    yield from encode_item_words((meta["item_id"], examples.item_text_words(meta)), item_vocab, word_vocab)


def encode_item_words(item_words: tuple[str, list[str]], item_vocab: dict, word_vocab: dict):
    """``(item token, text words)`` -> its ``item_text`` example; nothing for an item not in the vocabulary."""
    from tfpps.spec import schema

    item = item_vocab.get(item_words[0])
    if item is None:
        return
    words = [word_vocab.get(w, schema.OOV_ID) for w in item_words[1]]
    yield schema.encode_example(schema.ITEM_TEXT, {"item_id": item, "word_ids": words})


class GivenTestQueries(beam.PTransform):
    """``--search_split=given``: events -> counts ``test_only_queries`` (the distinct queries of test events that
    no training event has: the held-out queries, exactly those of the given test part) and
    ``test_queries_seen_in_training`` (test queries that training events have too; 0 in the HEM benchmark)."""

    def expand(self, events):
        def kind(kv):
            splits = set(kv[1])
            if "test" in splits:
                yield ("test_queries_seen_in_training" if "train" in splits else "test_only_queries"), 1

        return (
            events
            | "QuerySplits" >> beam.FlatMap(lambda e: [(q, e.get("split") or "train") for q in examples.event_queries(e)])
            | "DistinctQuerySplits" >> beam.Distinct()
            | "SplitsByQuery" >> beam.GroupByKey()
            | "QueryKind" >> beam.FlatMap(kind)
        )


class _PerUserFn(beam.DoFn):
    """One user's events -> (split, record) pairs of the job's example kind, plus counters."""

    def __init__(self, kind: str, opts: timelines.TimelineOptions, ex_opts: examples.ExampleOptions):
        self.kind, self.opts, self.ex_opts = kind, opts, ex_opts

    def process(self, kv, max_timestamp=0, test_queries=None):
        user, evs = kv
        evs = list(evs)
        yield beam.pvalue.TaggedOutput("counts", (f"{cleaning.CHECK_PREFIX}group_by_user:kept", len(evs)))
        if self.kind == "sequential":
            out = timelines.build_user_records(user, evs, self.opts, max_timestamp or 0)
            by_split, counters = out.by_split(), out.counters
        elif self.kind == "basket":
            by_split, counters = examples.build_basket_records(user, evs, self.ex_opts)
        else:
            by_split, counters = examples.build_search_records(user, evs, self.ex_opts, test_queries)
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
    _write_text(f"{tmp_out}/{schema.STATS_FILE}", json.dumps(full, indent=2) + "\n")
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
    _write_text(f"{tmp_out}/{ownership.MARKER}", ownership.marker_text(ownership.DATASET))  # tfpps made it
    _write_text(f"{tmp_out}/{schema.DATASET_FILE}", json.dumps(meta, indent=2) + "\n")
    return full


def is_local(path: str) -> bool:
    return "://" not in path


# Scratch directories beside the output: ``.<name>.tmp-<host>-<pid>-<hex>`` (the job writes there) and
# ``.<name>.old-<host>-<pid>-<hex>`` (a replaced output, during the swap). Both are hidden siblings, so
# ``<output>`` itself is only ever absent or complete.
PUBLISHING_MARKER = "_PUBLISHING"  # object stores: present in <output> while its files are being moved in


def scratch_path(out: str, kind: str) -> str:
    """A fresh hidden sibling of ``out`` (``kind`` = ``tmp`` or ``old``) naming this host and process."""
    parent, name = posixpath.split(out) if not is_local(out) else os.path.split(out)
    return f"{parent}/.{name}.{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_scratch(out: str) -> list[str]:
    """Delete local scratch dirs of ``out`` left by killed runs on this host (their process is gone);
    returns what was removed. Scratch dirs of live runs, and of other hosts, are left alone."""
    parent, name = os.path.split(out)
    host, removed = socket.gethostname(), []
    for kind in ("tmp", "old"):
        prefix = f".{name}.{kind}-"
        for path in sorted(glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + "*"))):
            parts = os.path.basename(path)[len(prefix):].rsplit("-", 2)
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _files_under(path: str) -> list[str]:
    """Every file below ``path`` on any Beam filesystem (object stores have no directories to list)."""
    try:
        return sorted(m.path for m in FileSystems.match([f"{path}/**"])[0].metadata_list)
    except Exception:  # BeamIOError when nothing matches on some filesystems
        return []


def output_exists(out: str) -> bool:
    if is_local(out):
        return os.path.exists(out)
    return FileSystems.exists(out) or bool(_files_under(out))


def is_dead_publish(out: str) -> bool:
    """An object-store output whose publish was killed: the marker is there, ``dataset.json`` is not."""
    from tfpps.spec import schema

    return (not is_local(out) and FileSystems.exists(f"{out}/{PUBLISHING_MARKER}")
            and not FileSystems.exists(f"{out}/{schema.DATASET_FILE}"))


def _delete_remote_tree(path: str) -> None:
    """Delete every file under ``path``; ``dataset.json`` first, so no reader takes a half-deleted dataset
    for a complete one."""
    from tfpps.spec import schema

    files = _files_under(path)
    first = [f for f in files if f == f"{path}/{schema.DATASET_FILE}"]
    for group in (first, [f for f in files if f not in first]):
        if group:
            FileSystems.delete(group)
    if FileSystems.exists(path):  # filesystems with directories (HDFS)
        FileSystems.delete([path])


def check_replaceable(out: str, flag: str = "--output") -> None:
    """Raise :class:`tfpps.ownership.NotOurs` (one line) unless ``out`` is absent, empty or a dataset tfpps
    created, i.e. unless replacing it loses nothing of anyone's. Locally :func:`tfpps.ownership.check_replaceable`;
    on object stores ``out`` must hold ``dataset.json``, the ``.tfpps`` marker or a killed publish's
    ``_PUBLISHING`` marker."""
    from tfpps.spec import schema

    if is_local(out):
        ownership.check_replaceable(out, ownership.DATASET, flag)
        return
    if not output_exists(out):
        return
    if any(FileSystems.exists(f"{out}/{name}") for name in (schema.DATASET_FILE, ownership.MARKER, PUBLISHING_MARKER)):
        return
    raise ownership.NotOurs(
        f"{flag}={out}: exists and is not a tfpps dataset (no {schema.DATASET_FILE}, {ownership.MARKER} or "
        f"{PUBLISHING_MARKER}); choose an empty or new directory")


def publish(tmp_out: str, out: str) -> None:
    """Move the finished temp output to its final place.

    Locally the output appears in one atomic directory rename; an existing
    output (``--overwrite``) is first renamed aside, so ``out`` is at every
    moment either absent, the old dataset or the new one.

    Object stores (GCS, S3) have no directories and no atomic rename:
    ``FileSystems.rename`` copies and deletes file by file. There the old
    output is deleted (``dataset.json`` first), a ``_PUBLISHING`` marker is
    written, the files are moved with ``dataset.json`` last, and the marker is
    removed. A reader that finds ``dataset.json`` sees a complete dataset of
    one run; a publish killed half-way leaves no ``dataset.json`` (so the
    reader refuses the directory) and the marker, and the next run replaces
    it even without ``--overwrite``.

    Only what tfpps created is replaced (:func:`check_replaceable`, checked again here).
    """
    from tfpps.spec import schema

    check_replaceable(out)
    if is_local(out):
        old = None
        if os.path.lexists(out):
            old = scratch_path(out, "old")
            os.replace(out, old)
        try:
            os.replace(tmp_out, out)
        except OSError:
            if old is not None:
                os.replace(old, out)  # put the old dataset back
            raise
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.remove(old)
        return
    if output_exists(out):
        _delete_remote_tree(out)
    _write_text(f"{out}/{PUBLISHING_MARKER}", tmp_out + "\n")
    srcs = _files_under(tmp_out)
    marker = [p for p in srcs if p == f"{tmp_out}/{schema.DATASET_FILE}"]
    rest = [p for p in srcs if p not in marker]
    for group in (rest, marker):
        if group:
            FileSystems.rename(group, [out + p[len(tmp_out):] for p in group])
    FileSystems.delete([f"{out}/{PUBLISHING_MARKER}"])
    _delete_remote_tree(tmp_out)


# search counters worth a summary line: the HEM benchmark's purchases, the given split's held-out queries and
# their words without an id, the items with text
_SEARCH_SUMMARY_KEYS = ("qrels_purchases", "valid_purchases_carved", "test_only_queries", "test_queries_seen_in_training",
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


# Beam's loggers and the levels they get when quiet: everything below ERROR, and the ERROR with which
# a failing step logs the exception it re-raises (the job reports that exception itself, in one line).
_QUIET_LEVELS = {"apache_beam": logging.ERROR, "apache_beam.runners.common": logging.CRITICAL}
_QUIETED: list[str] = []  # the loggers quiet_beam_logging set (so --verbose may undo it)


def quiet_beam_logging(verbose: bool) -> None:
    """Hide Apache Beam's own log messages and Python warnings, unless ``verbose`` or the user chose log
    levels: a root logger set below WARNING, or a level already set on a Beam logger (both win). What is
    hidden is harmless on every run (``apitools not found``, ``python-snappy``, ``No semi_persistent_directory``,
    ``Discarding unparseable args`` of Beam's own workers, the traceback of an error the job then reports
    in one line, ...); the job's own errors, its one warning (``--direct_running_mode=multi_processing``)
    and the summary are printed, not logged, and always show. Worker processes get
    ``--default_sdk_harness_log_level=ERROR`` in :func:`run`."""
    root = logging.getLogger()
    user_set = logging.getLogger("apache_beam").level != logging.NOTSET and "apache_beam" not in _QUIETED
    if verbose or user_set or root.level < logging.WARNING:
        root.removeFilter(_beam_noise)
        while _QUIETED:
            logging.getLogger(_QUIETED.pop()).setLevel(logging.NOTSET)
        warnings.filterwarnings("default", module="apache_beam")
        return
    for name, level in _QUIET_LEVELS.items():
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(level)
            _QUIETED.append(name)
    root.addFilter(_beam_noise)  # messages Beam logs on the root logger itself
    warnings.filterwarnings("ignore", module="apache_beam")


# A write the disk refused: the job stops with one line (no traceback) and publishes nothing.
WRITE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG", "EIO")
                         if hasattr(errno, name))
_ERRNO_TEXT_RE = re.compile(r"\[Errno (\d+)\] ([^:\n'\"\]]+)")


def write_error(exc: BaseException) -> OSError | None:
    """The OSError a refused write (disk full, quota, read-only, permission) raised somewhere in ``exc``: itself,
    its causes and contexts, a BeamIOError's per-file exceptions, or (from a runner that only passes a worker's
    traceback on as text) the ``[Errno N] message`` in its text; None when it is no such error."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
        details = getattr(e, "exception_details", None)  # BeamIOError: {path: exception}
        if isinstance(details, dict):
            todo.extend(v for v in details.values() if isinstance(v, BaseException))
        todo.extend((e.__cause__, e.__context__))
    for number, message in _ERRNO_TEXT_RE.findall(str(exc)):
        if int(number) in WRITE_ERRNOS:
            return OSError(int(number), message.strip())
    return None


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


def input_files(args: argparse.Namespace) -> tuple[list[str], dict[int, str]]:
    """The input files in reading order and, for ``--split=given`` with separate inputs, the split of each
    (file index -> train / valid / test; empty when the events carry a ``split`` column)."""
    def expand(flag: str) -> list[str]:
        return expand_inputs([s for s in getattr(args, flag).split(",") if s.strip()])

    if args.source == hem_qrels.SOURCE_NAME:  # --input is the benchmark directory
        try:
            return hem_qrels.benchmark_files(args.input), {}
        except SourceError as exc:
            raise JobError(str(exc)) from None

    if args.split != "given" or args.input:
        return expand("input"), {}
    files, splits = [], {}
    for split, flag in (("train", "train_input"), ("valid", "valid_input"), ("test", "test_input")):
        for path in expand(flag) if getattr(args, flag) else []:
            if path in files:
                raise JobError(f"--{flag}: {path} is also an input of --{splits[files.index(path)]}_input; "
                               "a file belongs to one split")
            splits[len(files)] = split
            files.append(path)
    return files, splits


def resolve_valid_days(args: argparse.Namespace) -> None:
    """Set ``args.valid_days`` (its default depends on the split) and ``args.carve_valid_days`` (given split,
    no validation input: how many of the last training days become validation). ``--split=time`` without
    ``--valid_days`` has no validation split, as before: one note line says so."""
    # a 'split' column (--input) holds its own validation rows; --valid_days then carves more from training
    given_valid = args.split == "given" and (bool(args.valid_input) or (bool(args.input) and args.valid_days is None))
    args.carve_valid_days = 0.0
    if args.split == "given" and not given_valid:
        args.valid_days = 1.0 if args.valid_days is None else args.valid_days
        args.carve_valid_days = args.valid_days
        if args.valid_days == 0:
            print("note: no --valid_input and --valid_days=0: the validation split is empty and early stopping is off",
                  file=sys.stderr)
    elif args.split in ("time", "days") and args.valid_days is None:
        args.valid_days = 0.0
        print(f"note: --split={args.split} without --valid_days: the validation split is empty and early stopping is "
              "off (pass --valid_days=N to hold out the N days before the test days)", file=sys.stderr)
    elif args.valid_days is None:
        args.valid_days = 0.0


def run(argv: list[str]) -> dict:
    """Run the job; returns the stats dict. Raises JobError / SourceError / ownership.NotOurs with one-line
    messages; nothing is published unless it returns."""
    args, beam_args = parse_args(argv)
    quiet_beam_logging(args.verbose)
    if not args.verbose and not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = beam_args + ["--default_sdk_harness_log_level=ERROR"]  # worker processes: quiet too
    get_source(args.source)
    files, args.file_splits = input_files(args)
    check_files(args.source, files)
    if args.reviews:  # before the pipeline starts: one line when the dump or the training review ids are absent
        args.reviews = expand_inputs([args.reviews])[0]
        hem_qrels.review_ids_file(args.input)
    resolve_valid_days(args)
    meta_files = expand_inputs([s for s in args.metadata.split(",") if s.strip()]) if args.metadata else []
    out = args.output.rstrip("/")
    if is_local(out):
        out = os.path.abspath(out)
        remove_stale_scratch(out)  # what killed runs left beside the output
    if output_exists(out):
        check_replaceable(out)  # never replace what tfpps did not create, --overwrite or not
        if not args.overwrite and not is_dead_publish(out):
            raise JobError(f"--output={args.output}: already exists (pass --overwrite to replace it)")
    tmp_out = scratch_path(out, "tmp")
    if is_local(tmp_out):
        try:
            os.makedirs(tmp_out)
        except OSError as exc:
            raise JobError(f"writing {out}: cannot create a directory in {os.path.dirname(out)}: "
                           f"{exc.strerror or exc}; nothing published") from None
    start = time.time()
    ok = False
    try:
        try:
            try:
                with beam.Pipeline(options=pipeline_options(beam_args)) as p:
                    build_pipeline(p, args, files, meta_files, tmp_out)
            except Exception as exc:  # a worker's SourceError that was raised after all: still one line
                if isinstance(exc, ValueError) and str(exc).startswith("Unexpected pipeline runner"):
                    raise JobError(f"--runner: {str(exc).split('. Valid values')[0].replace('Unexpected', 'unknown')}; give a runner Beam "
                                   "knows (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, PrismRunner) "
                                   "or the full path of a PipelineRunner class") from None
                source_error = source_error_from_runner(exc)
                if source_error is None:
                    raise
                raise source_error from None
            raw_stats = read_stats(tmp_out)
            raise_source_errors(raw_stats)  # a file a worker could not finish (e.g. a truncated .gz): one line
            failed = cleaning.failed_checks(raw_stats) or output_checks.verify_outputs(tmp_out, raw_stats)
            if failed:
                raise JobError(f"internal check failed, nothing written: {failed[0]} (the runner lost or duplicated data)")
            empty = empty_dataset_reason(raw_stats, args, files)
            if empty:
                raise JobError(empty)
            stats = finalize(tmp_out, args, raw_stats, time.time() - start, files)
            publish(tmp_out, out)
            ok = True
            if args.split == "given" and args.carve_valid_days > 0:
                print(f"note: no --valid_input; validation = the last {args.carve_valid_days} day(s) of the training "
                      f"input ({raw_stats.get('valid_sessions_carved', 0)} sessions)", file=sys.stderr)
            if args.split == "days":
                print(f"note: --split=days: {raw_stats.get('cut_day_sessions_dropped', 0)} sessions of the cut day "
                      f"dropped; validation = the {int(args.valid_days)} day(s) before it "
                      f"({raw_stats.get('valid_sessions_carved', 0)} sessions, items kept in the vocabulary)",
                      file=sys.stderr)
        except (JobError, SourceError, ownership.NotOurs):
            raise
        except Exception as exc:  # the disk refused a write (full, quota, read-only): one line, not a traceback
            refused = write_error(exc)
            if refused is None:
                raise
            raise JobError(f"writing {out}: {refused.strerror or refused}; nothing published") from None
    finally:
        if is_local(tmp_out):
            if os.path.exists(tmp_out):
                shutil.rmtree(tmp_out, ignore_errors=True)
        elif not ok:
            try:
                _delete_remote_tree(tmp_out)
            except Exception:  # never hide the job's own error
                pass
    return stats


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        stats = run(argv)
    except (JobError, SourceError, ownership.NotOurs) as exc:
        print(f"build_features: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(stats))
    print(f"wrote {build_parser().parse_known_args(argv)[0].output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
