"""Item metadata for display: titles and categories from the Beam job's ``vocab/item_meta.jsonl``.

The Beam job writes one JSON object per item when it is given
``--metadata`` (MovieLens ``.item``/``u.item``/``movies.dat``, Amazon
``meta_*.json``, canonical ``items.jsonl``)::

    {"item_id": "1", "title": "Toy Story", "categories": [["Animation"], ["Comedy"]], "description": null}

``categories`` is a list of category paths (MovieLens genres are paths of
length one). Datasets built without ``--metadata`` have no such file; then
items are shown by id only.
"""
from __future__ import annotations

import json
from pathlib import Path

from tfpps.spec import schema

ITEM_META_FILE = "item_meta.jsonl"  # written by beam_jobs.build_features under <dataset>/vocab/


def dataset_item_meta_path(dataset_dir: str | Path) -> Path:
    return Path(dataset_dir) / schema.VOCAB_DIR / ITEM_META_FILE


def read_item_meta(path: str | Path, keep: set[str] | None = None) -> dict[str, dict]:
    """``item_id -> {"title": str | None, "categories": str}`` from a metadata JSON-lines file ({} if absent).

    ``keep`` restricts the result to those item ids. Malformed lines are skipped.
    """
    path = Path(path)
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            item = str(row.get("item_id", ""))
            if not item or (keep is not None and item not in keep):
                continue
            out[item] = {"title": row.get("title"), "categories": format_categories(row.get("categories"))}
    return out


def format_categories(categories) -> str:
    """``[["A", "B"], ["C"]]`` -> ``"A > B, C"`` (paths joined by ``>``, several paths by commas)."""
    if not categories:
        return ""
    paths = []
    for path in categories:
        if isinstance(path, (list, tuple)):
            paths.append(" > ".join(str(p) for p in path if p))
        elif path:
            paths.append(str(path))
    return ", ".join(p for p in paths if p)


def copy_item_meta(src: str | Path, dst: str | Path, keep: set[str]) -> int:
    """Copy the lines of ``src`` whose ``item_id`` is in ``keep`` to ``dst``; returns how many (0, no file, if none)."""
    src = Path(src)
    if not src.exists():
        return 0
    lines = []
    with open(src, encoding="utf-8") as fh:
        for line in fh:
            try:
                item = str(json.loads(line).get("item_id", ""))
            except json.JSONDecodeError:
                continue
            if item in keep:
                lines.append(line if line.endswith("\n") else line + "\n")
    if lines:
        Path(dst).write_text("".join(lines), encoding="utf-8")
    return len(lines)
