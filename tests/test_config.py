"""Typed configs: YAML -> dataclasses, CLI overrides, and one-line errors for bad input."""
import pytest

from tfpps import config
from tfpps.config import ConfigError, build_run_config


def test_defaults_and_overrides_by_alias_dotted_and_leaf():
    run = build_run_config("pop", overrides={"lr": "0.01", "eval.ks": "[1, 10]", "patience": "3", "valid_metric": "mrr@10"})
    assert run.train.learning_rate == 0.01
    assert run.eval.ks == [1, 10]
    assert run.train.patience == 3
    assert run.train.valid_metric == "mrr@10"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"nonsense": "1"}, "unknown config key 'nonsense'"),
        ({"train.nonsense": "1"}, "unknown config key 'train.nonsense'"),
        ({"epochs": "ten"}, "train.epochs='ten': expected an integer"),
        ({"epochs": "0"}, "train.epochs=0: must be > 0"),
        ({"optimizer": "adamw"}, "train.optimizer='adamw': expected one of"),
        ({"eval.ks": "[0]"}, "eval.ks"),
        ({"valid_metric": "ndcg@50"}, "not in eval.ks"),
        ({"mask_history": "maybe"}, "expected true or false"),
    ],
)
def test_bad_values_give_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        build_run_config("pop", overrides=overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_model_and_dataset():
    with pytest.raises(ConfigError, match="unknown model 'nope'; available:"):
        build_run_config("nope")
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        build_run_config("pop", dataset="nope")


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key .*train\.epochz"):
        build_run_config("pop", config_file=str(bad))
    bad.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        build_run_config("pop", config_file=str(bad))
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        build_run_config("pop", config_file=str(bad))
    with pytest.raises(ConfigError, match="config file not found"):
        build_run_config("pop", config_file=str(tmp_path / "missing.yaml"))


def test_dataset_config_and_round_trip():
    run = build_run_config("pop", dataset="ml-100k")
    assert run.data.dataset == "ml-100k" and run.data.max_len == 50
    again = config.run_config_from_dict(run.to_dict())
    assert again.to_dict() == run.to_dict()


def test_train_cli_prints_one_line_error(capsys):
    from tfpps.cli import train

    assert train.main(["--model=pop", "--lr=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfpps.train: error:") and "expected a number" in err and "\n" not in err
