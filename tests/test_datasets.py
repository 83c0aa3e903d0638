"""Named datasets: a stale build is rebuilt only in tfpps's own directory; a directory the caller
chose (``--data_dir``) is never overwritten, whatever job version wrote it."""
import json

import pytest

import tfpps  # noqa: F401
from beam_jobs import cli, summary
from tfpps.data import datasets
from tfpps.spec import schema


@pytest.fixture
def named(tmp_path, monkeypatch):
    """Dataset 'toy' whose config builds into tmp_path/managed; the Beam job is replaced by a recorder."""
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"data:\n  dir: {tmp_path / 'managed'}\nbuild:\n  flags:\n    source: csv\n    input: x.csv\n")
    monkeypatch.setattr(datasets, "dataset_config_path", lambda name: cfg if name == "toy" else tmp_path / "none.yaml")
    calls = []

    def fake_run(argv):
        out = next(a.split("=", 1)[1] for a in argv if a.startswith("--output="))
        calls.append(out)
        (datasets.Path(out)).mkdir(parents=True, exist_ok=True)
        (datasets.Path(out) / schema.DATASET_FILE).write_text(json.dumps({"job_version": schema.JOB_VERSION}))
        return {}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(summary, "summary_table", lambda stats: "")
    return tmp_path, calls


def _write(path, meta):
    path.mkdir(parents=True)
    (path / schema.DATASET_FILE).write_text(json.dumps(meta))


def test_stale_build_in_the_managed_directory_is_rebuilt(named, capsys):
    tmp, calls = named
    _write(tmp / "managed", {"kind": "sequential"})  # no job_version: written by job version 1
    assert datasets.ensure_dataset("toy") == tmp / "managed"
    assert calls == [str(tmp / "managed")]
    assert "rebuilding dataset 'toy'" in capsys.readouterr().out


def test_a_directory_the_caller_chose_is_never_overwritten(named, capsys):
    tmp, calls = named
    meta = {"kind": "sequential", "source": "hand-written"}
    _write(tmp / "mine", meta)
    assert datasets.ensure_dataset("toy", str(tmp / "mine")) == tmp / "mine"
    assert calls == [] and json.loads((tmp / "mine" / schema.DATASET_FILE).read_text()) == meta
    assert "using it as it is" in capsys.readouterr().out


def test_current_build_is_reused_and_a_missing_one_is_built(named):
    tmp, calls = named
    _write(tmp / "managed", {"job_version": schema.JOB_VERSION})
    assert datasets.ensure_dataset("toy") == tmp / "managed" and calls == []
    assert datasets.ensure_dataset("toy", str(tmp / "fresh")) == tmp / "fresh" and calls == [str(tmp / "fresh")]


def test_unknown_dataset_without_a_build_is_a_clear_error(named):
    with pytest.raises(datasets.ConfigError, match="unknown dataset 'nope'"):
        datasets.ensure_dataset("nope", "")
