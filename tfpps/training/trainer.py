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
into one ``tf.function`` call, so per-step Python overhead does not dominate.
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
        mask_history=run.eval.mask_history,
        num_items=data.num_items,
        progress=progress,
    )


class ValidationCallback(tf.keras.callbacks.Callback):
    """Evaluates on the validation split after each epoch; keeps the best weights; stops early.

    Its state lives in ``validation.json`` so a resumed run continues counting
    patience from where the killed one stopped.
    """

    def __init__(self, run: RunConfig, data: pipeline.DatasetDir, run_dir: Path):
        super().__init__()
        self.run, self.data, self.run_dir = run, data, run_dir
        self.metric = run.train.valid_metric
        self.state_path = run_dir / "validation.json"
        self.state = {"best": -math.inf, "best_epoch": -1, "wait": 0, "history": []}
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
        self.has_valid = data.count("valid") > 0  # empty shards (e.g. --split=time without --valid_days) mean no validation

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        train_seconds = time.time() - self._epoch_start
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))), "train_seconds": round(train_seconds, 3)}
        if self.has_valid:
            t0 = time.time()
            metrics = evaluate_split(self.model, self.data, "valid", self.run)
            row["eval_seconds"] = round(time.time() - t0, 3)
            value = metrics.get(self.metric)
            if value is None:
                raise ValueError(f"validation metric {self.metric!r} not computed; have {sorted(metrics)}")
            row.update({f"val_{k}": v for k, v in metrics.items() if k != "num_examples"})
            logs[f"val_{self.metric}"] = value
            if value > self.state["best"]:
                self.state.update(best=value, best_epoch=epoch + 1, wait=0)
                self.model.save_weights(str(self.run_dir / BEST_WEIGHTS))
            else:
                self.state["wait"] += 1
            if self.run.train.verbose:
                print(f" - val {self.metric} {value:.4f} (best {self.state['best']:.4f} @ epoch {self.state['best_epoch']})", flush=True)
            patience = self.run.train.patience
            if patience and self.state["wait"] >= patience:
                print(f"early stopping: no {self.metric} gain for {patience} epochs", flush=True)
                self.model.stop_training = True
        else:
            self.model.save_weights(str(self.run_dir / BEST_WEIGHTS))
            self.state.update(best_epoch=epoch + 1)
        self.state["history"].append(row)
        self.state_path.write_text(json.dumps(self.state, indent=1))


def save_run_config(run: RunConfig, run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))


def train(run: RunConfig, fresh: bool = False, init_weights: str | None = None) -> dict:
    """Train ``run`` end to end; returns the test metrics (also in ``<run_dir>/metrics.json``).

    ``init_weights``: a weights checkpoint (e.g. another run's ``weights/best``) to start from instead of
    the initialisation; Hyperband sweeps continue a trial this way. A backup in the run dir still wins.
    """
    tf.keras.utils.set_random_seed(run.train.seed)
    data = open_dataset(run)
    run_dir = Path(run.train.run_dir) if run.train.run_dir else default_run_dir(run)
    run_dir = resolve_path(str(run_dir))
    run.train.run_dir = str(run_dir)
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    save_run_config(run, run_dir)
    entry = registry.get(run.model)
    devices = [d.name for d in tf.config.list_physical_devices("GPU")] or ["CPU"]
    print(f"tfpps.train: model={run.model} data={data.path} items={data.num_items} users={data.num_users} devices={devices}", flush=True)
    print(yaml.safe_dump(run.to_dict(), sort_keys=False), flush=True)

    model = build_model(run, data)
    start = time.time()
    if entry.family == registry.NONNEURAL:
        model.fit_data(data)  # no weights to save: tfpps.evaluate refits non-neural models
        history = {"history": [{"epoch": 1, "train_seconds": round(time.time() - start, 3)}]}
    else:
        model.compile(optimizer=make_optimizer(run.train), steps_per_execution=run.train.steps_per_execution)
        train_ds = entry.model_cls.make_train_dataset(run.model_params, data, run, epoch_seed=run.train.seed)
        validation = ValidationCallback(run, data, run_dir)
        callbacks = [
            validation,
            tf.keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            tf.keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False, profile_batch=0),
        ]
        if run.train.resume:
            callbacks.insert(0, tf.keras.callbacks.BackupAndRestore(str(run_dir / "backup")))
        if init_weights:
            model.load_weights(str(init_weights)).expect_partial()
        model.fit(train_ds, epochs=run.train.epochs, callbacks=callbacks, verbose=run.train.verbose)
        history = validation.state
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
    evaluator.write_metrics(run_dir / "metrics.json", result)
    print(evaluator.format_table(metrics, title=f"{run.model} on {run.data.dataset} (test, best epoch {result['best_epoch']})"))
    return result
