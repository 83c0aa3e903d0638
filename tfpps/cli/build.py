"""Command line: ``python -m tfpps.data.build --dataset=ml-100k [--rebuild] [--verbose] [beam options...]``.

Builds a named dataset (``configs/datasets/<name>.yaml``) with the Beam job,
generating the raw logs first for the synthetic default. Extra flags go to
Beam unchanged (e.g. ``--direct_num_workers=4``). ``--rebuild`` replaces the
dataset in its config's ``data.dir`` only when that directory is a tfpps
dataset (the old one stays until the new one is complete); any other
non-empty directory there stops the command with one line.
"""
from __future__ import annotations

import sys

import tfpps
from tfpps.cli.parser import OneLineParser
from tfpps.errors import first_line
from tfpps.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = OneLineParser(prog="python -m tfpps.data.build", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the dataset exists (only over a tfpps dataset)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines (hidden by default)")
    args, beam_args = p.parse_known_args(argv)
    tfpps.configure_logging(verbose=args.verbose)
    from tfpps.data.datasets import ensure_dataset

    try:
        path = ensure_dataset(args.dataset, beam_args=beam_args, rebuild=args.rebuild)
    except (ConfigError, ValueError) as exc:  # ownership.NotOurs and the Beam job's errors are ValueErrors
        print(f"tfpps.data.build: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tfpps.data.build: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the job publishes in one rename at the end: nothing half-built is left in place
        print("tfpps.data.build: interrupted; re-run the same command to build the dataset", file=sys.stderr)
        return 130
    print(f"dataset ready: {path}")
    return 0


def os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


if __name__ == "__main__":
    sys.exit(main())
