"""The canonical sources: ``csv`` (delimited text with a header), ``jsonl`` (JSON lines) and ``parquet``;
columns found by name (:data:`~beam_jobs.sources.base.CANONICAL_ALIASES`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from beam_jobs.events import BadRow, Event, SourceError, short_repr, validate_event
from beam_jobs.sources.base import (
    CANONICAL_ALIASES, REQUIRED_FIELDS, ParquetState, SourceAdapter, SplitEvent, TextState, canonical_event,
    check_first_json, decode_line, first_line_text, load_json_object, lookup, normed_keys, resolve_columns,
    split_value,
)

_CSV_SPEC = {**CANONICAL_ALIASES, "split": ("split",)}


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
                self._header_state(path, first_line, CANONICAL_ALIASES, REQUIRED_FIELDS, layout="csv", quoted=True)
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
        return canonical_event(get)

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
        text = first_line_text(path, first_line)
        check_first_json(path, text, {k: CANONICAL_ALIASES[k] for k in REQUIRED_FIELDS})
        return TextState(path, "jsonl")

    def _parse(self, line: str, state: TextState) -> Event:
        obj = normed_keys(load_json_object(line))
        return canonical_event(lambda k: lookup(obj, CANONICAL_ALIASES[k]))


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
        idx = resolve_columns(path, names, CANONICAL_ALIASES, REQUIRED_FIELDS)
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
            normed = normed_keys(record)
            return validate_event(canonical_event(lambda k: lookup(normed, CANONICAL_ALIASES[k])))
        cols = state.columns
        return validate_event(canonical_event(lambda k: record.get(cols[k]) if k in cols else None))
