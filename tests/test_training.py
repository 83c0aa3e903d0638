"""The training spine end to end: synthetic logs -> Beam job -> trainer -> evaluator; resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beam_jobs import cli
from tfpps.config import build_run_config
from tfpps import synthetic
from tfpps.runs.trainer import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    raw = tmp / "raw"
    synthetic.generate(synthetic.SyntheticConfig(n_users=200, n_items=300, seed=3, events_per_user=40), raw)
    out = tmp / "dataset"
    cli.run(
        ["--source=csv", f"--input={raw}/events-*.csv", f"--output={out}", "--split=loo",
         "--min_user_interactions=5", "--min_item_interactions=3", "--direct_running_mode=in_memory"]
    )
    return out


def run_model(model, data_dir, tmp_path, **overrides):
    values = {"data.dir": str(data_dir), "run_dir": str(tmp_path / model), "verbose": "0", **overrides}
    return train(build_run_config(model, dataset="synthetic", overrides=values), fresh=True)


def test_sequence_models_beat_popularity_on_synthetic_signal(small_dataset, tmp_path):
    pop = run_model("pop", small_dataset, tmp_path)
    gru = run_model("gru4rec", small_dataset, tmp_path, epochs="4", batch_size="32")
    for result in (pop, gru):
        assert result["metrics"]["num_examples"] > 150
        assert json.loads((Path(result["run_dir"]) / "metrics.json").read_text())["metrics"] == result["metrics"]
    assert gru["metrics"]["recall@10"] > 2 * pop["metrics"]["recall@10"] + 0.05, (gru["metrics"], pop["metrics"])
    assert gru["metrics"]["ndcg@10"] > 2 * pop["metrics"]["ndcg@10"]


def test_evaluate_cli_reproduces_the_test_metrics(small_dataset, tmp_path):
    gru = run_model("gru4rec", small_dataset, tmp_path, epochs="1")
    from tfpps.cli import evaluate

    assert evaluate.main([f"--run={gru['run_dir']}"]) == 0
    again = json.loads((Path(gru["run_dir"]) / "metrics-test.json").read_text())["metrics"]
    assert again["recall@10"] == pytest.approx(gru["metrics"]["recall@10"], abs=1e-6)
    assert evaluate.main([f"--run={tmp_path}/nope"]) == 2


def _train_cmd(data_dir, run_dir, epochs):
    return [sys.executable, "-m", "tfpps.train", "--model=gru4rec", f"--data_dir={data_dir}", f"--run_dir={run_dir}",
            f"--epochs={epochs}", "--verbose=2", "--batch_size=16", "--steps_per_execution=4"]


def test_resume_after_sigkill_continues_from_checkpoint(small_dataset, tmp_path):
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_train_cmd(small_dataset, run_dir, 4), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = run_dir / "validation.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and len(json.loads(state.read_text() or "{}").get("history", [])) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(json.loads(state.read_text())["history"])
    assert 2 <= done_before < 4
    assert not (run_dir / "metrics.json").exists()

    second = subprocess.run(_train_cmd(small_dataset, run_dir, 4), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "Epoch 1/4" not in log and "Epoch 4/4" in log  # resumed, did not start over
    history = json.loads(state.read_text())["history"]
    epochs = [h["epoch"] for h in history]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 4
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["num_examples"] > 0
