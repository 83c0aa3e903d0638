"""A training run directory loaded in-process: its config, dataset, and the model with its best weights.

Neural models load ``weights/best``; non-neural ones (popularity, KNN) have no
weights and are refitted on the run's training split, as ``tfpps.evaluate``
does. :class:`InProcessRecommender` answers requests with the model's
``score_items`` and ``tf.math.top_k`` over the real items (PAD and OOV
excluded), with the same request encoding as the exported graph. Search
models also get the request's query (``takes_query``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import ConfigError, RunConfig, load_yaml, run_config_from_dict
from tfpps.data.pipeline import DatasetDir
from tfpps.data.schema import FIRST_ID
from tfpps.serving.item_meta import dataset_item_meta_path
from tfpps.serving.requests import Recommendations, Request, encode_requests
from tfpps.serving.vocab import Vocabulary
from tfpps.training.trainer import load_best_weights


@dataclasses.dataclass
class LoadedRun:
    run_dir: Path
    run: RunConfig
    data: DatasetDir
    model: Any
    family: str


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.yaml").exists()


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild ``run_dir``'s model with its best weights (or refit it); ConfigError/DatasetError with one line."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise ConfigError(f"{run_dir}: no config.yaml there; is it a tfpps run directory?")
    run = run_config_from_dict(load_yaml(run_dir / "config.yaml"))
    data = DatasetDir(run.data.dir)
    entry = registry.get(run.model)
    model = entry.model_cls(run.model_params, data.info(), run)
    if entry.family == registry.NONNEURAL:
        model.fit_data(data)
    else:
        load_best_weights(model, run_dir)  # ConfigError (one line) when missing or not fitting the config
    return LoadedRun(run_dir, run, data, model, entry.family)


def top_k_real(scores: tf.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, indices)`` of the ``k`` best real items (columns ``>= FIRST_ID``) of ``scores [B, N]``."""
    values, cols = tf.math.top_k(scores[:, FIRST_ID:], k=k)
    return values.numpy(), cols.numpy() + FIRST_ID


class InProcessRecommender:
    """Recommendations from a run directory's model, in this process."""

    source = "run"

    def __init__(self, run_dir: str | Path):
        self.loaded = load_run(run_dir)
        data = self.loaded.data
        self.items = Vocabulary(data.vocab("items"))
        self.users = Vocabulary(data.vocab("users"))
        self.max_len = int(self.loaded.run.data.max_len)
        self.model_name = self.loaded.run.model
        self.dataset = self.loaded.run.data.dataset
        self.max_k = len(self.items) - FIRST_ID
        self.item_meta_path = dataset_item_meta_path(data.path)
        self.takes_query = data.kind == "search"  # product-search models rank for a (user, query)
        self.words = Vocabulary(data.vocab("words")) if self.takes_query else None

    def features(self, requests: Sequence[Request]) -> dict:
        encoded = encode_requests(requests, self.items, self.users, self.max_len, self.words)
        return {k: tf.constant(v) for k, v in encoded.items()}

    def recommend(self, requests: Sequence[Request], k: int) -> list[Recommendations]:
        values, idx = top_k_real(self.loaded.model.score_items(self.features(requests)), min(k, self.max_k))
        return [
            Recommendations(
                items=[self.items.tokens[i] for i in idx[b]],
                scores=[float(v) for v in values[b]],
                known_user=r.user in self.users,
                unknown_history=self.items.unknown(r.history),
            )
            for b, r in enumerate(requests)
        ]
