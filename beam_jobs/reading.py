"""Reading raw log files into canonical events, with a dead-letter side output.

Each input file is one element; :class:`ReadEventsFn` streams its rows through
the source adapter. A row the adapter rejects (``BadRow``) goes to the
``dead_letter`` output with the file, line number, reason and the raw text,
so nothing is ever dropped silently. Files are opened through Beam's
``FileSystems`` so ``gs://``, ``s3://`` and ``hdfs://`` inputs work on the
runners that support them.

Text inputs are read the way they come (:class:`TextInput`), streaming:

* compressed by extension (Beam's ``CompressionTypes.detect_compression_type``):
  ``.gz``, ``.bz2``, ``.xz`` / ``.lzma``, ``.zst`` / ``.zstd``, ``.deflate``
  (zlib); concatenated members / streams are read in turn. A corrupt archive, or
  one that ends before its end-of-stream marker (a truncated download), stops the
  job with a :class:`SourceError` naming the file -- never a silently short read;
* encoding from the byte-order mark: UTF-8 (BOM optional), UTF-16 LE / BE and
  UTF-32 LE / BE with a BOM. A UTF-8 line that does not decode is dead-lettered
  (``non_utf8``), and so is a UTF-16 / 32 line with an invalid code unit
  (``non_utf16`` / ``non_utf32``); a first line that is not text at all (another
  encoding such as latin-1, a binary or compressed file under a text name) is a
  :class:`SourceError` with a hint;
* line endings ``\\n`` and ``\\r\\n``; a file whose first 64 KiB hold a ``\\r`` but no
  ``\\n`` (classic Mac OS, some Excel exports) is split on ``\\r`` (and ``\\r\\n`` /
  ``\\n``) instead. Elsewhere a bare ``\\r`` stays inside its line;
* records, not lines, for quoted delimited sources (``csv``): an RFC 4180 quoted
  field may hold line breaks, and such a record is one row. If the lines such a
  record spans do not form a valid row (a stray quote, an unterminated field), its
  first line is judged on its own and reading resumes on the next line, so one
  stray quote never swallows the rows after it.

A row is a record: a physical line, or the lines of one multi-line CSV record.
Every row read (``rows_read``) is either an event (``events_parsed``), a dead
letter (``rows_dead_lettered``), a blank line (``rows_blank``) or a header line
(``rows_header``, the first line of a file with a header and any repeat of it);
``lines_read`` counts physical lines. With ``count_rows=True`` the DoFn emits these
per-file counts on the ``row_counts`` output.
"""
from __future__ import annotations

import bz2
import codecs
import collections
import contextlib
import io
import json
import lzma
import os
import re
import zlib
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs.events import LOG_POSITION, BadRow, ItemMeta, SourceError
from beam_jobs.sources import get_source
from beam_jobs.sources.base import MAX_LINE_CHARS

DEAD = "dead_letter"
COUNTS = "row_counts"
MAX_RAW_CHARS = 2000
CHUNK_BYTES = 1 << 20
"""Bytes read (after decompression) per step."""
HEAD_BYTES = 64 * 1024
"""The start of a file that decides its line endings (and what the pre-flight check decompresses)."""
MAX_RECORD_CHARS = MAX_LINE_CHARS
"""A quoted CSV record may span lines up to this many characters in all."""
_MAX_RECORD_CHECKS = 64
SOURCE_ERROR_PREFIX = "source_error:"
"""Key prefix of the ``row_counts`` entry a reader emits for a file it could not finish."""
ROW_COUNT_NAMES = ("rows_read", "rows_blank", "rows_header", "lines_read")
"""The per-file counts of :class:`ReadEventsFn` (``metadata_``-prefixed for metadata files); for a
Parquet file ``rows_read`` and ``lines_read`` are its records."""


def dead_letter(path: str, line_no: int, reason: str, raw, lines: int = 1) -> dict:
    """The dead-letter record of a rejected row: ``line`` is its (first) line, ``lines`` how many
    physical lines it spans (more than 1 for a CSV record with quoted line breaks)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="backslashreplace")
    elif not isinstance(raw, str):
        raw = json.dumps(raw, default=str)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (a bad UTF-16 unit): Beam's coders need valid UTF-8
        raw = raw.encode("utf-8", errors="backslashreplace").decode("utf-8")
    raw = raw.rstrip("\r\n")
    return {
        "file": path, "line": line_no, "lines": lines, "reason": reason,
        "raw": raw[:MAX_RAW_CHARS], "truncated": len(raw) > MAX_RAW_CHARS,
    }


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


# --------------------------------------------------------------------------- #
# Compressed inputs
# --------------------------------------------------------------------------- #
_COMPRESSION_NAMES = {
    CompressionTypes.GZIP: "gzip",
    CompressionTypes.BZIP2: "bzip2",
    CompressionTypes.LZMA: "xz/lzma",
    CompressionTypes.ZSTD: "zstd",
    CompressionTypes.DEFLATE: "deflate (zlib)",
}


class _Wrapped:
    """A decompressor object ``_d`` seen through the ``eof`` / ``unused_data`` interface of bz2 / lzma's."""

    _d: object

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data


class _Zlib(_Wrapped):
    """``zlib.decompressobj`` with the ``needs_input`` interface of the bz2 / lzma decompressors."""

    def __init__(self, wbits: int):
        self._d = zlib.decompressobj(wbits)
        self._full = False

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail and not self._full

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._d.decompress(self._d.unconsumed_tail + data, max_length)
        self._full = len(out) == max_length  # zlib may hold more output for the same input
        return out


class _Zstd(_Wrapped):
    def __init__(self):
        import zstandard

        # the window limit Beam uses too (large windows need as much memory)
        self._d = zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj()
        self.needs_input = True

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(data)


def _decompressor(kind: str):
    if kind == CompressionTypes.GZIP:
        return _Zlib(zlib.MAX_WBITS | 16)
    if kind == CompressionTypes.DEFLATE:
        return _Zlib(zlib.MAX_WBITS)
    if kind == CompressionTypes.BZIP2:
        return bz2.BZ2Decompressor()
    if kind == CompressionTypes.LZMA:
        return lzma.LZMADecompressor()
    if kind == CompressionTypes.ZSTD:
        return _Zstd()
    raise ValueError(kind)


def _decompress_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zlib.error, OSError, EOFError, lzma.LZMAError, ValueError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


class _DecompressedReader(io.RawIOBase):
    """The decompressed bytes of one file, streamed and checked.

    Unlike Beam's ``CompressedFile`` (which ends quietly where a truncated file ends), a stream
    that stops before its end-of-stream marker, a corrupt stream and bytes after the last stream
    that are not another stream (zero padding is allowed) raise :class:`SourceError` naming the file.
    """

    def __init__(self, raw, kind: str, path: str):
        self._raw, self._kind, self._path = raw, kind, path
        self._name = _COMPRESSION_NAMES.get(kind, kind)
        self._dec = _decompressor(kind)
        self._done = False
        self._errors = _decompress_errors()
        self._in = 0  # compressed bytes read

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self._read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def _raw_read(self) -> bytes:
        data = self._raw.read(64 * 1024)
        self._in += len(data)
        return data

    def _read(self, size: int) -> bytes:
        size = max(size, 1)
        while not self._done:
            if self._dec.eof:  # one member / stream ended: another may follow
                rest = self._dec.unused_data
                while not rest.strip(b"\x00"):
                    rest = self._raw_read()
                    if not rest:
                        self._done = True
                        return b""
                rest = rest.lstrip(b"\x00")
                self._dec = _decompressor(self._kind)
                data = self._decompress(rest, size, after_end=True)
            elif self._dec.needs_input:
                block = self._raw_read()
                if not block:
                    raise SourceError(
                        f"{self._path}: truncated {self._name} file: the compressed data ends before its "
                        f"end-of-stream marker (incomplete download or copy?)"
                    )
                data = self._decompress(block, size)
            else:
                data = self._decompress(b"", size)
            if data:
                return data
        return b""

    def _decompress(self, data: bytes, size: int, after_end: bool = False) -> bytes:
        try:
            return self._dec.decompress(data, size)
        except self._errors as exc:
            where = " after the end of its compressed data" if after_end else ""
            raise SourceError(
                f"{self._path}: corrupt {self._name} data{where} near compressed byte {self._in} "
                f"({type(exc).__name__}: {exc}); is it really {self._name}-compressed, and complete?"
            ) from None


@contextlib.contextmanager
def open_input(path: str) -> Iterator[Any]:
    """A binary stream of the file's contents, decompressed by extension; SourceError if unreadable."""
    kind = CompressionTypes.detect_compression_type(path)
    if kind == CompressionTypes.ZSTD:
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise SourceError(f"{path}: reading zstd files needs the 'zstandard' package (pip install zstandard)") from None
    try:
        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({type(exc).__name__}: {exc.strerror or exc})") from None
    with raw:
        if kind == CompressionTypes.UNCOMPRESSED:
            yield raw
        else:
            yield io.BufferedReader(_DecompressedReader(raw, kind, path), CHUNK_BYTES)


# --------------------------------------------------------------------------- #
# Text: encoding, line endings, lines
# --------------------------------------------------------------------------- #
_BOMS = (  # UTF-32 LE before UTF-16 LE: its BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_INVALID = "tfpps.mark_invalid"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _mark_invalid(err: UnicodeError):
    # A lone surrogate marks bytes that are not valid in the file's encoding; decoded UTF-16 / 32 text
    # never holds one otherwise, so the line is dead-lettered (see TextInput.decode).
    return "\udcff", err.end


try:
    codecs.lookup_error(_INVALID)
except LookupError:
    codecs.register_error(_INVALID, _mark_invalid)


def _physical_lines(chunks, universal: bool):
    """Split a stream of bytes (or str) chunks into lines, each with its ``\\n`` (the last may lack one).

    ``universal``: ``\\r\\n`` and a bare ``\\r`` end a line too, and become ``\\n``.
    """
    partial: list = []
    held = None
    lf = cr = crlf = empty = None
    for chunk in chunks:
        if lf is None:
            lf, cr, crlf, empty = ("\n", "\r", "\r\n", "") if isinstance(chunk, str) else (b"\n", b"\r", b"\r\n", b"")
        if universal:
            if held:
                chunk, held = held + chunk, None
            if chunk.endswith(cr):  # its \n may be in the next chunk
                chunk, held = chunk[:-1], cr
            chunk = chunk.replace(crlf, lf).replace(cr, lf)
        parts = chunk.split(lf)
        if len(parts) == 1:
            if parts[0]:
                partial.append(parts[0])
            continue
        yield (empty.join(partial) + parts[0] if partial else parts[0]) + lf
        for part in parts[1:-1]:
            yield part + lf
        partial = [parts[-1]] if parts[-1] else []
    if held:
        yield (empty.join(partial) if partial else empty) + lf
    elif partial:
        yield empty.join(partial)


class TextInput:
    """One text input file, streamed as physical lines; see the module docstring.

    ::

        with TextInput(path) as src:          # SourceError: cannot open / corrupt archive
            print(src.encoding, src.bare_cr)  # 'utf-16-le', False
            for line_no, raw in src.lines():  # raw: bytes (UTF-8 files) or str, with its line ending
                text = src.decode(raw)        # str with its line ending, or BadRow
    """

    def __init__(self, path: str, encodings: tuple[str, ...] = ("utf-8",)):
        self.path = path
        self.encodings = encodings  # for UTF-8 (no BOM / UTF-8 BOM) files, tried in order per line
        self.compression = CompressionTypes.detect_compression_type(path)
        self.encoding = "utf-8"
        self.bom = False
        self.bare_cr = False
        self.lines_read = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "TextInput":
        try:
            self._fh = self._stack.enter_context(open_input(self.path))
            head = self._fh.read(HEAD_BYTES)
        except BaseException:
            self._stack.close()
            raise
        for bom, enc in _BOMS:
            if head.startswith(bom):
                self.encoding, self.bom, head = enc, True, head[len(bom):]
                break
        self._decoder = None
        if self.encoding != "utf-8":
            self._decoder = codecs.getincrementaldecoder(self.encoding)(_INVALID)
            head = self._decoder.decode(head)
            self.bare_cr = "\r" in head and "\n" not in head
        else:
            self.bare_cr = b"\r" in head and b"\n" not in head
        self._head = head
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def label(self) -> str:
        """``utf8`` / ``utf16`` / ``utf32``: the dead-letter reason of an undecodable line is ``non_<label>``."""
        return self.encoding.split("-le")[0].split("-be")[0].replace("-", "")

    def _chunks(self):
        if self._head:
            yield self._head
        while True:
            data = self._fh.read(CHUNK_BYTES)
            if not data:
                break
            yield self._decoder.decode(data) if self._decoder is not None else data
        if self._decoder is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                yield tail

    def lines(self) -> Iterator[tuple[int, bytes | str]]:
        """``(line_number, raw)`` per physical line, 1-based; raw keeps its line ending."""
        for raw in _physical_lines(self._chunks(), self.bare_cr):
            self.lines_read += 1
            yield self.lines_read, raw

    def decode(self, raw: bytes | str) -> str:
        """The text of a raw line (line ending kept); BadRow ``non_utf8`` / ``non_utf16`` / ``non_utf32``."""
        if isinstance(raw, str):
            if _SURROGATE_RE.search(raw):
                raise BadRow(f"non_{self.label}: invalid {self.encoding.upper()} code unit")
            return raw
        for enc in self.encodings:
            try:
                return raw.decode(enc)
            except UnicodeDecodeError:
                continue
        raise BadRow("non_utf8")

    def first_line_for_state(self, raw: bytes | str):
        """What ``adapter.open_state`` gets for the first line: the raw bytes of a UTF-8 file (so that
        the adapter can say what a binary first line looks like: gzip, Parquet, latin-1 ...), else text."""
        if isinstance(raw, bytes):
            return raw
        if _SURROGATE_RE.search(raw):
            raise SourceError(f"{self.path}: first line is not valid {self.encoding.upper()} text (damaged file?)")
        return raw.lstrip("\ufeff")


def _norm(text: str) -> str:
    return text.rstrip("\r\n").lstrip("\ufeff")


class _Lines:
    """The lines of a TextInput with push-back (lines re-read after a failed multi-line record)."""

    def __init__(self, it):
        self._it = it
        self._back: collections.deque = collections.deque()

    def next(self):
        if self._back:
            return self._back.popleft()
        return next(self._it, None)

    def push_back(self, items) -> None:
        self._back.extendleft(reversed(items))


def read_first_line(path: str) -> str | None:
    """First line of a text file, decoded (header detection before the pipeline starts)."""
    with TextInput(path) as src:
        for _, raw in src.lines():
            try:
                return _norm(src.decode(raw))
            except BadRow:
                return _norm(raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw)
    return None


# --------------------------------------------------------------------------- #
# The DoFn
# --------------------------------------------------------------------------- #
class ReadEventsFn(beam.DoFn):
    """file path -> canonical event dicts; bad rows -> ``dead_letter`` output.

    ``count_rows``: also emit ``(name, count)`` per file on the ``row_counts`` output (the names of
    :data:`ROW_COUNT_NAMES`, ``metadata_``-prefixed when reading metadata).
    """

    def __init__(self, source_name: str, metadata: bool = False, count_rows: bool = False,
                 file_splits: dict | None = None, require_split: bool = False):
        self.source_name = source_name
        self.metadata = metadata
        self.count_rows = count_rows
        # --split=given: file index -> the split its events belong to (--train_input / --valid_input /
        # --test_input); without it, each event needs its own (a ``split`` column), else it is dead-lettered
        self.file_splits = dict(file_splits or {})
        self.require_split = require_split
        self.rows = Metrics.counter("tfpps", "rows_read" if not metadata else "metadata_rows_read")
        self.good = Metrics.counter("tfpps", "events_parsed" if not metadata else "metadata_parsed")
        self.bad = Metrics.counter("tfpps", "rows_dead_lettered")

    def setup(self):
        self.adapter = get_source(self.source_name)

    def process(self, element):
        """``element``: a path, or ``(file_index, path)`` (the file's place in the sorted input list),
        which with the (first) line number forms each event's ``log_position``."""
        file_index, path = element if isinstance(element, tuple) else (0, element)
        counts = dict.fromkeys(ROW_COUNT_NAMES, 0)
        try:
            if self.adapter.file_format == "parquet" and not self.metadata:
                rows = self._parquet(file_index, path, counts)
            elif self.adapter.file_format == "pickle" and not self.metadata:
                rows = self._pickle(file_index, path, counts)
            else:
                rows = self._text(file_index, path, counts)
            yield from self._tagged(rows, file_index, path)
        except SourceError as exc:  # e.g. a .gz truncated after the part the pre-flight check read
            if not self.count_rows:
                raise
            # Reported as a count, not raised: a raising worker makes Beam print tracebacks, and
            # the job fails with this one line anyway before publishing (see raise_source_errors).
            yield beam.pvalue.TaggedOutput(COUNTS, (SOURCE_ERROR_PREFIX + str(exc), 1))
        if self.count_rows:
            prefix = "metadata_" if self.metadata else ""
            for name, n in counts.items():
                yield beam.pvalue.TaggedOutput(COUNTS, (prefix + name, n))

    def _tagged(self, rows, file_index: int, path: str):
        """Events tagged with their file's split (``--split=given`` with separate inputs); with
        ``require_split`` an event without one (no ``split`` column) is dead-lettered."""
        tag = self.file_splits.get(file_index)
        for row in rows:
            if isinstance(row, dict) and not self.metadata:
                if tag is not None:
                    row["split"] = tag
                elif self.require_split and not row.get("split"):
                    self.bad.inc()
                    self.good.dec()
                    pos = row.get(LOG_POSITION) or (file_index, 0)
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter(
                        path, pos[1], "missing_split: --split=given needs a 'split' column (train/valid/test) or "
                        "--train_input/--test_input", json.dumps({k: v for k, v in row.items() if k != LOG_POSITION})))
                    continue
            yield row

    def _pickle(self, file_index: int, path: str, counts: dict):
        sessions = set()
        for ev in self.adapter.events(path, file_index):
            counts["rows_read"] += 1
            self.rows.inc()
            sessions.add(ev["session_id"])
            n = counts["rows_read"]
            yield {**ev, LOG_POSITION: (file_index, n)}
            self.good.inc()
        counts["lines_read"] = len(sessions)

    def _text(self, file_index: int, path: str, counts: dict):
        parse_meta = (self.adapter.metadata_parser or parse_canonical_metadata) if self.metadata else None
        encodings = self.adapter.metadata_encodings if self.metadata else ("utf-8",)
        state = None
        with TextInput(path, encodings) as src:
            lines = _Lines(src.lines())
            while True:
                item = lines.next()
                if item is None:
                    break
                line_no, raw = item
                counts["rows_read"] += 1
                self.rows.inc()
                if state is None and parse_meta is None:  # the first line: SourceError if unusable
                    state = self.adapter.open_state(path, src.first_line_for_state(raw))
                n_lines = 1
                try:
                    text = src.decode(raw)
                    norm = _norm(text)
                    if not norm.strip():
                        counts["rows_blank"] += 1
                        continue
                    if parse_meta is not None:
                        meta = parse_meta(norm)
                        if meta is None:
                            counts["rows_header"] += 1
                            continue
                        yield _encodable(meta.to_dict())
                        self.good.inc()
                        continue
                    header = getattr(state, "header", None)
                    if header is not None and norm == header:
                        counts["rows_header"] += 1
                        continue
                    try:
                        event = self.adapter.parse_line(norm, state)
                    except BadRow:
                        if not self.adapter.record_continues(norm, state):
                            raise
                        # a quoted field with a line break (RFC 4180): the record goes on in the next line(s)
                        record, span = self._join(text, lines, src, state)
                        if record is not None and any(self._valid_alone(it, src, state) for it in span):
                            record = None  # it would swallow rows of their own: a stray quote, not a record
                        if record is None:
                            lines.push_back(span)  # this line is a dead letter alone; read on from the next one
                            raise
                        raw, n_lines = record, 1 + len(span)  # one row; its dead letter holds the whole record
                        event = self.adapter.parse_line(record, state)
                    if event is None:  # adapters skip only blank and header lines
                        counts["rows_header"] += 1
                        continue
                    yield {**event.to_dict(), LOG_POSITION: (file_index, line_no)}
                    self.good.inc()
                except BadRow as exc:
                    self.bad.inc()
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, line_no, exc.reason, raw, n_lines))
            counts["lines_read"] = src.lines_read

    def _join(self, first: str, lines: _Lines, src: TextInput, state) -> tuple[str | None, list]:
        """Read on while the quoted field opened in ``first`` stays open (RFC 4180 records).

        Returns ``(record, lines taken)`` when the quote closes within :data:`MAX_RECORD_CHARS` and the
        lines form a well-formed record (right number of fields), else ``(None, lines taken)``.
        """
        span: list = []
        parts, size, odd, checks = [first], len(first), 0, 0
        while size <= MAX_RECORD_CHARS and checks < _MAX_RECORD_CHECKS:
            item = lines.next()
            if item is None:
                break
            span.append(item)
            try:
                more = src.decode(item[1])
            except BadRow:
                break
            parts.append(more)
            size += len(more)
            odd ^= more.count('"') & 1
            if odd:  # the quote may have closed here
                checks += 1
                record = _norm("".join(parts))
                if not self.adapter.record_continues(record, state):
                    return (record if self.adapter.well_formed(record, state) else None), span
        return None, span

    def _valid_alone(self, item, src: TextInput, state) -> bool:
        try:
            norm = _norm(src.decode(item[1]))
            return bool(norm.strip()) and self.adapter.parse_line(norm, state) is not None
        except BadRow:
            return False

    def _parquet(self, file_index: int, path: str, counts: dict):
        import pyarrow.parquet as pq

        with FileSystems.open(path) as fh:
            pf = pq.ParquetFile(fh)
            state = self.adapter.check_parquet_schema(path, pf.schema_arrow)
            row_no = 0
            for batch in pf.iter_batches(batch_size=10_000):
                for record, raw in _batch_records(batch):
                    row_no += 1
                    counts["rows_read"] += 1
                    self.rows.inc()
                    try:
                        yield {**self.adapter.parse_record(record, state).to_dict(), LOG_POSITION: (file_index, row_no)}
                        self.good.inc()
                    except BadRow as exc:
                        self.bad.inc()
                        yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, row_no, exc.reason, raw))
        counts["lines_read"] = row_no


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
            if "://" not in m.path and os.path.isdir(m.path):
                raise SourceError(
                    f"{m.path}: is a directory, not a file; name its files, e.g. --input='{m.path.rstrip('/')}/*.csv'"
                )
            if m.size_in_bytes == 0:
                raise SourceError(f"{m.path}: input file is empty")
            files.append(m.path)
    return files


def check_files(source_name: str, files: list[str]) -> None:
    """Fail fast, with one line naming the file and column, on files the source cannot read.

    Text files are opened exactly as the job reads them (:class:`TextInput`: decompression,
    encoding, line endings), and the first line must give the adapter a usable layout. Only the
    start of a compressed file is decompressed here; an archive truncated further on stops the
    job from the worker (still one line, and nothing is published).
    """
    adapter = get_source(source_name)
    for path in files:
        if adapter.file_format == "pickle":
            adapter.open_state(path)  # loads it (restricted unpickler) and checks its structure
        elif adapter.file_format == "parquet":
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
            with TextInput(path) as src:
                first = next(src.lines(), None)
                if first is None:
                    packed = f" after {_COMPRESSION_NAMES[src.compression]} decompression" if src.compression in _COMPRESSION_NAMES else ""
                    raise SourceError(f"{path}: input file is empty{packed}")
                adapter.open_state(path, src.first_line_for_state(first[1]))


def raise_source_errors(stats: dict) -> None:
    """Raise the :class:`SourceError` of a file a reader could not finish, if ``stats`` (the job's
    summed counts) hold one (``source_error:<message>``); the first by file name, with how many more."""
    errors = sorted(k[len(SOURCE_ERROR_PREFIX):] for k in stats if k.startswith(SOURCE_ERROR_PREFIX))
    if errors:
        more = f" (and {len(errors) - 1} more unreadable file{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise SourceError(errors[0] + more)


_STEP_NOTE_RE = re.compile(r"\s*\[while running '[^']*'\]")
_WORKER_ERROR_RE = re.compile(r"(?:^|\n)\s*(?:[\w.]+\.)?SourceError: ([^\n]+)")


def source_error_from_runner(exc: BaseException) -> SourceError | None:
    """The :class:`SourceError` a worker raised, from the exception a pipeline run ends with, else None.

    The in-process runners re-raise it with the step name appended (``... [while running 'ReadEvents']``);
    the multi-process DirectRunner (and other portable runners) raise a ``RuntimeError`` carrying the
    worker's traceback as text. Either way the one-line message naming the file is recovered.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SourceError):
            return SourceError(_STEP_NOTE_RE.sub("", str(exc)).strip())
        found = _WORKER_ERROR_RE.findall(str(exc))
        if found:
            return SourceError(_STEP_NOTE_RE.sub("", found[-1]).strip())
        exc = exc.__cause__ or exc.__context__
    return None
