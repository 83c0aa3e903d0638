"""Command line: ``python -m tfpps.export --run=DIR --out=DIR [--k=10] [--index=auto|brute-force|scann]``.

Exports a trained run as a TensorFlow SavedModel that takes raw user and item
ids (strings; the vocabulary lookup is inside the graph) and returns the top-k
item ids and their scores (:mod:`tfpps.serving.module` documents the
signatures). Dot-product models (GRU4Rec, NARM, HRM, CML: any model with
``query_vectors``/``item_vectors``) are served from a TFRS
top-k index over their item vectors: with ``--index=auto`` ScaNN
(approximate) when the ``scann`` package is installed (``pip install
.[scann]``) and the catalog has at least 1,000 items, otherwise BruteForce
(exact; one line says why).
Non-neural models, whose scores are TensorFlow ops over constant tensors
built at fit time (pop, itemknn, sknn, vsknn), are exported with ``top_k``
over ``score_items``; a model whose scores call back into Python
(``tf.numpy_function``/``py_function``) is refused with one line.

The export directory holds the SavedModel, ``export_manifest.json`` (model,
dataset, k, retrieval kind, vocabulary sizes, creation time, ...) and
``assets.extra/item_meta.jsonl`` (titles/categories, when the dataset has
them). It is written to a temporary sibling and renamed when complete.

    python -m tfpps.export --run=runs/gru4rec-ml-100k --out=exports/gru4rec-ml-100k
    python -m tfpps.recommend --model-dir=exports/gru4rec-ml-100k --history=50,181 --k=10
"""
from __future__ import annotations

import sys

from tfpps.cli.parser import OneLineParser
from tfpps.config import ConfigError  # no TensorFlow import before the flags are checked
from tfpps.runs.run_dir import RunDir
from tfpps.serving.export import export_run

PROG = "python -m tfpps.export"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0].split(": ", 1)[-1])
    p.add_argument("--run", required=True, help="a run directory written by tfpps.train")
    p.add_argument("--out", required=True, help="export directory to write (a SavedModel + export_manifest.json)")
    p.add_argument("--k", type=int, default=10, help="how many items each request returns (default 10)")
    p.add_argument("--index", default="auto", choices=["auto", "brute-force", "scann"],
                   help="auto (default): ScaNN when installed and >= 1000 items, else BruteForce")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        RunDir(args.run).require(f"--run={args.run}")  # checked before TensorFlow loads
    except ConfigError as exc:
        print(f"tfpps.export: error: {exc}", file=sys.stderr)
        return 2
    if args.k < 1:
        print(f"tfpps.export: error: --k={args.k}: must be >= 1", file=sys.stderr)
        return 2
    from tfpps.data.dataset_dir import DatasetError
    from tfpps.serving.module import ExportError

    try:
        manifest = export_run(args.run, args.out, k=args.k, index=args.index, overwrite=args.overwrite)
    except (ConfigError, DatasetError, ExportError) as exc:
        print(f"tfpps.export: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"exported {manifest['model']} ({manifest['dataset']}) to {args.out}: top-{manifest['k']} by {manifest['retrieval']}, "
        f"{manifest['vocab_sizes']['items'] - 2} items, {manifest['vocab_sizes']['users'] - 2} users"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
