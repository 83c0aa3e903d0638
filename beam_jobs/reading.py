"""Reading raw log files into canonical events, with a dead-letter side output.

Each input file is one element; :class:`ReadEventsFn` streams its rows through
the source adapter. A row the adapter rejects (``BadRow``) goes to the
``dead_letter`` output with the file, line number, reason and the raw text,
so nothing is ever dropped silently. Files are opened through Beam's
``FileSystems`` so ``gs://``, ``s3://`` and ``hdfs://`` inputs work on the
runners that support them.
"""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs.events import LOG_POSITION, BadRow, ItemMeta, SourceError
from beam_jobs.sources import decode_line, get_source

DEAD = "dead_letter"
MAX_RAW_CHARS = 2000


def dead_letter(path: str, line_no: int, reason: str, raw) -> dict:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="backslashreplace")
    elif not isinstance(raw, str):
        raw = json.dumps(raw, default=str)
    raw = raw.rstrip("\r\n")
    return {"file": path, "line": line_no, "reason": reason, "raw": raw[:MAX_RAW_CHARS], "truncated": len(raw) > MAX_RAW_CHARS}


def parse_canonical_metadata(line: str) -> ItemMeta:
    """The canonical item metadata line: ``{"item_id": ..., "title": ..., "categories": [[...], ...]}``."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadRow(f"json_error: {exc.msg}") from None
    if not isinstance(data, dict) or not str(data.get("item_id") or "").strip():
        raise BadRow("empty_item_id")
    cats = data.get("categories") or []
    if cats and all(isinstance(c, str) for c in cats):
        cats = [cats]  # one path given flat
    if not all(isinstance(c, list) for c in cats):
        raise BadRow("bad_categories: expected a list of category paths")
    data = {**data, "item_id": str(data["item_id"]).strip(), "categories": cats}
    return ItemMeta.from_dict(data)


def read_first_line(path: str) -> str | None:
    """First line of a text file (header detection before the pipeline starts)."""
    with FileSystems.open(path) as fh:
        raw = fh.readline()
    if not raw:
        return None
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class ReadEventsFn(beam.DoFn):
    """file path -> canonical event dicts; bad rows -> ``dead_letter`` output."""

    def __init__(self, source_name: str, metadata: bool = False):
        self.source_name = source_name
        self.metadata = metadata
        self.rows = Metrics.counter("tfpps", "rows_read" if not metadata else "metadata_rows_read")
        self.good = Metrics.counter("tfpps", "events_parsed" if not metadata else "metadata_parsed")
        self.bad = Metrics.counter("tfpps", "rows_dead_lettered")

    def setup(self):
        self.adapter = get_source(self.source_name)

    def process(self, element):
        """``element``: a path, or ``(file_index, path)`` (the file's place in the sorted input list),
        which with the line number forms each event's ``log_position``."""
        file_index, path = element if isinstance(element, tuple) else (0, element)
        if self.adapter.file_format == "parquet" and not self.metadata:
            yield from self._parquet(file_index, path)
            return
        parse_meta = (self.adapter.metadata_parser or parse_canonical_metadata) if self.metadata else None
        encodings = self.adapter.metadata_encodings if self.metadata else ("utf-8",)
        state = None
        with FileSystems.open(path) as fh:
            for line_no, raw in enumerate(fh, start=1):
                self.rows.inc()
                try:
                    line = decode_line(raw, encodings).rstrip("\r\n")
                    if parse_meta is not None:
                        meta = parse_meta(line) if line.strip() else None
                        if meta is None:
                            continue
                        yield _encodable(meta.to_dict())
                        self.good.inc()
                        continue
                    if state is None:
                        state = self.adapter.open_state(path, line)
                    event = self.adapter.parse_line(line, state)
                    if event is None:
                        continue
                    yield {**event.to_dict(), LOG_POSITION: (file_index, line_no)}
                    self.good.inc()
                except BadRow as exc:
                    self.bad.inc()
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, line_no, exc.reason, raw))

    def _parquet(self, file_index: int, path: str):
        import pyarrow.parquet as pq

        with FileSystems.open(path) as fh:
            pf = pq.ParquetFile(fh)
            state = self.adapter.check_parquet_schema(path, pf.schema_arrow)
            row_no = 0
            for batch in pf.iter_batches(batch_size=10_000):
                for record, raw in _batch_records(batch):
                    row_no += 1
                    self.rows.inc()
                    try:
                        yield {**self.adapter.parse_record(record, state).to_dict(), LOG_POSITION: (file_index, row_no)}
                        self.good.inc()
                    except BadRow as exc:
                        self.bad.inc()
                        yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, row_no, exc.reason, raw))


def _encodable(meta: dict) -> dict:
    """``meta`` if all its text can be written as UTF-8, else BadRow naming the field: a lone
    surrogate (from a JSON ``"\\ud800"`` escape) would stop the job in Beam's coder."""
    for key, value in meta.items():
        try:
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRow(f"bad_{key}: lone surrogate (not valid Unicode text)") from None
    return meta


def _batch_records(batch) -> list[tuple[dict, dict]]:
    """``(record, raw)`` per row of a pyarrow RecordBatch (``raw`` is the dead letter's copy).

    ``to_pylist`` raises for the whole batch on one timestamp or date that Python cannot
    hold (beyond year 9999 or before year 1). Then the batch is converted value by value:
    such a value becomes ``datetime.max`` / ``min`` (``date.max`` / ``min``) in the record, so
    that validation rejects just its row as a future / negative timestamp, and its stored
    integer and type in ``raw``.
    """
    try:
        return [(r, r) for r in batch.to_pylist()]
    except (OverflowError, ValueError):
        pass
    import datetime as dt

    import pyarrow as pa

    rows = []
    for i in range(batch.num_rows):
        record, raw = {}, {}
        for name, col in zip(batch.schema.names, batch.columns):
            try:
                record[name] = raw[name] = col[i].as_py()
                continue
            except (OverflowError, ValueError):
                pass
            try:
                stored = col.slice(i, 1).view(pa.int32() if col.type.bit_width == 32 else pa.int64())[0].as_py()
            except Exception:  # noqa: BLE001 - not backed by one integer
                stored = None
            raw[name] = f"{stored} ({col.type})"
            if stored is not None and pa.types.is_timestamp(col.type):
                record[name] = dt.datetime.max if stored > 0 else dt.datetime.min
            elif stored is not None and pa.types.is_date(col.type):
                record[name] = dt.date.max if stored > 0 else dt.date.min
            else:
                record[name] = raw[name]
        rows.append((record, raw))
    return rows


def expand_inputs(patterns: list[str]) -> list[str]:
    """Expand comma-separated globs; every pattern must match at least one non-empty file."""
    files: list[str] = []
    for pattern in patterns:
        matches = FileSystems.match([pattern])[0].metadata_list
        if not matches:
            raise SourceError(f"--input {pattern!r}: no file matches")
        for m in sorted(matches, key=lambda m: m.path):
            if m.size_in_bytes == 0:
                raise SourceError(f"{m.path}: input file is empty")
            files.append(m.path)
    return files


def check_files(source_name: str, files: list[str]) -> None:
    """Fail fast, with one line naming the file and column, on files the source cannot read."""
    adapter = get_source(source_name)
    for path in files:
        if adapter.file_format == "parquet":
            import pyarrow.parquet as pq

            try:
                with FileSystems.open(path) as fh:
                    schema = pq.ParquetFile(fh).schema_arrow
            except SourceError:
                raise
            except Exception as exc:  # pyarrow raises several types for non-parquet bytes
                raise SourceError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
            adapter.check_parquet_schema(path, schema)
        else:
            first = read_first_line(path)
            if first is None or not first.strip():
                raise SourceError(f"{path}: input file is empty")
            adapter.open_state(path, first)
