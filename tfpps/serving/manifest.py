"""The export manifest: what an export directory holds, from which run, made when and how.

``<export>/export_manifest.json`` sits beside the SavedModel (``saved_model.pb``,
``variables/``) and ``assets.extra/item_meta.jsonl`` (the item metadata of the
exported items, when the dataset has any). :mod:`tfpps.recommend` reads it to
know the model, ``k`` and the retrieval kind (a ScaNN export needs the
``scann`` ops loaded before ``tf.saved_model.load``).
"""
from __future__ import annotations

import json
from pathlib import Path

MANIFEST_FILE = "export_manifest.json"
ITEM_META_EXPORT = "assets.extra/item_meta.jsonl"
FORMAT = "tfpps-export/1"


def is_export_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "saved_model.pb").exists() and (path / MANIFEST_FILE).exists()


def write_manifest(export_dir: str | Path, manifest: dict) -> Path:
    path = Path(export_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def read_manifest(export_dir: str | Path) -> dict:
    path = Path(export_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{export_dir}: no {MANIFEST_FILE}; is it a tfpps export directory?")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest
