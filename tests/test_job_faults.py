"""The Beam job's driver never loses a user's data and never ends in a traceback or a useless dataset
(issue 14): each fault is run through ``build_features.main(argv)`` (or the real command line, where what
matters is everything on stderr) and must end with exit status 2, ONE line on stderr naming the cause,
no output directory (or a user's files left byte for byte) and no scratch directory left behind.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest

from beam_jobs import build_features, output_checks, publish, quiet, summary
from beam_jobs.flags import parse_args
from tfpps.spec import ownership
from tfpps.spec import schema

REPO = Path(__file__).resolve().parents[1]
IN_MEMORY = ["--direct_running_mode=in_memory"]
HEADER = "user_id,item_id,timestamp,rating\n"
ROWS = ["u1,a,1000,5", "u1,b,1100,4", "u1,c,1200,3", "u1,d,1300,5",
        "u2,a,1500,5", "u2,b,1600,1", "u2,c,2000,4",
        "u3,a,500,5", "u3,b,600,5", "u3,c,700,5"]
USER_BYTES = b"my thesis, draft 7\n\x00\xff binary tail"


def write_csv(path: Path, rows=ROWS, header=HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def job(tmp_path: Path, *extra: str, log: Path | None = None, out: Path | None = None) -> list[str]:
    log = log or write_csv(tmp_path / "events.csv")
    out = out or tmp_path / "dataset"
    return ["--source=csv", f"--input={log}", f"--output={out}", "--num_shards=1", *IN_MEMORY, *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build_features: error: "), err
    return lines[0]


def nothing_left(out: Path) -> bool:
    """No output and no scratch sibling (``.<name>.tmp-*`` / ``.<name>.old-*``)."""
    return not os.path.lexists(out) and not list(out.parent.glob(f".{out.name}.*"))


def cli(argv: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    """The job as a user runs it (a fresh process: every line Beam logs would be on its stderr);
    ``prelude`` is Python run first (a simulated fault)."""
    code = f"import sys\n{prelude}\nfrom beam_jobs import build_features\nsys.exit(build_features.main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if "TF_CPP_MIN_LOG_LEVEL" not in k}  # as a user has it (conftest sets one)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------ 1. a user's directory
def _user_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.docx").write_bytes(USER_BYTES)
    (path / "photos").mkdir()
    (path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 cat")
    return path


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no_overwrite"])
def test_a_users_directory_is_never_replaced(tmp_path, capsys, overwrite):
    mine = _user_dir(tmp_path / "my folder")
    rc = build_features.main(job(tmp_path, *(["--overwrite"] if overwrite else []), out=mine))
    assert rc == 2
    assert one_error_line(capsys) == (
        f"build_features: error: --output={mine}: exists and is not a tfpps dataset (no dataset.json); "
        "choose an empty or new directory")
    assert sorted(p.name for p in mine.iterdir()) == ["photos", "thesis.docx"]
    assert (mine / "thesis.docx").read_bytes() == USER_BYTES and (mine / "photos" / "cat.jpg").read_bytes() == b"\xff\xd8 cat"
    assert not list(tmp_path.glob(".my folder.*"))


def test_a_users_file_is_never_replaced(tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_bytes(USER_BYTES)
    assert build_features.main(job(tmp_path, "--overwrite", out=mine)) == 2
    assert "exists and is a file, not a tfpps dataset directory" in one_error_line(capsys)
    assert mine.read_bytes() == USER_BYTES


def test_publish_itself_refuses_a_users_directory(tmp_path):
    """The last line of defence: publish() checks again (a folder that appeared while the job ran)."""
    mine, tmp = _user_dir(tmp_path / "mine"), tmp_path / ".mine.tmp-x"
    tmp.mkdir()
    (tmp / schema.DATASET_FILE).write_text("{}")
    with pytest.raises(ownership.NotOurs, match="exists and is not a tfpps dataset"):
        publish.publish(str(tmp), str(mine))
    assert (mine / "thesis.docx").read_bytes() == USER_BYTES and (tmp / schema.DATASET_FILE).exists()


def test_object_store_output_is_replaced_only_when_tfpps_made_it(monkeypatch):
    objects = {"fake://b/mine/report.pdf", "fake://b/ds/dataset.json", "fake://b/marked/.tfpps",
               "fake://b/dead/_PUBLISHING"}
    monkeypatch.setattr(publish, "output_exists", lambda out: any(o.startswith(out + "/") for o in objects))
    monkeypatch.setattr(publish.FileSystems, "exists", staticmethod(lambda path: path in objects))
    for ours in ("fake://b/ds", "fake://b/marked", "fake://b/dead", "fake://b/new"):
        publish.check_replaceable(ours)
    with pytest.raises(ownership.NotOurs, match=r"^--output=fake://b/mine: exists and is not a tfpps dataset "
                                                r"\(no dataset\.json, \.tfpps or _PUBLISHING\)"):
        publish.check_replaceable("fake://b/mine")
    deleted = []
    monkeypatch.setattr(publish, "_delete_remote_tree", deleted.append)
    with pytest.raises(ownership.NotOurs):
        publish.publish("fake://b/.mine.tmp-x", "fake://b/mine")
    assert deleted == []


def test_the_dataset_is_marked_and_the_run_is_quiet(tmp_path):
    """The real command line: a good run prints the summary and nothing at all on stderr (Beam's
    warnings are hidden by default); the dataset carries the ``.tfpps`` marker, which alone lets
    --overwrite replace it."""
    out = tmp_path / "dataset"
    proc = cli(job(tmp_path, out=out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no apitools / python-snappy / semi_persistent_directory warnings
    assert "tfpps dataset summary" in proc.stdout and f"wrote {out}" in proc.stdout
    assert ownership.marked_kind(out) == ownership.DATASET
    assert json.loads((out / ownership.MARKER).read_text()) == json.loads(ownership.marker_text(ownership.DATASET))
    assert output_checks.verify_outputs(str(out), {"train_records": 1, "valid_records": 3, "test_records": 3}) == []
    (out / schema.DATASET_FILE).unlink()  # the marker alone says tfpps made it
    publish.check_replaceable(str(out))
    assert not list(tmp_path.glob(".dataset.*"))


# ------------------------------------------------------------------------------------ 2. nothing to train on
def test_header_only_input_publishes_nothing(tmp_path, capsys):
    log = write_csv(tmp_path / "events.csv", [])
    out = tmp_path / "dataset"
    assert build_features.main(job(tmp_path, log=log, out=out)) == 2
    assert one_error_line(capsys) == ("build_features: error: no events: 0 rows parsed from 1 file(s) (1 rows read: "
                                      "1 header, 0 blank, 0 dead-lettered); nothing written")
    assert nothing_left(out)


def _args(*flags: str):
    return parse_args(["--source=csv", "--input=x", "--output=y", *flags])[0]


@pytest.mark.parametrize("flags, stats, expected", [
    ([], {"rows_read": 5, "rows_header": 1, "rows_dead_lettered": 4, "dead_letter_reason:bad_timestamp": 3,
          "dead_letter_reason:wrong_column_count": 1, "events_parsed": 0},
     "no events: 0 rows parsed from 2 file(s) (5 rows read: 1 header, 0 blank, 4 dead-lettered; "
     "top reasons: bad_timestamp 3, wrong_column_count 1); nothing written"),
    (["--min_rating=6"], {"events_parsed": 9, "after_rating_filter": 0, "after_dedup": 0},
     "no events left after --min_rating=6.0: 9 events parsed, 0 after it; nothing written"),
    (["--event_types=buy"], {"events_parsed": 9, "after_event_type_filter": 0, "after_dedup": 0},
     "no events left after --event_types=buy: 9 events parsed, 0 after it; nothing written"),
    (["--min_user_interactions=3", "--min_item_interactions=2"],
     {"events_parsed": 9, "after_dedup": 8, "after_kcore_round_1": 4, "after_kcore_round_2": 0},
     "no events left after k-core round 2 (--min_user_interactions=3 --min_item_interactions=2): "
     "4 events after kcore round 1, 0 after it; nothing written"),
    (["--kind=search", "--queries_from=categories", "--metadata=m"],
     {"events_parsed": 9, "after_dedup": 9, "check:group_by_user:expected": 9, "metadata_items": 4,
      "items_with_category_queries": 2, "events_with_query": 0, "users_in": 3, "short_users_removed": 3},
     "no queries: none of the 9 events is of an item with a category path in --metadata (2 items have one; "
     "are the item ids the same?); nothing written"),
    (["--min_session_length=3"], {"events_parsed": 9, "after_dedup": 9, "users_in": 3, "short_users_removed": 3},
     "no examples: all 3 users were removed as too short (each needs at least max(1, "
     "--min_user_interactions=0) events in sessions of --min_session_length=3 or more); nothing written"),
    ([], {"events_parsed": 3, "after_dedup": 3, "users_in": 3, "users": 3, "users_train_only": 3, "train_records_too_short": 3},
     "no examples: 3 users kept, but every record was dropped (train records too short 3, users train only 3); "
     "nothing written"),
    (["--kind=search"], {"events_parsed": 3, "events_with_query": 3, "users_in": 3, "users": 3, "test_records": 3},
     "no training examples: 3 users kept, but every record was dropped; nothing written"),
    ([], {"events_parsed": 3, "train_records": 1}, None),
    ([], {"events_parsed": 6, "train_records_too_short": 2, "valid_records": 2, "test_records": 2}, None),  # tiny, not empty
], ids=["all_dead_lettered", "min_rating", "event_types", "kcore", "search_categories", "short_users", "too_short",
        "search_no_train", "fine", "no_train_but_eval"])
def test_the_stage_that_emptied_the_data_is_named(flags, stats, expected):
    assert summary.empty_dataset_reason(stats, _args(*flags), ["a.csv", "b.csv"]) == expected


def test_a_filter_that_removes_every_event_is_named(tmp_path, capsys):
    """Events were parsed, then a filter removed them all (the k-core and the other stages: the unit test above)."""
    out = tmp_path / "dataset"
    assert build_features.main(job(tmp_path, "--min_rating=6", out=out)) == 2
    assert one_error_line(capsys) == (
        "build_features: error: no events left after --min_rating=6.0: 10 events parsed, 0 after it; nothing written")
    assert nothing_left(out)


def test_search_without_queries_names_the_reason(tmp_path, capsys):
    """Was: exit 0 and 'short users removed 3', then a crash in training."""
    out = tmp_path / "dataset"
    assert build_features.main(job(tmp_path, "--kind=search", out=out)) == 2
    line = one_error_line(capsys)
    assert line.startswith("build_features: error: no queries: none of the 10 events has a query "
                           "(the log's query column is missing or empty;"), line
    assert line.endswith("; nothing written")
    assert nothing_left(out)


# ------------------------------------------------------------------------------------ 3. refused writes
def test_disk_full_while_the_pipeline_writes_is_one_line(tmp_path):
    """The real command line, so stderr holds every line Beam logs: one line, not a 265-line traceback."""
    out = tmp_path / "dataset"
    full = ("import errno\nfrom apache_beam.io import localfilesystem\n"
            "_create = localfilesystem.LocalFileSystem.create\n"
            "def create(self, path, *a, **k):\n"
            "    if '/train/' in path:\n"
            "        raise OSError(errno.ENOSPC, 'No space left on device', path)\n"
            "    return _create(self, path, *a, **k)\n"
            "localfilesystem.LocalFileSystem.create = create\n")
    proc = cli(job(tmp_path, out=out), prelude=full)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "apitools not found" not in l]  # logged by the prelude's own Beam import
    assert lines == [f"build_features: error: writing {out}: No space left on device; nothing published"], proc.stderr
    assert nothing_left(out)


def test_read_only_disk_at_publish_keeps_the_old_dataset(tmp_path, capsys, monkeypatch):
    """The pipeline is a stand-in (the real one is covered above); the disk refuses the publishing rename."""
    out = tmp_path / "dataset"
    out.mkdir()
    (out / schema.DATASET_FILE).write_text('{"run": "old"}')
    monkeypatch.setattr("beam_jobs.cli.build_pipeline", lambda p, *a: p | beam.Create([]))
    monkeypatch.setattr("beam_jobs.cli.empty_dataset_reason", lambda *a: None)
    real_replace = os.replace

    def replace(src, dst):
        if ".dataset.tmp-" in str(src):
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert build_features.main(job(tmp_path, "--overwrite", out=out)) == 2
    assert one_error_line(capsys) == f"build_features: error: writing {out}: Read-only file system; nothing published"
    assert (out / schema.DATASET_FILE).read_text() == '{"run": "old"}' and not list(tmp_path.glob(".dataset.*"))


@pytest.mark.parametrize("cause", ["permission", "proc"])
def test_unwritable_output_parent_is_one_line(tmp_path, capsys, monkeypatch, cause):
    """Tests run as root, which chmod does not stop: the refusal is simulated, or the parent is in /proc."""
    if cause == "permission":
        out = tmp_path / "locked" / "dataset"
        real_makedirs = os.makedirs

        def makedirs(path, *a, **k):
            if "locked" in str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_makedirs(path, *a, **k)

        monkeypatch.setattr(os, "makedirs", makedirs)
        why = "Permission denied"
    else:
        out = Path("/proc/tfpps-no-such-dir/dataset")
        why = "No such file or directory"
    assert build_features.main(job(tmp_path, out=out)) == 2
    assert one_error_line(capsys) == (
        f"build_features: error: writing {out}: cannot create a directory in {out.parent}: {why}; nothing published")
    assert not os.path.lexists(out)


def test_write_error_is_found_inside_beams_wrappers():
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise disk_full
        except OSError:
            raise RuntimeError("step failed")  # noqa: B904 - Beam re-raises without a cause
    except RuntimeError as exc:
        assert publish.write_error(exc) is disk_full
    text = RuntimeError("OSError: [Errno 122] Disk quota exceeded: '/x/part' [while running 'Write']")
    assert publish.write_error(text).errno == errno.EDQUOT
    assert publish.write_error(text).strerror == "Disk quota exceeded"
    assert publish.write_error(ValueError("bad value")) is None
    assert publish.write_error(OSError(errno.ENOENT, "No such file")) is None  # not a refused write


# ------------------------------------------------------------------------------------ 4. unknown flags
@pytest.mark.parametrize("flags, expected", [
    (["--test_queries=q.txt"], "unknown flag --test_queries (not a job flag nor a Beam pipeline option; see --help)"),
    (["--test_queries", "q.txt"], "unknown flag --test_queries (not a job flag nor a Beam pipeline option; see --help)"),
    (["--num_shads=2"], "unknown flag --num_shads (not a job flag nor a Beam pipeline option; "
                        "did you mean --num_shards? see --help)"),
    (["--projct=p"], "unknown flag --projct (not a job flag nor a Beam pipeline option; did you mean --project? see --help)"),
    (["-q"], "unknown flag -q (flags are --name=value; see --help)"),
    (["stray"], "unexpected argument 'stray' (flags are --name=value; see --help)"),
], ids=["equals", "space", "close_job_flag", "close_beam_option", "single_dash", "stray_word"])
def test_unknown_flags_are_refused(tmp_path, capsys, flags, expected):
    out = tmp_path / "dataset"
    assert build_features.main(job(tmp_path, *flags, out=out)) == 2
    assert one_error_line(capsys) == f"build_features: error: {expected}"
    assert nothing_left(out)


@pytest.mark.parametrize("runner, expected", [
    ("NoSuchRunner", "--runner: unknown pipeline runner: NoSuchRunner; give a runner Beam knows"),
    ("DaskRunner", "--runner=DaskRunner: Beam's DaskRunner cannot run this job: it maps each transform to one Dask bag"),
    ("apache_beam.runners.dask.dask_runner.DaskRunner", "--runner=DaskRunner: Beam's DaskRunner cannot run this job"),
])
def test_a_runner_that_cannot_run_the_job_is_refused_in_one_line(tmp_path, capsys, runner, expected):
    out = tmp_path / "dataset"
    assert build_features.main(job(tmp_path, f"--runner={runner}", out=out)) == 2
    assert one_error_line(capsys).startswith(f"build_features: error: {expected}")
    assert nothing_left(out)


def test_beam_options_are_still_accepted():
    args, beam_args = parse_args([
        "--source=csv", "--input=x", "--output=y", "--runner", "DirectRunner", "--direct_num_workers=2",
        "--temp_location", "/tmp", "--save_main_session", "--experiments=a", "--verbose"])
    assert args.verbose and "--save_main_session" in beam_args and "--direct_num_workers=2" in beam_args


# ------------------------------------------------------------------------------------ 5. quiet by default
def test_beam_logs_are_quiet_by_default_and_verbose_shows_them():
    beam_log = logging.getLogger("apache_beam.io.tfrecordio")
    root_record = logging.LogRecord("root", logging.WARNING, "/x/apache_beam/io/gcp/y.py", 1, "apitools not found", (), None)
    try:
        quiet.quiet_beam_logging(verbose=False)
        assert not beam_log.isEnabledFor(logging.WARNING) and beam_log.isEnabledFor(logging.ERROR)
        assert not logging.getLogger().filter(root_record)
        quiet.quiet_beam_logging(verbose=True)
        assert beam_log.isEnabledFor(logging.WARNING) and logging.getLogger().filter(root_record)
    finally:
        quiet.quiet_beam_logging(verbose=False)
    ours = logging.LogRecord("tfpps", logging.WARNING, "/x/tfpps/train.py", 1, "ours", (), None)
    assert logging.getLogger().filter(ours)  # only Beam's own messages are hidden
