"""What the report reads: a run dir (``validation.json`` / ``history.csv`` / ``metrics.json``, through
:class:`tfpps.runs.RunDir`), a sweep dir of ``tfpps.tune`` (``trials.json``), or a folder of run dirs."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tfpps.config import ConfigError
from tfpps.runs.run_dir import RunDir, has_results


def is_sweep_dir(path: Path) -> bool:
    return (path / "trials.json").exists() or (path / "oracle.json").exists()


def finite_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def read_run(path: Path, label: str | None = None) -> dict:
    """What the report shows of one run dir: per-epoch history (validation.json, else history.csv), test
    metrics and config (loading its model is :meth:`tfpps.runs.RunDir.load`)."""
    path = Path(path)
    files = RunDir(path)
    history: list[dict] = []
    valid_metric = None
    state = files.load_validation()
    if state is not None:
        history = [dict(h) for h in state.get("history", [])]
    if files.history.exists():
        rows = files.read_history_csv()
        if not history:
            history = [{k: (finite_float(v) if k != "epoch" else int(float(v)) + 1) for k, v in r.items()} for r in rows]
    config = {}
    if files.is_run_dir():
        config = files.read_config() or {}
        valid_metric = (config.get("train") or {}).get("valid_metric")
    metrics = {}
    if files.metrics.exists():
        metrics = files.load_metrics().get("metrics") or {}
    return {"label": label or path.name, "path": str(path), "history": history, "metrics": metrics, "config": config,
            "valid_metric": valid_metric or "ndcg@10"}


def load_sweep(path: Path) -> dict:
    """A tfpps.tune sweep: its trials (trials.json, written after every search) and request (sweep.json)."""
    path = Path(path)
    trials_path = path / "trials.json"
    if not trials_path.exists():
        raise ConfigError(f"{path}: no trials.json yet (it is written when python -m tfpps.tune finishes or resumes)")
    data = json.loads(trials_path.read_text())
    request = json.loads((path / "sweep.json").read_text()) if (path / "sweep.json").exists() else {}
    return {"name": path.name, "path": str(path), "objective": data.get("objective", "objective"), "trials": data.get("trials", []),
            "request": request}


def collect(inputs: list[str]) -> tuple[list[dict], list[dict]]:
    """Runs and sweeps named by ``inputs`` (run dirs, sweep dirs, or folders of run dirs)."""
    runs, sweeps = [], []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            raise ConfigError(f"--runs={item}: no such directory")
        if is_sweep_dir(path):
            sweep = load_sweep(path)
            sweeps.append(sweep)
            for t in sweep["trials"]:
                for run_dir in t.get("run_dirs", [])[:1]:
                    if Path(run_dir).is_dir():
                        run = read_run(Path(run_dir), f"{sweep['name']}/trial {t['trial_id']}")
                        run["sweep"] = sweep["name"]
                        hb = t.get("hyperband") or {}
                        if hb.get("tuner/trial_id"):  # a continued Hyperband trial: its epochs follow the parent's
                            for row in run["history"]:
                                row["epoch"] = int(row.get("epoch") or 0) + int(hb.get("tuner/initial_epoch") or 0)
                        runs.append(run)
        elif has_results(path):
            runs.append(read_run(path))
        else:
            children = sorted(p for p in path.iterdir() if p.is_dir() and has_results(p))
            if not children:
                raise ConfigError(f"--runs={item}: not a run directory (no validation.json, history.csv or metrics.json), "
                                  "a sweep directory (trials.json) or a folder of run directories")
            runs.extend(read_run(p) for p in children)
    labels: dict[str, int] = {}
    for run in runs:  # unique labels
        n = labels.get(run["label"], 0)
        labels[run["label"]] = n + 1
        if n:
            run["label"] = f"{run['label']} ({n + 1})"
    return runs, sweeps
