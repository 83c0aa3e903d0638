"""The report: its figures written into a folder, and ``report.html``, one self-contained page (the PNGs
embedded as base64, tables of metrics and of the best trials), viewable offline or attached to a ticket."""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from tfpps.config import ConfigError
from tfpps.reporting.figures import DEFAULT_METRICS, plot_learning_curves, plot_metrics, plot_sweep
from tfpps.reporting.inputs import collect


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, (list, dict)):
            return html.escape(json.dumps(v, separators=(",", ":")))
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(path: Path, runs: list[dict], sweeps: list[dict], figures: list[tuple[Path, str]], metrics: list[str],
               inputs: list[str] | None = None) -> Path:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>tfpps report</title>',
        "<style>body{font-family:sans-serif;margin:2em;max-width:1300px}img{max-width:100%}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
        "th{background:#f3f3f3}figure{margin:1.5em 0}figcaption{color:#555;font-size:13px}</style></head><body>",
        "<h1>tfpps report</h1>",
        f"<p>{html.escape(time.strftime('%Y-%m-%d %H:%M'))}; inputs: {html.escape(', '.join(inputs or sorted({r['path'] for r in runs} | {s['path'] for s in sweeps})))}</p>",
    ]
    for fig_path, caption in figures:
        parts.append(_img(fig_path, caption))
    standalone = [r for r in runs if r["metrics"] and "sweep" not in r]
    if standalone:
        shown = [m for m in metrics if any(m in r["metrics"] for r in standalone)]
        parts.append("<h2>Test metrics</h2>")
        parts.append(_table(["run", *shown, "epochs", "path"],
                            [[r["label"], *[r["metrics"].get(m) for m in shown], len(r["history"]), r["path"]] for r in standalone]))
    for sweep in sweeps:
        trials = sweep["trials"]
        keys = sorted({k for t in trials for k in (t.get("hyperparameters") or {})})
        parts.append(f"<h2>Sweep {html.escape(sweep['name'])}</h2>")
        parts.append(f"<p>{len(trials)} trials; objective {html.escape(sweep['objective'])} (validation, higher is better)</p>")
        parts.append(_table(["rank", "trial", "status", sweep["objective"], *keys, "epochs", "seconds", "test ndcg@10"],
                            [[t.get("rank", ""), t["trial_id"], t.get("status"), t.get("objective"),
                              *[(t.get("hyperparameters") or {}).get(k) for k in keys], t.get("epochs"), t.get("seconds"),
                              (t.get("test") or {}).get("ndcg@10")] for t in trials]))
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def make_report(inputs: list[str], out: Path, fmt: str = "html", metrics: list[str] | None = None) -> dict:
    """Write the figures (and report.html) into ``out``; returns {'figures': [...], 'html': path or None}."""
    runs, sweeps = collect(inputs)
    if not runs and not sweeps:
        raise ConfigError("nothing to report: the directories hold no runs or sweeps")
    metrics = list(metrics or DEFAULT_METRICS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[Path, str]] = []
    curves = plot_learning_curves(runs, out / "learning_curves.png")
    if curves:
        figures.append((curves, "Learning curves: training loss and validation metric per epoch"))
    standalone = [r for r in runs if "sweep" not in r] or runs[:5]  # only sweeps: their 5 best trials
    bars = plot_metrics(standalone, out / "metrics.png", metrics)
    if bars:
        figures.append((bars, "Test metrics by run (full ranking over all items)"))
    for sweep in sweeps:
        fig = plot_sweep(sweep, out / f"sweep-{_slug(sweep['name'])}.png")
        if fig:
            figures.append((fig, f"Sweep {sweep['name']}: objective of each trial in the order run, and the best so far"))
    if not figures:
        raise ConfigError("nothing to plot: no epoch history, test metrics or completed trials in the given directories")
    page = write_html(out / "report.html", runs, sweeps, figures, metrics, inputs) if fmt == "html" else None
    return {"figures": [str(p) for p, _ in figures], "html": str(page) if page else None, "runs": len(runs), "sweeps": len(sweeps)}
