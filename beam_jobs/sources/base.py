"""The shared part of every source adapter: :class:`SourceAdapter`, line decoding, column resolving,
the per-file states (:class:`TextState`, :class:`ParquetState`) and the canonical event helpers.
The adapters themselves are one module each beside this one, registered in :mod:`beam_jobs.sources`.

Plain Python (no Beam) so the adapters are easy to test and reuse. The Beam job
calls them like this::

    adapter = get_source("movielens")              # SourceError for unknown names
    if adapter.file_format == "text":
        state = adapter.open_state(path, first_line)  # once per file; SourceError
        for raw in lines:                              # str, or bytes if not UTF-8
            try:
                ev = adapter.parse_line(raw, state)    # None: header / blank line
            except BadRow as err:
                dead_letter(raw, err.reason)
    else:  # "parquet"
        state = adapter.check_parquet_schema(path, arrow_schema)  # SourceError
        for record in records:                                    # dicts
            ev = adapter.parse_record(record, state)              # BadRow

``state`` objects are small frozen dataclasses (picklable; safe as Beam side
inputs). Every event has passed :func:`~beam_jobs.events.validate_event`.

Column-name aliases (canonical csv / jsonl / parquet). Names are compared after
lower-casing, dropping a RecBole ``:type`` suffix and removing every
non-alphanumeric character, so ``userId``, ``user_id``, ``USER-ID`` and
``user_id:token`` are the same name:

=============  ==============================================================
canonical      accepted names
=============  ==============================================================
user_id        user_id, user, uid, customer_id, visitor_id, reviewer_id
item_id        item_id, item, iid, movie_id, product_id, asin
timestamp      timestamp, time, ts, datetime, event_time, unix_time
session_id     session_id, session
query          query, search_query, query_text, search_term
basket_id      basket_id, basket, order_id
event_type     event_type, event, action
rating         rating, score, overall
text           text, review_text
=============  ==============================================================

The text helpers that build product-search queries (tokenizer, Porter stemmer,
:func:`~tfpps.spec.text.query_from_category_path`) are in :mod:`tfpps.spec.text`.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import re
from typing import Any, Callable, Iterator, Mapping, Sequence

from beam_jobs.events import BadRow, Event, ItemMeta, SourceError, short_repr, validate_event

MAX_LINE_CHARS = 1_000_000
"""Lines longer than this are dead-lettered (``line_too_long``) before parsing."""

CANONICAL_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "user", "uid", "customer_id", "visitor_id", "reviewer_id"),
    "item_id": ("item_id", "item", "iid", "movie_id", "product_id", "asin"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "event_time", "unix_time"),
    "session_id": ("session_id", "session"),
    "query": ("query", "search_query", "query_text", "search_term"),
    "basket_id": ("basket_id", "basket", "order_id"),
    "event_type": ("event_type", "event", "action"),
    "rating": ("rating", "score", "overall"),
    "text": ("text", "review_text"),
}
"""Canonical field -> accepted column / key names (first one is the display name)."""

REQUIRED_FIELDS = ("user_id", "item_id", "timestamp")
_JSON_LOAD_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)
_MAX_LITERAL_INT_BITS = 10_000
"""Python-literal lines: larger int literals (hex has no digit limit) are rejected, since
``str()`` of an int over 4300 digits raises ValueError wherever the value is used."""


# --------------------------------------------------------------------------- #
# Decoding and small helpers
# --------------------------------------------------------------------------- #
def decode_line(raw: bytes | str, encodings: Sequence[str] = ("utf-8",)) -> str:
    """Decode one raw line (trailing ``\\r\\n`` and a UTF-8 BOM removed).

    Tries ``encodings`` in order; raises ``BadRow('non_utf8')`` when none fits.
    A ``str`` is returned with only the line ending / BOM removed.
    """
    if isinstance(raw, str):
        text = raw
    else:
        for enc in encodings:
            try:
                text = bytes(raw).decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise BadRow("non_utf8")
    return text.rstrip("\r\n").lstrip("\ufeff")


def norm_name(name: str) -> str:
    """Column-name key: lower-case, RecBole ``:type`` suffix dropped, alphanumerics only."""
    name = str(name).strip().strip('"').strip("'")
    if ":" in name:
        name = name.split(":", 1)[0]
    return re.sub(r"[^0-9a-z]", "", name.lower())


_COMPRESSED_MAGIC = (
    (re.compile(re.escape(b"\x1f\x8b")), "gzip-compressed (*.gz)"),
    (re.compile(b"BZh[1-9]1AY&SY"), "bzip2-compressed (*.bz2)"),
    (re.compile(re.escape(b"\xfd7zXZ\x00")), "xz-compressed (*.xz)"),
    (re.compile(re.escape(b"\x28\xb5\x2f\xfd")), "zstd-compressed (*.zst)"),
)
"""Leading bytes of compressed data; the job decompresses by file extension only."""


def first_line_text(path: str, first_line: str | bytes | None) -> str:
    """Validate / decode the first line given to ``open_state``; SourceError if unusable."""
    if first_line is None:
        raise SourceError(f"{path}: empty input (no lines)")
    if isinstance(first_line, (bytes, bytearray)):
        first_line = bytes(first_line)
        if first_line.startswith(b"PAR1"):
            raise SourceError(f"{path}: looks like a Parquet file; use source 'parquet'")
        for magic, what in _COMPRESSED_MAGIC:
            if magic.match(first_line):
                raise SourceError(f"{path}: looks {what}; decompress it or give it its extension")
        if first_line.startswith(b"PK\x03\x04"):
            raise SourceError(f"{path}: looks like a ZIP archive; unzip it and pass the files inside")
        try:
            first_line = first_line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SourceError(
                f"{path}: first line is not UTF-8 text (byte {err.start + 1}): a binary file, or text in "
                f"another encoding such as latin-1 / Windows-1252 -- convert it to UTF-8 (e.g. iconv -f "
                f"latin1 -t utf-8) or save it as UTF-8 / UTF-16 with a byte-order mark"
            ) from None
    text = first_line.rstrip("\r\n").lstrip("\ufeff")
    if text.startswith("PAR1"):
        raise SourceError(f"{path}: looks like a Parquet file; use source 'parquet'")
    if "\x00" in text:
        raise SourceError(
            f"{path}: first line holds NUL characters: UTF-16 / UTF-32 text without a byte-order mark, "
            f"or a binary file; save it as UTF-8 (or UTF-16 with a byte-order mark)"
        )
    if not text.strip():
        raise SourceError(f"{path}: first line is blank (empty input or missing header)")
    return text


def sniff_delimiter(header: str, candidates: str = ",\t;|") -> str:
    """The candidate delimiter that splits ``header`` into the most fields (ties: order)."""
    best, best_n = candidates[0], 1
    for d in candidates:
        try:
            n = len(next(csv.reader([header], delimiter=d)))
        except csv.Error:
            n = header.count(d) + 1
        if n > best_n:
            best, best_n = d, n
    return best


def resolve_columns(
    path: str,
    names: Sequence[str],
    spec: Mapping[str, Sequence[str]],
    required: Sequence[str],
    what: str = "column",
) -> dict[str, int]:
    """Map spec keys to header positions; SourceError naming file + missing column."""
    normed = [norm_name(n) for n in names]
    found: dict[str, int] = {}
    for key, aliases in spec.items():
        wanted = {norm_name(a) for a in aliases}
        hits = [i for i, n in enumerate(normed) if n in wanted]
        if len(hits) > 1:
            cols = ", ".join(repr(names[i]) for i in hits)
            raise SourceError(f"{path}: {what}s {cols} all map to '{aliases[0]}'; keep only one")
        if hits:
            found[key] = hits[0]
    missing = [k for k in required if k not in found]
    if missing:
        parts = "; ".join(f"'{spec[k][0]}' (accepted: {', '.join(spec[k])})" for k in missing)
        shown = short_repr(list(names), 200)
        raise SourceError(f"{path}: missing required {what} {parts}; found {shown}")
    return found


def load_json_object(line: str, allow_literal: bool = False) -> dict[str, Any]:
    """``json.loads`` a line into a dict (optionally falling back to a Python literal)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        obj = None
        if allow_literal:
            try:
                obj = _literal_eval(line)
            except _JSON_LOAD_ERRORS:
                obj = None
        if obj is None:
            raise BadRow(f"json_error: {err.msg} at col {err.colno}") from None
    except _JSON_LOAD_ERRORS as err:  # e.g. RecursionError on absurd nesting
        raise BadRow(f"json_error: {type(err).__name__}") from None
    if not isinstance(obj, dict):
        raise BadRow(f"json_not_object: {type(obj).__name__}")
    return obj


def _literal_eval(line: str) -> Any:
    """``ast.literal_eval`` that refuses int literals of more than ``_MAX_LITERAL_INT_BITS`` bits."""
    tree = ast.parse(line.lstrip(" \t"), mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and node.value.bit_length() > _MAX_LITERAL_INT_BITS:
            raise ValueError("integer literal too large")
    return ast.literal_eval(tree)


def normed_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` keyed by normalised names (see ``norm_name``)."""
    return {norm_name(k): v for k, v in obj.items()}


def lookup(normed: Mapping[str, Any], aliases: Sequence[str]) -> Any:
    """First non-None value among ``aliases`` in a ``normed_keys`` dict."""
    for a in aliases:
        v = normed.get(norm_name(a))
        if v is not None:
            return v
    return None


def to_int(value: str, reason: str) -> int:
    text = value.strip()
    # isdigit() is also true for '²' (int() raises) and for 5000 digits (beyond int()'s limit)
    if not text.isdigit() or len(text) > 18:
        raise BadRow(f"{reason}: {short_repr(value)}")
    try:
        return int(text)
    except ValueError:
        raise BadRow(f"{reason}: {short_repr(value)}") from None


# --------------------------------------------------------------------------- #
# Per-file state
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class TextState:
    """Per-file layout of a line-oriented source (returned by ``open_state``).

    ``columns`` maps a field key (canonical name or a dataset-specific key such
    as ``timeframe``) to its position; ``header`` is the header line (skipped
    by ``parse_line``) or None; ``n_columns`` is the expected field count or
    None (JSON); ``quoted`` selects csv-module splitting instead of ``str.split``.
    """

    path: str
    layout: str
    delimiter: str = ","
    columns: Mapping[str, int] = dataclasses.field(default_factory=dict)
    n_columns: int | None = None
    header: str | None = None
    quoted: bool = False


@dataclasses.dataclass(frozen=True)
class ParquetState:
    """Per-file column mapping of a Parquet source: canonical field -> column name."""

    path: str
    columns: Mapping[str, str]


# --------------------------------------------------------------------------- #
# Base adapter
# --------------------------------------------------------------------------- #
class SourceAdapter:
    """Base class. Subclasses set ``name`` / ``file_format`` and implement
    ``open_state`` + ``_parse`` (text) or ``check_parquet_schema`` + ``parse_record``."""

    name: str = ""
    file_format: str = "text"  # "text" (line oriented) or "parquet"
    description: str = ""
    metadata_parser: Callable[[str], ItemMeta | None] | None = None
    """Optional ``parser(line) -> ItemMeta | None`` for item-metadata files
    (None for header / blank lines; BadRow for bad ones)."""
    metadata_encodings: tuple[str, ...] = ("utf-8",)
    """Encodings to try with :func:`decode_line` for metadata lines."""

    def open_state(self, path: str, first_line: str | bytes | None) -> Any:
        """Inspect the first line of ``path``; return per-file state or raise SourceError."""
        raise NotImplementedError

    def parse_line(self, line: str | bytes, state: Any) -> Event | None:
        """Parse one line. None for the header or a blank line; BadRow for a bad row.

        ``line`` may be ``bytes`` (a line the job could not decode); it is decoded
        with :func:`decode_line` (``non_utf8`` if not UTF-8).
        """
        if self.file_format != "text":
            raise SourceError(f"source '{self.name}' reads Parquet records, not text lines")
        text = decode_line(line)
        if not text.strip():
            return None
        if state.header is not None and text == state.header:
            return None
        if len(text) > MAX_LINE_CHARS:
            raise BadRow(f"line_too_long: {len(text)} chars")
        return validate_event(self._parse(text, state))

    def _parse(self, line: str, state: Any) -> Event:
        raise NotImplementedError

    def record_continues(self, text: str, state: Any) -> bool:
        """True if ``text`` (a line, or lines joined) ends inside a quoted field, so that the record
        goes on in the next line (RFC 4180). Only quoted delimited layouts (``csv``) have such records."""
        if not getattr(state, "quoted", False) or '"' not in text:
            return False
        try:
            next(csv.reader([text], delimiter=state.delimiter, strict=True))
        except csv.Error as err:
            return str(err) == "unexpected end of data"  # strict mode, end of input in a quoted field
        except StopIteration:
            return False
        return False

    def well_formed(self, text: str, state: Any) -> bool:
        """True if ``text`` splits into the file's fields (a multi-line record is only taken as one
        row if it does; see :mod:`beam_jobs.reading`)."""
        try:
            self._split(text, state)
        except BadRow:
            return False
        return True

    def parse_record(self, record: Mapping[str, Any], state: Any) -> Event:
        """Parse one Parquet record (dict from pyarrow); BadRow for a bad row."""
        raise SourceError(f"source '{self.name}' reads text lines, not Parquet records")

    def check_parquet_schema(self, path: str, arrow_schema: Any) -> Any:
        """Check a Parquet schema; return per-file state or raise SourceError."""
        raise SourceError(f"{path}: source '{self.name}' reads text lines, not Parquet")

    # helpers -------------------------------------------------------------- #
    @staticmethod
    def _split(line: str, state: TextState) -> list[str]:
        """Split a line into fields and check the field count (BadRow)."""
        if state.quoted:
            try:
                fields = next(csv.reader([line], delimiter=state.delimiter, strict=True))
            except csv.Error as err:
                raise BadRow(f"csv_error: {err}") from None
        else:
            fields = line.split(state.delimiter)
        if state.n_columns is not None and len(fields) != state.n_columns:
            raise BadRow(f"wrong_column_count: expected {state.n_columns}, got {len(fields)}")
        return fields

    @staticmethod
    def _get(fields: Sequence[str], state: TextState, key: str) -> str | None:
        """The raw field for ``key`` (None if the file has no such column); blank
        values are kept so that validation can tell ``empty_user_id`` apart."""
        i = state.columns.get(key)
        return None if i is None else fields[i]

    def _header_state(
        self,
        path: str,
        first_line: str | bytes | None,
        spec: Mapping[str, Sequence[str]],
        required: Sequence[str],
        *,
        layout: str,
        delimiters: str = ",\t;|",
        quoted: bool = False,
    ) -> TextState:
        """State for a file whose first line is a header (columns found by name)."""
        header = first_line_text(path, first_line)
        delim = sniff_delimiter(header, delimiters)
        if quoted:
            try:
                names = next(csv.reader([header], delimiter=delim))
            except csv.Error as err:  # e.g. a field over csv.field_size_limit()
                raise SourceError(f"{path}: cannot read the header line ({len(header)} chars): {err}") from None
        else:
            names = header.split(delim)
        cols = resolve_columns(path, names, spec, required)
        return TextState(path, layout, delim, cols, len(names), header, quoted)


# --------------------------------------------------------------------------- #
# Canonical events, splits, JSON checks
# --------------------------------------------------------------------------- #
def canonical_event(get: Callable[[str], Any]) -> Event:
    """An :class:`Event` of the canonical fields, ``get(field)`` giving each raw value (None if absent)."""
    return Event(
        user_id=get("user_id"),
        item_id=get("item_id"),
        timestamp=get("timestamp"),
        session_id=get("session_id"),
        query=get("query"),
        basket_id=get("basket_id"),
        event_type=get("event_type"),
        rating=get("rating"),
        text=get("text"),
    )


SPLIT_NAMES = ("train", "valid", "test")
_SPLIT_VALUES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
                 "dev": "valid", "test": "test", "testing": "test"}
"""Accepted values of a ``split`` column (case-insensitive) -> the split they name."""


@dataclasses.dataclass
class SplitEvent(Event):
    """An :class:`Event` tagged with the split it belongs to (a ``split`` column; ``--split=given``)."""

    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "split": self.split}


def split_value(value: Any) -> str:
    """The split a ``split`` column value names (train / valid / test); BadRow otherwise."""
    found = _SPLIT_VALUES.get(str(value or "").strip().lower())
    if found is None:
        raise BadRow(f"bad_split: {short_repr(value)} (expected train, valid or test)")
    return found


def check_first_json(
    path: str, text: str, required: Mapping[str, Sequence[str]], allow_literal: bool = False
) -> None:
    """File-level sanity check on the first JSON line (SourceError)."""
    if not text.lstrip().startswith("{"):
        raise SourceError(
            f"{path}: not JSON lines (first line does not start with '{{': {short_repr(text)})"
        )
    try:
        obj = load_json_object(text, allow_literal=allow_literal)
    except BadRow:
        return  # a malformed first row is a row problem, dead-lettered later
    normed = normed_keys(obj)
    for aliases in required.values():
        if lookup(normed, aliases) is None:
            raise SourceError(
                f"{path}: missing required field '{aliases[0]}' (accepted: "
                f"{', '.join(aliases)}) in the first record; keys {short_repr(sorted(obj), 200)}"
            )


def iter_text_file(
    adapter: SourceAdapter, path: str, *, limit: int | None = None
) -> Iterator[tuple[int, Event | None | BadRow]]:
    """Read a local text file through ``adapter`` (no Beam): yields
    ``(line_number, Event | None | BadRow)``, 1-based, for at most ``limit`` lines.

    SourceError propagates (file-level problem). Used by tests and local tools.
    """
    with open(path, "rb") as fh:
        first = fh.readline()
        if not first:
            adapter.open_state(path, None)
        try:
            first_text: str | bytes = decode_line(first)
        except BadRow:
            first_text = first
        state = adapter.open_state(path, first_text)
        fh.seek(0)
        for n, raw in enumerate(fh, start=1):
            if limit is not None and n > limit:
                break
            try:
                yield n, adapter.parse_line(raw, state)
            except BadRow as err:
                yield n, err
