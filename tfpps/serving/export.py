"""A trained run exported as a TensorFlow SavedModel (:func:`export_run`; the command line: :mod:`tfpps.cli.export`).

The SavedModel takes raw user and item ids (the vocabulary lookup is in the graph) and returns the top-k
item ids and scores (:mod:`tfpps.serving.module`). Dot-product models are served from a TFRS top-k index
over their item vectors; non-neural models scored by TensorFlow ops with ``top_k`` over ``score_items``.
The export directory holds the SavedModel, ``export_manifest.json`` and ``assets.extra/item_meta.jsonl``;
it is written to a temporary sibling and renamed when complete.
"""
from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Callable

import tfpps
from tfpps.runs.run_dir import RunDir

SCORE_EXPORTABLE = ("pop", "itemknn", "sknn", "vsknn")  # non-neural models scored in TensorFlow


def exportable_models() -> str:
    from tfpps import registry
    from tfpps.models.base import has_item_vectors

    vectors = [n for n in registry.names() if has_item_vectors(registry.get(n).model_cls)]
    scored = [n for n in SCORE_EXPORTABLE if n in registry.names()]
    return f"{', '.join(vectors)} (top-k index) and models scored in TensorFlow such as {', '.join(scored)} (top_k over scores)"


def export_run(run_dir: str | Path, out: str | Path, k: int = 10, index: str = "auto", overwrite: bool = False,
               log: Callable[[str], None] = print) -> dict:
    """Export ``run_dir`` to ``out``; returns the manifest. Raises ConfigError/DatasetError/ExportError (one line)."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from tfpps.models.base import has_item_vectors
    from tfpps.serving import item_meta, manifest as manifest_mod
    from tfpps.serving.module import ExportError, RecommenderModule, choose_index
    from tfpps.serving.runs import load_run
    from tfpps.serving.vocab import Vocabulary

    if k < 1:
        raise ExportError(f"--k={k}: must be >= 1")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ExportError(f"--out={out}: already exists; pass --overwrite to replace it")
    loaded = load_run(run_dir)
    run, data, model = loaded.run, loaded.data, loaded.model
    items, users = Vocabulary(data.vocab("items")), Vocabulary(data.vocab("users"))
    if has_item_vectors(model):
        kind = choose_index(index, len(items.real_tokens), log)
    else:
        if index == "scann":
            raise ExportError(f"--index=scann: model {run.model!r} has no query/item vectors; use --index=auto")
        kind = None
    try:
        words = Vocabulary(data.vocab("words")) if data.kind == "search" else None
        module = RecommenderModule(model, items, users, max_len=run.data.max_len, k=k, index_kind=kind or "brute-force",
                                   words=words)
    except ExportError as exc:
        raise ExportError(f"model {run.model!r} cannot be exported: {exc}; exportable: {exportable_models()}") from None
    if module.k < k:
        log(f"note: k={k} > {module.k} real items; exporting k={module.k}")

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        (tmp / "assets.extra").mkdir(exist_ok=True)
        n_meta = item_meta.copy_item_meta(
            item_meta.dataset_item_meta_path(data.path), tmp / manifest_mod.ITEM_META_EXPORT, set(items.real_tokens)
        )
        metrics_path = RunDir(loaded.run_dir).metrics
        manifest = {
            "format": manifest_mod.FORMAT,
            "model": run.model,
            "dataset": run.data.dataset,
            "dataset_dir": str(data.path),
            "run_dir": str(Path(run_dir).resolve()),
            "k": module.k,
            "retrieval": module.retrieval,
            "exact": module.retrieval != "scann",
            "max_len": module.max_len,
            "takes_query": module.takes_query,
            "vocab_sizes": {"items": len(items), "users": len(users)},
            "pad_oov": "index 0 = <PAD>, 1 = <OOV>; unknown ids -> OOV; empty strings are padding; PAD/OOV are never returned",
            "signatures": {
                "serving_default": "user_id string[B], history string[B, L] (oldest first, ''-padded)"
                + (", query string[B] (normalised words, space-joined)" if module.takes_query else ""),
                "recommend_csv": "user_id string[B], history string[B] (comma-joined item ids)"
                + (", query string[B]" if module.takes_query else ""),
                "outputs": "item_ids string[B, k], scores float32[B, k], known_user bool[B], unknown_history_items int32[B]",
                "lookup_items/lookup_users": "ids string[N] -> index int64[N]",
            },
            "item_meta": manifest_mod.ITEM_META_EXPORT if n_meta else None,
            "test_metrics": _read_json(metrics_path).get("metrics") if metrics_path.exists() else None,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"tfpps": tfpps.__version__, "tensorflow": tf.__version__, "tensorflow_recommenders": tfrs.__version__},
        }
        manifest_mod.write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
