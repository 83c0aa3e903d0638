"""tfpps.runs.RunDir owns the run directory: its file names, validation.json's one writer, and loading a
run's model (best weights, or a non-neural model refitted) for both tfpps.evaluate and tfpps.serving."""
import json
import re
from pathlib import Path

import pytest
import yaml

from serving_helpers import write_tiny_dataset
from tfpps.spec import ownership
from tfpps.config import ConfigError
from tfpps.runs import RunDir, has_results, is_run_dir, load_run
from tfpps.runs import run_dir as run_dir_mod

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("run_dir") / "tiny"
    out.mkdir()
    return write_tiny_dataset(out)


@pytest.fixture(scope="module")
def pop_run(data, tmp_path_factory):
    """A pop run trained by the real command (non-neural: fitted once, no weights)."""
    from tfpps.cli.train import main as train_main

    run_dir = tmp_path_factory.mktemp("runs") / "pop"
    argv = ["--model=pop", f"--data_dir={data}", f"--run_dir={run_dir}", "--set", "eval.ks=[5,10]",
            "--valid_metric=ndcg@10", "--verbose=0"]
    assert train_main(argv) == 0
    return run_dir


def test_layout_names_on_disk(tmp_path):
    d = RunDir(tmp_path / "r")
    rel = lambda p: p.relative_to(d.path).as_posix()  # noqa: E731
    assert rel(d.config) == "config.yaml" and rel(d.marker) == ".tfpps"
    assert rel(d.weights_dir) == "weights" and rel(d.best_weights) == "weights/best"
    assert rel(d.backup) == "backup" and rel(d.tensorboard) == "tensorboard"
    assert rel(d.history) == "history.csv" and rel(d.validation) == "validation.json"
    assert rel(d.metrics) == "metrics.json" and rel(d.split_metrics("valid")) == "metrics-valid.json"
    assert rel(d.trec_prefix()) == "test" and rel(d.trec_run()) == "test.run" and rel(d.trec_qrels("test")) == "test.qrels"
    assert rel(d.train_log) == "train.log"
    assert not d.path.exists()  # naming files creates nothing


def test_is_run_dir_and_has_results(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_run_dir(empty) and not has_results(empty) and not is_run_dir(tmp_path / "absent")
    # a directory of someone else's files: neither, and not tfpps's (never replaced or deleted)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert not is_run_dir(other) and not has_results(other) and not RunDir(other).is_owned()
    # results without config.yaml (e.g. copied for a report): something to plot, nothing to load
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.json").write_text(json.dumps({"metrics": {"ndcg@10": 0.1}}))
    assert has_results(results) and not is_run_dir(results)
    with pytest.raises(ConfigError, match=r"results: no config.yaml there; is it a tfpps run directory\?"):
        RunDir(results).require()
    with pytest.raises(ConfigError, match=r"^--run=X: no config.yaml"):
        RunDir(results).load(label="--run=X")
    # config.yaml without the .tfpps marker (written before the marker, or by hand): loadable; tfpps's own
    # only with the legacy weights/ folder beside it
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.yaml").write_text("model: pop\n")
    assert is_run_dir(legacy) and not has_results(legacy) and not RunDir(legacy).is_owned()
    (legacy / "weights").mkdir()
    assert RunDir(legacy).is_owned()
    marked = tmp_path / "marked"
    ownership.mark(marked, ownership.RUN)
    assert RunDir(marked).is_owned() and not is_run_dir(marked)


def test_validation_is_written_atomically_and_read_back(tmp_path):
    d = RunDir(tmp_path)
    assert d.load_validation() is None
    state = {"best": 0.25, "best_epoch": 2, "wait": 1, "history": [{"epoch": 1}, {"epoch": 2, "val_ndcg@10": 0.25}]}
    d.write_validation(state)
    assert d.load_validation() == state
    assert d.validation.read_text() == json.dumps(state, indent=1)  # the format on disk is unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validation.json"]  # no temporary file left


def test_the_trainer_and_tune_write_validation_through_run_dir(data, tmp_path, monkeypatch):
    """tfpps.tune's non-neural trial writes validation.json through RunDir.write_validation, once; the
    trainer's ValidationCallback saves its state through the same method."""
    from tfpps.cli import tune
    from tfpps.config import build_run_config
    from tfpps.runs import trainer

    writes = []
    real = RunDir.write_validation

    def spy(self, state):
        writes.append(self.path)
        real(self, state)

    monkeypatch.setattr(RunDir, "write_validation", spy)
    run_dir = tmp_path / "trial" / "exec-0"
    cfg = build_run_config("pop", overrides={"data.dir": str(data), "eval.ks": "[5,10]", "train.valid_metric": "ndcg@10",
                                             "train.verbose": "0", "train.run_dir": str(run_dir)})
    result = tune.run_one(cfg, run_dir)
    assert writes == [run_dir]
    state = RunDir(run_dir).load_validation()
    assert result["objective"] == state["best"] and state["best_epoch"] == 1 and state["history"][0]["epoch"] == 1
    assert RunDir(run_dir).load_metrics()["metrics"] == result["test"]
    # the trainer's early-stopping state: read from and saved to the run dir it is given
    from tfpps.data.dataset_dir import DatasetDir

    other = tmp_path / "other"
    other.mkdir()
    callback = trainer.ValidationCallback(cfg, DatasetDir(data), other)
    assert callback.state == {"best": float("-inf"), "best_epoch": -1, "wait": 0, "history": []}
    callback.state.update(best=0.5, best_epoch=1, history=[{"epoch": 1}])
    callback._save_state()
    assert writes == [run_dir, other]
    assert trainer.ValidationCallback(cfg, DatasetDir(data), other).state == RunDir(other).load_validation() == callback.state


def test_load_refits_a_non_neural_run_for_evaluate_and_serving(pop_run, capsys):
    from tfpps.cli import evaluate
    from tfpps.serving import runs as serving_runs

    files = RunDir(pop_run)
    assert files.is_run_dir() and files.has_results() and files.is_owned() and files.marker.exists()
    assert files.load_config().model == "pop"
    loaded = files.load()
    assert loaded.family == "nonneural" and loaded.run.model == "pop" and loaded.run_dir == pop_run
    assert serving_runs.load_run is load_run and serving_runs.LoadedRun is run_dir_mod.LoadedRun
    # evaluate's overrides are applied to the saved config (and validated)
    assert files.load(overrides={"eval.ks": "[3,10]"}).run.eval.ks == [3, 10]
    with pytest.raises(ConfigError):
        files.load(overrides={"eval.no_such_key": "1"})
    # the same model through tfpps.evaluate and the in-process recommender
    assert evaluate.main([f"--run={pop_run}", "--split=test"]) == 0
    capsys.readouterr()
    written = json.loads(files.split_metrics("test").read_text())["metrics"]
    assert written == pytest.approx(files.load_metrics()["metrics"])
    rec = serving_runs.InProcessRecommender(pop_run)
    from tfpps.serving.requests import Request

    got = rec.recommend([Request("u1", ["m1"])], k=3)[0].scores
    scores = loaded.model.score_items(rec.features([Request("u1", ["m1"])])).numpy()[0][2:]  # PAD, OOV excluded
    assert got == pytest.approx(sorted(scores, reverse=True)[:3])


def test_load_of_a_neural_run_without_weights_is_one_line(data, tmp_path):
    from tfpps.config import build_run_config
    from tfpps.runs import trainer

    run = build_run_config("gru4rec", overrides={"data.dir": str(data), "model_params.layers": "[8]", "max_len": "6"})
    files = RunDir(tmp_path / "gru")
    files.weights_dir.mkdir(parents=True)
    trainer.save_run_config(run, files.path)
    assert yaml.safe_load(files.config.read_text())["model"] == "gru4rec"
    with pytest.raises(ConfigError, match=r"gru: no trained weights at .*weights/best$"):
        files.load()


def test_no_run_dir_file_name_is_spelled_outside_run_dir():
    """The run directory's file names live in tfpps/runs/run_dir.py alone (as string literals); tfpps/spec/ownership.py,
    which run_dir imports, repeats two of them as the evidence of an unmarked run (checked equal below)."""
    names = ("config.yaml", "metrics.json", "validation.json", "history.csv", "weights/best", "train.log")
    pattern = re.compile("[\"'](" + "|".join(re.escape(n) for n in names) + ")[\"']")
    exempt = {REPO / "tfpps" / "runs" / "run_dir.py", REPO / "tfpps" / "spec" / "ownership.py"}
    files = [p for p in (REPO / "tfpps").rglob("*.py") if p not in exempt]
    for group in ("", "accuracy", "references", "scale", "speed"):
        files += sorted((REPO / "benchmarks" / group).glob("*.py"))
    found = [f"{p.relative_to(REPO)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert not found, found


def test_ownership_recognises_an_unmarked_run_by_the_run_dirs_own_file_names():
    from tfpps.spec import ownership
    from tfpps.runs import run_dir
    from tfpps.spec import schema

    assert ownership.LEGACY_EVIDENCE[ownership.RUN] == (run_dir.CONFIG, run_dir.WEIGHTS_DIR)
    assert ownership.LEGACY_EVIDENCE[ownership.DATASET] == (schema.DATASET_FILE,)
