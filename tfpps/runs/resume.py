"""Exact resume after a kill: per-epoch seeds, the backup's epoch, atomic state files, one ``fit`` per epoch.

A run killed at any moment (SIGKILL mid-epoch, or between the end-of-epoch writes) and restarted with the
same command ends with the same weights and test metrics as an uninterrupted run (bitwise on one CPU
machine; ``train.deterministic: true`` adds TensorFlow's op determinism, e.g. for GPUs). That needs:

* **the epoch's data from (seed, epoch) alone.** One ``tf.data`` pipeline with
  ``shuffle(reshuffle_each_iteration=True)`` draws epoch k's order from a stream that restarts with the
  process: a run resumed at epoch k would replay epoch 1's order. The trainer therefore builds every epoch's
  dataset with the model's ``make_train_dataset(epoch_seed=epoch_seed(seed, epoch))`` and runs one
  ``fit`` call per epoch (:class:`EpochCallbacks` keeps the callbacks' train begin/end to the whole run,
  :class:`StopAfterEpoch` ends each call);
* **random ops keyed by the step** (e.g. NARM's dropout: stateless, from ``optimizer.iterations``), which
  the backup restores;
* **the validation state consistent with the backup**: see
  :class:`tfpps.runs.validation.ValidationCallback` (a pending row written before the backup, the
  validation of an epoch whose backup exists but whose row does not is redone from the backup's weights).

The backup is Keras' ``BackupAndRestore`` (``<run_dir>/backup/chief``), saved at the end of every epoch.
"""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from tfpps.runs.run_dir import write_json_atomic  # noqa: F401  (the state files' atomic writes)

_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of 0-based ``epoch``: ``seed`` itself for the first epoch, a mix of (seed, epoch) after."""
    if epoch == 0:
        return int(seed)
    mixed = (int(seed) * 0x9E3779B1 + int(epoch) * 0x85EBCA77) & 0xFFFFFFFFFFFF
    return int(mixed % 2_147_483_647)


def latest_backup(backup_dir: Path) -> str | None:
    """The newest ``BackupAndRestore`` checkpoint of the chief, or None."""
    chief = Path(backup_dir) / "chief"
    return tf.train.latest_checkpoint(str(chief)) if chief.is_dir() else None


def completed_epochs(backup_dir: Path) -> int:
    """Number of epochs the backup holds (0 without one): the epoch a resumed run starts at."""
    path = latest_backup(backup_dir)
    if path is None:
        return 0
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor(_EPOCH_KEY):
        return 0
    return int(reader.get_tensor(_EPOCH_KEY)) + 1


def restore_backup_weights(model, backup_dir: Path) -> bool:
    """Load the backup's model weights into ``model`` (the optimizer's slots are restored later by ``fit``)."""
    path = latest_backup(backup_dir)
    if path is None:
        return False
    tf.train.Checkpoint(model=model).read(path).expect_partial()
    return True




class EpochCallbacks(tf.keras.callbacks.Callback):
    """Callbacks shared by the trainer's per-epoch ``fit`` calls, as if the run were one ``fit``.

    ``on_train_begin`` reaches them once (BackupAndRestore restores the backup, TensorBoard and CSVLogger
    open their files) and ``on_train_end`` only through :meth:`finish`, at the end of the run (the backup is
    deleted then). Epoch hooks are forwarded; batch hooks are not (none of the callbacks needs them, and
    Keras skips per-batch callbacks only when no callback implements them). Keras' training-step counter,
    which each ``fit`` resets to 0, is carried over.
    """

    def __init__(self, callbacks: list):
        super().__init__()
        self.callbacks = list(callbacks)
        self._begun = False
        self._steps = None

    def set_model(self, model):
        if model is getattr(self, "model", None):
            return  # every fit calls set_model; TensorBoard would drop its open writers each time
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def on_train_begin(self, logs=None):
        if not self._begun:
            self._begun = True
            for cb in self.callbacks:
                cb.on_train_begin(logs)
        elif self._steps is not None:
            self.model._train_counter.assign(self._steps)  # noqa: SLF001

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)
        self._steps = int(self.model._train_counter.numpy())  # noqa: SLF001

    def finish(self, logs=None, keep: tuple = ()) -> bool:
        """``on_train_end`` of every callback: call once after the last epoch. False when no epoch ran.

        Callbacks that are instances of a class in ``keep`` are left as they are (e.g. ``BackupAndRestore``,
        whose ``on_train_end`` deletes the backup, when a time-limited run stops early to be continued)."""
        if self._begun:
            for cb in self.callbacks:
                if not (keep and isinstance(cb, keep)):
                    cb.on_train_end(logs)
        return self._begun


class StopAfterEpoch(tf.keras.callbacks.Callback):
    """Ends a ``fit`` call after one epoch (the trainer builds the next epoch's data itself)."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


class CrashForTests(tf.keras.callbacks.Callback):
    """Test hook: ``TFPPS_TEST_CRASH=after_backup:E`` (right after epoch E's backup, before its validation) or
    ``TFPPS_TEST_CRASH=batch:E:B`` (after batch B of epoch E, mid-epoch; epochs 1-based) ends the process
    with SIGKILL, or raises :class:`SimulatedCrash` with ``TFPPS_TEST_CRASH_MODE=raise``. Unset: inert."""

    def __init__(self, where: str):
        super().__init__()
        parts = os.environ.get("TFPPS_TEST_CRASH", "").split(":")
        self.active = parts[0] == where and len(parts) >= 2
        self.epoch = int(parts[1]) if self.active else -1
        self.batch = int(parts[2]) if self.active and len(parts) > 2 else -1

    @staticmethod
    def wanted(where: str) -> bool:
        return os.environ.get("TFPPS_TEST_CRASH", "").split(":")[0] == where

    def _crash(self) -> None:
        if os.environ.get("TFPPS_TEST_CRASH_MODE") == "raise":
            raise SimulatedCrash(os.environ["TFPPS_TEST_CRASH"])
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch + 1

    def on_epoch_end(self, epoch, logs=None):
        if self.active and self.batch < 0 and epoch + 1 == self.epoch:
            self._crash()

    def on_train_batch_end(self, batch, logs=None):
        if self.active and self.batch >= 0 and getattr(self, "_current", -1) == self.epoch and batch >= self.batch:
            self._crash()


class SimulatedCrash(RuntimeError):
    """Raised by :class:`CrashForTests` in ``raise`` mode."""
