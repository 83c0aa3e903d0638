"""The run directory: the one place that knows its file names, and loads a run's model.

A training run (``tfpps.train``, a ``tfpps.tune`` trial) writes one directory::

    config.yaml          the resolved RunConfig (data.dir absolute)        RunDir.config
    .tfpps               marks it a tfpps run (tfpps.spec.ownership)        RunDir.marker
    weights/best*        weights of the best validation epoch (TF ckpt)     RunDir.best_weights
    backup/              BackupAndRestore: the last finished epoch          RunDir.backup
    history.csv          loss and validation metrics per epoch (CSVLogger)  RunDir.history
    validation.json      early-stopping state (best, best_epoch, wait,      RunDir.validation
                         history)
    tensorboard/         TensorBoard logs                                   RunDir.tensorboard
    metrics.json         test metrics of the best weights                   RunDir.metrics
    metrics-<split>.json tfpps.evaluate's metrics of one split              RunDir.split_metrics(split)
    test.run, test.qrels per-query TREC files of a product-search run       RunDir.trec_run("test"), ...
    train.log            a tune trial's printed output                      RunDir.train_log

The names on disk never change (existing run dirs must keep loading). Two questions about a path have
two names: :func:`is_run_dir` (it holds ``config.yaml``: a run whose model can be loaded, what
``tfpps.evaluate``, ``tfpps.export`` and ``tfpps.recommend`` need) and :func:`has_results` (it holds
``validation.json``, ``history.csv`` or ``metrics.json``: something ``tfpps.report`` can plot). Whether
tfpps may delete it is a third one, :func:`tfpps.spec.ownership.is_owned` (:meth:`RunDir.is_owned`).

No TensorFlow at import (``tfpps.report``, ``tfpps.export``'s argument checks and
``tfpps.recommend`` use this module before TensorFlow loads); :meth:`RunDir.load` and
:meth:`RunDir.load_best_weights` import it when called.

Example::

    >>> import tempfile
    >>> run_dir = RunDir(tempfile.mkdtemp())
    >>> run_dir.best_weights.relative_to(run_dir.path).as_posix()
    'weights/best'
    >>> is_run_dir(run_dir.path), has_results(run_dir.path)
    (False, False)
    >>> run_dir.write_validation({"best": 0.5, "best_epoch": 1, "wait": 0, "history": [{"epoch": 1}]})
    >>> run_dir.load_validation()["best"], has_results(run_dir.path)
    (0.5, True)

and, on a trained run: ``loaded = RunDir("runs/gru4rec-synthetic").load()`` (its model with its best
weights, or a non-neural model refitted on the run's training split); ``loaded.model.score_items(...)``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tfpps.errors import ConfigError

if TYPE_CHECKING:
    from tfpps.config import RunConfig
    from tfpps.data.dataset_dir import DatasetDir

CONFIG = "config.yaml"
WEIGHTS_DIR = "weights"
BEST_WEIGHTS = f"{WEIGHTS_DIR}/best"  # a TF checkpoint prefix: weights/best.index, weights/best.data-*
BACKUP = "backup"
HISTORY = "history.csv"
VALIDATION = "validation.json"
TENSORBOARD = "tensorboard"
METRICS = "metrics.json"
TRAIN_LOG = "train.log"
RESULT_FILES = (VALIDATION, HISTORY, METRICS)  # what a run has to show once it trained (has_results)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as JSON (indent 1) to ``path`` through a temporary file and a rename: a kill never
    leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


@dataclasses.dataclass
class LoadedRun:
    """A run directory loaded in-process: its config, dataset, and model (best weights loaded, or refitted)."""

    run_dir: Path
    run: RunConfig
    data: DatasetDir
    model: Any
    family: str


class _AfterFailedRestore:
    """Drops TensorFlow's follow-up warnings about the unrestored values of a restore that already failed
    (and was reported in one line)."""

    NOISE = ("Detecting that an object or model or tf.train.Checkpoint is being deleted with unrestored values",
             "Value in checkpoint could not be found in the restored object")

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith(self.NOISE)


class RunDir:
    """The files of one run directory (``path``; it need not exist), and loading its model."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ layout
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def marker(self) -> Path:
        from tfpps.spec import ownership

        return self.path / ownership.MARKER

    @property
    def weights_dir(self) -> Path:
        return self.path / WEIGHTS_DIR

    @property
    def best_weights(self) -> Path:
        """The best validation epoch's weights: a checkpoint prefix (``save_weights`` / ``load_weights``)."""
        return self.path / BEST_WEIGHTS

    @property
    def backup(self) -> Path:
        """``BackupAndRestore``'s directory: the last finished epoch, from which a killed run resumes."""
        return self.path / BACKUP

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def validation(self) -> Path:
        return self.path / VALIDATION

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    def split_metrics(self, split: str) -> Path:
        """``metrics-<split>.json``, written by ``tfpps.evaluate``."""
        return self.path / f"metrics-{split}.json"

    def trec_prefix(self, split: str = "test") -> Path:
        """The prefix :func:`tfpps.evaluation.trec.write_trec_files` writes ``<prefix>.run`` / ``.qrels`` at."""
        return self.path / split

    def trec_run(self, split: str = "test") -> Path:
        return self.trec_prefix(split).with_suffix(".run")

    def trec_qrels(self, split: str = "test") -> Path:
        return self.trec_prefix(split).with_suffix(".qrels")

    # ------------------------------------------------------------------ what it is
    def is_run_dir(self) -> bool:
        """It holds ``config.yaml``: a run whose model :meth:`load` can rebuild."""
        return self.config.exists()

    def has_results(self) -> bool:
        """It holds something a run writes while or after training (validation state, history, test metrics)."""
        return any((self.path / name).exists() for name in RESULT_FILES)

    def has_best_weights(self) -> bool:
        return Path(str(self.best_weights) + ".index").exists()

    def is_owned(self) -> bool:
        """tfpps created it as a run (its marker, or a run written before the marker): it may replace it."""
        from tfpps.spec import ownership

        return ownership.is_owned(self.path, ownership.RUN)

    def require(self, label: str | None = None) -> None:
        """ConfigError (one line, starting with ``label``, default the path) unless it holds ``config.yaml``."""
        if not self.is_run_dir():
            raise ConfigError(f"{label or self.path}: no {CONFIG} there; is it a tfpps run directory?")

    # ------------------------------------------------------------------ files
    def read_config(self) -> Any:
        """``config.yaml`` as YAML (a mapping for a run tfpps wrote; ``yaml.YAMLError`` when it is not YAML)."""
        import yaml

        return yaml.safe_load(self.config.read_text())

    def load_config(self, label: str | None = None) -> RunConfig:
        """The saved RunConfig; ConfigError (one line) without ``config.yaml`` or when it does not load."""
        from tfpps.config import load_yaml, run_config_from_dict

        self.require(label)
        return run_config_from_dict(load_yaml(self.config))

    def write_config(self, run: RunConfig) -> None:
        import yaml

        self.config.write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))

    def load_validation(self) -> dict | None:
        """The early-stopping state (``best``, ``best_epoch``, ``wait``, ``history``), None without one."""
        if not self.validation.exists():
            return None
        return json.loads(self.validation.read_text())

    def write_validation(self, state: Mapping[str, Any]) -> None:
        """Write the early-stopping state atomically (the trainer after every epoch; ``tfpps.tune`` for the
        one validation of a non-neural trial)."""
        write_json_atomic(self.validation, dict(state))

    def load_metrics(self) -> dict:
        """``metrics.json`` (the test result: ``metrics``, ``best_epoch``, ...); OSError when missing,
        ValueError when not JSON."""
        return json.loads(self.metrics.read_text())

    def read_history_csv(self) -> list[dict[str, str]]:
        """``history.csv``'s rows as written by Keras' CSVLogger (strings; 0-based ``epoch``)."""
        import csv

        with open(self.history, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    # ------------------------------------------------------------------ the model
    def load_best_weights(self, model) -> None:
        """Load the best weights into ``model``; ConfigError (one line) when there are none or when they do
        not fit the model ``config.yaml`` describes (e.g. a config edited after training)."""
        import tensorflow as tf

        from tfpps.errors import first_line

        weights = self.best_weights
        if not self.has_best_weights():
            raise ConfigError(f"{self.path}: no trained weights at {weights}")
        try:
            model.load_weights(str(weights)).expect_partial()
            build = getattr(model, "build_for_serving", None)
            if callable(build):  # lazily created weights are restored (and their shapes checked) as they are built
                build()
        except (ValueError, AssertionError, tf.errors.OpError) as exc:
            import logging

            logging.getLogger("tensorflow").addFilter(_AfterFailedRestore())
            detail = first_line(exc)
            raise ConfigError(f"{self.path}: its weights ({weights}) do not fit the model its {CONFIG} describes "
                              f"({detail}); was {CONFIG} edited after training?") from None

    def load(self, overrides: Mapping[str, str] | None = None, label: str | None = None) -> LoadedRun:
        """Rebuild the run's model from its saved config, then load its best weights, or refit it when it
        is non-neural (popularity, KNN: no weights; refitted on the run's training split).

        ``overrides`` (``--set`` values, e.g. ``eval.ks``): applied to the saved config, which is then
        validated. ``label``: how the user named the run dir, for the one-line error without ``config.yaml``.
        Raises ConfigError / DatasetError with one line."""
        run = self.load_config(label)
        if overrides is not None:
            from tfpps.config import apply_overrides

            apply_overrides(run, overrides)
            run.validate()
        from tfpps import registry
        from tfpps.data.dataset_dir import DatasetDir

        data = DatasetDir(run.data.dir)
        entry = registry.get(run.model)  # resolved once: the class and the family
        model = entry.model_cls(run.model_params, data.info(), run)
        if entry.family == registry.NONNEURAL:
            model.fit_data(data)  # counts and neighbour tables are rebuilt from the training split
        else:
            self.load_best_weights(model)  # ConfigError when missing or not fitting the config
        return LoadedRun(self.path, run, data, model, entry.family)


def is_run_dir(path: str | os.PathLike) -> bool:
    """``path`` holds ``config.yaml``: a run whose model can be loaded (:meth:`RunDir.is_run_dir`)."""
    return RunDir(path).is_run_dir()


def has_results(path: str | os.PathLike) -> bool:
    """``path`` holds ``validation.json``, ``history.csv`` or ``metrics.json`` (:meth:`RunDir.has_results`)."""
    return RunDir(path).has_results()


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """``RunDir(run_dir).load()``: the run's model with its best weights (or refitted)."""
    return RunDir(run_dir).load()
