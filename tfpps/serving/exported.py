"""An export directory (``python -m tfpps.export``) loaded with ``tf.saved_model.load``.

:class:`ExportedRecommender` calls the SavedModel's ``serving_default``
signature (histories as a ``""``-padded string matrix) and its ``lookup_items``
signature (to name unknown history items), so it answers exactly as any
other SavedModel client would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import tensorflow as tf

from tfpps.spec.schema import OOV_ID
from tfpps.serving.manifest import ITEM_META_EXPORT, read_manifest
from tfpps.serving.requests import Recommendations, Request


def load_exported(export_dir: str | Path):
    """``tf.saved_model.load`` of an export dir, loading the ScaNN ops first when the export uses them."""
    manifest = read_manifest(export_dir)
    if manifest.get("retrieval") == "scann":
        try:
            import scann  # noqa: F401  (registers the ScaNN TF ops the SavedModel uses)
        except ImportError:
            raise ImportError(f"{export_dir}: this export uses a ScaNN index; install scann (pip install scann==1.3.2)") from None
    return tf.saved_model.load(str(export_dir)), manifest


class ExportedRecommender:
    """Recommendations from an export directory's SavedModel."""

    source = "export"

    def __init__(self, export_dir: str | Path):
        self.export_dir = Path(export_dir)
        self.loaded, self.manifest = load_exported(export_dir)
        self.model_name = self.manifest["model"]
        self.dataset = self.manifest["dataset"]
        self.max_k = int(self.manifest["k"])
        self.max_len = int(self.manifest["max_len"])
        self.item_meta_path = self.export_dir / ITEM_META_EXPORT
        self._recommend = self.loaded.signatures["serving_default"]
        self._lookup_items = self.loaded.signatures["lookup_items"]
        self.takes_query = bool(self.manifest.get("takes_query"))

    def recommend(self, requests: Sequence[Request], k: int) -> list[Recommendations]:
        users = tf.constant([r.user for r in requests])
        width = max([1] + [len(r.history) for r in requests])
        history = tf.constant([list(r.history) + [""] * (width - len(r.history)) for r in requests], tf.string)
        if self.takes_query:
            from tfpps.serving.requests import normalize_query

            queries = tf.constant([normalize_query(r.query) for r in requests])
            out = self._recommend(user_id=users, history=history, query=queries)
        else:
            out = self._recommend(user_id=users, history=history)
        k = min(k, self.max_k)
        items = out["item_ids"].numpy()[:, :k]
        scores = out["scores"].numpy()[:, :k]
        known = out["known_user"].numpy()
        results = []
        for b, r in enumerate(requests):
            history = [t for t in r.history if t]
            unknown = []
            if int(out["unknown_history_items"][b]) > 0:
                index = self._lookup_items(ids=tf.constant(history))["index"].numpy()
                unknown = [t for t, i in zip(history, index) if i == OOV_ID]
            results.append(
                Recommendations(
                    items=[x.decode("utf-8") for x in items[b]],
                    scores=[float(s) for s in scores[b]],
                    known_user=bool(known[b]),
                    unknown_history=unknown,
                )
            )
        return results
