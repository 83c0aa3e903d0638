"""The commands under faults (issue 14): one line, never a traceback.

Run-dir faults (a file, a read-only or full file system: simulated with OSError since tests run as root),
Ctrl-C during training (one line, exit 130, the same command resumes), a finished run re-run (reported,
not trained again; another config refused), non-UTF-8 ``--history``/``--user``, weights that do not fit
their config, and TensorFlow's start-up noise on stderr.
"""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving_helpers import write_tiny_dataset
from tfpps.spec import ownership
from tfpps.cli import evaluate, recommend
from tfpps.cli.train import main as train_main
from tfpps.runs import resume, trainer

REPO = Path(__file__).resolve().parents[1]
GRU = ["--model=gru4rec", "--epochs=2", "--batch_size=8", "--steps_per_execution=4", "--patience=0", "--max_len=6",
       "--set", "model_params.layers=[16]", "--set", "model_params.n_sample=8", "--set", "eval.ks=[5,10]",
       "--valid_metric=ndcg@10", "--verbose=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "tiny"
    out.mkdir()
    return write_tiny_dataset(out)


def _pop(data, run_dir, *more):
    return ["--model=pop", f"--data_dir={data}", f"--run_dir={run_dir}", "--set", "eval.ks=[5,10]",
            "--valid_metric=ndcg@10", "--verbose=0", *more]


def _one_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


def _main(fn, argv):
    """``fn(argv)``; a KeyboardInterrupt escaping it (a traceback for the user) fails the test instead of pytest."""
    try:
        return fn(argv)
    except KeyboardInterrupt as exc:
        pytest.fail(f"KeyboardInterrupt escaped main: {exc!r}")


# ---------------------------------------------------------------------------- run-dir faults
def test_run_dir_that_is_a_file(data, tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert train_main(_pop(data, path)) == 2
    line = _one_line(capsys, "tfpps.train: error: ")
    assert f"--run_dir={path}" in line and "is a file" in line
    assert path.read_text() == "mine"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EPERM, errno.ENOSPC, errno.EACCES])
def test_unwritable_run_dir_is_one_line_naming_it_and_the_os_error(code, data, tmp_path, capsys, monkeypatch):
    """Read-only, immutable (EACCES/EPERM) or full: every write into the run dir fails."""
    run_dir = tmp_path / "run"
    real_write, real_mkdir = Path.write_text, Path.mkdir

    def write_text(path, *args, **kwargs):
        if str(path).startswith(str(run_dir)):
            raise OSError(code, os.strerror(code), str(path))
        return real_write(path, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(run_dir)) and path != run_dir:  # the directory exists; nothing goes into it
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    run_dir.mkdir()
    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert train_main(_pop(data, run_dir)) == 2
    line = _one_line(capsys, "tfpps.train: error: ")
    assert f"--run_dir={run_dir}: cannot write there" in line and os.strerror(code) in line, line


def test_full_disk_when_writing_the_metrics(data, tmp_path, capsys, monkeypatch):
    from tfpps.evaluation import evaluator

    def full(path, metrics):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(evaluator, "write_metrics", full)
    assert train_main(_pop(data, tmp_path / "run")) == 2
    line = _one_line(capsys, "tfpps.train: error: ")
    assert line == f"tfpps.train: error: --run_dir={tmp_path / 'run'}: cannot write there (metrics.json): " \
                   "No space left on device (ENOSPC)"


# ---------------------------------------------------------------------------- Ctrl-C, resume, complete
def test_ctrl_c_is_one_line_and_the_same_command_resumes_then_reports_complete(data, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "gru"
    argv = GRU + [f"--data_dir={data}", f"--run_dir={run_dir}"]
    # Ctrl-C after the second batch of epoch 2 (the test hook raises instead of SIGKILL)
    monkeypatch.setenv("TFPPS_TEST_CRASH", "batch:2:1")
    monkeypatch.setenv("TFPPS_TEST_CRASH_MODE", "raise")
    monkeypatch.setattr(resume, "SimulatedCrash", KeyboardInterrupt)
    assert _main(train_main, argv) == 130
    assert _one_line(capsys, "tfpps.train: ") == "tfpps.train: interrupted at epoch 2; re-run the same command to resume"
    assert not (run_dir / "metrics.json").exists() and resume.completed_epochs(run_dir / "backup") == 1

    monkeypatch.delenv("TFPPS_TEST_CRASH")
    assert _main(train_main, argv) == 0  # resumes at epoch 2
    history = json.loads((run_dir / "validation.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    saved = json.loads((run_dir / "metrics.json").read_text())
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("a complete run was trained again")

    monkeypatch.setattr(trainer, "build_model", no_training)
    assert _main(train_main, argv + ["--verbose=2"]) == 0  # train.verbose does not change the run
    out = capsys.readouterr().out
    assert f"{run_dir} is a complete run" in out and "--fresh" in out
    assert f"{saved['metrics']['ndcg@10']:.4f}" in out and "ndcg" in out
    assert json.loads((run_dir / "metrics.json").read_text()) == saved


def test_a_complete_run_is_reported_another_config_refused_and_fresh_retrains(data, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "pop"
    assert train_main(_pop(data, run_dir)) == 0
    first = json.loads((run_dir / "metrics.json").read_text())
    capsys.readouterr()
    assert train_main(_pop(data, run_dir, "--seed=7")) == 2
    line = _one_line(capsys, "tfpps.train: error: ")
    assert line == (f"tfpps.train: error: --run_dir={run_dir}: holds a run with another config (train.seed: 42 there, "
                    "7 now); pass --fresh to train it over, or choose another --run_dir")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"] == 42

    calls = []
    real_build = trainer.build_model
    monkeypatch.setattr(trainer, "build_model", lambda *a: calls.append(1) or real_build(*a))
    assert train_main(_pop(data, run_dir)) == 0
    assert calls == [] and "is a complete run" in capsys.readouterr().out
    assert train_main(_pop(data, run_dir, "--seed=7", "--fresh")) == 0
    assert calls == [1] and yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"] == 7
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"].keys() == first["metrics"].keys()
    assert ownership.marked_kind(run_dir) == ownership.RUN


def test_train_twice_through_the_library_still_trains(data, tmp_path):
    """Only the command line reports a complete run; train() itself (tune trials, benchmarks) trains."""
    from tfpps.cli.train import parse

    run_dir = tmp_path / "lib"
    trainer.train(parse(_pop(data, run_dir))[0])
    first = (run_dir / "metrics.json").stat().st_mtime_ns
    result = trainer.train(parse(_pop(data, run_dir))[0])
    assert "complete" not in result and (run_dir / "metrics.json").stat().st_mtime_ns >= first


# ---------------------------------------------------------------------------- recommend / evaluate
def _gru_run(data, run_dir: Path) -> Path:
    """A gru4rec run dir in the trainer's layout with initial weights (no training needed here)."""
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.serving.requests import Request, encode_requests
    from tfpps.serving.vocab import Vocabulary
    from tfpps.cli.train import parse

    run = parse(GRU + [f"--data_dir={data}", f"--run_dir={run_dir}"])[0]
    (run_dir / "weights").mkdir(parents=True)
    trainer.save_run_config(run, run_dir)
    d = DatasetDir(run.data.dir)
    model = trainer.build_model(run, d)
    model.score_items(encode_requests([Request("u1", ["m1"])], Vocabulary(d.vocab("items")), Vocabulary(d.vocab("users")), 6))
    model.save_weights(str(run_dir / trainer.BEST_WEIGHTS))
    return run_dir


@pytest.mark.parametrize("flag", ["--history", "--user", "--query"])
def test_recommend_non_utf8_flag_is_one_line_naming_it(flag, data, tmp_path, capsys):
    run_dir = tmp_path / "pop"
    assert train_main(_pop(data, run_dir)) == 0
    capsys.readouterr()
    value = os.fsdecode(b"m1,m\xff2")  # what Python makes of non-UTF-8 argv bytes: 'm1,m\udcff2'
    assert _main(recommend.main, [f"--model-dir={run_dir}", f"{flag}={value}"]) == 2
    line = _one_line(capsys, "tfpps.recommend: error: ")
    assert line == f"tfpps.recommend: error: {flag}: not valid UTF-8 text (byte 0xff at character 5); ids and queries must be UTF-8"


def test_weights_that_do_not_fit_the_config_are_one_line(data, tmp_path, capsys, monkeypatch):
    run_dir = _gru_run(data, tmp_path / "gru")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["model_params"]["layers"] = [32]  # edited after training
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert evaluate.main([f"--run={run_dir}"]) == 2
    line = _one_line(capsys, "tfpps.evaluate: error: ")
    assert f"{run_dir}: its weights" in line and "do not fit" in line and "config.yaml" in line, line
    assert recommend.main([f"--model-dir={run_dir}", "--history=m1"]) == 2
    assert "do not fit" in _one_line(capsys, "tfpps.recommend: error: ")


# ---------------------------------------------------------------------------- quiet by default
NOISE = ("cuFFT", "cuDNN", "cuBLAS", "absl", "WARNING:tensorflow", "Unable to register")


def _quiet_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFPPS_SET_TF_CPP_MIN_LOG_LEVEL")}  # the user did not set it
    return {**env, "PYTHONPATH": str(REPO)}


def test_commands_are_quiet_by_default(tmp_path):
    help_ = subprocess.run([sys.executable, "-m", "tfpps.train", "--help"], cwd=tmp_path, env=_quiet_env(),
                           capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0 and "--verbose" in help_.stdout
    assert not [l for l in help_.stderr.splitlines() if any(n in l for n in NOISE)], help_.stderr
    file = tmp_path / "a-file"
    file.write_text("x")
    failing = subprocess.run([sys.executable, "-m", "tfpps.train", "--model=pop", f"--data_dir={tmp_path}/nope",
                              f"--run_dir={file}"], cwd=tmp_path, env=_quiet_env(), capture_output=True, text=True,
                             timeout=300)
    assert failing.returncode == 2
    assert failing.stderr.strip().splitlines() == [
        f"tfpps.train: error: --run_dir={file}: exists and is a file, not a tfpps run directory; choose an empty or new directory"]


def test_verbose_and_a_users_log_level():
    code = "import os, tfpps; tfpps.configure_logging(verbose={}); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    env = _quiet_env()
    run = lambda c, e: subprocess.run([sys.executable, "-c", c], env=e, capture_output=True, text=True).stdout.strip()  # noqa: E731
    assert run(code.format(False), env) == "3"  # quiet by default
    assert run(code.format(True), env) == "0"  # --verbose
    assert run(code.format(False), {**env, "TF_CPP_MIN_LOG_LEVEL": "1"}) == "1"  # the user's level wins
    assert run(code.format(True), {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}) == "2"
    # a level a parent tfpps process chose (tfpps.launch's workers) is not the user's: --verbose still works
    assert run(code.format(True), {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "TFPPS_SET_TF_CPP_MIN_LOG_LEVEL": "3"}) == "0"


def test_a_dataset_without_training_records_is_one_line(data, tmp_path, capsys):
    """A dataset with valid/test records but no training record (e.g. every user too short) stops before
    training, in one line; it used to die in the popularity sampler with a traceback."""
    import shutil

    empty = tmp_path / "no-train"
    shutil.copytree(data, empty)
    meta = json.loads((empty / "dataset.json").read_text())
    meta["counts"]["train"] = 0
    (empty / "dataset.json").write_text(json.dumps(meta))
    assert train_main(_pop(empty, tmp_path / "run")) == 2
    assert "no training records" in _one_line(capsys, "tfpps.train: error:")


def test_a_data_dir_without_dataset_names_the_run_after_it_and_never_builds_into_it(data, tmp_path, capsys):
    """``--set data.dir=X`` without ``--dataset``: the run is labelled by X (default run dir runs/<model>-<X's
    name>, not another dataset's run), and a missing X is one line instead of the synthetic data built there."""
    from tfpps.cli.train import parse

    run, _ = parse(["--model=pop", "--set", f"data.dir={data}"])
    assert run.data.dataset == data.name and trainer.default_run_dir(run).name == f"pop-{data.name}"
    run, _ = parse(["--model=pop", "--dataset=synthetic", "--set", f"data.dir={data}"])
    assert run.data.dataset == "synthetic"  # a named dataset keeps its name
    missing = tmp_path / "not-built"
    assert _main(train_main, ["--model=pop", "--set", f"data.dir={missing}", f"--run_dir={tmp_path / 'run'}",
                              "--verbose=0"]) != 0
    line = _one_line(capsys, "tfpps.train: error: --set data.dir=")
    assert "not-built: no tfpps dataset there" in line and not missing.exists(), line
