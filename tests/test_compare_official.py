"""benchmarks.references.compare_official_gru4rec hands both sides the same settings: every official parameter reaches
the tfpps config field of the same meaning, and the official parameter string is what run.py parses."""
import pytest

from benchmarks.references import compare_official_gru4rec as cmp
from tfpps.cli import train as train_cli


@pytest.mark.parametrize("name", sorted(cmp.SETTINGS))
def test_tfpps_gets_every_official_setting(name, tmp_path):
    setting = cmp.SETTINGS[name]
    run, _ = train_cli.parse(cmp.tfpps_argv(setting, epochs=7, seed=3, gru_cell="cho", data_dir=str(tmp_path / "d")))
    for key, value in setting.items():
        section = run.train if key in cmp.TRAIN_KEYS else run.model_params
        assert getattr(section, key) == value, key
    assert (run.train.epochs, run.train.seed, run.train.patience, run.model_params.gru_cell) == (7, 3, 0, "cho")
    assert run.train.optimizer == "adagrad_momentum" and run.train.clipnorm == 0.0  # the official optimiser, no clipping


def test_official_parameter_string():
    text = cmp.official_params(cmp.SETTINGS["bprmax"], 10)
    pairs = dict(kv.split("=") for kv in text.split(","))
    assert pairs["loss"] == "bpr-max" and pairs["layers"] == "100" and pairs["n_epochs"] == "10"
    assert pairs["constrained_embedding"] == "True" and pairs["sample_alpha"] == "0.0"
    assert cmp.official_params({"layers": [100, 50]}, 1) == "layers=100/50,n_epochs=1"  # run.py's list separator


def test_welch_p():
    assert cmp.welch_p([0.5], [0.4, 0.41]) is None
    assert cmp.welch_p([0.50, 0.51, 0.49], [0.50, 0.52, 0.48]) > 0.9
    assert cmp.welch_p([0.60, 0.61, 0.59], [0.50, 0.51, 0.49]) < 0.001
