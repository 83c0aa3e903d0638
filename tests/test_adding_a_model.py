"""docs/adding_a_model.md: its example model is valid code that registers, trains with the standard
trainer and learns (beats popularity on data with sequential signal)."""
import re
import types
from pathlib import Path

import pytest

import tfpps  # noqa: F401
from markov_data import write_markov_dataset
from tfpps import registry
from tfpps.errors import ConfigError
from tfpps.cli.train import parse
from tfpps.runs.trainer import train

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding_a_model.md"


@pytest.fixture(scope="module")
def example_model():
    """The doc's one python block, run as a module; unregistered afterwards (the registry is process-wide)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    module = types.ModuleType("tfpps_doc_last_item")
    exec(compile(blocks[0], str(DOC), "exec"), module.__dict__)
    yield module
    registry._REGISTRY.pop("last_item", None)


def test_the_example_registers_and_validates_its_config(example_model):
    entry = registry.get("last_item")
    assert entry.model_cls is example_model.LastItem and entry.config_cls is example_model.LastItemConfig
    with pytest.raises(ConfigError, match=r"model_params.embedding_size=0: must be positive"):
        example_model.LastItemConfig(embedding_size=0).validate()


def test_the_example_trains_and_beats_popularity(example_model, tmp_path):
    data = write_markov_dataset(tmp_path / "data")
    common = [f"--data_dir={data}", "--verbose=0", "--patience=0", "--set", "eval.ks=[10]"]
    pop = train(parse(["--model=pop", f"--run_dir={tmp_path / 'pop'}", *common])[0], fresh=True)["metrics"]
    learned = train(parse(["--model=last_item", f"--run_dir={tmp_path / 'last'}", "--epochs=3", "--lr=0.01",
                           "--batch_size=64", "--set", "train.optimizer=adam", *common])[0], fresh=True)["metrics"]
    assert learned["ndcg@10"] > 2 * pop["ndcg@10"] + 0.1, (learned, pop)
