"""Source adapters: raw interaction logs -> canonical :class:`~beam_jobs.events.Event`.

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

Registered sources (``SOURCES``): ``csv``, ``jsonl``, ``parquet`` (canonical
columns), ``movielens``, ``yoochoose``, ``diginetica``, ``amazon``, ``tafeng``,
``srgnn`` (SR-GNN pickles, restricted unpickler), ``hem_qrels`` (the HEM product-search
benchmark's qrels, in :mod:`beam_jobs.hem_qrels`).

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
import datetime as _dt
import json
import os
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from beam_jobs.events import (
    BadRow,
    EpochSeconds,
    Event,
    ExactSeconds,
    ItemMeta,
    SourceError,
    parse_timestamp,
    short_repr,
    validate_event,
)

__all__ = [
    "CANONICAL_ALIASES",
    "MAX_LINE_CHARS",
    "ParquetState",
    "SOURCES",
    "SourceAdapter",
    "TextState",
    "decode_line",
    "get_source",
    "iter_text_file",
    "parse_amazon_meta_line",
    "parse_movielens_item_line",
]

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

_REQUIRED = ("user_id", "item_id", "timestamp")
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


def _norm_name(name: str) -> str:
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


def _first_line_text(path: str, first_line: str | bytes | None) -> str:
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


def _sniff_delimiter(header: str, candidates: str = ",\t;|") -> str:
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


def _resolve_columns(
    path: str,
    names: Sequence[str],
    spec: Mapping[str, Sequence[str]],
    required: Sequence[str],
    what: str = "column",
) -> dict[str, int]:
    """Map spec keys to header positions; SourceError naming file + missing column."""
    normed = [_norm_name(n) for n in names]
    found: dict[str, int] = {}
    for key, aliases in spec.items():
        wanted = {_norm_name(a) for a in aliases}
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


def _load_json_object(line: str, allow_literal: bool = False) -> dict[str, Any]:
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


def _normed_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` keyed by normalised names (see ``_norm_name``)."""
    return {_norm_name(k): v for k, v in obj.items()}


def _lookup(normed: Mapping[str, Any], aliases: Sequence[str]) -> Any:
    """First non-None value among ``aliases`` in a ``_normed_keys`` dict."""
    for a in aliases:
        v = normed.get(_norm_name(a))
        if v is not None:
            return v
    return None


def _to_int(value: str, reason: str) -> int:
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
        header = _first_line_text(path, first_line)
        delim = _sniff_delimiter(header, delimiters)
        if quoted:
            try:
                names = next(csv.reader([header], delimiter=delim))
            except csv.Error as err:  # e.g. a field over csv.field_size_limit()
                raise SourceError(f"{path}: cannot read the header line ({len(header)} chars): {err}") from None
        else:
            names = header.split(delim)
        cols = _resolve_columns(path, names, spec, required)
        return TextState(path, layout, delim, cols, len(names), header, quoted)


# --------------------------------------------------------------------------- #
# Canonical sources
# --------------------------------------------------------------------------- #
def _canonical_event(get: Callable[[str], Any]) -> Event:
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
_CSV_SPEC = {**CANONICAL_ALIASES, "split": ("split",)}


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


class CsvSource(SourceAdapter):
    """Canonical delimited text with a header; columns by (alias) name.

    Delimiter sniffed from the header among ``,`` ``\\t`` ``;`` ``|``; fields may
    be quoted (csv module, strict). ``timestamp`` is epoch s, epoch ms
    (> 1e11) or ISO-8601. Example::

        user_id,item_id,timestamp,query,rating
        u1,i9,2024-01-02T03:04:05Z,"red shoes, size 9",4.5

    Session logs without users: a ``session_id`` column is enough; every event
    then gets ``user_id = session_id``, so each session is one timeline and stays
    whole (as the ``yoochoose`` source does). A ``split`` column (train / valid /
    test) tags each event with its split (used by ``--split=given``).
    """

    name = "csv"
    description = "canonical CSV/TSV with header (user_id or session_id, item_id, timestamp, ...)"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        try:
            state = self._header_state(path, first_line, _CSV_SPEC, ("item_id", "timestamp"), layout="csv", quoted=True)
        except SourceError:
            state = None
        if state is None or ("user_id" not in state.columns and "session_id" not in state.columns):
            # the usual message, naming every missing column (a session_id column would do for user_id)
            try:
                self._header_state(path, first_line, CANONICAL_ALIASES, _REQUIRED, layout="csv", quoted=True)
            except SourceError as err:
                hint = " (or a 'session_id' column for session logs without users)" if "'user_id'" in str(err) else ""
                raise SourceError(f"{err}{hint}") from None
            raise SourceError(f"{path}: cannot read the header line")  # not reached: the line above raises
        return state

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        get = (lambda k: self._get(fields, state, k))
        if "user_id" not in state.columns:
            session = get("session_id")
            get = (lambda k: session if k == "user_id" else self._get(fields, state, k))
        return _canonical_event(get)

    def parse_line(self, line: str | bytes, state: Any) -> Event | None:
        event = super().parse_line(line, state)
        if event is None or "split" not in state.columns:
            return event
        fields = self._split(decode_line(line), state)
        return SplitEvent(**dataclasses.asdict(event), split=split_value(fields[state.columns["split"]]))


class JsonlSource(SourceAdapter):
    """Canonical JSON lines: one object per line, canonical keys (or aliases). Example::

        {"user_id": "u1", "item_id": "i9", "timestamp": 1700000000, "query": "red shoes"}

    ``open_state`` checks that the first line looks like a JSON object and, if
    it parses, that it has the required keys (SourceError otherwise).
    """

    name = "jsonl"
    description = "canonical JSON lines"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        text = _first_line_text(path, first_line)
        _check_first_json(path, text, {k: CANONICAL_ALIASES[k] for k in _REQUIRED})
        return TextState(path, "jsonl")

    def _parse(self, line: str, state: TextState) -> Event:
        obj = _normed_keys(_load_json_object(line))
        return _canonical_event(lambda k: _lookup(obj, CANONICAL_ALIASES[k]))


def _check_first_json(
    path: str, text: str, required: Mapping[str, Sequence[str]], allow_literal: bool = False
) -> None:
    """File-level sanity check on the first JSON line (SourceError)."""
    if not text.lstrip().startswith("{"):
        raise SourceError(
            f"{path}: not JSON lines (first line does not start with '{{': {short_repr(text)})"
        )
    try:
        obj = _load_json_object(text, allow_literal=allow_literal)
    except BadRow:
        return  # a malformed first row is a row problem, dead-lettered later
    normed = _normed_keys(obj)
    for aliases in required.values():
        if _lookup(normed, aliases) is None:
            raise SourceError(
                f"{path}: missing required field '{aliases[0]}' (accepted: "
                f"{', '.join(aliases)}) in the first record; keys {short_repr(sorted(obj), 200)}"
            )


def _arrow_type_ok(t: Any, kinds: str) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    checks = {
        "s": lambda: pa.types.is_string(t) or pa.types.is_large_string(t)
        or getattr(pa.types, "is_string_view", lambda _t: False)(t),
        "i": lambda: pa.types.is_integer(t),
        "f": lambda: pa.types.is_floating(t) or pa.types.is_decimal(t),
        "t": lambda: pa.types.is_timestamp(t) or pa.types.is_date(t),
        "n": lambda: pa.types.is_null(t),
    }
    return any(checks[k]() for k in kinds)


# canonical field -> (allowed type kinds, human description)
_PARQUET_TYPES: dict[str, tuple[str, str]] = {
    "user_id": ("si", "string or integer"),
    "item_id": ("si", "string or integer"),
    "timestamp": ("sift", "integer, float, timestamp, date or string"),
    "session_id": ("sin", "string or integer"),
    "basket_id": ("sin", "string or integer"),
    "query": ("sn", "string"),
    "event_type": ("sn", "string"),
    "rating": ("ifsn", "numeric or string"),
    "text": ("sn", "string"),
}


class ParquetSource(SourceAdapter):
    """Canonical Parquet columns (aliases accepted), one record per row. Example record::

        {"user_id": "u1", "item_id": 42, "timestamp": datetime(2024, 1, 2, 3, 4, 5)}

    Ids may be string or integer columns; timestamp integer / float (s or ms),
    Parquet timestamp / date, or ISO-8601 string; rating numeric.
    """

    name = "parquet"
    file_format = "parquet"
    description = "canonical Parquet"

    def open_state(self, path: str, first_line: str | bytes | None = None) -> ParquetState:
        """Read the schema of a local (or pyarrow-reachable) file and check it."""
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except Exception as err:  # noqa: BLE001 - any pyarrow failure is file-level
            raise SourceError(f"{path}: not a readable Parquet file ({type(err).__name__}: "
                              f"{short_repr(str(err), 120)})") from None
        return self.check_parquet_schema(path, schema)

    def check_parquet_schema(self, path: str, arrow_schema: Any) -> ParquetState:
        names = list(arrow_schema.names)
        idx = _resolve_columns(path, names, CANONICAL_ALIASES, _REQUIRED)
        cols: dict[str, str] = {}
        for key, i in idx.items():
            kinds, desc = _PARQUET_TYPES[key]
            t = arrow_schema.field(i).type
            if not _arrow_type_ok(t, kinds):
                raise SourceError(
                    f"{path}: column '{names[i]}' ({key}) has Parquet type {t}; expected {desc}"
                )
            cols[key] = names[i]
        return ParquetState(path, cols)

    def parse_record(self, record: Mapping[str, Any], state: ParquetState | None) -> Event:
        if not isinstance(record, Mapping):
            raise BadRow(f"bad_record: type {type(record).__name__}")
        if state is None:
            normed = _normed_keys(record)
            return validate_event(_canonical_event(lambda k: _lookup(normed, CANONICAL_ALIASES[k])))
        cols = state.columns
        return validate_event(_canonical_event(lambda k: record.get(cols[k]) if k in cols else None))


# --------------------------------------------------------------------------- #
# MovieLens
# --------------------------------------------------------------------------- #
_ML_GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_ML_INTER_SPEC = {k: CANONICAL_ALIASES[k] for k in ("user_id", "item_id", "rating", "timestamp")}


def parse_movielens_item_line(line: str) -> ItemMeta | None:
    """Parse one MovieLens item line -> ItemMeta (genres as one-element category paths).

    Layouts detected per line:

    * ML-100K ``u.item`` (``|``, latin-1; 5 fields + 19 genre flags)::

        1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0
    * ML-1M/10M ``movies.dat``: ``1::Toy Story (1995)::Animation|Children's|Comedy``
    * ML-20M ``movies.csv`` (header ``movieId,title,genres``):
      ``1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy``
    * RecBole ``.item`` (tab; columns ``item_id:token movie_title:token_seq
      release_year:token class:token_seq`` in that order, genres space-separated):
      ``1<TAB>Toy Story<TAB>1995<TAB>Animation Children's Comedy``

    Returns None for a header or blank line; raises BadRow otherwise.
    """
    line = decode_line(line)
    if not line.strip():
        return None
    if "::" in line:
        parts = line.split("::")
        if len(parts) != 3:
            raise BadRow(f"wrong_column_count: expected 3, got {len(parts)}")
        genres = [] if parts[2].strip() in ("", "(no genres listed)") else parts[2].split("|")
        return _item_meta(parts[0], parts[1], genres)
    bars = line.split("|")
    if len(bars) == 5 + len(_ML_GENRES_100K):
        flags = bars[5:]
        if any(f.strip() not in ("0", "1") for f in flags):
            raise BadRow("bad_genre_flags")
        genres = [g for g, f in zip(_ML_GENRES_100K, flags) if f.strip() == "1"]
        return _item_meta(bars[0], bars[1], genres)
    if "\t" in line:
        parts = line.split("\t")
        if ":" in parts[0] and _norm_name(parts[0]) in ("itemid", "movieid"):
            return None  # RecBole header
        if len(parts) < 2:
            raise BadRow(f"wrong_column_count: expected 4, got {len(parts)}")
        genres = parts[3].split() if len(parts) > 3 else []
        return _item_meta(parts[0], parts[1], genres)
    if _norm_name(line.split(",", 1)[0]) == "movieid":
        return None  # movies.csv header
    try:
        parts = next(csv.reader([line], strict=True))
    except csv.Error as err:
        raise BadRow(f"csv_error: {err}") from None
    if len(parts) != 3:
        raise BadRow(f"unrecognized_item_line: {short_repr(line)}")
    genres = [] if parts[2].strip() in ("", "(no genres listed)") else parts[2].split("|")
    return _item_meta(parts[0], parts[1], genres)


def _item_meta(item_id: Any, title: Any, genres: Iterable[str]) -> ItemMeta:
    """Build ItemMeta with the same id rules as events (BadRow on a bad id)."""
    probe = validate_event(Event(user_id="-", item_id=item_id, timestamp=0))
    title_s = str(title).strip() if title is not None else ""
    return ItemMeta(
        item_id=probe.item_id,
        title=title_s or None,
        categories=[[g.strip()] for g in genres if g.strip()],
        description=None,
    )


class MovieLensSource(SourceAdapter):
    """MovieLens ratings; layout auto-detected from the first line (and file name).

    * ML-1M / ML-10M ``ratings.dat`` (no header): ``1::1193::5::978300760``
    * ML-100K ``u.data`` (tab, no header): ``196	242	3	881250949``
    * RecBole ``.inter`` (tab, header ``user_id:token	item_id:token	rating:float	timestamp:float``;
      columns found by the part before ``:``): ``196	242	3	881250949``
    * ML-20M/25M ``ratings.csv`` (header ``userId,movieId,rating,timestamp``): ``1,2,3.5,1112486027``

    Example (``ratings.dat``)::

        1::1193::5::978300760   ->  Event("1", "1193", 978300760, rating=5.0, event_type="rating")

    Events get ``rating`` and ``event_type="rating"``. Item metadata:
    :func:`parse_movielens_item_line` (``metadata_parser``; utf-8, falling back to latin-1).
    """

    name = "movielens"
    description = "MovieLens ratings.dat / u.data / RecBole .inter / ratings.csv"
    metadata_parser = staticmethod(parse_movielens_item_line)
    metadata_encodings = ("utf-8", "latin-1")

    _FIXED = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        text = _first_line_text(path, first_line)
        base = os.path.basename(path).lower()
        if "::" in text:
            n = len(text.split("::"))
            if n != 4:
                raise SourceError(
                    f"{path}: ratings.dat layout needs 4 fields user::item::rating::timestamp, got {n}"
                )
            return TextState(path, "ratings.dat", "::", self._FIXED, 4)
        if "\t" in text:
            parts = text.split("\t")
            if any(":" in p for p in parts) or not parts[0].strip().isdigit():
                cols = _resolve_columns(path, parts, _ML_INTER_SPEC, _REQUIRED)
                return TextState(path, "recbole", "\t", cols, len(parts), text)
            if base.endswith(".inter"):
                raise SourceError(f"{path}: RecBole .inter file without a 'field:type' header")
            if len(parts) != 4:
                raise SourceError(
                    f"{path}: u.data layout needs 4 tab-separated fields user item rating timestamp, "
                    f"got {len(parts)}"
                )
            return TextState(path, "u.data", "\t", self._FIXED, 4)
        if "," in text and not text.split(",", 1)[0].strip().isdigit():
            names = text.split(",")
            cols = _resolve_columns(path, names, _ML_INTER_SPEC, _REQUIRED)
            return TextState(path, "ratings.csv", ",", cols, len(names), text)
        raise SourceError(
            f"{path}: unrecognized MovieLens layout (expected ratings.dat 'u::i::r::t', u.data "
            f"'u<TAB>i<TAB>r<TAB>t', RecBole .inter header or ratings.csv header); first line "
            f"{short_repr(text)}"
        )

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        return Event(
            user_id=self._get(fields, state, "user_id"),  # type: ignore[arg-type]
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=self._get(fields, state, "timestamp"),  # type: ignore[arg-type]
            rating=self._get(fields, state, "rating"),  # type: ignore[arg-type]
            event_type="rating",
        )


# --------------------------------------------------------------------------- #
# YOOCHOOSE (RecSys Challenge 2015)
# --------------------------------------------------------------------------- #
_YC_SPEC = {
    "session_id": ("SessionId", "session_id", "session"),
    "item_id": ("ItemId", "item_id", "item"),
    "timestamp": ("Time", "timestamp", "ts"),
}


class YoochooseSource(SourceAdapter):
    """YOOCHOOSE clicks. There are no users: ``user_id = session_id`` (and session_id set).

    * raw RecSys'15 ``yoochoose-clicks.dat`` (no header; category ignored)::

        1,2014-04-07T10:51:09.277Z,214536502,0

      raw ``yoochoose-buys.dat`` (``session,ts,item,price,quantity``) -> event_type "buy".
    * GRU4Rec's prepared format (tab, header ``SessionId	ItemId	Time``, Time in epoch s)::

        1	214536502	1396860669.277

    Clicks get ``event_type="click"``; fractional seconds are truncated.
    """

    name = "yoochoose"
    description = "YOOCHOOSE raw clicks/buys or GRU4Rec prepared SessionId/ItemId/Time"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        text = _first_line_text(path, first_line)
        delim = _sniff_delimiter(text, ",\t")
        first = text.split(delim)[0].strip()
        if first.isdigit():  # raw, no header
            n = len(text.split(","))
            if delim != "," or n not in (4, 5):
                raise SourceError(
                    f"{path}: unrecognized YOOCHOOSE layout: expected raw clicks "
                    f"'session,ISO-time,item,category' (no header), raw buys (5 fields) or a header "
                    f"'SessionId<TAB>ItemId<TAB>Time'; first line {short_repr(text)}"
                )
            layout = "raw_clicks" if n == 4 else "raw_buys"
            return TextState(path, layout, ",", {"session_id": 0, "timestamp": 1, "item_id": 2}, n)
        return self._header_state(path, text, _YC_SPEC, tuple(_YC_SPEC), layout="prepared",
                                  delimiters="\t,")

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        session = self._get(fields, state, "session_id")
        return Event(
            user_id=session,  # type: ignore[arg-type]
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=self._get(fields, state, "timestamp"),  # type: ignore[arg-type]
            session_id=session,
            event_type="buy" if state.layout == "raw_buys" else "click",
        )


# --------------------------------------------------------------------------- #
# DIGINETICA (CIKM Cup 2016)
# --------------------------------------------------------------------------- #
_DG_SPEC = {
    "session_id": ("sessionId",),
    "user_id": ("userId",),
    "item_id": ("itemId",),
    "timeframe": ("timeframe",),
    "eventdate": ("eventdate",),
}
_DG_ANON = {"", "na", "nan", "null", "none"}
ANON_USER_PREFIX = "session:"
"""Diginetica rows without a userId get ``user_id = ANON_USER_PREFIX + sessionId``."""


class DigineticaSource(SourceAdapter):
    """DIGINETICA ``train-item-views.csv`` (``;``, header). Example::

        sessionId;userId;itemId;timeframe;eventdate
        1;NA;81766;526309;2016-05-09

    Per the CIKM Cup 2016 data description, ``timeframe`` is the time in
    milliseconds since the start of the session and ``eventdate`` the calendar
    date, so ``timestamp = epoch(eventdate 00:00 UTC) + timeframe / 1000``, to
    the millisecond (an :class:`~beam_jobs.events.ExactSeconds` float, not
    truncated): clicks are ordered by ``timeframe`` within a session (ties in
    file order), as SR-GNN's preprocessing sorts them, and two clicks of an item
    a few milliseconds apart are not exact duplicates (``--dedup=exact`` used to
    merge clicks within one second). The absolute time of day is not real.
    The ``session_id;user_id;item_id`` header of SR-GNN's sample file is read
    too (names are compared without ``_`` and case). Anonymous rows (userId
    ``NA`` / empty) get ``user_id = "session:<sessionId>"`` -- prefixed because
    userId and sessionId are both small integers and would otherwise collide.
    ``session_id`` is always set; ``event_type="view"``.
    """

    name = "diginetica"
    description = "DIGINETICA train-item-views.csv"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        return self._header_state(
            path, first_line, _DG_SPEC, ("session_id", "item_id", "timeframe", "eventdate"),
            layout="item-views", delimiters=";,\t",
        )

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        session = (self._get(fields, state, "session_id") or "").strip()
        if not session:
            raise BadRow("empty_session_id")
        user = self._get(fields, state, "user_id")
        if user is None or user.strip().lower() in _DG_ANON:
            user = ANON_USER_PREFIX + session
        frame = _to_int(fields[state.columns["timeframe"]], "bad_timeframe")
        date_text = (self._get(fields, state, "eventdate") or "").strip()
        if not date_text:
            raise BadRow("missing_timestamp")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date_text):
            raise BadRow(f"bad_timestamp: {short_repr(date_text)}")
        day = parse_timestamp(date_text)
        return Event(
            user_id=user,
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=ExactSeconds.from_millis(day * 1000 + frame),  # type: ignore[arg-type]
            session_id=session,
            event_type="view",
        )


# --------------------------------------------------------------------------- #
# Amazon reviews + metadata
# --------------------------------------------------------------------------- #
_AMZ_USER = ("reviewerID", "user_id")
_AMZ_ITEM = ("asin", "parent_asin")
_AMZ_TIME = ("unixReviewTime", "timestamp")


def _amazon_review_time(text: Any) -> int:
    """``reviewTime`` like ``"09 13, 2009"`` (month day, year) -> epoch seconds."""
    try:
        return EpochSeconds(_dt.datetime.strptime(str(text).strip(), "%m %d, %Y")
                            .replace(tzinfo=_dt.timezone.utc).timestamp())
    except ValueError:
        raise BadRow(f"bad_timestamp: {short_repr(text)}") from None


def _str_or_join(value: Any) -> str | None:
    """A str, or a list of strings joined by a space (2018 descriptions); else None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (list, tuple)):
        joined = " ".join(str(v).strip() for v in value if isinstance(v, str) and v.strip())
        return joined or None
    return None


def parse_amazon_meta_line(line: str) -> ItemMeta | None:
    """Parse one Amazon ``meta_*.json`` line -> ItemMeta (None for a blank line).

    * 2014 (McAuley): a Python dict literal (``ast.literal_eval`` when
      ``json.loads`` fails) with ``categories`` = list of paths::

        {'asin': '0000031852', 'title': 'Girls Ballet Tutu Zebra Hot Pink', 'price': 3.17,
         'categories': [['Sports & Outdoors', 'Other Sports', 'Dance']]}
    * 2018 (Ni et al.): strict JSON with ``category`` = one path and
      ``description`` = list of strings (joined with spaces)::

        {"asin": "0000031852", "title": "Girls Ballet Tutu", "category": ["Clothing, Shoes & Jewelry", "Girls"], "description": ["Tutu."]}
    """
    line = decode_line(line)
    if not line.strip():
        return None
    if len(line) > MAX_LINE_CHARS:
        raise BadRow(f"line_too_long: {len(line)} chars")
    obj = _load_json_object(line, allow_literal=True)
    asin = obj.get("asin")
    if asin is None:
        raise BadRow("missing_field: asin")
    cats: list[list[str]] = []
    if obj.get("categories") is not None:
        raw = obj["categories"]
        if not isinstance(raw, list) or not all(isinstance(p, (list, tuple)) for p in raw):
            raise BadRow("bad_categories: expected a list of category paths")
        for p in raw:
            path = [str(c).strip() for c in p if str(c).strip()]
            if path:
                cats.append(path)
    elif obj.get("category") is not None:
        raw = obj["category"]
        if not isinstance(raw, (list, tuple)):
            raise BadRow("bad_categories: expected a list of strings")
        path = [str(c).strip() for c in raw if str(c).strip()]
        if path:
            cats.append(path)
    probe = validate_event(Event(user_id="-", item_id=asin, timestamp=0))
    return ItemMeta(
        item_id=probe.item_id,
        title=_str_or_join(obj.get("title")),
        categories=cats,
        description=_str_or_join(obj.get("description")),
    )


class AmazonSource(SourceAdapter):
    """Amazon review JSON lines (5-core 2014 / 2018 formats). Example (2014)::

        {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald", "helpful": [2, 3], "reviewText": "I bought this for my husband...", "overall": 5.0, "summary": "Heavenly Highway Hymns", "unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"}

    -> ``Event(user_id=reviewerID, item_id=asin, timestamp=unixReviewTime,
    rating=overall, event_type="review", text=reviewText)``. ``summary`` is not
    used. ``reviewTime`` (``"MM DD, YYYY"``) is the fallback timestamp. Lines
    that are Python literals rather than JSON are accepted too. Metadata:
    :func:`parse_amazon_meta_line`.
    """

    name = "amazon"
    description = "Amazon reviews JSON lines (2014/2018) + meta_*.json"
    metadata_parser = staticmethod(parse_amazon_meta_line)

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        text = _first_line_text(path, first_line)
        _check_first_json(path, text, {"user_id": _AMZ_USER, "item_id": _AMZ_ITEM},
                          allow_literal=True)
        return TextState(path, "amazon-reviews")

    def _parse(self, line: str, state: TextState) -> Event:
        obj = _load_json_object(line, allow_literal=True)
        ts: Any = _lookup(_normed_keys(obj), _AMZ_TIME)
        if ts is None and obj.get("reviewTime") is not None:
            ts = _amazon_review_time(obj["reviewTime"])
        return Event(
            user_id=obj.get("reviewerID", obj.get("user_id")),
            item_id=obj.get("asin", obj.get("parent_asin")),
            timestamp=ts,
            rating=obj.get("overall", obj.get("rating")),
            event_type="review",
            text=obj.get("reviewText", obj.get("text")),
        )


# --------------------------------------------------------------------------- #
# Ta-Feng (Sets2Sets preprocessing)
# --------------------------------------------------------------------------- #
_TF_SPEC = {
    "user_id": ("CUSTOMER_ID",),
    "order": ("ORDER_NUMBER",),
    "item_id": ("MATERIAL_NUMBER",),
}
SECONDS_PER_ORDER = 86_400


class TafengSource(SourceAdapter):
    """Ta-Feng baskets as prepared by Sets2Sets (comma, header). Example::

        CUSTOMER_ID,ORDER_NUMBER,MATERIAL_NUMBER
        00046855  ,1,0

    Customer ids are space-padded (stripped). There are no timestamps: the
    order number gives the time order, ``timestamp = ORDER_NUMBER * 86400``,
    ``basket_id = f"{customer}-{order}"``, ``event_type="purchase"``.
    """

    name = "tafeng"
    description = "Ta-Feng baskets (Sets2Sets TaFang_*.csv)"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        return self._header_state(path, first_line, _TF_SPEC, tuple(_TF_SPEC), layout="sets2sets",
                                  delimiters=",\t;")

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        customer = (self._get(fields, state, "user_id") or "").strip()
        order = _to_int(fields[state.columns["order"]], "bad_order_number")
        return Event(
            user_id=customer,
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=EpochSeconds(order * SECONDS_PER_ORDER),
            basket_id=f"{customer}-{order}" if customer else None,
            event_type="purchase",
        )


# --------------------------------------------------------------------------- #
# SR-GNN / NARM / GCE-GNN pickles
# --------------------------------------------------------------------------- #
SRGNN_TIME_BASE = 1_000_000_000
"""Synthetic time of the first session of an ``srgnn`` file (2001-09-09)."""
SRGNN_SECONDS_PER_SESSION = 60
"""Synthetic time between two sessions of an ``srgnn`` file (clicks 1 s apart inside one): a "day" is
1,440 sessions, about a real day of the diginetica training data (186,670 sessions in ~150 days)."""


def load_srgnn_pickle(path: str) -> Any:
    """Unpickle ``path`` with an unpickler that builds no class at all: ``find_class`` (and persistent ids)
    are refused, so only the pickle opcodes' own types (lists, tuples, ints, str, dicts, ...) can be made and
    no code runs. SourceError (one line, naming the file) for anything else."""
    import io
    import pickle

    class ListsOnly(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"forbidden class {module}.{name}")

        def persistent_load(self, pid):
            raise pickle.UnpicklingError("forbidden persistent id")

    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        data = fh.read()
    try:
        return ListsOnly(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise SourceError(f"{path}: refused to load the pickle: {err} (only lists, tuples and ints are "
                          f"loaded from an srgnn file)") from None
    except Exception as err:  # truncated / not a pickle at all (EOFError, ValueError, ...)
        raise SourceError(f"{path}: not a readable pickle ({type(err).__name__}: {short_repr(str(err), 80)})") from None


def _positive_ints(seq: Any) -> bool:
    return isinstance(seq, list) and all(type(x) is int and x > 0 for x in seq)


def srgnn_structure(path: str, obj: Any) -> str:
    """``"sessions"`` (a list of sessions: non-empty lists of positive ints) or ``"prefixes"`` (a tuple
    ``(prefixes, labels)``: prefixes non-empty lists of positive ints, labels positive ints, as many);
    SourceError (one line naming the file and the first bad entry) otherwise."""
    expected = ("expected a list of sessions (lists of positive ints, e.g. all_train_seq.txt) or a tuple "
                "(prefixes, labels) (e.g. test.txt)")
    if isinstance(obj, tuple):
        if len(obj) != 2 or not isinstance(obj[0], list) or not isinstance(obj[1], list):
            raise SourceError(f"{path}: bad srgnn structure: a tuple of {len(obj)} elements; {expected}")
        prefixes, labels = obj
        if len(prefixes) != len(labels):
            raise SourceError(f"{path}: bad srgnn structure: {len(prefixes)} prefixes but {len(labels)} labels")
        for i, (p, y) in enumerate(zip(prefixes, labels)):
            if not p or not _positive_ints(p):
                raise SourceError(f"{path}: bad srgnn structure: prefix {i} is {short_repr(p, 60)}; {expected}")
            if type(y) is not int or y <= 0:
                raise SourceError(f"{path}: bad srgnn structure: label {i} is {short_repr(y, 60)}; {expected}")
        return "prefixes"
    if isinstance(obj, list):
        for i, sess in enumerate(obj):
            if not sess or not _positive_ints(sess):
                raise SourceError(f"{path}: bad srgnn structure: session {i} is {short_repr(sess, 60)}; {expected}")
        return "sessions"
    raise SourceError(f"{path}: bad srgnn structure: a {type(obj).__name__}; {expected}")


class SrgnnSource(SourceAdapter):
    """The pickled session files of SR-GNN / NARM / GCE-GNN preprocessing (no users, no times)::

        all_train_seq.txt   pickle of [[1, 2], [3, 4, 5], ...]             (sessions)
        test.txt            pickle of ([[3, 4], [3]], [5, 4])              (prefixes, labels)

    Loaded with a restricted unpickler (:func:`load_srgnn_pickle`: no class is ever built, so a
    malicious pickle cannot run code) and checked (:func:`srgnn_structure`). Each session (or each
    ``prefix + [label]``) is one synthetic session and user (``<file>:<n>``); times are synthetic, in
    file order: session n starts at ``SRGNN_TIME_BASE + 60 n`` s, its clicks 1 s apart. In an evaluation split of
    ``--split=given`` a (prefix, label) pair is one record as given: history = prefix, target =
    label (events tagged ``target``); in training it is the session ``prefix + [label]``.
    """

    name = "srgnn"
    file_format = "pickle"
    description = "SR-GNN/NARM pickles: all_train_seq.txt (sessions) / test.txt ((prefixes, labels))"

    def load(self, path: str) -> tuple[str, Any]:
        obj = load_srgnn_pickle(path)
        return srgnn_structure(path, obj), obj

    def open_state(self, path: str, first_line: str | bytes | None = None) -> str:
        return self.load(path)[0]

    def events(self, path: str, file_index: int) -> Iterator[dict]:
        """Event dicts of one file (``target: True`` marks a label), in file order."""
        kind, obj = self.load(path)
        rows = obj if kind == "sessions" else [p + [y] for p, y in zip(*obj)]
        for n, row in enumerate(rows):
            sid = f"{file_index}:{n}"
            for j, item in enumerate(row):
                ts = SRGNN_TIME_BASE + n * SRGNN_SECONDS_PER_SESSION + j
                ev = Event(user_id=sid, item_id=str(item), timestamp=ts, session_id=sid).to_dict()
                if kind == "prefixes" and j == len(row) - 1:
                    ev["target"] = True
                yield ev


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
SOURCES: dict[str, SourceAdapter] = {
    a.name: a
    for a in (
        CsvSource(),
        JsonlSource(),
        ParquetSource(),
        MovieLensSource(),
        YoochooseSource(),
        DigineticaSource(),
        AmazonSource(),
        TafengSource(),
        SrgnnSource(),
    )
}


# Sources in modules of their own register themselves into SOURCES when imported (they build on this
# module and on beam_jobs.reading): ``hem_qrels`` (the HEM benchmark's qrels). known_sources() and
# get_source() import them by name on first use, as the model registry imports model files.
SOURCE_MODULES = ("beam_jobs.hem_qrels",)


def known_sources() -> dict[str, SourceAdapter]:
    """Every registered source adapter by name (SOURCES, after importing :data:`SOURCE_MODULES`)."""
    import importlib

    for module in SOURCE_MODULES:
        importlib.import_module(module)
    return SOURCES


def get_source(name: str) -> SourceAdapter:
    """The adapter registered as ``name``; SourceError listing the known names."""
    try:
        return known_sources()[name]
    except KeyError:
        raise SourceError(
            f"unknown source {name!r}; known sources: {', '.join(sorted(SOURCES))}"
        ) from None


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
