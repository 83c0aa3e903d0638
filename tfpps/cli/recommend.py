"""Command line: ``python -m tfpps.recommend --model-dir=DIR [--user=U] --history=i1,i2,... [--query=TEXT] [--k=10]``.

Prints the top-k items for one user and history (raw ids, oldest first) as a
ranked table with the item metadata the dataset has (titles and genres for
MovieLens, titles and category paths for Amazon and the synthetic data).
``--model-dir`` is either an export directory (``python -m tfpps.export``;
loaded with ``tf.saved_model.load``) or a training run directory (the model
is rebuilt in this process with its best weights; non-neural models are
refitted; nothing is trained). Unknown users and items are recommended for
as the out-of-vocabulary (OOV) id with one warning line; bad flags stop with
one error line.

    python -m tfpps.recommend --model-dir=exports/gru4rec-ml-100k --user=450 --history=50,181,172 --k=10
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tfpps
from tfpps.cli.parser import OneLineParser
from tfpps.errors import first_line
from tfpps.config import ConfigError  # no TensorFlow import before the flags are checked
from tfpps.runs.run_dir import is_run_dir

PROG = "tfpps.recommend"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tfpps.recommend", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    p.add_argument("--model-dir", "--model_dir", dest="model_dir", required=True, help="an export directory or a run directory")
    p.add_argument("--user", default="", help="raw user id (optional; unknown or empty = the OOV user)")
    p.add_argument("--history", default="", help="comma-separated raw item ids, oldest first (may be empty)")
    p.add_argument("--query", default=None, help="search query text (only for models that take one)")
    p.add_argument("--k", type=int, default=10, help="how many items to show (default 10)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines (hidden by default)")
    return p


def check_text_flags(args) -> None:
    """ConfigError (one line naming the flag) for a ``--user``/``--history``/``--query`` that is not UTF-8
    text: bytes the shell passed that do not decode reach Python as lone surrogates (``\\udcXX``)."""
    for flag in ("user", "history", "query"):
        value = getattr(args, flag)
        if value is None:
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            byte = f"0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
            raise ConfigError(f"--{flag}: not valid UTF-8 text (byte {byte} at character {exc.start + 1}); "
                              "ids and queries must be UTF-8") from None


def open_recommender(path: str):
    """An ExportedRecommender for an export dir, an InProcessRecommender for a run dir; ConfigError otherwise."""
    kind = model_dir_kind(path)
    if kind == "export":
        from tfpps.serving.exported import ExportedRecommender

        return ExportedRecommender(path)
    from tfpps.serving.runs import InProcessRecommender

    return InProcessRecommender(path)


def model_dir_kind(path: str) -> str:
    """``export`` or ``run``; ConfigError (one line) otherwise. Imports no TensorFlow."""
    from tfpps.serving.manifest import is_export_dir

    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"--model-dir={path}: no such directory")
    if is_export_dir(p):
        return "export"
    if is_run_dir(p):
        return "run"
    raise ConfigError(
        f"--model-dir={path}: neither an export directory (saved_model.pb + export_manifest.json) "
        "nor a run directory (config.yaml)"
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rows: list[dict], columns: list[str], right: set[str]) -> str:
    """Plain-text table; ``right`` columns are right-aligned."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    line = lambda r: "  ".join(  # noqa: E731
        (str(r.get(c, "")).rjust(widths[c]) if c in right else str(r.get(c, "")).ljust(widths[c])) for c in columns
    ).rstrip()
    header = {c: c for c in columns}
    return "\n".join([line(header), "  ".join("-" * widths[c] for c in columns)] + [line(r) for r in rows])


def render(rec, result, history: list[str], meta: dict, k: int, query: str = "") -> str:
    """The printed answer: a title line, the query (search models), the history line and the ranked table."""
    where = "export" if rec.source == "export" else "run"
    head = [f"{rec.model_name} on {rec.dataset} ({where} {getattr(rec, 'export_dir', None) or rec.loaded.run_dir}), top {len(result.items)}"]
    if query:
        from tfpps.serving.requests import normalize_query

        head.append(f"query: {query!r} (as words: {normalize_query(query)!r})")
    if history:
        shown = [f"{t} ({_clip(meta[t]['title'], 30)})" if meta.get(t, {}).get("title") else t for t in history[-5:]]
        more = f"... {len(history) - 5} earlier, " if len(history) > 5 else ""
        head.append(f"history ({len(history)} items, oldest first): {more}{', '.join(shown)}")
    else:
        head.append("history: (empty)")
    columns = ["rank", "item", "score"]
    has_meta = any(meta.get(t) for t in result.items)
    if has_meta:
        columns += ["title", "categories"]
    rows = []
    for i, (item, score) in enumerate(zip(result.items, result.scores), 1):
        m = meta.get(item, {})
        rows.append({"rank": i, "item": item, "score": f"{score:.4f}", "title": _clip(m.get("title") or "", 50),
                     "categories": _clip(m.get("categories") or "", 50)})
    return "\n".join(head + ["", format_table(rows, columns, right={"rank", "score"})])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    tfpps.configure_logging(verbose=args.verbose)  # before TensorFlow is imported
    from tfpps.serving.requests import Request, parse_history  # numpy only

    try:
        check_text_flags(args)
        history = parse_history(args.history)
        if args.k < 1:
            raise ConfigError(f"--k={args.k}: must be >= 1")
        model_dir_kind(args.model_dir)  # checked before TensorFlow loads
        rec = open_recommender(args.model_dir)
        takes_query = bool(getattr(rec, "takes_query", False))
        if takes_query and not (args.query or "").strip():
            raise ConfigError(f"model {rec.model_name!r} is a product-search model: pass --query=\"...\"")
        result = rec.recommend([Request(args.user, history, args.query or "" if takes_query else "")], args.k)[0]
    except (ConfigError, FileNotFoundError, ImportError, ValueError) as exc:  # DatasetError is a ValueError
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    from tfpps.serving.item_meta import read_item_meta

    if args.user and not result.known_user:
        print(f"{PROG}: warning: user {args.user!r} is not in the training vocabulary; recommending for the unknown (OOV) user", file=sys.stderr)
    if result.unknown_history:
        names = ", ".join(repr(t) for t in result.unknown_history[:5]) + (" ..." if len(result.unknown_history) > 5 else "")
        print(f"{PROG}: warning: {len(result.unknown_history)} history item(s) not in the vocabulary, used as <OOV>: {names}", file=sys.stderr)
    if args.query is not None and not takes_query:
        print(f"{PROG}: warning: --query ignored: model {rec.model_name!r} does not take a search query", file=sys.stderr)
    if args.k > rec.max_k:
        print(f"{PROG}: warning: --k={args.k} > {rec.max_k} available ({'the export' + chr(39) + 's k' if rec.source == 'export' else 'real items'}); showing {len(result.items)}", file=sys.stderr)
    meta = read_item_meta(rec.item_meta_path, keep=set(result.items) | set(history))
    print(render(rec, result, history, meta, args.k, query=(args.query or "") if takes_query else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
