"""Sweeps (tfpps.tune): a real random search on a tiny dataset, its outputs, resume, bad spaces."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tfpps.cli import tune
from tfpps.config import ConfigError, build_run_config
from tfpps.spec import schema

N_USERS, N_ITEMS = 60, 30
# Keras Tuner 1.4.8 calls threading.currentThread() (deprecated) on every oracle call
pytestmark = pytest.mark.filterwarnings("ignore:currentThread|getName:DeprecationWarning")


def write_tiny_dataset(out: Path, seed: int = 0) -> Path:
    """A leave-one-out sequential dataset with strong signal (next item = item + 1, mostly), one shard per split."""
    rng = np.random.default_rng(seed)
    first = schema.FIRST_ID
    seqs = []
    for _ in range(N_USERS):
        start, length = int(rng.integers(0, N_ITEMS)), int(rng.integers(8, 14))
        items = [(start + i) % N_ITEMS + first for i in range(length)]
        if rng.random() < 0.3:
            items[int(rng.integers(0, length - 2))] = int(rng.integers(0, N_ITEMS)) + first
        seqs.append(items)
    counts = np.zeros(N_ITEMS + first, np.int64)
    splits = {"train": [], "valid": [], "test": []}
    for u, items in enumerate(seqs):
        uid = u + first
        for split, hist, target in (("train", items[:-2], 0), ("valid", items[:-2], items[-2]), ("test", items[:-1], items[-1])):
            splits[split].append({
                "user_id": uid, "session_id": uid, "item_ids": hist, "timestamps": [1000 * uid + i for i in range(len(hist))],
                "session_starts": [1] + [0] * (len(hist) - 1), "target_item": target, "target_items": [],
            })
        for i in items[:-2]:
            counts[i] += 1
    for split, records in splits.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(out / split / f"part-00000-of-00001{schema.TFRECORD_SUFFIX}"), options="GZIP") as w:
            for r in records:
                w.write(schema.encode_example(schema.SEQUENTIAL, r))
    (out / schema.VOCAB_DIR).mkdir(exist_ok=True)
    items = ["0\t<PAD>\t0", "1\t<OOV>\t0"] + [f"{i}\ti{i}\t{counts[i]}" for i in range(first, N_ITEMS + first)]
    users = ["0\t<PAD>\t0", "1\t<OOV>\t0"] + [f"{u + first}\tu{u}\t1" for u in range(N_USERS)]
    (out / schema.VOCAB_DIR / "items.tsv").write_text("\n".join(items) + "\n")
    (out / schema.VOCAB_DIR / "users.tsv").write_text("\n".join(users) + "\n")
    meta = {"kind": "sequential", "split": "loo", "num_items": N_ITEMS + first, "num_users": N_USERS + first, "num_words": 0,
            "counts": {s: len(r) for s, r in splits.items()}, "format_version": 1, "job_version": schema.JOB_VERSION}
    (out / schema.DATASET_FILE).write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "dataset")


SPACE = {
    "model": "gru4rec",
    "fixed": {"train.epochs": 2},
    "space": {
        "lr": {"type": "log", "min": 0.02, "max": 0.2},
        "model_params.layers": {"type": "choice", "values": [[16], [32]]},
        "model_params.dropout_p_hidden": {"type": "float", "min": 0.0, "max": 0.3, "step": 0.1},
    },
}


def sweep_argv(data_dir, sweep_dir, space_file, trials):
    return ["--model=gru4rec", f"--space={space_file}", "--tuner=random", f"--max-trials={trials}", f"--dir={sweep_dir}",
            f"--data_dir={data_dir}", "--batch_size=16", "--n_sample=8", "--steps_per_execution=8", "--seed=3"]


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


class Interrupt(BaseException):
    """Stands in for a kill: not an Exception, so Keras Tuner does not swallow it."""


def test_random_sweep_outputs_resume_and_best_config(tiny_dataset, space_file, tmp_path, monkeypatch, capsys):
    sweep_dir = tmp_path / "sweep"
    argv = sweep_argv(tiny_dataset, sweep_dir, space_file, 3)
    trained = []
    real_run_one = tune.run_one

    def counting_run_one(cfg, run_dir, init_weights=None):
        trained.append(Path(run_dir).parent.name)
        if len(trained) == 2 and not (Path(run_dir) / "metrics.json").exists() and counting_run_one.kill:
            counting_run_one.kill = False
            raise Interrupt()  # the sweep dies during its second trial
        return real_run_one(cfg, run_dir, init_weights)

    counting_run_one.kill = True
    monkeypatch.setattr(tune, "run_one", counting_run_one)
    with pytest.raises(Interrupt):
        tune.sweep(argv)
    assert trained == ["trial_0", "trial_1"]
    finished_first = (sweep_dir / "trial_0" / "exec-0" / "metrics.json").stat().st_mtime

    # resume: trial 0 is not trained again, the interrupted trial 1 runs, then trial 2
    result = tune.sweep(argv)
    assert trained == ["trial_0", "trial_1", "trial_1", "trial_2"]
    assert (sweep_dir / "trial_0" / "exec-0" / "metrics.json").stat().st_mtime == finished_first
    out = capsys.readouterr().out
    assert "resuming" in out and "best: trial" in out

    trials = result["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 3
    objectives = [t["objective"] for t in trials]
    assert objectives == sorted(objectives, reverse=True) and all(0 < o <= 1 for o in objectives)
    for t in trials:
        assert set(t["hyperparameters"]) == {"train.learning_rate", "model_params.layers", "model_params.dropout_p_hidden"}
        assert t["hyperparameters"]["model_params.layers"] in ([16], [32])
        assert 0.02 <= t["hyperparameters"]["train.learning_rate"] <= 0.2
        assert t["epochs"] == 2 and t["seconds"] > 0 and t["test"]["ndcg@10"] >= 0
        run_dir = Path(t["run_dirs"][0])
        history = json.loads((run_dir / "validation.json").read_text())
        assert max(h["val_ndcg@10"] for h in history["history"]) == pytest.approx(t["objective"])
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["model_params"]["layers"] == t["hyperparameters"]["model_params.layers"]
        assert cfg["train"]["epochs"] == 2 and cfg["model_params"]["n_sample"] == 8  # fixed + command line
    # the printed table, CSV and JSON agree
    table = result["table"].splitlines()
    assert table[0].split()[:3] == ["rank", "trial", "val"] and "learning_rate" in table[0]
    assert len(table) == 2 + 3
    rows = list(csv.DictReader(open(sweep_dir / "trials.csv")))
    assert [r["trial_id"] for r in rows] == [t["trial_id"] for t in trials]
    assert float(rows[0]["val_ndcg@10"]) == pytest.approx(trials[0]["objective"])
    assert json.loads((sweep_dir / "trials.json").read_text())["trials"][0]["trial_id"] == trials[0]["trial_id"]

    # best.yaml is a complete config with the best trial's values
    best = trials[0]
    cfg = build_run_config("gru4rec", config_file=str(sweep_dir / "best.yaml"))
    assert cfg.train.learning_rate == pytest.approx(best["hyperparameters"]["train.learning_rate"])
    assert cfg.model_params.layers == best["hyperparameters"]["model_params.layers"]
    assert cfg.train.epochs == 2 and cfg.model_params.n_sample == 8 and cfg.train.run_dir == ""
    assert Path(cfg.data.dir) == Path(tiny_dataset)
    from tfpps.cli import train as train_cli

    parsed, _ = train_cli.parse([f"--config={sweep_dir / 'best.yaml'}"])  # --model taken from the file
    assert parsed.model == "gru4rec" and parsed.train.learning_rate == cfg.train.learning_rate

    # a finished sweep run again trains nothing; a changed request is refused
    tune.sweep(argv)
    assert len(trained) == 4
    with pytest.raises(ConfigError, match="different"):
        tune.sweep(argv[:-1] + ["--seed=4"])


def _space_error(tmp_path, space, *extra):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(ConfigError) as info:
        tune.sweep(["--model=gru4rec", f"--space={path}", f"--dir={tmp_path / 'never'}", *extra])
    message = str(info.value)
    assert "\n" not in message
    assert not (tmp_path / "never").exists()
    return message


@pytest.mark.parametrize(
    "space, expected",
    [
        ({"space": {"train.learning_rte": {"type": "log", "min": 0.01, "max": 0.1}}}, "unknown config key 'train.learning_rte'"),
        ({"space": {"lr": {"type": "logarithmic", "min": 0.01, "max": 0.1}}}, "type='logarithmic': expected one of choice"),
        ({"space": {"lr": {"type": "log", "min": 0.0, "max": 0.1}}}, "needs min > 0"),
        ({"space": {"lr": {"type": "float", "min": 0.3, "max": 0.1}}}, "min=0.3 must be < max=0.1"),
        ({"space": {"lr": {"type": "float", "min": -1.0, "max": 0.1}}}, "value -1.0 is invalid: train.learning_rate=-1.0: must be > 0"),
        ({"space": {"loss": {"type": "choice", "values": ["cross-entropy", "bpr"]}}}, "expected one of cross-entropy"),
        ({"space": {"layers": {"type": "int", "min": 1, "max": 3}}}, "needs a numeric field"),
        ({"space": {"batch_size": {"type": "float", "min": 16, "max": 64}}}, "is an integer; use type: int"),
        ({"space": {"lr": {"type": "log", "min": 0.01, "max": 0.1, "step": 0.01}}}, "unknown field 'step' for type log"),
        ({"space": {"lr": {"type": "choice", "values": []}}}, "expected a non-empty list"),
        ({"space": {}}, "'space' must be a non-empty mapping"),
        ({"spaces": {}}, "unknown section 'spaces'"),
        ({"model": "narm", "space": {"lr": {"type": "log", "min": 0.01, "max": 0.1}}}, "says model 'narm'"),
    ],
)
def test_bad_search_spaces_are_one_line_errors(tmp_path, space, expected):
    assert expected in _space_error(tmp_path, space)


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    good = {"space": {"lr": {"type": "log", "min": 0.01, "max": 0.1}}}
    assert "--tuner='grid'" in _space_error(tmp_path, good, "--tuner=grid")
    assert "--objective='ndgc@10'" in _space_error(tmp_path, good, "--objective=ndgc@10")
    assert "k=50 is not in eval.ks" in _space_error(tmp_path, good, "--objective=recall@50")
    assert "both set on the command line and tuned" in _space_error(tmp_path, good, "--lr=0.1")
    assert "--max-trials=0" in _space_error(tmp_path, good, "--max-trials=0")
    assert tune.main(["--model=gru4rec", "--max-trialz=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfpps.tune: error:") and "max_trialz" in err[0]
    assert tune.main(["--model=nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gru4rec", "narm", "hrm"])
def test_shipped_search_spaces_are_valid(model):
    base = build_run_config(model)
    space = tune.load_space(model, base)
    assert space.params and space.source.endswith(f"tune/{model}.yaml")
    hp = space.declare()
    assert {p.name for p in hp.space} == {p.key for p in space.params}


def test_list_choices_round_trip_through_keras_tuner():
    base = build_run_config("gru4rec")
    space = tune.parse_space({"space": {"layers": {"type": "choice", "values": [[64], [100, 100]]}}}, base, "x.yaml")
    hp = space.declare()
    assert hp.space[0].values == ["[64]", "[100, 100]"]
    assert space.overrides({"model_params.layers": "[100, 100]", "tuner/epochs": 3}) == {"model_params.layers": [100, 100]}


def test_hyperband_continues_trials_from_their_parent_and_bayesian_runs(tiny_dataset, space_file, tmp_path, monkeypatch):
    calls = []
    real_run_one = tune.run_one

    def spy(cfg, run_dir, init_weights=None):
        calls.append((Path(run_dir).parent.name, cfg.train.epochs, init_weights))
        return real_run_one(cfg, run_dir, init_weights)

    monkeypatch.setattr(tune, "run_one", spy)
    argv = sweep_argv(tiny_dataset, tmp_path / "hb", space_file, 3)
    argv = [a for a in argv if not a.startswith(("--tuner", "--max-trials"))] + ["--tuner=hyperband", "--max-epochs=3", "--max-trials=4"]
    result = tune.sweep(argv)
    continued = [t for t in result["trials"] if (t["hyperband"] or {}).get("tuner/trial_id")]
    assert continued, result["trials"]
    for t in continued:
        hb = t["hyperband"]
        name, epochs, init = next(c for c in calls if c[0] == f"trial_{t['trial_id']}")
        assert epochs == hb["tuner/epochs"] - hb["tuner/initial_epoch"]  # only the remaining epochs
        assert init == str(tmp_path / "hb" / f"trial_{hb['tuner/trial_id']}" / "exec-0" / "weights" / "best")
    best = yaml.safe_load((tmp_path / "hb" / "best.yaml").read_text())
    best_trial = result["trials"][0]
    assert best["train"]["epochs"] == best_trial["hyperband"]["tuner/epochs"]  # best.yaml trains the full budget

    calls.clear()
    argv = sweep_argv(tiny_dataset, tmp_path / "bo", space_file, 2)
    argv = [a for a in argv if not a.startswith("--tuner")] + ["--tuner=bayesian", "--initial-points=1", "--executions-per-trial=2", "--epochs=1"]
    result = tune.sweep(argv)
    assert [t["status"] for t in result["trials"]] == ["COMPLETED"] * 2
    assert sorted(c[0] for c in calls) == ["trial_0", "trial_0", "trial_1", "trial_1"]  # two executions per trial
    t = result["trials"][0]
    assert len(t["run_dirs"]) == 2 and len(t["objective_per_execution"]) == 2
    assert t["objective"] == pytest.approx(sum(t["objective_per_execution"]) / 2)
    seeds = [yaml.safe_load((Path(d) / "config.yaml").read_text())["train"]["seed"] for d in t["run_dirs"]]
    assert seeds == [42, 43]
