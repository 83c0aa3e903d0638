"""Kill and resume: a run killed mid-epoch (SIGKILL) or between its backup and its validation, then restarted
with the same command, ends with exactly the metrics of an uninterrupted run with the same seed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from markov_data import NARM_ARGS, write_markov_dataset
from tfpps.cli.train import parse
from tfpps.runs import resume
from tfpps.runs.trainer import train

REPO = Path(__file__).resolve().parents[1]
GRU4REC_ARGS = ["--model=gru4rec", "--batch_size=16", "--steps_per_execution=4", "--set", "model_params.layers=[32]",
                "--set", "model_params.n_sample=16", "--set", "model_params.dropout_p_hidden=0.2", "--patience=0",
                "--set", "eval.ks=[10,20]", "--valid_metric=ndcg@10"]


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    return write_markov_dataset(tmp_path_factory.mktemp("markov") / "data")


def _args(base, data, run_dir, epochs=3):
    return base + [f"--data_dir={data}", f"--run_dir={run_dir}", f"--epochs={epochs}", "--verbose=2"]


def _epochs(run_dir: Path) -> list[int]:
    return [row["epoch"] for row in json.loads((run_dir / "validation.json").read_text())["history"]]


def _same_result(resumed: dict, reference: dict) -> None:
    assert resumed["best_epoch"] == reference["best_epoch"] and resumed["epochs_run"] == reference["epochs_run"]
    assert resumed["metrics"].keys() == reference["metrics"].keys()
    for name, value in reference["metrics"].items():
        assert resumed["metrics"][name] == pytest.approx(value, abs=1e-6), name


def test_narm_sigkilled_twice_resumes_to_the_uninterrupted_result(markov, tmp_path):
    """SIGKILL right after epoch 1's backup (its validation never ran), then mid-epoch 2; the same command
    run again validates epoch 1 once (from the backup) and ends exactly as an uninterrupted run."""
    reference = train(parse(_args(NARM_ARGS, markov, tmp_path / "reference"))[0])

    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tfpps.train", *_args(NARM_ARGS, markov, run_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def run(crash=None):
        extra = {"TFPPS_TEST_CRASH": crash} if crash else {}
        return subprocess.run(cmd, cwd=REPO, env={**env, **extra}, capture_output=True, text=True, timeout=300)

    first = run("after_backup:1")
    assert first.returncode == -9, first.stdout[-3000:] + first.stderr[-3000:]
    state = json.loads((run_dir / "validation.json").read_text())
    assert state["history"] == [] and state["pending"]["epoch"] == 1 and resume.completed_epochs(run_dir / "backup") == 1

    second = run("batch:2:24")  # SIGKILL after step 24 of epoch 2's 54 (at the end of a fused execution of 8)
    assert second.returncode == -9, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    assert _epochs(run_dir) == [1]  # validated once, from the backup
    assert not (run_dir / "metrics.json").exists()

    last = run()
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    assert "Epoch 1/3" not in last.stdout and "Epoch 2/3" in last.stdout
    assert _epochs(run_dir) == [1, 2, 3]
    _same_result(json.loads((run_dir / "metrics.json").read_text()), reference)


def test_gru4rec_crashes_resume_to_the_uninterrupted_result(markov, tmp_path, monkeypatch):
    """The same for GRU4Rec (session-parallel; its GRU states, sampler and dropout steps live in the backup),
    in-process: the crash is raised where the SIGKILL would be."""
    reference = train(parse(_args(GRU4REC_ARGS, markov, tmp_path / "reference"))[0])
    run_dir = tmp_path / "crashed"
    monkeypatch.setenv("TFPPS_TEST_CRASH_MODE", "raise")
    for crash in ("after_backup:1", "batch:2:5"):
        monkeypatch.setenv("TFPPS_TEST_CRASH", crash)
        with pytest.raises(resume.SimulatedCrash):
            train(parse(_args(GRU4REC_ARGS, markov, run_dir))[0])
    assert _epochs(run_dir) == [1]
    monkeypatch.delenv("TFPPS_TEST_CRASH")
    resumed = train(parse(_args(GRU4REC_ARGS, markov, run_dir))[0])
    assert _epochs(run_dir) == [1, 2, 3]
    _same_result(resumed, reference)


def test_epoch_seeds_depend_on_seed_and_epoch_only():
    seeds = [resume.epoch_seed(42, e) for e in range(50)]
    assert seeds[0] == 42 and len(set(seeds)) == 50 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [resume.epoch_seed(42, e) for e in range(50)]
    assert resume.epoch_seed(43, 1) != resume.epoch_seed(42, 1)


@pytest.mark.parametrize("model_args", [NARM_ARGS, GRU4REC_ARGS], ids=["narm", "gru4rec"])
def test_multiworker_sigkilled_resumes_to_the_uninterrupted_result(markov, tmp_path, model_args):
    """Two workers through ``tfpps.launch``: worker 0 is SIGKILLed mid-epoch 2 (the launcher then stops worker 1),
    and the same command run again resumes from the chief's backup at epoch 2 and ends with exactly the
    validation history and test metrics of an uninterrupted 2-worker run. GRU4Rec: the per-replica GRU states
    and step counters (sync-on-read variables) come back from the backup too."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def launch(run_dir, crash=None):
        extra = {"TFPPS_TEST_CRASH": crash} if crash else {}
        cmd = [sys.executable, "-m", "tfpps.launch", "--workers=2", "--", *_args(model_args, markov, run_dir, epochs=2)]
        return subprocess.run(cmd, cwd=REPO, env={**env, **extra}, capture_output=True, text=True, timeout=420)

    reference = launch(tmp_path / "reference")
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    run_dir = tmp_path / "killed"
    killed = launch(run_dir, "batch:2:5")
    assert killed.returncode != 0 and "exited with status -9" in killed.stdout + killed.stderr
    assert resume.completed_epochs(run_dir / "backup") == 1 and not (run_dir / "metrics.json").exists()
    resumed = launch(run_dir)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[w0] Epoch 1/2" not in resumed.stdout and "[w0] Epoch 2/2" in resumed.stdout
    want = json.loads((tmp_path / "reference" / "validation.json").read_text())["history"]
    got = json.loads((run_dir / "validation.json").read_text())["history"]
    assert [r["epoch"] for r in got] == [1, 2]
    for row, ref in zip(got, want):
        assert {k: v for k, v in row.items() if k.startswith("val_")} == {k: v for k, v in ref.items() if k.startswith("val_")}
    _same_result(json.loads((run_dir / "metrics.json").read_text()),
                 json.loads((tmp_path / "reference" / "metrics.json").read_text()))
