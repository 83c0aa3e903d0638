"""tfpps never deletes, replaces or writes into a directory it did not create (issue 14).

Each command that used to destroy a user's folder (the dataset builder publishing over ``--data_dir`` /
``--set data.dir``, ``tfpps.train --fresh``, ``tfpps.data.build --rebuild``) is run through its ``main(argv)``
against a folder holding a user's file: it must stop with exit status 2 and ONE line on stderr, and leave
the file byte for byte. What tfpps did create (a dataset with ``dataset.json`` / the ``.tfpps`` marker, a
run dir with the marker) it still replaces, and an empty directory is fine to build into.
"""
import json
from pathlib import Path

import pytest

import tfpps.config as config
from beam_jobs import cli, publish, summary
from beam_jobs.flags import JobError
from tfpps.spec import ownership
from tfpps.cli import build as data_build
from tfpps.data import datasets
from tfpps.spec import schema
from tfpps.cli.train import main as train_main

from serving_helpers import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
USER_BYTES = b"my thesis, draft 7\n\x00\xff binary tail"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Dataset config 'toy' (data.dir: tmp/managed) in a private configs dir; the Beam job is a stand-in
    that builds a tiny dataset and publishes it with the job's real ``publish`` (which replaces an existing
    output with ``--overwrite`` and refuses it without)."""
    configs = tmp_path / "configs"
    (configs / "datasets").mkdir(parents=True)
    (configs / "models").symlink_to(REPO / "configs" / "models")
    (configs / "datasets" / "toy.yaml").write_text(
        f"data:\n  dir: {tmp_path / 'managed'}\nbuild:\n  flags:\n    source: csv\n    input: x.csv\n")
    monkeypatch.setattr(config, "CONFIG_DIR", configs)
    calls = []

    def fake_run(argv):
        out = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("--output=")))
        calls.append(argv)
        if out.exists() and "--overwrite" not in argv:
            raise JobError(f"--output={out}: already exists (pass --overwrite to replace it)")
        tmp = out.parent / f".{out.name}.building"
        tmp.mkdir()
        write_tiny_dataset(tmp)
        ownership.mark(tmp, ownership.DATASET)
        publish.publish(str(tmp), str(out))
        return {}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(summary, "summary_table", lambda stats: "")
    return tmp_path, calls


def _user_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.docx").write_bytes(USER_BYTES)
    (path / "photos").mkdir(exist_ok=True)
    (path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 cat")
    return path


def _untouched(path: Path) -> bool:
    return (path / "thesis.docx").read_bytes() == USER_BYTES and (path / "photos" / "cat.jpg").read_bytes() == b"\xff\xd8 cat"


def _one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _write_config(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "configs" / "datasets" / "toy.yaml").write_text(
        f"data:\n  dir: {data_dir}\nbuild:\n  flags:\n    source: csv\n    input: x.csv\n")


@pytest.mark.parametrize("command", ["train --set data.dir", "train --data_dir", "train --fresh --run_dir",
                                     "data.build --rebuild", "data.build"])
def test_a_users_directory_is_never_deleted(command, toy, tmp_path, capsys):
    tmp, calls = toy
    mine = _user_dir(tmp / "my folder")
    run_dir = tmp / "run"
    if command == "train --set data.dir":
        rc = train_main(["--model=pop", "--dataset=toy", "--set", f"data.dir={mine}", f"--run_dir={run_dir}"])
        expected = f"--set data.dir={mine}: exists and is not a tfpps dataset (no dataset.json); choose an empty or new directory"
    elif command == "train --data_dir":
        rc = train_main(["--model=pop", "--dataset=toy", f"--data_dir={mine}", f"--run_dir={run_dir}"])
        expected = f"--data_dir={mine}: exists and is not a tfpps dataset (no dataset.json); choose an empty or new directory"
    elif command == "train --fresh --run_dir":
        data = write_tiny_dataset(_mkdir(tmp / "data"))
        rc = train_main(["--model=pop", "--dataset=toy", f"--data_dir={data}", f"--run_dir={mine}", "--fresh"])
        expected = f"--run_dir={mine}: exists and is not a tfpps run (no .tfpps marker); choose an empty or new directory"
    else:
        _write_config(tmp, mine)
        rc = data_build.main(["--dataset=toy"] + (["--rebuild"] if "rebuild" in command else []))
        expected = f"data.dir={mine}: exists and is not a tfpps dataset (no dataset.json); choose an empty or new directory"
    prog = "tfpps.train" if command.startswith("train") else "tfpps.data.build"
    line = _one_error_line(capsys, prog)
    assert rc == 2
    assert line == f"{prog}: error: {expected}"
    assert _untouched(mine) and sorted(p.name for p in mine.iterdir()) == ["photos", "thesis.docx"]
    assert calls == [] and not run_dir.exists()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_train_does_not_write_into_a_users_run_dir(tmp_path, capsys):
    """Without --fresh too: a non-empty folder that is not a tfpps run is not used as a run dir."""
    data = write_tiny_dataset(_mkdir(tmp_path / "data"))
    mine = _user_dir(tmp_path / "mine")
    assert train_main(["--model=pop", f"--data_dir={data}", "--set", f"train.run_dir={mine}"]) == 2
    assert _one_error_line(capsys, "tfpps.train") == (
        f"tfpps.train: error: --set train.run_dir={mine}: exists and is not a tfpps run (no .tfpps marker); "
        "choose an empty or new directory")
    assert sorted(p.name for p in mine.iterdir()) == ["photos", "thesis.docx"] and _untouched(mine)


def test_empty_dir_is_built_into_and_fresh_replaces_only_tfpps_runs(toy, tmp_path, capsys):
    tmp, calls = toy
    empty = _mkdir(tmp / "empty")
    run_dir = tmp / "run"
    argv = ["--model=pop", "--dataset=toy", f"--data_dir={empty}", f"--run_dir={run_dir}", "--verbose=0"]
    assert train_main(argv) == 0
    assert len(calls) == 1 and "--overwrite" not in calls[0]  # nothing of anyone's was there to replace
    assert (empty / schema.DATASET_FILE).exists() and ownership.is_owned(empty, ownership.DATASET)
    assert ownership.marked_kind(run_dir) == ownership.RUN and (run_dir / "metrics.json").exists()
    (run_dir / "stale.txt").write_text("left by an older run")
    assert train_main(argv + ["--fresh"]) == 0  # a tfpps run dir: --fresh empties it as before
    assert not (run_dir / "stale.txt").exists() and (run_dir / "metrics.json").exists()
    assert ownership.marked_kind(run_dir) == ownership.RUN and len(calls) == 1


def test_rebuild_replaces_a_tfpps_dataset_with_overwrite(toy, tmp_path, capsys):
    tmp, calls = toy
    assert data_build.main(["--dataset=toy"]) == 0
    assert len(calls) == 1 and "--overwrite" not in calls[0]
    (tmp / "managed" / "old-shard").write_text("from the first build")
    assert data_build.main(["--dataset=toy", "--rebuild"]) == 0
    assert len(calls) == 2 and "--overwrite" in calls[1]
    assert not (tmp / "managed" / "old-shard").exists() and (tmp / "managed" / schema.DATASET_FILE).exists()


def test_ensure_dataset_overwrites_only_a_tfpps_dataset(toy, tmp_path):
    """A stale build in the dataset's own directory is a tfpps dataset: replaced with --overwrite."""
    tmp, calls = toy
    managed = _mkdir(tmp / "managed")
    (managed / schema.DATASET_FILE).write_text(json.dumps({"job_version": 1}))  # written before the marker existed
    assert datasets.ensure_dataset("toy") == managed
    assert len(calls) == 1 and calls[0][-1] == "--overwrite"
    assert json.loads((managed / schema.DATASET_FILE).read_text())["job_version"] == schema.JOB_VERSION


def test_the_generators_raw_folder_is_not_written_into(toy, tmp_path):
    """The synthetic datasets generate their raw logs into <data.dir>_raw: a user's folder there is left alone."""
    tmp, calls = toy
    (tmp / "configs" / "datasets" / "toy.yaml").write_text(
        f"data:\n  dir: {tmp / 'gen'}\nbuild:\n  generator: {{seed: 1, n_users: 20}}\n  flags:\n    source: csv\n"
        "    input: '{raw}/events-*.csv'\n")
    raw = _mkdir(tmp / "gen_raw")
    (raw / "items.jsonl").write_bytes(USER_BYTES)
    with pytest.raises(ownership.NotOurs, match=r"^data\.dir=.*gen: the raw logs would be generated into .*gen_raw"):
        datasets.ensure_dataset("toy")
    assert (raw / "items.jsonl").read_bytes() == USER_BYTES and [p.name for p in raw.iterdir()] == ["items.jsonl"]
    assert calls == []
