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
import sys
from pathlib import Path

from tfpps.cli.parser import OneLineParser
from tfpps.config import ConfigError
from tfpps.reporting.figures import DEFAULT_METRICS, plot_sweep  # noqa: F401  (plot_sweep: re-exported)
from tfpps.reporting.inputs import load_sweep, read_run  # noqa: F401  (re-exported)
from tfpps.reporting.page import make_report


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
