"""What tfpps created, and may therefore replace or delete.

tfpps never deletes or replaces a directory it did not create. Every dataset and run directory it
makes holds a marker file, ``.tfpps``, naming its kind::

    {"kind": "dataset", "tfpps_version": "0.1.0"}

A command about to replace or delete a directory calls :func:`check_replaceable` first; when the
directory exists, is not empty and is not tfpps's, it raises :class:`NotOurs` with one line, e.g.::

    --data_dir=/home/me/photos: exists and is not a tfpps dataset (no dataset.json); choose an empty or new directory

Datasets and runs written before the marker existed are recognised by their own files (a dataset by
``dataset.json``, a run by ``config.yaml`` beside a ``weights/`` folder).

No TensorFlow and no Beam here: the Beam job, the trainer and the CLIs all import this module.

Example::

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> check_replaceable(d, RUN, "--run_dir")   # absent: fine
    >>> d.mkdir(); (d / "notes.txt").write_text("mine")
    4
    >>> check_replaceable(d, RUN, "--run_dir")
    Traceback (most recent call last):
    ...
    tfpps.spec.ownership.NotOurs: --run_dir=...: exists and is not a tfpps run (no .tfpps marker); choose an empty or new directory
"""
from __future__ import annotations

import json
import os
from pathlib import Path

MARKER = ".tfpps"
DATASET = "dataset"
RUN = "run"
KINDS = (DATASET, RUN)

# what a directory of each kind holds even without the marker (written before it existed): a dataset's
# dataset.json, a run's config.yaml and weights/ (tfpps.runs.run_dir.CONFIG and WEIGHTS_DIR, which import
# this module; tests/test_run_dir.py checks that the names agree)
LEGACY_EVIDENCE = {DATASET: ("dataset.json",), RUN: ("config.yaml", "weights")}
_MISSING = {DATASET: "no dataset.json", RUN: "no .tfpps marker"}


class NotOurs(ValueError):
    """A directory tfpps would replace or delete is not one it created (message: one line)."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"ownership kind {kind!r}: expected one of {KINDS}")


def marker_text(kind: str) -> str:
    """The marker file's content for ``kind`` (the Beam job writes it through Beam's FileSystems)."""
    _check_kind(kind)
    from tfpps import __version__

    return json.dumps({"kind": kind, "tfpps_version": __version__}) + "\n"


def mark(path: str | os.PathLike, kind: str) -> None:
    """Write the marker into the local directory ``path`` (created if missing)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(marker_text(kind))


def marked_kind(path: str | os.PathLike) -> str | None:
    """The kind named by ``path``'s marker, or None without a readable one."""
    try:
        data = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) else None


def is_owned(path: str | os.PathLike, kind: str) -> bool:
    """True when ``path`` is a directory tfpps created as ``kind`` (marker, or the kind's own files)."""
    _check_kind(kind)
    path = Path(path)
    if not path.is_dir():
        return False
    if marked_kind(path) == kind:
        return True
    return all((path / name).exists() for name in LEGACY_EVIDENCE[kind])


def is_empty_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    try:
        return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None
    except OSError:
        return False


def check_replaceable(path: str | os.PathLike, kind: str, flag: str) -> None:
    """Raise :class:`NotOurs` unless tfpps may replace or delete ``path`` as a ``kind`` directory:
    it is absent, an empty directory, or tfpps's own ``kind`` directory. ``flag`` names where the
    path came from (``--data_dir``, ``--run_dir``, ``data.dir``) in the message."""
    _check_kind(kind)
    path = Path(path)
    if not os.path.lexists(path) or is_empty_dir(path) or is_owned(path, kind):
        return
    if path.is_symlink():
        raise NotOurs(f"{flag}={path}: is a symbolic link; tfpps replaces only directories it created; choose a new directory")
    if not path.is_dir():
        raise NotOurs(f"{flag}={path}: exists and is a file, not a tfpps {kind} directory; choose an empty or new directory")
    other = marked_kind(path)
    why = f"it is a tfpps {other}" if other else _MISSING[kind]
    raise NotOurs(f"{flag}={path}: exists and is not a tfpps {kind} ({why}); choose an empty or new directory")
