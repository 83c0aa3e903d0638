"""A training run directory loaded in-process: its config, dataset, and the model with its best weights.

Neural models load ``weights/best``; non-neural ones (popularity, KNN) have no
weights and are refitted on the run's training split, as ``tfpps.evaluate``
does (both through :meth:`tfpps.runs.RunDir.load`). :class:`InProcessRecommender` answers requests with the model's
``score_items`` and ``tf.math.top_k`` over the real items (PAD and OOV
excluded), with the same request encoding as the exported graph. Search
models also get the request's query (``takes_query``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

import tensorflow as tf

from tfpps.runs.run_dir import LoadedRun, load_run  # noqa: F401  (LoadedRun: re-exported)
from tfpps.spec.schema import FIRST_ID
from tfpps.serving.item_meta import dataset_item_meta_path
from tfpps.serving.requests import Recommendations, Request, encode_requests
from tfpps.serving.vocab import Vocabulary


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
