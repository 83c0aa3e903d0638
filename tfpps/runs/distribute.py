"""tf.distribute for the trainer: the strategy, which worker is the chief, sharded input, cross-worker agreement.

Strategies (``train.strategy``, ``python -m tfpps.train --strategy=...``):

``default``      tf.distribute's default strategy: one device (the GPU when TensorFlow sees one); what tfpps
                 always did.
``mirrored``     ``MirroredStrategy``: one synchronous replica per local GPU (the CPU when there is none).
``multiworker``  ``MultiWorkerMirroredStrategy``: one process per worker, synchronous all-reduce (ring) of the
                 gradients; ``TF_CONFIG`` describes the cluster. ``python -m tfpps.launch --workers=N -- ARGS``
                 builds it and starts the worker processes on 127.0.0.1.

**Input.** :func:`distribute_input` calls ``strategy.distribute_datasets_from_function``: every input
pipeline (one per worker) builds its epoch with the model's ``make_train_dataset(..., input_context=ctx)``,
which reads the pipeline's own, disjoint subset of the split's files
(:meth:`tfpps.data.dataset_dir.DatasetDir.records`: files ``[i::n]``) and batches by the per-replica batch,
so ``train.batch_size`` is the global batch (= per-replica batch x replicas in sync). Every pipeline yields
the same number of batches (the smallest shard's), because synchronous workers must take the same number of
steps. The split needs at least as many shard files as workers (the Beam job's ``--num_shards``).

**Gradients.** With several replicas each computes the mean loss of its per-replica batch and the gradient
of ``loss / replicas`` (:meth:`tfpps.models.base.SequentialModel.train_step`); the optimizer all-reduces
(sums) them: the gradient of the global-batch mean.

**Who writes what.** Only the chief (task ``chief``, or ``worker`` 0 when the cluster has no chief) writes
the run dir (``config.yaml``, ``weights/best``, ``history.csv``, ``validation.json``, ``metrics.json``,
TensorBoard). Every other worker writes the same files into a temporary directory that is deleted when it
finishes, as Keras' multi-worker guide recommends; ``backup/`` is shared: Keras' ``BackupAndRestore``
writes the chief's checkpoint to ``backup/chief`` and the others' to temporary sibling dirs.

**Evaluation** stays local: the chief evaluates the validation split after every epoch (and the test split
at the end) on its own, with the full split, exactly as a single worker does; the other workers wait. The
chief's decision (metric, new best?, stop?) is broadcast with one all-reduce (:meth:`Sync.from_chief`), so
every worker keeps the best weights and stops early at the same epoch.

**Models.** A model trains distributed when its class sets ``DISTRIBUTE_UNSUPPORTED = None`` and its
``make_train_dataset`` takes ``input_context``: every neural model (GRU4Rec and HRNN with one slot-parallel
schedule per replica, :mod:`tfpps.models.sequential._slot_parallel`). The non-neural models refuse
``mirrored``/``multiworker`` with one line (nothing to distribute).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError

DEFAULT, MIRRORED, MULTIWORKER = "default", "mirrored", "multiworker"


def check_supported(run, entry: registry.ModelEntry | None = None) -> None:
    """Raise a one-line :class:`ConfigError` when ``run.model`` (its registry ``entry``, when the caller
    resolved it) cannot train under ``run.train.strategy``."""
    name = run.train.strategy
    if name == DEFAULT:
        return
    entry = entry or registry.get(run.model)
    if entry.family == registry.NONNEURAL:
        raise ConfigError(
            f"{run.model}: --strategy={name} is not supported: it is not a neural model (fitted in one Python pass "
            "over the training split, nothing to distribute); use --strategy=default"
        )
    reason = getattr(entry.model_cls, "DISTRIBUTE_UNSUPPORTED", "not implemented for this model")
    if reason:
        raise ConfigError(f"{run.model}: --strategy={name} is not supported: {reason}; use --strategy=default")
    if name == MULTIWORKER:
        tf_config = os.environ.get("TF_CONFIG", "")
        try:
            cluster = json.loads(tf_config).get("cluster") if tf_config else None
        except ValueError:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {tf_config[:80]!r}") from None
        if not cluster:
            raise ConfigError(
                "--strategy=multiworker needs TF_CONFIG (the cluster and this worker's task); "
                "start the workers with: python -m tfpps.launch --workers=N -- ARGS"
            )


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy named by ``train.strategy``. Create it before any other TensorFlow work in the process
    (MultiWorkerMirroredStrategy configures the collective ops at startup)."""
    if name == DEFAULT:
        return tf.distribute.get_strategy()
    if name == MIRRORED:
        return tf.distribute.MirroredStrategy()
    if name == MULTIWORKER:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ConfigError(f"train.strategy={name!r}: expected one of {DEFAULT}, {MIRRORED}, {MULTIWORKER}")


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process in a multi-worker cluster, ``(None, 0)`` otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the run dir: the only process, the ``chief`` task, or ``worker`` 0
    of a cluster without a chief."""
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_dir(strategy: tf.distribute.Strategy) -> Path:
    """A temporary run dir for a non-chief worker (its copies of the chief's files; delete it at the end)."""
    task_type, task_id = task(strategy)
    return Path(tempfile.mkdtemp(prefix=f"tfpps-{task_type}{task_id}-"))


def remove_worker_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Sync:
    """Agreement between the workers of a multi-worker run (no-ops in a single process)."""

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self.multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            strategy.extended._num_workers > 1  # noqa: SLF001 (no public count of workers)
        )
        self.chief = is_chief(strategy)
        self._reduce = None

    def from_chief(self, values: list[float]) -> list[float]:
        """The chief's ``values`` on every worker (one SUM all-reduce in which the others contribute 0).

        Every worker must call it, in the same order: it is also a barrier."""
        if not self.multiworker:
            return [float(v) for v in values]
        strategy = self.strategy
        local = len(strategy.extended.worker_devices)
        if self._reduce is None:

            @tf.function
            def reduce(x):
                return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(x,)), axis=None)

            self._reduce = reduce
        mine = [float(v) if self.chief else 0.0 for v in values]
        total = self._reduce(tf.constant(mine, tf.float64) / float(local))
        return [float(v) for v in total.numpy()]

    def barrier(self) -> None:
        self.from_chief([0.0])


def distribute_input(
    strategy: tf.distribute.Strategy, make_dataset: Callable[[tf.distribute.InputContext], tf.data.Dataset], what: str
) -> tuple[object, int]:
    """``(distributed dataset, steps per epoch)`` from ``make_dataset(input_context)`` run by each input pipeline.

    ``make_dataset`` returns one epoch of per-replica batches with a known cardinality, the same on every
    pipeline (a model's ``make_train_dataset`` guarantees it)."""
    sizes: list[int] = []

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = make_dataset(ctx)
        sizes.append(int(tf.data.experimental.cardinality(ds).numpy()))
        return ds

    dist = strategy.distribute_datasets_from_function(dataset_fn)
    if not sizes or min(sizes) < 0:
        raise ConfigError(f"{what}: --strategy needs a training dataset of known length (tf.data cardinality)")
    local = len(strategy.extended.worker_devices)
    steps = min(sizes) // max(1, local // max(1, len(sizes)))
    if steps <= 0:
        raise ConfigError(
            f"{what}: a worker's shard of the training split has no full step at the global batch "
            f"{strategy.num_replicas_in_sync} replicas need; lower train.batch_size"
        )
    return dist, steps


def check_shards(num_files: int, strategy: tf.distribute.Strategy) -> None:
    """Each worker reads whole files: a split with fewer shard files than workers cannot be shared out."""
    workers = getattr(strategy.extended, "_num_workers", 1)
    if workers > 1 and num_files < workers:
        raise ConfigError(
            f"the training split has {num_files} shard file(s) for {workers} workers; each worker reads whole files: "
            f"rebuild the dataset with --num_shards={workers} or more"
        )
