"""Shared helpers for benchmark scripts: machine description, tables, JSON + PNG output.

A benchmark ``benchmarks/<group>/<name>.py`` keeps its results in ``benchmarks/<group>/results/<name>/``
(:func:`results_dir`): its JSON and PNG files, and its per-run cache ``runs/`` (gitignored).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def results_dir(script: str) -> Path:
    """The results folder of the benchmark whose ``__file__`` is ``script``: ``<its folder>/results/<its name>``."""
    path = Path(script).resolve()
    return path.parent / "results" / path.stem


def machine() -> dict:
    """Where the numbers were measured."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        info["memory_gb"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        info["gpu"] = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = None
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and waited-for children), MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def table(rows: list[dict], columns: list[str], title: str = "") -> str:
    """Markdown table of ``rows`` (dicts) restricted to ``columns``."""

    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "" if v is None else str(v)

    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def write_results(folder: Path, name: str, payload: dict) -> Path:
    """``payload`` as ``folder/name.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def bar_plot(folder: Path, name: str, labels: list[str], series: dict[str, list[float]], ylabel: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) * max(1, len(series)) / 2), 4))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=label)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(x, labels, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    top = max((v for values in series.values() for v in values), default=0)
    if top > 0:
        ax.set_ylim(0, top * 1.12)  # room for the bar labels
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
    fig.tight_layout()
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_tfpps_cached(out: Path, argv: list[str], reuse: bool) -> dict:
    """Train with ``python -m benchmarks.run_tfpps --out OUT -- ARGV`` (result JSON at ``out``); with ``reuse``,
    return an existing result instead when it was made with exactly the same ``argv``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if reuse and out.exists() and json.loads(out.read_text()).get("argv") == argv:
        print(f"reusing {out.relative_to(REPO)}", flush=True)
        return json.loads(out.read_text())
    cmd = [sys.executable, "-m", "benchmarks.run_tfpps", "--out", str(out), "--", *argv]
    print("$ " + " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:  # the run's own error line is just above; one more line, no traceback
        raise SystemExit(f"benchmark stopped: the tfpps run for {out.name} failed (exit {done.returncode})")
    return json.loads(out.read_text())


def model_list(parser, text: str, known) -> list[str]:
    """The ``--models`` comma list, each name checked against ``known`` (``parser.error`` names the unknown ones)."""
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(models) - set(known))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return models


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 4) -> str:
    """``0.1234`` for one value, ``0.1234 ± 0.0056`` (sample sd) for several; values multiplied by ``scale``."""
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of ``a`` against ``b`` over seeds; ``None`` when it cannot be
    computed (fewer than 2 values a side, or no spread on either side)."""
    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
