"""What a sweep leaves: its trials best first, as a printed table, ``trials.csv``/``trials.json`` and ``best.yaml``."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from tfpps.tuning.trials import objective_name


def collect_trials(project_dir: Path, metric: str) -> list[dict]:
    """Every trial of the sweep (Keras Tuner's trial.json + our result.json), best first."""
    rows = []
    for trial_json in sorted(project_dir.glob("trial_*/trial.json")):
        state = json.loads(trial_json.read_text())
        result_path = trial_json.parent / "result.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        row = {
            "trial_id": state["trial_id"],
            "status": state["status"],
            "objective": state.get("score") if state["status"] == "COMPLETED" else None,
            "objective_per_execution": result.get("objective_per_execution"),
            "hyperparameters": result.get("hyperparameters")
            or {k: v for k, v in (state.get("hyperparameters") or {}).get("values", {}).items() if not k.startswith("tuner/")},
            "hyperband": result.get("hyperband"),
            "epochs": result.get("epochs"),
            "best_epoch": result.get("best_epoch"),
            "seconds": result.get("seconds"),
            "test": result.get("test", {}),
            "run_dirs": result.get("run_dirs", []),
        }
        if state.get("message") and state["status"] != "COMPLETED":
            lines = [l for l in state["message"].strip().splitlines() if l.strip()]
            row["message"] = lines[-1] if lines else state["message"]
        rows.append(row)
    done = sorted((r for r in rows if r["objective"] is not None), key=lambda r: (-r["objective"], r["trial_id"]))
    rest = sorted((r for r in rows if r["objective"] is None), key=lambda r: r["trial_id"])
    for rank, row in enumerate(done, 1):
        row["rank"] = rank
    return done + rest


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    leaves = [k.split(".", 1)[-1] for k in keys]
    return {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves)}


def _epochs(trial: dict) -> str:
    """Epochs trained; a Hyperband trial continued from another shows 'inherited+trained'."""
    hb = trial.get("hyperband") or {}
    if hb.get("tuner/trial_id"):
        return f"{hb.get('tuner/initial_epoch', 0)}+{format_value(trial['epochs'])}"
    return format_value(trial["epochs"])


def results_table(trials: list[dict], metric: str, keys: list[str], top: int | None = 10) -> str:
    names = short_names(keys)
    shown = [t for t in trials if t["objective"] is not None][: top or None]
    failed = [t for t in trials if t["objective"] is None]
    header = ["rank", "trial", f"val {metric}"] + [names[k] for k in keys] + ["epochs", "best ep", "seconds"]
    rows = [
        [str(t.get("rank", "")), t["trial_id"], f"{t['objective']:.4f}"]
        + [format_value(t["hyperparameters"].get(k)) for k in keys]
        + [_epochs(t), format_value(t["best_epoch"]), format_value(t["seconds"])]
        for t in shown
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    for t in failed:
        lines.append(f"trial {t['trial_id']}: {t['status']}" + (f" ({t['message']})" if t.get("message") else ""))
    return "\n".join(lines)


def write_results(project_dir: Path, trials: list[dict], metric: str, keys: list[str]) -> None:
    (project_dir / "trials.json").write_text(json.dumps({"objective": objective_name(metric), "direction": "max", "trials": trials}, indent=1, default=str) + "\n")
    test_keys = sorted({k for t in trials for k in t["test"] if k != "num_examples"})
    with open(project_dir / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "trial_id", "status", objective_name(metric)] + keys + ["epochs", "best_epoch", "seconds"] + [f"test_{k}" for k in test_keys])
        for t in trials:
            writer.writerow(
                [t.get("rank", ""), t["trial_id"], t["status"], "" if t["objective"] is None else t["objective"]]
                + [format_value(t["hyperparameters"].get(k)) for k in keys]
                + [format_value(t["epochs"]), format_value(t["best_epoch"]), format_value(t["seconds"])]
                + [format_value(t["test"].get(k)) for k in test_keys]
            )


def write_best_yaml(project_dir: Path, tuner_obj, best: dict, metric: str) -> Path:
    epochs = (best.get("hyperband") or {}).get("tuner/epochs")
    cfg = tuner_obj.trial_config(best["hyperparameters"], epochs=epochs)
    cfg.train.run_dir = ""
    cfg.train.verbose = 1
    tuned = ", ".join(f"{k}={format_value(v)}" for k, v in best["hyperparameters"].items())
    header = (
        f"# Best trial {best['trial_id']} of the sweep in {project_dir}\n"
        f"# {objective_name(metric)} = {best['objective']:.4f} (validation, best epoch {best['best_epoch']} of {best['epochs']})\n"
        f"# tuned: {tuned}\n"
        f"# use: python -m tfpps.train --config={project_dir / 'best.yaml'}\n"
    )
    path = project_dir / "best.yaml"
    path.write_text(header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
