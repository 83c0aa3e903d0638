"""The job's flags: the parser, their checks (one-line :class:`JobError`), the unknown ones handed to Beam
(:func:`reject_unknown_flags`, :func:`pipeline_options`), and what the flags resolve to (input files,
validation days, the timeline / example options)."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs import examples, timelines
from beam_jobs.events import SourceError
from beam_jobs.reading import expand_inputs
from beam_jobs.sources import hem_qrels, known_sources


class JobError(ValueError):
    """Bad flags for the job; printed as one line."""


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
    p.add_argument("--valid_query_fraction", type=float, default=0.0, help="--search_split=given: share of the distinct training queries held out for validation only: --valid_fraction of the training purchases bought with one are the validation purchases (the rest train without it), so validation scores unseen queries as the HEM test does; every product keeps a training query")
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
    if args.valid_query_fraction and (args.kind != "search" or args.search_split != "given"):
        raise JobError("--valid_query_fraction applies to --kind=search --search_split=given (with "
                       "--search_split=time|random, --test_query_fraction already leaves validation unseen queries)")
    if args.valid_query_fraction and not 0 < args.valid_query_fraction < 1:
        raise JobError(f"--valid_query_fraction={args.valid_query_fraction}: must be in (0, 1)")
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
        example_options(args)
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


def options_from_args(cls, args: argparse.Namespace, **derived):
    """The options dataclass ``cls`` (:class:`~beam_jobs.timelines.TimelineOptions`,
    :class:`~beam_jobs.examples.ExampleOptions`) from the flags: each field a flag of the same name sets,
    the ``derived`` ones given here, the rest at their defaults."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**fields, **derived})


def timeline_options(args: argparse.Namespace) -> timelines.TimelineOptions:
    return options_from_args(timelines.TimelineOptions, args, session_gap_seconds=int(args.session_gap_minutes * 60),
                             filter_eval=args.filter_eval == "true")


def example_options(args: argparse.Namespace) -> examples.ExampleOptions:
    return options_from_args(examples.ExampleOptions, args)


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
