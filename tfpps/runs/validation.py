"""Evaluation during and after training: full-ranking metrics of a split, and the per-epoch validation.

:func:`evaluate_split` ranks all items for every example of a split (the trainer's test, ``tfpps.evaluate``,
``tfpps.tune``'s non-neural trials); ``eval.valid_sample`` validates on a fixed seeded sample of N
validation examples (:class:`SampledRows`; the test split is always evaluated in full).
:class:`ValidationCallback` validates after each epoch, keeps the best weights and stops early; its state
(``validation.json``) stays consistent with the backup so a killed run resumes exactly
(:mod:`tfpps.runs.resume`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

import tensorflow as tf

from tfpps.config import RunConfig
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir, cached
from tfpps.data.examples.basket import basket_eval_examples
from tfpps.data.examples.prefix import eval_examples
from tfpps.evaluation import evaluator
from tfpps.runs import resume
from tfpps.runs.run_dir import RunDir


def eval_batches(data: DatasetDir, split: str, run: RunConfig) -> tf.data.Dataset:
    records = data.records(split, num_parallel_reads=run.data.num_parallel_reads)
    if data.kind == "search":  # one example per held-out (user, query); training purchases masked
        from tfpps.data.examples import search

        return pipeline.batch_padded(search.eval_examples(records, run.data.max_len), run.eval.batch_size)
    if data.info().kind == "basket":
        examples = basket_eval_examples(records, run.data.max_len, with_seen=run.eval.mask_history)
        return pipeline.batch_padded(examples, run.eval.batch_size)
    examples = eval_examples(
        records, run.data.max_len, with_seen=run.eval.mask_history, multi_target=data.multi_target
    )
    return pipeline.batch_padded(examples, run.eval.batch_size)




def sample_positions(total: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted positions of a fixed sample of ``n`` of ``total`` examples, drawn from ``seed`` alone (None: all)."""
    if n <= 0 or n >= total:
        return None
    rng = np.random.default_rng([int(seed), 0x76616C6964])  # a stream of its own ("valid")
    return np.sort(rng.choice(total, size=n, replace=False))


def count_rows(batches) -> int:
    """Number of examples (rows of ``target_item``) in an iterable or ``tf.data.Dataset`` of feature dicts."""
    if isinstance(batches, tf.data.Dataset):
        rows = batches.map(lambda b: tf.shape(b["target_item"], out_type=tf.int64)[0])
        return int(rows.reduce(tf.constant(0, tf.int64), lambda total, n: total + n).numpy())
    return sum(int(tf.shape(b["target_item"])[0]) for b in batches)


class SampledRows:
    """The examples at ``positions`` (sorted global row indices in iteration order) of ``batches`` (any
    iterable of feature dicts with a leading row dimension, e.g. a model's own evaluation batches), in
    batches of ``batch_size`` rows. The order of evaluation batches is deterministic (tf.data's reads are),
    so the same positions are the same examples every time."""

    def __init__(self, batches, positions: np.ndarray, batch_size: int):
        self.batches, self.positions, self.batch_size = batches, np.asarray(positions, np.int64), int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.positions) // self.batch_size)

    def __iter__(self):
        offset, pending, count = 0, [], 0
        for features in self.batches:
            features = {name: tf.convert_to_tensor(v) for name, v in features.items()}
            rows = int(features["target_item"].shape[0])
            lo, hi = np.searchsorted(self.positions, [offset, offset + rows])
            offset += rows
            if hi > lo:
                pick = tf.constant(self.positions[lo:hi] - (offset - rows))
                pending.append({name: tf.gather(v, pick) for name, v in features.items()})
                count += int(hi - lo)
            while count >= self.batch_size:
                full = pipeline.concat_rows(pending)
                yield {name: v[: self.batch_size] for name, v in full.items()}
                count -= self.batch_size
                pending = [{name: v[self.batch_size :] for name, v in full.items()}] if count else []
            if hi == len(self.positions):
                break
        if count:
            yield pipeline.concat_rows(pending)


def evaluate_split(model, data: DatasetDir, split: str, run: RunConfig, progress: bool = False,
                   sample: int = 0) -> dict:
    """Full-ranking metrics of ``model`` on ``split``. A model with ``evaluate_eagerly(data, split, run, ks, ties)``
    (GRU4Rec) computes them itself when it can (``None``: it cannot). A model with its own ``eval_dataset(data, split, run)``
    (e.g. HRNN, which streams each user's earlier sessions first) builds its evaluation batches
    itself; ``None`` from it means the standard ones (next-item, or next-basket on basket data).

    ``sample > 0``: only a fixed sample of that many examples (drawn from ``train.seed`` and the number of
    examples, counted once per process), the same ones at every call (``eval.valid_sample``)."""
    eager = getattr(model, "evaluate_eagerly", None)  # GRU4Rec: streamed like the official evaluation, untraced
    if callable(eager) and sample <= 0:
        metrics = eager(data, split, run, ks=run.eval.ks, ties=run.eval.ties)
        if metrics is not None:
            return metrics
    own = getattr(model, "eval_dataset", None)
    batches = own(data, split, run) if callable(own) else None
    if batches is None:
        batches = eval_batches(data, split, run)
    if sample > 0:
        total = cached(data, ("eval_rows", split, type(model).__name__, run.data.max_len), lambda: count_rows(batches))
        positions = sample_positions(total, sample, run.train.seed)
        if positions is not None:
            batches = SampledRows(batches, positions, run.eval.batch_size)
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
    :mod:`tfpps.runs.distribute`).
    """

    def __init__(self, run: RunConfig, data: DatasetDir, run_dir: Path, sync=None):
        super().__init__()
        self.run, self.data, self.run_dir = run, data, run_dir
        self.sync = sync
        self.chief = sync is None or sync.chief
        self.metric = run.train.valid_metric
        self.files = RunDir(run_dir)
        saved = self.files.load_validation()
        self.state = saved if saved is not None else {"best": -math.inf, "best_epoch": -1, "wait": 0, "history": []}
        self.has_valid = data.count("valid") > 0  # empty shards (e.g. --split=time without --valid_days) mean no validation
        self.stopped = False
        self.recorder = _EpochRecorder(self)

    # ------------------------------------------------------------------ state
    def _save_state(self) -> None:
        self.files.write_validation(self.state)

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
                metrics = evaluate_split(self.model, self.data, "valid", self.run, sample=self.run.eval.valid_sample)
                row["eval_seconds"] = round(time.time() - t0, 3)
                row["val_examples"] = int(metrics.get("num_examples", 0))
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
            self.model.save_weights(str(self.files.best_weights))
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
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        if iterations is not None:  # training steps so far (the backup restores them): train.steps_per_epoch shows here
            v.state["pending"]["optimizer_steps"] = int(iterations.numpy())
        v._save_state()
