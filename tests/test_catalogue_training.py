"""Catalogue-scale training knobs: train.steps_per_epoch, train.max_minutes (resumable), eval.valid_sample."""
import json
from pathlib import Path

import numpy as np
import pytest

from markov_data import NARM_ARGS, write_markov_dataset
from tfpps.config import ConfigError, build_run_config
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.datasets import target_dir
from tfpps.cli.train import parse
from tfpps.runs import resume
from tfpps.runs.existing import check_run_dir, config_differences
from tfpps.runs.trainer import train
from tfpps.runs.validation import SampledRows, eval_batches, sample_positions


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    return write_markov_dataset(tmp_path_factory.mktemp("markov") / "data")


def _args(data, run_dir, epochs, *extra):
    return NARM_ARGS + [f"--data_dir={data}", f"--run_dir={run_dir}", f"--epochs={epochs}", "--verbose=0", *extra]


def _history(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "validation.json").read_text())["history"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.steps_per_epoch": "-1"}, "train.steps_per_epoch=-1: must be >= 0"),
        ({"train.steps_per_epoch": "1.5"}, "train.steps_per_epoch=1.5: expected an integer"),
        ({"train.max_minutes": "-2"}, "train.max_minutes=-2.0: must be >= 0"),
        ({"train.max_minutes": ".nan"}, "train.max_minutes=nan: must be >= 0"),
        ({"eval.valid_sample": "-5"}, "eval.valid_sample=-5: must be >= 0"),
        ({"valid_sample": "many"}, "eval.valid_sample='many': expected an integer"),
    ],
)
def test_bad_values_give_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        build_run_config("narm", overrides=overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_defaults_are_off_and_max_minutes_does_not_change_the_run():
    run = build_run_config("narm")
    assert (run.train.steps_per_epoch, run.train.max_minutes, run.eval.valid_sample) == (0, 0.0, 0)
    saved = run.to_dict()
    saved["data"]["dir"] = str(target_dir(run.data.dataset, run.data.dir))  # as the trainer saves it
    assert config_differences(saved, build_run_config("narm", overrides={"max_minutes": "30"})) == []
    assert config_differences(saved, build_run_config("narm", overrides={"steps_per_epoch": "5"})) == [
        "train.steps_per_epoch: 0 there, 5 now"]


def test_steps_per_epoch_caps_every_epoch(markov, tmp_path):
    run_dir = tmp_path / "capped"
    # 3 steps per epoch, below steps_per_execution=8 (the full epoch has 54 steps)
    result = train(parse(_args(markov, run_dir, 2, "--steps_per_epoch=3"))[0])
    assert [row["optimizer_steps"] for row in _history(run_dir)] == [3, 6]
    assert result["epochs_run"] == 2 and result["metrics"]["num_examples"] > 0


def test_max_minutes_stops_after_one_epoch_then_the_same_command_completes_the_run(markov, tmp_path):
    reference = train(parse(_args(markov, tmp_path / "reference", 3, "--steps_per_epoch=20"))[0])
    run_dir = tmp_path / "limited"
    first = train(parse(_args(markov, run_dir, 3, "--steps_per_epoch=20", "--max_minutes=0.00001"))[0], strict=True)
    assert first["time_limited"] is True and first["epochs_run"] == 1 and first["epochs_planned"] == 3
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["time_limited"] is True and saved["metrics"]["num_examples"] > 0  # best weights tested
    assert resume.completed_epochs(run_dir / "backup") == 1  # the backup is kept
    run = parse(_args(markov, run_dir, 3, "--steps_per_epoch=20"))[0]
    assert check_run_dir(run, run_dir, fresh=False, strict=True) is None  # not "complete": it is continued

    last = train(run, strict=True)  # the same command without the limit (any max_minutes) continues
    assert "time_limited" not in last and last["epochs_run"] == 3
    assert [row["epoch"] for row in _history(run_dir)] == [1, 2, 3]
    assert [row["optimizer_steps"] for row in _history(run_dir)] == [20, 40, 60]
    assert not (run_dir / "backup" / "chief").exists()
    assert last["best_epoch"] == reference["best_epoch"]
    for name, value in reference["metrics"].items():  # ends exactly as the uninterrupted run
        assert last["metrics"][name] == pytest.approx(value, abs=1e-6), name
    again = train(run, strict=True)  # now complete: reported, not trained again
    assert again.get("complete") is True


def test_valid_sample_validates_the_same_n_examples_every_epoch(markov, tmp_path):
    run_dir = tmp_path / "sampled"
    result = train(parse(_args(markov, run_dir, 2, "--steps_per_epoch=5", "--valid_sample=37"))[0])
    assert [row["val_examples"] for row in _history(run_dir)] == [37, 37]
    assert result["metrics"]["num_examples"] == 400  # the test split is always evaluated in full

    run = parse(_args(markov, run_dir, 2, "--valid_sample=37", "--set", "eval.batch_size=16"))[0]
    data = DatasetDir(markov)
    full = [b for b in eval_batches(data, "valid", run)]
    total = sum(len(b["target_item"]) for b in full)
    positions = sample_positions(total, 37, run.train.seed)

    def users(batches):
        return [int(u) for b in batches for u in np.asarray(b["user_id"])]

    once = list(SampledRows(eval_batches(data, "valid", run), positions, 16))
    twice = users(SampledRows(eval_batches(data, "valid", run), positions, 16))
    assert [len(b["target_item"]) for b in once] == [16, 16, 5]
    assert users(once) == twice and len(set(twice)) == 37  # the same examples, in the same order
    every = users(full)
    assert twice == [every[p] for p in positions]
    assert sample_positions(total, 37, run.train.seed + 1).tolist() != positions.tolist()
    assert sample_positions(total, total, 1) is None and sample_positions(total, 0, 1) is None
