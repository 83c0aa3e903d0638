"""HRM, CML, HLRM and GRU4Rec under tf.distribute: each input pipeline's share of an epoch (GRU4Rec: one
session-parallel schedule per replica), and one training step on two replicas equal to the single-process
step on the same global batch (the gradient scaling of a mean loss and of the metric models' summed hinge
loss, the dense all-reduce, the clipping of mirrored tables), and initial weights that depend on the seed only."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import tfpps  # noqa: F401
import tensorflow as tf

from markov_data import write_markov_dataset
from synthetic_search_data import write_search_dataset
from tfpps.cli.train import parse
from tfpps.data.dataset_dir import DatasetDir
from tfpps.config import ConfigError
from tfpps.data.examples import session_parallel
from tfpps.data.examples.triplets import UserItems
from tfpps.models.sequential.gru4rec import GRU4Rec
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


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    return write_search_dataset(tmp_path_factory.mktemp("search"), n_users=60)


def _initial_weights(data_dir, model, *extra) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "initial_weights_on_two_replicas.py"), str(data_dir), model, *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_initial_weights_depend_on_the_seed_not_on_the_strategy(search):
    """HEM's query-encoder kernel is built on the first step, in a replica's thread under tf.distribute. Seeded
    by tfpps.runs.seeding it starts as in one process; seeded by tf.keras.utils.set_random_seed alone, Keras 2
    seeds it from Python's ``random`` there, and it starts as a scaled copy of the word embeddings."""
    fixed = _initial_weights(search, "hem")
    assert fixed["max_abs_diff"] == 0.0 and fixed["copies"] == [], fixed
    keras_only = _initial_weights(search, "hem", "--keras-seed")
    assert keras_only["max_abs_diff"] > 0.01 and any("query_encoder" in c for c in keras_only["copies"]), keras_only


def _pairs(schedule) -> Counter:
    valid = schedule.valid
    return Counter(zip(schedule.input_items[valid].tolist(), schedule.target_items[valid].tolist()))


@pytest.mark.parametrize("pipelines,replicas", [(2, 2), (1, 2), (2, 4)])
def test_gru4rec_replicas_walk_their_own_session_schedules(markov, pipelines, replicas):
    """Every replica's schedule has batch / replicas slots and the same number of steps (padding steps hold no
    valid slot); together they train every (input, target) pair of the one-process schedule exactly once."""
    data, batch = DatasetDir(markov), 8
    _, whole = session_parallel.session_parallel_dataset(data, batch, n_sample=16)
    grid = session_parallel.replica_schedules(data, batch, 16, pipelines, replicas)
    flat = [s for row in grid for s in row]
    assert len(grid) == pipelines and len(flat) == replicas
    assert {s.batch_size for s in flat} == {batch // replicas} and len({s.num_steps for s in flat}) == 1
    assert sum((_pairs(s) for s in flat), Counter()) == _pairs(whole)
    for s in flat:  # padding only at the end: once a step has no valid slot, none after it has
        empty = ~s.valid.any(axis=1)
        assert not empty.any() or empty[int(empty.argmax()):].all()
        assert s.reset[s.valid].sum() > 0
    # what the pipeline yields: its local replicas' steps interleaved (replica r gets elements r, r + local, ...)
    ctx = tf.distribute.InputContext(pipelines, pipelines - 1, replicas)
    elements = list(session_parallel.replica_dataset(data, batch, 16, ctx).as_numpy_iterator())
    local = grid[pipelines - 1]
    assert len(elements) == len(local) * local[0].num_steps
    for r, schedule in enumerate(local):
        mine = elements[r :: len(local)]
        assert all((e["input_items"] == schedule.input_items[t]).all() and (e["valid"] == schedule.valid[t]).all()
                   for t, e in enumerate(mine))


def test_gru4rec_prefix_training_refuses_a_distributed_strategy_in_one_line(markov):
    run = parse(["--model=gru4rec", f"--data_dir={markov}", "--set", "model_params.train_mode=prefix"])[0]
    with pytest.raises(ConfigError, match="train_mode=prefix does not train under --strategy"):
        GRU4Rec.make_train_dataset(run.model_params, DatasetDir(markov), run, 1, input_context=_contexts()[0])


@pytest.mark.parametrize("pipelines,replicas", [(2, 2), (1, 2)])
def test_hrnn_replicas_walk_their_own_user_schedules(markov, pipelines, replicas):
    """Replica r walks every R-th user's stream in batch / R slots; all replicas take the same number of steps
    and together train every (input, target) pair of the one-process schedule once."""
    from tfpps.data.examples import hrnn_examples

    data, batch = DatasetDir(markov), 8
    whole = next(iter(hrnn_examples.train_batches(data, batch, 1, False).batch(10**6)))
    elements = [list(hrnn_examples.replica_batches(data, batch, 1, False, tf.distribute.InputContext(pipelines, i, replicas))
                     .as_numpy_iterator()) for i in range(pipelines)]
    local = replicas // pipelines
    per_replica = [e[r::local] for e in elements for r in range(local)]
    assert len({len(steps) for steps in per_replica}) == 1
    assert {len(step["valid"]) for steps in per_replica for step in steps} == {batch // replicas}

    def pairs(inputs, targets, valid):
        return Counter(zip(inputs[valid].tolist(), targets[valid].tolist()))

    expected = pairs(whole["input_items"].numpy(), whole["target_items"].numpy(), whole["valid"].numpy())
    got = Counter()
    for steps in per_replica:
        got += pairs(*(np.stack([s[k] for s in steps]) for k in ("input_items", "target_items", "valid")))
    assert got == expected


def test_subsets_of_sessions_and_user_streams_keep_their_items_in_order():
    from tfpps.data.examples.session_parallel import Sessions
    from tfpps.data.examples.user_parallel import UserSessions

    sessions = Sessions.from_lists([[2, 3], [4], [5, 6, 7]], first_times=[10, 20, 30])
    part = sessions.subset(np.array([2, 0]))
    assert part.items.tolist() == [5, 6, 7, 2, 3] and part.offsets.tolist() == [0, 3, 5]
    assert part.first_times.tolist() == [30, 10] and len(sessions.subset(np.array([], np.int64)).items) == 0
    users = UserSessions.from_nested([[[2, 3], [4, 5]], [[6, 7, 8]], [[9, 2]]], user_ids=[7, 8, 9])
    picked = users.subset(np.array([2, 0]))
    def lists(streams, u):
        return [s.tolist() for s in streams.sessions_of(u)]

    assert [lists(picked, 0), lists(picked, 1)] == [lists(users, 2), lists(users, 0)] == [[[9, 2]], [[2, 3], [4, 5]]]
    assert picked.user_ids.tolist() == [9, 7] and users.subset(np.array([], np.int64)).num_users == 0
