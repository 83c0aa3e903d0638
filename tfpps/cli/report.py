"""Pictures of runs and sweeps: ``python -m tfpps.report --runs=DIR [DIR ...] [--out=report]``.

Each ``DIR`` is a run directory of ``tfpps.train`` (``validation.json`` / ``history.csv`` /
``metrics.json``), a sweep directory of ``tfpps.tune`` (``trials.json``), or a folder holding run
directories (e.g. ``runs/``). The report holds:

- ``learning_curves.png``: training loss and the validation metric per epoch, one line per run;
- ``metrics.png``: the test metrics of every run (``metrics.json``) side by side;
- ``sweep-<name>.png`` per sweep: each trial's objective in the order the trials ran, the running best,
  and the learning curves of the sweep's trials in the learning-curve figure;
- ``report.html``: one self-contained page (the PNGs embedded as base64, tables of metrics and of the
  best trials), viewable offline or attached to a ticket.

``--format=html`` (default: the HTML page and the PNG files), ``--format=png`` (the PNG files only).
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tfpps.cli import OneLineParser
from tfpps.config import ConfigError
from tfpps.runs.run_dir import RunDir, has_results

DEFAULT_METRICS = ("recall@10", "mrr@10", "ndcg@10", "recall@20")


# --------------------------------------------------------------------------- loading
def is_sweep_dir(path: Path) -> bool:
    return (path / "trials.json").exists() or (path / "oracle.json").exists()


def _float(value: Any) -> float | None:
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
            history = [{k: (_float(v) if k != "epoch" else int(float(v)) + 1) for k, v in r.items()} for r in rows]
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


# --------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        value = _float(row.get(key))
        if value is not None:
            xs.append(int(row.get("epoch") or i + 1))
            ys.append(value)
    return xs, ys


def plot_learning_curves(runs: list[dict], path: Path, metric: str | None = None) -> Path | None:
    """Loss and validation metric per epoch, one line per run; None when no run has a history."""
    with_history = [r for r in runs if r["history"]]
    if not with_history:
        return None
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4.5))
    many = len(with_history) > 10
    metrics_shown = set()
    for run in with_history:
        m = metric or run["valid_metric"]
        kw = {"linewidth": 1.0 if many else 1.6, "alpha": 0.75 if many else 1.0, "marker": None if many else "o", "markersize": 3}
        xs, ys = _series(run["history"], "loss")
        if xs:
            ax_loss.plot(xs, ys, label=run["label"], **kw)
        xs, ys = _series(run["history"], f"val_{m}")
        if xs:
            ax_val.plot(xs, ys, label=run["label"], **kw)
            metrics_shown.add(m)
    ax_loss.set_title("training loss")
    ax_val.set_title("validation " + (", ".join(sorted(metrics_shown)) or "metric"))
    for ax in (ax_loss, ax_val):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if len(with_history) <= 20:
        ax_val.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metrics(runs: list[dict], path: Path, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS) -> Path | None:
    """Grouped bars: one group per metric, one bar per run with test metrics."""
    with_metrics = [r for r in runs if r["metrics"]]
    shown = [m for m in metrics if any(m in r["metrics"] for r in with_metrics)]
    if not with_metrics or not shown:
        return None
    import numpy as np

    plt = _pyplot()
    x = np.arange(len(shown))
    width = 0.8 / len(with_metrics)
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.35 * len(shown) * len(with_metrics) + 3)), 4.5))
    for i, run in enumerate(with_metrics):
        values = [float(run["metrics"].get(m, float("nan"))) for m in shown]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=run["label"])
        if len(with_metrics) <= 6:
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, shown)
    ax.set_ylabel("test metric (full ranking)")
    ax.set_title("test metrics by run")
    ax.legend(fontsize=7, loc="best")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(sweep: dict, path: Path, reference: dict[str, float] | None = None) -> Path | None:
    """Objective of every completed trial in the order the trials ran, the running best, the best trial marked.

    ``reference``: horizontal lines, e.g. ``{"default config": 0.071}``.
    """
    done = sorted((t for t in sweep["trials"] if t.get("objective") is not None), key=lambda t: str(t["trial_id"]))
    if not done:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = list(range(1, len(done) + 1))
    ys = [float(t["objective"]) for t in done]
    running, best_so_far = [], -math.inf
    for y in ys:
        best_so_far = max(best_so_far, y)
        running.append(best_so_far)
    ax.scatter(xs, ys, s=30, zorder=3, label="trial")
    ax.step(xs, running, where="post", color="tab:green", label="best so far")
    b = max(range(len(ys)), key=lambda i: ys[i])
    ax.scatter([xs[b]], [ys[b]], s=140, facecolors="none", edgecolors="tab:red", linewidths=2, zorder=4,
               label=f"best: trial {done[b]['trial_id']} ({ys[b]:.4f})")
    for name, value in (reference or {}).items():
        ax.axhline(value, color="tab:gray", linestyle="--", linewidth=1)
        ax.text(xs[0], value, f" {name} {value:.4f}", va="bottom", fontsize=8, color="tab:gray")
    request = sweep.get("request") or {}
    what = " ".join(str(request.get(k)) for k in ("model", "dataset", "tuner") if request.get(k))
    ax.set_title(f"sweep {sweep['name']}" + (f" ({what})" if what else ""))
    ax.set_xlabel("trial (in the order run)")
    ax.set_ylabel(sweep["objective"] + " (validation)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- HTML
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


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(raise_errors=True, prog="python -m tfpps.report", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--runs", nargs="+", action="extend", default=[], metavar="DIR",
                   help="run dirs, sweep dirs (tfpps.tune) or folders of run dirs (also comma-separated, or repeated)")
    p.add_argument("more", nargs="*", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    p.add_argument("--format", default="html", help="html (page + PNGs, default) | png (PNGs only)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="test metrics of the bar chart, comma-separated")
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        p.print_help()
        return 0
    try:
        args = p.parse_args(argv)
        if args.format not in ("html", "png"):
            raise ConfigError(f"--format={args.format!r}: expected html or png")
        runs = [r for item in args.runs + args.more for r in item.split(",") if r]
        if not runs:
            raise ConfigError("--runs=DIR [DIR ...] is required")
        result = make_report(runs, Path(args.out), args.format, [m.strip() for m in args.metrics.split(",") if m.strip()])
    except ConfigError as exc:
        print(f"tfpps.report: error: {exc}", file=sys.stderr)
        return 2
    print(f"tfpps.report: {result['runs']} run(s), {result['sweeps']} sweep(s) -> " + ", ".join(result["figures"])
          + (f", {result['html']}" if result["html"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
