"""An existing run directory before training: complete (report it), another config (refuse) or ``--fresh``.

With ``strict=True`` (the ``tfpps.train`` command) the trainer checks an existing run directory first
(:func:`check_run_dir`): a directory that is not a tfpps run is refused, a run with another config is
refused (``--fresh`` or another ``--run_dir``), and a complete run (``metrics.json``, same config) is not
trained again: its metrics are printed (:func:`report_complete`). ``--fresh`` empties a tfpps run dir
(:func:`clear_run_dir`), never a directory that is not one (:mod:`tfpps.spec.ownership`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

import yaml

from tfpps.spec import ownership
from tfpps.config import ConfigError, RunConfig, run_config_from_dict
from tfpps.data.datasets import target_dir
from tfpps.errors import first_line
from tfpps.evaluation import evaluator
from tfpps.runs.run_dir import METRICS, RunDir

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

    Raises :class:`tfpps.spec.ownership.NotOurs` (one line) for a path that is a file, or that ``--fresh``
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
