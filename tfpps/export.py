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

import datetime as dt
import shutil
import sys
import uuid
from pathlib import Path
from typing import Callable

import tfpps  # noqa: F401
from tfpps.cli import OneLineParser
from tfpps.config import ConfigError  # no TensorFlow import before the flags are checked
from tfpps.runs.run_dir import RunDir

PROG = "python -m tfpps.export"
SCORE_EXPORTABLE = ("pop", "itemknn", "sknn", "vsknn")  # non-neural models scored in TensorFlow


def exportable_models() -> str:
    from tfpps import registry
    from tfpps.models.base import has_item_vectors

    vectors = [n for n in registry.names() if has_item_vectors(registry.get(n).model_cls)]
    scored = [n for n in SCORE_EXPORTABLE if n in registry.names()]
    return f"{', '.join(vectors)} (top-k index) and models scored in TensorFlow such as {', '.join(scored)} (top_k over scores)"


def export_run(run_dir: str | Path, out: str | Path, k: int = 10, index: str = "auto", overwrite: bool = False,
               log: Callable[[str], None] = print) -> dict:
    """Export ``run_dir`` to ``out``; returns the manifest. Raises ConfigError/DatasetError/ExportError (one line)."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from tfpps.models.base import has_item_vectors
    from tfpps.serving import item_meta, manifest as manifest_mod
    from tfpps.serving.module import ExportError, RecommenderModule, choose_index
    from tfpps.serving.runs import load_run
    from tfpps.serving.vocab import Vocabulary

    if k < 1:
        raise ExportError(f"--k={k}: must be >= 1")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ExportError(f"--out={out}: already exists; pass --overwrite to replace it")
    loaded = load_run(run_dir)
    run, data, model = loaded.run, loaded.data, loaded.model
    items, users = Vocabulary(data.vocab("items")), Vocabulary(data.vocab("users"))
    if has_item_vectors(model):
        kind = choose_index(index, len(items.real_tokens), log)
    else:
        if index == "scann":
            raise ExportError(f"--index=scann: model {run.model!r} has no query/item vectors; use --index=auto")
        kind = None
    try:
        words = Vocabulary(data.vocab("words")) if data.kind == "search" else None
        module = RecommenderModule(model, items, users, max_len=run.data.max_len, k=k, index_kind=kind or "brute-force",
                                   words=words)
    except ExportError as exc:
        raise ExportError(f"model {run.model!r} cannot be exported: {exc}; exportable: {exportable_models()}") from None
    if module.k < k:
        log(f"note: k={k} > {module.k} real items; exporting k={module.k}")

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        (tmp / "assets.extra").mkdir(exist_ok=True)
        n_meta = item_meta.copy_item_meta(
            item_meta.dataset_item_meta_path(data.path), tmp / manifest_mod.ITEM_META_EXPORT, set(items.real_tokens)
        )
        metrics_path = RunDir(loaded.run_dir).metrics
        manifest = {
            "format": manifest_mod.FORMAT,
            "model": run.model,
            "dataset": run.data.dataset,
            "dataset_dir": str(data.path),
            "run_dir": str(Path(run_dir).resolve()),
            "k": module.k,
            "retrieval": module.retrieval,
            "exact": module.retrieval != "scann",
            "max_len": module.max_len,
            "takes_query": module.takes_query,
            "vocab_sizes": {"items": len(items), "users": len(users)},
            "pad_oov": "index 0 = <PAD>, 1 = <OOV>; unknown ids -> OOV; empty strings are padding; PAD/OOV are never returned",
            "signatures": {
                "serving_default": "user_id string[B], history string[B, L] (oldest first, ''-padded)"
                + (", query string[B] (normalised words, space-joined)" if module.takes_query else ""),
                "recommend_csv": "user_id string[B], history string[B] (comma-joined item ids)"
                + (", query string[B]" if module.takes_query else ""),
                "outputs": "item_ids string[B, k], scores float32[B, k], known_user bool[B], unknown_history_items int32[B]",
                "lookup_items/lookup_users": "ids string[N] -> index int64[N]",
            },
            "item_meta": manifest_mod.ITEM_META_EXPORT if n_meta else None,
            "test_metrics": _read_json(metrics_path).get("metrics") if metrics_path.exists() else None,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"tfpps": tfpps.__version__, "tensorflow": tf.__version__, "tensorflow_recommenders": tfrs.__version__},
        }
        manifest_mod.write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


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
