"""The training loop shared by every model: fit, validate, stop early, checkpoint, test.

A run directory holds everything needed to reproduce and evaluate a run (its file names:
:class:`tfpps.runs.RunDir`)::

    config.yaml       the resolved RunConfig (data.dir made absolute)
    backup/           BackupAndRestore checkpoint: a killed run resumes here
    weights/best*     weights of the best validation epoch (TF checkpoint)
    history.csv       loss and validation metrics per epoch
    validation.json   early-stopping state (best metric, epochs without gain)
    tensorboard/      TensorBoard logs
    metrics.json      test metrics of the best weights
    .tfpps            marks the directory as a tfpps run (:mod:`tfpps.spec.ownership`)

tfpps deletes a run directory (``--fresh``) only when it is one of its own
runs; with ``strict=True`` (the ``tfpps.train`` command) an existing run
directory is checked first (:mod:`tfpps.runs.existing`: a complete run is
reported, not trained again).

Training uses ``model.fit`` with ``steps_per_execution`` training steps fused
into one ``tf.function`` call, so per-step Python overhead does not dominate;
one ``fit`` call per epoch, each epoch's data built from (``train.seed``,
epoch), so a killed run resumes exactly (:mod:`tfpps.runs.resume`).
``train.strategy`` picks a tf.distribute strategy (:mod:`tfpps.runs.distribute`):
only the chief worker writes the run dir.

Catalogue-scale knobs: ``train.steps_per_epoch`` caps every epoch at its first N
(shuffled) batches; ``train.max_minutes`` ends training after the epoch that
finishes past that wall time (of this invocation): the best weights are tested
as usual, ``metrics.json`` says ``time_limited``, the backup is kept, and the
same command (any ``max_minutes``) continues with the next epoch, ending as an
uninterrupted run would; ``eval.valid_sample`` validates on a fixed seeded
sample of N validation examples (:mod:`tfpps.runs.validation`; the test split is
always evaluated in full).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

import tensorflow as tf

from tfpps import registry
from tfpps.spec import ownership
from tfpps.config import REPO_ROOT, RunConfig
from tfpps.data.dataset_dir import DatasetDir, DatasetError, cached
from tfpps.data.datasets import ensure_dataset, resolve_path
from tfpps.evaluation import evaluator
from tfpps.optimizers import make_optimizer
from tfpps.runs import distribute, resume
from tfpps.runs.existing import check_run_dir, clear_run_dir, report_complete
from tfpps.runs.run_dir import BEST_WEIGHTS, RunDir  # noqa: F401  (BEST_WEIGHTS: re-exported)
from tfpps.runs.seeding import set_run_seed
from tfpps.runs.validation import ValidationCallback, eval_batches, evaluate_split

def default_run_dir(run: RunConfig) -> Path:
    return REPO_ROOT / "runs" / f"{run.model}-{run.data.dataset}"


def open_dataset(run: RunConfig, flag: str = "data.dir") -> DatasetDir:
    """The run's dataset, built first if it is a named dataset that does not exist yet (never over a
    directory that is not a tfpps dataset; ``flag``: how the user gave ``data.dir``, for that message)."""
    path = ensure_dataset(run.data.dataset, run.data.dir, flag=flag)
    run.data.dir = str(path)
    data = DatasetDir(path)
    if data.meta.get("counts", {}).get("train", 1) == 0:
        raise DatasetError(f"{path}: no training records (see its stats.json); nothing to train on")
    return data


def load_best_weights(model, run_dir: Path) -> None:
    """Load ``run_dir``'s best weights into ``model`` (:meth:`tfpps.runs.RunDir.load_best_weights`)."""
    RunDir(run_dir).load_best_weights(model)


def build_model(run: RunConfig, data: DatasetDir, entry: registry.ModelEntry | None = None):
    """``run``'s model for ``data`` (``entry``: the run's registry entry, when the caller resolved it)."""
    entry = entry or registry.get(run.model)
    return entry.model_cls(run.model_params, data.info(), run)


def total_training_steps(run: RunConfig, data: DatasetDir, entry: registry.ModelEntry | None = None) -> int | None:
    """Steps of the whole run, for ``train.lr_decay: linear`` (None when no schedule needs it): the model
    class's ``steps_per_epoch(params, data, run)`` if it has one, else ceil(training records / batch size)."""
    if run.train.lr_decay == "none":
        return None
    per_epoch = getattr((entry or registry.get(run.model)).model_cls, "steps_per_epoch", None)
    steps = per_epoch(run.model_params, data, run) if per_epoch else math.ceil(data.count("train") / run.train.batch_size)
    if run.train.steps_per_epoch:
        steps = min(int(steps), run.train.steps_per_epoch)
    return int(steps) * run.train.epochs


def save_run_config(run: RunConfig, run_dir: Path) -> None:
    RunDir(run_dir).write_config(run)


def run_dir_of(run: RunConfig) -> Path:
    """The run's directory, absolute: ``train.run_dir``, or ``runs/<model>-<dataset>``."""
    return resolve_path(str(Path(run.train.run_dir) if run.train.run_dir else default_run_dir(run)))


def _finite(value):
    """``value`` as a float when it is a finite number (the best validation score), else None."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _tag_interrupt(exc: KeyboardInterrupt, where: str) -> None:
    """Note where training was when Ctrl-C arrived (``tfpps.train`` reports it), unless already noted."""
    if not hasattr(exc, "tfpps_where"):
        exc.tfpps_where = where


def train(run: RunConfig, fresh: bool = False, init_weights: str | None = None, strict: bool = False,
          flags: Mapping[str, str] | None = None) -> dict:
    """Train ``run`` end to end; returns the test metrics (also in ``<run_dir>/metrics.json``).

    ``init_weights``: a weights checkpoint (e.g. another run's ``weights/best``) to start from instead of
    the initialisation; Hyperband sweeps continue a trial this way. A backup in the run dir still wins.

    ``fresh``: empty the run dir first (only a tfpps run dir: :mod:`tfpps.spec.ownership`). ``strict`` (the
    command line): refuse a run dir that is not a tfpps run or holds another config, and do not train a
    complete run again (its saved result is returned, with ``"complete": True``). ``flags``: how the user
    spelled ``train.run_dir`` / ``data.dir`` (e.g. ``--run_dir``), for the one-line errors.

    A KeyboardInterrupt leaves with attribute ``tfpps_where`` (e.g. ``"at epoch 3"``).
    """
    flags = dict(flags or {})
    entry = registry.get(run.model)  # resolved once for the whole run
    distribute.check_supported(run, entry)
    strategy = distribute.make_strategy(run.train.strategy)  # first: multi-worker collectives are set up at startup
    sync = distribute.Sync(strategy)
    if run.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    set_run_seed(run.train.seed)  # the initial weights depend on the seed only, not on the strategy
    chief = sync.chief  # only the chief writes the run dir (tfpps.runs.distribute)
    run_dir = run_dir_of(run)
    complete = None
    if chief:  # nothing is built, deleted or written before the run dir passed its checks
        complete = check_run_dir(run, run_dir, fresh, strict, flags.get("train.run_dir", "train.run_dir"))
    if sync.from_chief([float(complete is not None)])[0]:  # every worker learns that the run is complete
        if chief:
            report_complete(complete, run_dir)
            return {**complete, "complete": True}
        return {"model": run.model, "dataset": run.data.dataset, "chief": False, "complete": True, "run_dir": str(run_dir)}
    run.train.run_dir = str(run_dir)
    if chief:
        try:
            data = open_dataset(run, flag=flags.get("data.dir", "data.dir"))
        except KeyboardInterrupt as exc:
            _tag_interrupt(exc, "while preparing the dataset")
            raise
        if fresh:
            clear_run_dir(run_dir)
        ownership.mark(run_dir, ownership.RUN)  # first: from now on the directory is recognisably tfpps's
        RunDir(run_dir).weights_dir.mkdir(parents=True, exist_ok=True)
        save_run_config(run, run_dir)
    sync.barrier()  # the chief has built a missing dataset and cleared a --fresh run dir before the others look
    out_dir = run_dir
    if not chief:
        data = open_dataset(run)
        out_dir = distribute.worker_dir(strategy)
        RunDir(out_dir).weights_dir.mkdir(parents=True, exist_ok=True)
    devices = [d.name for d in tf.config.list_physical_devices("GPU")] or ["CPU"]
    where = "" if run.train.strategy == "default" else (
        f" strategy={run.train.strategy} replicas={strategy.num_replicas_in_sync} task={distribute.task(strategy)} chief={chief}"
    )
    print(f"tfpps.train: model={run.model} data={data.path} items={data.num_items} users={data.num_users} devices={devices}{where}", flush=True)
    if chief:
        print(yaml.safe_dump(run.to_dict(), sort_keys=False), flush=True)

    with strategy.scope():
        model = build_model(run, data, entry)
    start = time.time()
    if entry.family == registry.NONNEURAL:
        try:
            model.fit_data(data)  # no weights to save: tfpps.evaluate refits non-neural models
        except KeyboardInterrupt as exc:
            _tag_interrupt(exc, "at epoch 1")
            raise
        history = {"history": [{"epoch": 1, "train_seconds": round(time.time() - start, 3)}]}
    else:
        with strategy.scope():
            model.compile(optimizer=make_optimizer(run.train, total_training_steps(run, data, entry)), steps_per_execution=run.train.steps_per_execution)
            _ = model.optimizer.iterations  # created here, in the scope: made on a 2-replica step, its reads there came out empty
        history = fit_epochs(model, run, data, strategy, sync, run_dir, out_dir, init_weights, entry)
        if not chief:  # the chief evaluates the test split alone; wait for it, then leave no files behind
            sync.barrier()
            distribute.remove_worker_dir(out_dir)
            return {"model": run.model, "dataset": run.data.dataset, "chief": False, "task": list(distribute.task(strategy)),
                    "epochs_run": len(history.get("history", [])), "run_dir": str(run_dir)}
        model.load_weights(str(RunDir(run_dir).best_weights)).expect_partial()
    train_seconds = time.time() - start

    t0 = time.time()
    try:
        metrics = evaluate_split(model, data, "test", run, progress=bool(run.train.verbose))
    except KeyboardInterrupt as exc:
        _tag_interrupt(exc, "during the test evaluation")
        raise
    eval_seconds = time.time() - t0
    epochs = [h for h in history.get("history", []) if "train_seconds" in h]
    time_limited = bool(history.get("time_limited"))
    result = {
        "model": run.model,
        "dataset": run.data.dataset,
        "split": "test",
        "metrics": metrics,
        "best_epoch": history.get("best_epoch"),
        "best_valid": _finite(history.get("best")),
        "epochs_run": len(epochs),
        "train_seconds_total": round(train_seconds, 2),
        "train_seconds_per_epoch": round(sum(h["train_seconds"] for h in epochs) / max(1, len(epochs)), 3),
        "test_eval_seconds": round(eval_seconds, 3),
        "run_dir": str(run_dir),
    }
    if time_limited:  # train.max_minutes ended training early: the same command continues it
        result.update(time_limited=True, epochs_planned=run.train.epochs)
    if data.kind == "search":  # per-query results as TREC run + qrels files (the HEM evaluation format)
        from tfpps.evaluation.trec import write_trec_files

        own = getattr(model, "eval_dataset", None)
        batches = (own(data, "test", run) if callable(own) else None) or eval_batches(data, "test", run)
        run_file, _ = write_trec_files(model.score_items, batches, data.vocab("users"), data.vocab("items"),
                                       RunDir(run_dir).trec_prefix("test"), model_name=run.model,
                                       query_names=data.query_names())
        result["trec_run"] = str(run_file)
    evaluator.write_metrics(RunDir(run_dir).metrics, result)
    limited = f", time-limited after epoch {len(epochs)} of {run.train.epochs}" if time_limited else ""
    print(evaluator.format_table(metrics, title=f"{run.model} on {run.data.dataset} (test, best epoch {result['best_epoch']}{limited})"))
    sync.barrier()  # in a multi-worker run the other workers wait for the test evaluation
    return result


def with_known_cardinality(ds, run: RunConfig, data: DatasetDir):
    """``ds`` with its number of batches declared, which ``fit`` needs with ``steps_per_execution > 1``.

    A model whose input pipeline does not declare it (a ``flat_map`` of examples, say) has its first
    epoch's batches counted once per process and run (one pass over the input pipeline, no model), so a new
    model need not count its own examples. Every epoch of a run has the same number of batches."""
    import tensorflow as tf

    if run.train.steps_per_execution <= 1 or int(ds.cardinality()) != int(tf.data.UNKNOWN_CARDINALITY):
        return ds
    key = ("train_batches", json.dumps(run.to_dict(), sort_keys=True, default=str))
    batches = cached(data, key, lambda: int(ds.reduce(np.int64(0), lambda n, _: n + 1)))
    return ds.apply(tf.data.experimental.assert_cardinality(batches))


def fit_epochs(model, run: RunConfig, data: DatasetDir, strategy, sync, run_dir: Path, out_dir: Path,
               init_weights: str | None = None, entry: registry.ModelEntry | None = None) -> dict:
    """``model.fit``, one call per epoch, each epoch's data from (train.seed, epoch); returns the validation state.

    A run resumes from ``run_dir/backup`` at the epoch after the backup's (see :mod:`tfpps.runs.resume`
    for why the data are built per epoch, which makes a resumed run end exactly as an uninterrupted one).
    Under a tf.distribute strategy the epoch's input pipelines read disjoint file shards
    (:func:`tfpps.runs.distribute.distribute_input`).
    """
    entry = entry or registry.get(run.model)
    validation = ValidationCallback(run, data, out_dir, sync=sync)
    validation.set_model(model)
    out = RunDir(out_dir)
    callbacks = [
        validation.recorder,  # the epoch's training row, written before the backup
        validation,
        tf.keras.callbacks.CSVLogger(str(out.history), append=True),
        tf.keras.callbacks.TensorBoard(str(out.tensorboard), write_graph=False, profile_batch=0),
    ]
    backup_dir = RunDir(run_dir).backup
    if run.train.resume:
        callbacks.insert(1, tf.keras.callbacks.BackupAndRestore(str(backup_dir)))
    if resume.CrashForTests.wanted("after_backup"):
        callbacks.insert(2, resume.CrashForTests("after_backup"))
    per_fit = [resume.StopAfterEpoch()] + ([resume.CrashForTests("batch")] if resume.CrashForTests.wanted("batch") else [])
    if init_weights:
        model.load_weights(str(init_weights)).expect_partial()
    first = resume.completed_epochs(backup_dir) if run.train.resume else 0
    validation.reconcile(first, backup_dir if run.train.resume else None)
    shared = resume.EpochCallbacks(callbacks)
    make = entry.model_cls.make_train_dataset
    cap = run.train.steps_per_epoch  # 0: whole epochs
    deadline = time.time() + 60.0 * run.train.max_minutes if run.train.max_minutes > 0 else None
    time_limited = False
    for epoch in range(first, run.train.epochs):
        if validation.stopped:
            break
        if deadline is not None and epoch > first:  # every worker asks: the chief's clock decides
            if sync.from_chief([float(time.time() >= deadline)])[0]:
                time_limited = True
                if sync.chief:
                    print(f"tfpps.train: train.max_minutes={run.train.max_minutes:g} reached after epoch {epoch} of "
                          f"{run.train.epochs}; testing the best weights. The same command continues from epoch "
                          f"{epoch + 1} (the backup is kept).", flush=True)
                break
        seed = resume.epoch_seed(run.train.seed, epoch)
        if run.train.strategy == distribute.DEFAULT:
            train_ds, steps = make(run.model_params, data, run, epoch_seed=seed), None
            if cap:  # the epoch's first `cap` batches of its (seed, epoch) order: resumes exactly
                train_ds = train_ds.take(cap)
            train_ds = with_known_cardinality(train_ds, run, data)
        else:
            distribute.check_shards(len(data.files("train")), strategy)
            train_ds, steps = distribute.distribute_input(
                strategy, lambda ctx, seed=seed: make(run.model_params, data, run, epoch_seed=seed, input_context=ctx), run.model
            )
            if cap:
                steps = min(steps, cap)
        try:
            model.fit(train_ds, initial_epoch=epoch, epochs=run.train.epochs, steps_per_epoch=steps,
                      callbacks=[shared, *per_fit], verbose=run.train.verbose)
        except KeyboardInterrupt as exc:  # the backup holds the last finished epoch: the same command resumes
            _tag_interrupt(exc, f"at epoch {epoch + 1}")
            raise
    # a time-limited run keeps its backup (BackupAndRestore deletes it at the end of training)
    keep = (tf.keras.callbacks.BackupAndRestore,) if time_limited else ()
    if not shared.finish(keep=keep) and not time_limited and run.train.resume and sync.chief and (backup_dir / "chief").exists():
        # nothing was left to train (killed after the last epoch or early stop): drop the backup as fit would
        shutil.rmtree(backup_dir / "chief", ignore_errors=True)
    return {**validation.state, "time_limited": time_limited}
