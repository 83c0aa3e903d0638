"""The report's figures (PNG): learning curves, test metrics side by side, a sweep's objective per trial."""
from __future__ import annotations

import math
from pathlib import Path

from tfpps.reporting.inputs import finite_float

DEFAULT_METRICS = ("recall@10", "mrr@10", "ndcg@10", "recall@20")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG, its folder made) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        value = finite_float(row.get(key))
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
    return _save(plt, fig, path)


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
    return _save(plt, fig, path)


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
    return _save(plt, fig, path)
