"""HRM, CML and HLRM under tf.distribute: each input pipeline's share of an epoch, and one training step on two
replicas equal to the single-process step on the same global batch (the gradient scaling of a mean loss and
of the metric models' summed hinge loss, the dense all-reduce, the clipping of mirrored tables)."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from markov_data import write_markov_dataset
from tfpps.cli.train import parse
from tfpps.data.dataset_dir import DatasetDir
from tfpps.data.examples.triplets import UserItems
from tfpps.models.metric.cml import CML
from tfpps.models.sequential.hrm import HRM

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    return write_markov_dataset(tmp_path_factory.mktemp("markov") / "data")


def _contexts():
    return [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2) for i in (0, 1)]


def _examples(batches, key):
    return Counter(key(b, i) for b in batches for i in range(len(b["user_id"])))


def test_hrm_epoch_is_shared_out_by_file_shard(markov):
    data = DatasetDir(markov)
    run = parse(["--model=hrm", f"--data_dir={markov}", "--batch_size=64"])[0]

    def key(b, i):
        return int(b["user_id"][i]), tuple(b["item_ids"][i][: b["length"][i]].tolist()), int(b["target_item"][i])

    full = _examples(HRM.make_train_dataset(run.model_params, data, run, epoch_seed=2).as_numpy_iterator(), key)
    epochs = [list(HRM.make_train_dataset(run.model_params, data, run, epoch_seed=2, input_context=c).as_numpy_iterator())
              for c in _contexts()]
    assert len(epochs[0]) == len(epochs[1]) > 0  # synchronous workers take the same number of steps
    assert max(len(b["user_id"]) for e in epochs for b in e) == 32  # global batch 64 = 2 replicas x 32
    shards = [_examples(e, key) for e in epochs]
    assert not {u for u, _, _ in shards[0]} & {u for u, _, _ in shards[1]}  # each user's record on one worker
    seen = shards[0] + shards[1]
    assert all(seen[k] <= full[k] for k in seen)  # nothing trained twice
    assert sum(seen.values()) > 0.9 * sum(full.values())  # only the tail of the larger shard is left out


def test_metric_learning_pairs_are_shared_out_without_overlap(markov):
    data = DatasetDir(markov)
    run = parse(["--model=cml", f"--data_dir={markov}", "--batch_size=64"])[0]
    users, items = UserItems.from_dataset(data).pairs()
    full = Counter(zip(users.tolist(), items.tolist()))

    def key(b, i):
        return int(b["user_id"][i]), int(b["positive_item"][i])

    epochs = [list(CML.make_train_dataset(run.model_params, data, run, epoch_seed=2, input_context=c).as_numpy_iterator())
              for c in _contexts()]
    assert len(epochs[0]) == len(epochs[1]) == -(-(len(users) // 2) // 32)
    shards = [_examples(e, key) for e in epochs]
    assert not set(shards[0]) & set(shards[1]) and max((shards[0] + shards[1]).values()) == 1
    assert set(shards[0]) | set(shards[1]) <= set(full) and sum((shards[0] + shards[1]).values()) >= len(users) - 1
    for batch in (b for e in epochs for b in e):  # negatives still avoid all of the user's training items
        for user, negative in zip(batch["user_id"].tolist(), batch["negative_item"].tolist()):
            assert (user, negative) not in full


@pytest.mark.parametrize("model,extra", [
    ("cml", []),  # summed hinge loss, clipped tables
    ("hlrm", []),  # + histories padded per batch (dense all-reduce), memory attention
    ("hrm", ["--set", "model_params.dropout=0"]),  # mean softmax loss
])
def test_one_step_on_two_replicas_equals_the_single_process_step(markov, model, extra):
    proc = subprocess.run([sys.executable, str(HERE / "one_step_on_two_replicas.py"), str(markov), model, *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["max_abs_update"] > 1e-3, result  # the step moved the weights
    assert result["max_abs_diff"] < 1e-5, result  # ... by the same amount on two replicas
    if model != "hrm":
        assert result["max_row_norm"] <= 1.0 + 1e-5, result  # clip = 1 held on the mirrored tables
