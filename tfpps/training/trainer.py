"""The training loop shared by every model: fit, validate, stop early, checkpoint, test.

A run directory holds everything needed to reproduce and evaluate a run::

    config.yaml       the resolved RunConfig (data.dir made absolute)
    backup/           BackupAndRestore checkpoint: a killed run resumes here
    weights/best*     weights of the best validation epoch (TF checkpoint)
    history.csv       loss and validation metrics per epoch
    validation.json   early-stopping state (best metric, epochs without gain)
    tensorboard/      TensorBoard logs
    metrics.json      test metrics of the best weights

Training uses ``model.fit`` with ``steps_per_execution`` training steps fused
into one ``tf.function`` call, so per-step Python overhead does not dominate;
one ``fit`` call per epoch, each epoch's data built from (``train.seed``,
epoch), so a killed run resumes exactly (:mod:`tfpps.training.resume`).
``train.strategy`` picks a tf.distribute strategy (:mod:`tfpps.training.distribute`):
only the chief worker writes the run dir.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import yaml

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import REPO_ROOT, RunConfig
from tfpps.data import pipeline
from tfpps.data.datasets import ensure_dataset, resolve_path
from tfpps.evaluation import evaluator
from tfpps.training import distribute, resume
from tfpps.training.optimizers import make_optimizer

BEST_WEIGHTS = "weights/best"


def default_run_dir(run: RunConfig) -> Path:
    return REPO_ROOT / "runs" / f"{run.model}-{run.data.dataset}"


def open_dataset(run: RunConfig) -> pipeline.DatasetDir:
    """The run's dataset, built first if it is a named dataset that does not exist yet."""
    path = ensure_dataset(run.data.dataset, run.data.dir)
    run.data.dir = str(path)
    return pipeline.DatasetDir(path)


def eval_batches(data: pipeline.DatasetDir, split: str, run: RunConfig) -> tf.data.Dataset:
    records = data.records(split, num_parallel_reads=run.data.num_parallel_reads)
    if data.kind == "search":  # one example per held-out (user, query); training purchases masked
        from tfpps.data import search

        return pipeline.batch_padded(search.eval_examples(records, run.data.max_len), run.eval.batch_size)
    if data.info().kind == "basket":
        examples = pipeline.basket_eval_examples(records, run.data.max_len, with_seen=run.eval.mask_history)
        return pipeline.batch_padded(examples, run.eval.batch_size)
    examples = pipeline.eval_examples(
        records, run.data.max_len, with_seen=run.eval.mask_history, multi_target=data.multi_target
    )
    return pipeline.batch_padded(examples, run.eval.batch_size)


def build_model(run: RunConfig, data: pipeline.DatasetDir):
    entry = registry.get(run.model)
    return entry.model_cls(run.model_params, data.info(), run)


def evaluate_split(model, data: pipeline.DatasetDir, split: str, run: RunConfig, progress: bool = False) -> dict:
    """Full-ranking metrics of ``model`` on ``split``. A model with its own ``eval_dataset(data, split, run)``
    (e.g. HRNN, which streams each user's earlier sessions first) builds its evaluation batches
    itself; ``None`` from it means the standard ones (next-item, or next-basket on basket data)."""
    own = getattr(model, "eval_dataset", None)
    batches = own(data, split, run) if callable(own) else None
    if batches is None:
        batches = eval_batches(data, split, run)
    return evaluator.evaluate(
        model.score_items,
        batches,
        ks=run.eval.ks,
        ties=run.eval.ties,
        # product search always removes the user's training purchases from the ranking (Ai et al.)
        mask_history=run.eval.mask_history or data.kind == "search",
        num_items=data.num_items,
        progress=progress,
    )


class ValidationCallback(tf.keras.callbacks.Callback):
    """Evaluates on the validation split after each epoch; keeps the best weights; stops early.

    Its state lives in ``validation.json`` so a resumed run continues counting
    patience from where the killed one stopped. The state is kept consistent
    with the backup (``BackupAndRestore``, which saves after :attr:`recorder`
    and before this callback): ``recorder`` writes the epoch's training row as
    ``pending`` before the backup; :meth:`reconcile`, at the start of a run,
    drops rows of epochs the backup does not hold and, when the backup holds an
    epoch whose validation was cut off by the kill, validates that epoch from
    the backup's weights. Every write is atomic (temporary file + rename).

    In a multi-worker run only the chief evaluates; its decision (metric, new
    best, stop) reaches the other workers through ``sync`` (see
    :mod:`tfpps.training.distribute`).
    """

    def __init__(self, run: RunConfig, data: pipeline.DatasetDir, run_dir: Path, sync=None):
        super().__init__()
        self.run, self.data, self.run_dir = run, data, run_dir
        self.sync = sync
        self.chief = sync is None or sync.chief
        self.metric = run.train.valid_metric
        self.state_path = run_dir / "validation.json"
        self.state = {"best": -math.inf, "best_epoch": -1, "wait": 0, "history": []}
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
        self.has_valid = data.count("valid") > 0  # empty shards (e.g. --split=time without --valid_days) mean no validation
        self.stopped = False
        self.recorder = _EpochRecorder(self)

    # ------------------------------------------------------------------ state
    def _save_state(self) -> None:
        resume.write_json_atomic(self.state_path, self.state)

    def _should_stop(self) -> bool:
        patience = self.run.train.patience
        return bool(self.has_valid and patience and self.state["wait"] >= patience)

    def reconcile(self, start_epoch: int, backup_dir: Path | None) -> None:
        """Make the state that of a run whose last finished epoch is ``start_epoch`` (the backup's)."""
        if self.chief:
            state = self.state
            pending = state.pop("pending", None)
            rows = [r for r in state.get("history", []) if r.get("epoch", 0) <= start_epoch]
            if len(rows) != len(state.get("history", [])):  # rows of epochs the backup does not hold (no backup: a fresh start)
                state.update(best=-math.inf, best_epoch=-1, wait=0, history=[])
                for row in rows:
                    self._account(row.get(f"val_{self.metric}"), row["epoch"])
                    state["history"].append(row)
            last = rows[-1]["epoch"] if rows else 0
            if 0 < start_epoch and last < start_epoch and backup_dir is not None and resume.restore_backup_weights(self.model, backup_dir):
                # killed after the backup of epoch `start_epoch`, before its validation: validate it now
                row = pending if pending and pending.get("epoch") == start_epoch else {"epoch": start_epoch}
                self.state["pending"] = row
                self._finish_epoch(start_epoch - 1, {}, broadcast=False)
            else:
                self._save_state()
        stop = self._should_stop() if self.chief else False
        if self.sync is not None:
            stop = bool(self.sync.from_chief([float(stop)])[0])
        self.stopped = stop

    def _account(self, value, epoch: int) -> bool:
        """Update best / wait with epoch ``epoch``'s metric; True when it is the new best."""
        if not self.has_valid:
            self.state.update(best_epoch=epoch)
            return True
        if value is not None and value > self.state["best"]:
            self.state.update(best=value, best_epoch=epoch, wait=0)
            return True
        self.state["wait"] += 1
        return False

    # ------------------------------------------------------------------ hooks
    def on_epoch_end(self, epoch, logs=None):
        self._finish_epoch(epoch, logs if logs is not None else {})

    def _finish_epoch(self, epoch: int, logs: dict, broadcast: bool = True) -> None:
        row = dict(self.state.pop("pending", None) or {"epoch": epoch + 1})
        value, improved = 0.0, False
        if self.chief:
            if self.has_valid:
                t0 = time.time()
                metrics = evaluate_split(self.model, self.data, "valid", self.run)
                row["eval_seconds"] = round(time.time() - t0, 3)
                value = metrics.get(self.metric)
                if value is None:
                    raise ValueError(f"validation metric {self.metric!r} not computed; have {sorted(metrics)}")
                row.update({f"val_{k}": v for k, v in metrics.items() if k != "num_examples"})
            improved = self._account(value, epoch + 1)
        stop = self._should_stop() if self.chief else False
        if broadcast and self.sync is not None:  # the chief's decision, on every worker
            value, improved, stop = self.sync.from_chief([value, float(improved), float(stop)])
            improved, stop = bool(improved), bool(stop)
        if self.has_valid:
            logs[f"val_{self.metric}"] = value
        if improved:  # every worker saves (the others into their temporary dir), as Keras' multi-worker guide asks
            self.model.save_weights(str(self.run_dir / BEST_WEIGHTS))
        if self.has_valid and self.run.train.verbose and self.chief:
            print(f" - val {self.metric} {value:.4f} (best {self.state['best']:.4f} @ epoch {self.state['best_epoch']})", flush=True)
        if stop:
            if self.chief:
                print(f"early stopping: no {self.metric} gain for {self.run.train.patience} epochs", flush=True)
            self.model.stop_training = True
            self.stopped = True
        self.state["history"].append(row)
        self._save_state()


class _EpochRecorder(tf.keras.callbacks.Callback):
    """Writes the epoch's training row (loss, seconds) to ``validation.json`` as ``pending``, before the backup."""

    def __init__(self, validation: ValidationCallback):
        super().__init__()
        self.validation = validation

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.time() - getattr(self, "_epoch_start", time.time())
        v = self.validation
        v.state["pending"] = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))), "train_seconds": round(seconds, 3)}
        v._save_state()


def total_training_steps(run: RunConfig, data: pipeline.DatasetDir) -> int | None:
    """Steps of the whole run, for ``train.lr_decay: linear`` (None when no schedule needs it): the model
    class's ``steps_per_epoch(params, data, run)`` if it has one, else ceil(training records / batch size)."""
    if run.train.lr_decay == "none":
        return None
    per_epoch = getattr(registry.get(run.model).model_cls, "steps_per_epoch", None)
    steps = per_epoch(run.model_params, data, run) if per_epoch else math.ceil(data.count("train") / run.train.batch_size)
    return int(steps) * run.train.epochs


def save_run_config(run: RunConfig, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))


def train(run: RunConfig, fresh: bool = False, init_weights: str | None = None) -> dict:
    """Train ``run`` end to end; returns the test metrics (also in ``<run_dir>/metrics.json``).

    ``init_weights``: a weights checkpoint (e.g. another run's ``weights/best``) to start from instead of
    the initialisation; Hyperband sweeps continue a trial this way. A backup in the run dir still wins.
    """
    distribute.check_supported(run)
    strategy = distribute.make_strategy(run.train.strategy)  # first: multi-worker collectives are set up at startup
    sync = distribute.Sync(strategy)
    if run.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.keras.utils.set_random_seed(run.train.seed)
    chief = sync.chief  # only the chief writes the run dir (tfpps.training.distribute)
    if chief:
        data = open_dataset(run)
    run_dir = Path(run.train.run_dir) if run.train.run_dir else default_run_dir(run)
    run_dir = resolve_path(str(run_dir))
    run.train.run_dir = str(run_dir)
    if chief:
        if fresh and run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        save_run_config(run, run_dir)
    sync.barrier()  # the chief has built a missing dataset and cleared a --fresh run dir before the others look
    out_dir = run_dir
    if not chief:
        data = open_dataset(run)
        out_dir = distribute.worker_dir(strategy)
        (out_dir / "weights").mkdir(parents=True, exist_ok=True)
    entry = registry.get(run.model)
    devices = [d.name for d in tf.config.list_physical_devices("GPU")] or ["CPU"]
    where = "" if run.train.strategy == "default" else (
        f" strategy={run.train.strategy} replicas={strategy.num_replicas_in_sync} task={distribute.task(strategy)} chief={chief}"
    )
    print(f"tfpps.train: model={run.model} data={data.path} items={data.num_items} users={data.num_users} devices={devices}{where}", flush=True)
    if chief:
        print(yaml.safe_dump(run.to_dict(), sort_keys=False), flush=True)

    with strategy.scope():
        model = build_model(run, data)
    start = time.time()
    if entry.family == registry.NONNEURAL:
        model.fit_data(data)  # no weights to save: tfpps.evaluate refits non-neural models
        history = {"history": [{"epoch": 1, "train_seconds": round(time.time() - start, 3)}]}
    else:
        with strategy.scope():
            model.compile(optimizer=make_optimizer(run.train, total_training_steps(run, data)), steps_per_execution=run.train.steps_per_execution)
        history = fit_epochs(model, run, data, strategy, sync, run_dir, out_dir, init_weights)
        if not chief:  # the chief evaluates the test split alone; wait for it, then leave no files behind
            sync.barrier()
            distribute.remove_worker_dir(out_dir)
            return {"model": run.model, "dataset": run.data.dataset, "chief": False, "task": list(distribute.task(strategy)),
                    "epochs_run": len(history.get("history", [])), "run_dir": str(run_dir)}
        model.load_weights(str(run_dir / BEST_WEIGHTS)).expect_partial()
    train_seconds = time.time() - start

    t0 = time.time()
    metrics = evaluate_split(model, data, "test", run, progress=bool(run.train.verbose))
    eval_seconds = time.time() - t0
    epochs = [h for h in history.get("history", []) if "train_seconds" in h]
    result = {
        "model": run.model,
        "dataset": run.data.dataset,
        "split": "test",
        "metrics": metrics,
        "best_epoch": history.get("best_epoch"),
        "epochs_run": len(epochs),
        "train_seconds_total": round(train_seconds, 2),
        "train_seconds_per_epoch": round(sum(h["train_seconds"] for h in epochs) / max(1, len(epochs)), 3),
        "test_eval_seconds": round(eval_seconds, 3),
        "run_dir": str(run_dir),
    }
    if data.kind == "search":  # per-query results as TREC run + qrels files (the HEM evaluation format)
        from tfpps.evaluation.trec import write_trec_files

        own = getattr(model, "eval_dataset", None)
        batches = (own(data, "test", run) if callable(own) else None) or eval_batches(data, "test", run)
        run_file, _ = write_trec_files(model.score_items, batches, data.vocab("users"), data.vocab("items"),
                                       run_dir / "test", model_name=run.model)
        result["trec_run"] = str(run_file)
    evaluator.write_metrics(run_dir / "metrics.json", result)
    print(evaluator.format_table(metrics, title=f"{run.model} on {run.data.dataset} (test, best epoch {result['best_epoch']})"))
    sync.barrier()  # in a multi-worker run the other workers wait for the test evaluation
    return result


def fit_epochs(model, run: RunConfig, data: pipeline.DatasetDir, strategy, sync, run_dir: Path, out_dir: Path,
               init_weights: str | None = None) -> dict:
    """``model.fit``, one call per epoch, each epoch's data from (train.seed, epoch); returns the validation state.

    A run resumes from ``run_dir/backup`` at the epoch after the backup's (see :mod:`tfpps.training.resume`
    for why the data are built per epoch, which makes a resumed run end exactly as an uninterrupted one).
    Under a tf.distribute strategy the epoch's input pipelines read disjoint file shards
    (:func:`tfpps.training.distribute.distribute_input`).
    """
    entry = registry.get(run.model)
    validation = ValidationCallback(run, data, out_dir, sync=sync)
    validation.set_model(model)
    callbacks = [
        validation.recorder,  # the epoch's training row, written before the backup
        validation,
        tf.keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        tf.keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), write_graph=False, profile_batch=0),
    ]
    backup_dir = run_dir / "backup"
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
    for epoch in range(first, run.train.epochs):
        if validation.stopped:
            break
        seed = resume.epoch_seed(run.train.seed, epoch)
        if run.train.strategy == distribute.DEFAULT:
            train_ds, steps = make(run.model_params, data, run, epoch_seed=seed), None
        else:
            distribute.check_shards(len(data.files("train")), strategy)
            train_ds, steps = distribute.distribute_input(
                strategy, lambda ctx: make(run.model_params, data, run, epoch_seed=seed, input_context=ctx), run.model
            )
        model.fit(train_ds, initial_epoch=epoch, epochs=run.train.epochs, steps_per_epoch=steps,
                  callbacks=[shared, *per_fit], verbose=run.train.verbose)
    if not shared.finish() and run.train.resume and sync.chief and (backup_dir / "chief").exists():
        import shutil  # nothing was left to train (killed after the last epoch or early stop): drop the backup as fit would

        shutil.rmtree(backup_dir / "chief", ignore_errors=True)
    return validation.state
