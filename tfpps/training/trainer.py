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
    .tfpps            marks the directory as a tfpps run (:mod:`tfpps.ownership`)

tfpps deletes a run directory (``--fresh``) only when it is one of its own
runs. With ``strict=True`` (the ``tfpps.train`` command) an existing run
directory is also checked first: a directory that is not a tfpps run is
refused, a run with another config is refused (``--fresh`` or another
``--run_dir``), and a complete run (``metrics.json``, same config) is not
trained again: its metrics are printed (:func:`report_complete`).

Training uses ``model.fit`` with ``steps_per_execution`` training steps fused
into one ``tf.function`` call, so per-step Python overhead does not dominate;
one ``fit`` call per epoch, each epoch's data built from (``train.seed``,
epoch), so a killed run resumes exactly (:mod:`tfpps.training.resume`).
``train.strategy`` picks a tf.distribute strategy (:mod:`tfpps.training.distribute`):
only the chief worker writes the run dir.

Catalogue-scale knobs: ``train.steps_per_epoch`` caps every epoch at its first N
(shuffled) batches; ``train.max_minutes`` ends training after the epoch that
finishes past that wall time (of this invocation): the best weights are tested
as usual, ``metrics.json`` says ``time_limited``, the backup is kept, and the
same command (any ``max_minutes``) continues with the next epoch, ending as an
uninterrupted run would; ``eval.valid_sample`` validates on a fixed seeded
sample of N validation examples (:class:`SampledRows`; the test split is
always evaluated in full).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.errors import first_line
from tfpps import ownership, registry
from tfpps.config import REPO_ROOT, ConfigError, RunConfig, run_config_from_dict
from tfpps.data import pipeline
from tfpps.data.dataset_dir import DatasetDir, DatasetError, cached
from tfpps.data.examples.basket import basket_eval_examples
from tfpps.data.examples.prefix import eval_examples
from tfpps.data.datasets import ensure_dataset, resolve_path, target_dir
from tfpps.evaluation import evaluator
from tfpps.runs.run_dir import BEST_WEIGHTS, METRICS, RunDir  # noqa: F401  (BEST_WEIGHTS: re-exported)
from tfpps.training import distribute, resume
from tfpps.training.optimizers import make_optimizer


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


def build_model(run: RunConfig, data: DatasetDir):
    entry = registry.get(run.model)
    return entry.model_cls(run.model_params, data.info(), run)


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
    :mod:`tfpps.training.distribute`).
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


def total_training_steps(run: RunConfig, data: DatasetDir) -> int | None:
    """Steps of the whole run, for ``train.lr_decay: linear`` (None when no schedule needs it): the model
    class's ``steps_per_epoch(params, data, run)`` if it has one, else ceil(training records / batch size)."""
    if run.train.lr_decay == "none":
        return None
    per_epoch = getattr(registry.get(run.model).model_cls, "steps_per_epoch", None)
    steps = per_epoch(run.model_params, data, run) if per_epoch else math.ceil(data.count("train") / run.train.batch_size)
    if run.train.steps_per_epoch:
        steps = min(int(steps), run.train.steps_per_epoch)
    return int(steps) * run.train.epochs


def save_run_config(run: RunConfig, run_dir: Path) -> None:
    RunDir(run_dir).write_config(run)


def run_dir_of(run: RunConfig) -> Path:
    """The run's directory, absolute: ``train.run_dir``, or ``runs/<model>-<dataset>``."""
    return resolve_path(str(Path(run.train.run_dir) if run.train.run_dir else default_run_dir(run)))


# config keys that do not change what a run computes: a re-run may change them
# (train.max_minutes: a time-limited run continues with any budget; its epochs are the same)
IGNORED_CONFIG_KEYS = ("train.verbose", "train.run_dir", "train.max_minutes")


def _flat(tree: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: Mapping, run: RunConfig) -> list[str]:
    """How the run dir's saved ``config.yaml`` (a mapping) differs from ``run`` (empty: the same run).

    ``run``'s ``data.dir`` is compared as the trainer will save it (absolute; the dataset's own
    directory when empty); the keys in :data:`IGNORED_CONFIG_KEYS` are not compared."""
    try:
        there = run_config_from_dict(saved).to_dict()
    except (ConfigError, TypeError, AttributeError) as exc:
        return [f"its config.yaml does not load ({first_line(exc)})"]
    here = run.to_dict()
    here["data"] = {**here["data"], "dir": str(target_dir(run.data.dataset, run.data.dir))}
    there, here = (_flat(yaml.safe_load(yaml.safe_dump(d, sort_keys=False))) for d in (there, here))
    return [
        f"{key}: {there.get(key)!r} there, {here.get(key)!r} now"
        for key in sorted(set(there) | set(here))
        if key not in IGNORED_CONFIG_KEYS and there.get(key) != here.get(key)
    ]


def check_run_dir(run: RunConfig, run_dir: Path, fresh: bool, strict: bool, flag: str = "train.run_dir") -> dict | None:
    """Decide what to do with an existing run directory, before anything is written; returns the saved
    result (``metrics.json``) of a complete run that ``strict`` mode does not train again, else None.

    Raises :class:`tfpps.ownership.NotOurs` (one line) for a path that is a file, or that ``--fresh``
    would delete (or ``strict`` mode would write into) while it is not a tfpps run; ``ConfigError``
    in ``strict`` mode for a run dir holding a run with another config."""
    exists = os.path.lexists(run_dir)
    if fresh or strict or (exists and not run_dir.is_dir()):
        ownership.check_replaceable(run_dir, ownership.RUN, flag)
    files = RunDir(run_dir)
    if not strict or fresh or not files.is_run_dir():
        return None
    try:
        saved = files.read_config()
    except yaml.YAMLError as exc:
        saved = None
        diffs = [f"its config.yaml is not valid YAML ({str(exc).splitlines()[0]})"]
    if saved is not None:
        diffs = config_differences(saved if isinstance(saved, Mapping) else {}, run)
    if diffs:
        more = f" and {len(diffs) - 1} more difference{'s' if len(diffs) > 2 else ''}" if len(diffs) > 1 else ""
        raise ConfigError(f"{flag}={run_dir}: holds a run with another config ({diffs[0]}{more}); "
                          f"pass --fresh to train it over, or choose another --run_dir")
    try:
        result = files.load_metrics()
    except (OSError, ValueError):  # not finished (or cut off while writing its metrics): train / resume it
        return None
    if isinstance(result, dict) and result.get("time_limited"):  # stopped by train.max_minutes: continue it
        return None
    return result if isinstance(result, dict) and "metrics" in result else None


def clear_run_dir(run_dir: Path) -> None:
    """Empty a tfpps run dir for ``--fresh`` (its metrics first, so it never looks complete half-cleared;
    its marker last). The directory itself stays (it may be a symbolic link or a mount point)."""
    if not run_dir.is_dir():
        return
    children = sorted(run_dir.iterdir(), key=lambda p: (p.name != METRICS, p.name == ownership.MARKER))
    for child in children:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def report_complete(result: dict, run_dir: Path) -> None:
    """Say that ``run_dir`` is a complete run, and print its test metrics."""
    epochs, best = result.get("epochs_run"), result.get("best_epoch")
    done = ", ".join(x for x in (f"{epochs} epoch{'s' if epochs != 1 else ''}" if epochs else "",
                                 f"best epoch {best}" if best is not None else "") if x)
    print(f"tfpps.train: {run_dir} is a complete run of this config{f' ({done})' if done else ''}; not training it "
          f"again (--fresh trains it over). Its test metrics, from metrics.json:", flush=True)
    title = f"{result.get('model', '?')} on {result.get('dataset', '?')} (test" + (f", best epoch {best})" if best is not None else ")")
    print(evaluator.format_table(result["metrics"], title=title), flush=True)


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

    ``fresh``: empty the run dir first (only a tfpps run dir: :mod:`tfpps.ownership`). ``strict`` (the
    command line): refuse a run dir that is not a tfpps run or holds another config, and do not train a
    complete run again (its saved result is returned, with ``"complete": True``). ``flags``: how the user
    spelled ``train.run_dir`` / ``data.dir`` (e.g. ``--run_dir``), for the one-line errors.

    A KeyboardInterrupt leaves with attribute ``tfpps_where`` (e.g. ``"at epoch 3"``).
    """
    flags = dict(flags or {})
    distribute.check_supported(run)
    strategy = distribute.make_strategy(run.train.strategy)  # first: multi-worker collectives are set up at startup
    sync = distribute.Sync(strategy)
    if run.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.keras.utils.set_random_seed(run.train.seed)
    chief = sync.chief  # only the chief writes the run dir (tfpps.training.distribute)
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
        try:
            model.fit_data(data)  # no weights to save: tfpps.evaluate refits non-neural models
        except KeyboardInterrupt as exc:
            _tag_interrupt(exc, "at epoch 1")
            raise
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
                                       RunDir(run_dir).trec_prefix("test"), model_name=run.model)
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
