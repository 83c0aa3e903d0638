"""Command line: ``python -m tfpps.data.build --dataset=ml-100k [--rebuild] [beam options...]``.

Builds a named dataset (``configs/datasets/<name>.yaml``) with the Beam job,
generating the raw logs first for the synthetic default. Extra flags go to
Beam unchanged (e.g. ``--direct_num_workers=4``).
"""
from __future__ import annotations

import argparse
import shutil
import sys

import tfpps  # noqa: F401
from tfpps.config import ConfigError, load_yaml, dataset_config_path
from tfpps.data.datasets import ensure_dataset, resolve_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfpps.data.build", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--rebuild", action="store_true", help="rebuild even if the dataset exists")
    args, beam_args = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.rebuild and dataset_config_path(args.dataset).exists():
            out = resolve_path((load_yaml(dataset_config_path(args.dataset)).get("data") or {}).get("dir", ""))
            if out.exists() and str(out) != str(resolve_path("")):
                shutil.rmtree(out)
        path = ensure_dataset(args.dataset, beam_args=beam_args)
    except (ConfigError, ValueError) as exc:
        print(f"tfpps.data.build: error: {exc}", file=sys.stderr)
        return 2
    print(f"dataset ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
