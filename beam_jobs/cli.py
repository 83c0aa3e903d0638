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
Without ``--runner`` it uses the DirectRunner (see :func:`beam_jobs.flags.pipeline_options`).
Beam's own log messages and warnings are hidden unless ``--verbose`` is given
(:func:`beam_jobs.quiet.quiet_beam_logging`); the job's errors and summary always print.

Stages (each counted in ``stats.json`` and the printed summary):
read (bad rows -> ``dead_letter/``), rating / event-type filters, exact
de-duplication, iterative k-core, per-user ordering + sessionization,
split (``--split=loo|last_session|time|fo|given``; search data: ``--search_split=time|random|given``,
``given`` keeping each event's own split, as ``--source=hem_qrels`` does with the official HEM
benchmark: :mod:`beam_jobs.sources.hem_qrels`), vocabularies (index 0 = PAD,
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
``.tfpps`` marker or ``dataset.json``; :mod:`tfpps.spec.ownership`), every dataset it
publishes carries the marker; a build that ends with no examples (no events
parsed, every event filtered away, a search dataset without queries) is
refused with the stage that emptied it (:func:`beam_jobs.summary.empty_dataset_reason`); a disk
that fills up or refuses writes ends the job with one line and nothing
published (:func:`beam_jobs.publish.write_error`).
"""
from __future__ import annotations

import os
import sys
import time

from beam_jobs.quiet import quiet_beam_logging  # first: hides what Beam logs while it is imported

import apache_beam as beam

from beam_jobs import cleaning, output_checks
from beam_jobs.events import SourceError
from beam_jobs.flags import JobError, build_parser, input_files, parse_args, pipeline_options, resolve_valid_days
from beam_jobs.graph import build_pipeline
from beam_jobs.publish import (
    check_replaceable, discard_scratch, is_dead_publish, is_local, output_exists, publish, remove_stale_scratch,
    scratch_path, write_error,
)
from beam_jobs.reading import check_files, expand_inputs, raise_source_errors, source_error_from_runner
from beam_jobs.sources import get_source, hem_qrels
from beam_jobs.summary import empty_dataset_reason, finalize, read_stats, summary_table
from tfpps.spec import ownership


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
        discard_scratch(tmp_out, published=ok)
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
