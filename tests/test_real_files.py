"""Real log files as they come: compressed, in other encodings and line endings, with multi-line records.

Each end-to-end test writes one small fixture and runs the whole Beam job on it, then checks the
exact counts against a hand count written next to the fixture. Each unreadable case must end in one
line on stderr naming the file (exit code 2), and publish nothing.
"""
from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import random
import zlib

import apache_beam as beam
import pytest

from beam_jobs import cli
from beam_jobs.events import SourceError
from beam_jobs.reading import (
    CHUNK_BYTES,
    COUNTS,
    DEAD,
    ReadEventsFn,
    check_files,
    expand_inputs,
    raise_source_errors,
    source_error_from_runner,
)
from tfpps.data.dataset_dir import DatasetDir

IN_MEMORY = ["--direct_running_mode=in_memory"]

# The fixture every encoding / compression test reads, one entry per physical line.
HEADER = "user_id,item_id,timestamp,rating"
LINES = [
    HEADER,                    # 1  header                 -> rows_header
    "u1,caf\u00e9,1000,5",     # 2  event (non-ASCII item)
    "u1,b,1100,4",             # 3  event
    "",                        # 4  blank                  -> rows_blank
    "u1,c,1200,3",             # 5  event
    "u2,\u65e5\u672c,2000,3",  # 6  event (CJK item)
    "u2,b,yesterday,4",        # 7  dead letter: bad_timestamp
    "u2,b,2100,4",             # 8  event
    "u3,a,3000",               # 9  dead letter: wrong_column_count
    "u2,c,2200,1",             # 10 event
    "u3,a,3000,2",             # 11 event
    "u3,b,3100,2",             # 12 event
]
HAND_COUNT = {"rows_read": 12, "events_parsed": 8, "rows_dead_lettered": 2, "rows_blank": 1, "rows_header": 1}
DEAD_AT = {7: "bad_timestamp", 9: "wrong_column_count"}
ITEMS = {"caf\u00e9", "\u65e5\u672c", "a", "b", "c"}


def text(sep: str = "\n", delimiter: str = ",") -> str:
    return sep.join(line.replace(",", delimiter) for line in LINES) + sep


def run_job(tmp_path, path, source="csv", extra=()):
    out = tmp_path / "dataset"
    stats = cli.run([f"--source={source}", f"--input={path}", f"--output={out}", "--split=loo", *IN_MEMORY, *extra])
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["stages"] == stats["stages"]
    dead = [json.loads(l) for p in sorted((out / "dead_letter").glob("*.jsonl")) for l in p.read_text().splitlines()]
    return stats, dead, DatasetDir(out)


def check_counts(stats, dead, ds, path, hand=HAND_COUNT, dead_at=DEAD_AT, items=ITEMS):
    st = stats["stages"]
    assert {k: st[k] for k in hand} == hand
    # the identity, from stats.json alone
    assert st["rows_read"] == st["events_parsed"] + st["rows_dead_lettered"] + st["rows_blank"] + st["rows_header"]
    assert {d["line"]: d["reason"].split(":")[0] for d in dead} == dead_at
    assert all(d["file"] == str(path) for d in dead)
    if items is not None:
        assert set(ds.vocab("items")[2:]) == items


def one_line_error(tmp_path, capsys, path, source="csv"):
    """Run the job through ``main``; it must exit 2 with exactly one stderr line naming ``path``."""
    out = tmp_path / "out"
    code = cli.main([f"--source={source}", f"--input={path}", f"--output={out}", *IN_MEMORY])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("build_features: error: ") and str(path).rstrip("/") in err[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))  # no scratch directory left behind either
    return err[0]


# --------------------------------------------------------------------------- #
# One end-to-end run per encoding / line ending / compression
# --------------------------------------------------------------------------- #
def test_plain_utf8(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(text().encode("utf-8"))
    check_counts(*run_job(tmp_path, path), path)


def test_utf8_with_bom(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(codecs.BOM_UTF8 + text().encode("utf-8"))
    check_counts(*run_job(tmp_path, path), path)


def test_utf16_le_with_bom_excel_unicode_text(tmp_path):
    """Excel's "Unicode Text": UTF-16 LE with a BOM, tab-separated, CRLF."""
    path = tmp_path / "events.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + text("\r\n", "\t").encode("utf-16-le"))
    check_counts(*run_job(tmp_path, path), path)


def test_utf16_be_with_bom(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(codecs.BOM_UTF16_BE + text().encode("utf-16-be"))
    check_counts(*run_job(tmp_path, path), path)


def test_latin1_rows_are_dead_lettered_not_lost(tmp_path):
    """latin-1 is not guessed (any bytes are latin-1): with an ASCII header, its non-UTF-8 rows are
    dead letters (``non_utf8``) with their bytes; a latin-1 header is refused (test below)."""
    path = tmp_path / "events.csv"
    path.write_bytes(text().encode("latin-1", errors="replace"))  # line 6 (CJK) becomes '?' (ASCII)
    hand = {**HAND_COUNT, "events_parsed": 7, "rows_dead_lettered": 3}
    stats, dead, ds = run_job(tmp_path, path)
    check_counts(stats, dead, ds, path, hand, {**DEAD_AT, 2: "non_utf8"}, {"??", "a", "b", "c"})
    assert next(d for d in dead if d["line"] == 2)["raw"] == "u1,caf\\xe9,1000,5"


def test_bare_cr_line_endings(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(text("\r").encode("utf-8"))
    check_counts(*run_job(tmp_path, path), path)


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(text("\r\n").encode("utf-8"))
    check_counts(*run_job(tmp_path, path), path)


def test_gzip(tmp_path):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(text().encode("utf-8")))
    check_counts(*run_job(tmp_path, path), path)


def test_bzip2(tmp_path):
    path = tmp_path / "events.csv.bz2"
    path.write_bytes(bz2.compress(text().encode("utf-8")))
    check_counts(*run_job(tmp_path, path), path)


def test_amazon_json_gz_as_published(tmp_path):
    """Amazon review dumps come as ``*.json.gz`` (2014: Python literals; 2018: JSON)."""
    reviews = [
        '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1252800000, "reviewText": "ok"}',
        '{"reviewerID": "A1", "asin": "B2", "overall": 4.0, "unixReviewTime": 1252900000}',
        "{'reviewerID': 'A1', 'asin': 'B3', 'overall': 3.0, 'unixReviewTime': 1253000000}",  # 2014 literal
        '{"reviewerID": "A2", "asin": "B1", "overall": 5.0, "reviewTime": "09 13, 2009"}',
        '{"reviewerID": "A2", "asin": "B2", "overall": 2.0',  # json_error
        '{"reviewerID": "A2", "asin": "B3", "overall": 1.0, "unixReviewTime": 1253100000}',
    ]
    metas = [
        "{'asin': 'B1', 'title': 'One', 'categories': [['Books', 'Fiction']]}",
        '{"asin": "B2", "title": "Two", "category": ["Books"]}',
        "",
        '{"title": "no asin"}',  # dead letter: missing_field
    ]
    path = tmp_path / "reviews_Books_5.json.gz"
    path.write_bytes(gzip.compress(("\n".join(reviews) + "\n").encode()))
    meta = tmp_path / "meta_Books.json.gz"
    meta.write_bytes(gzip.compress(("\n".join(metas) + "\n").encode()))
    stats, dead, ds = run_job(tmp_path, path, source="amazon", extra=[f"--metadata={meta}"])
    hand = {"rows_read": 6, "events_parsed": 5, "rows_dead_lettered": 2, "rows_blank": 0, "rows_header": 0,
            "metadata_rows_read": 4, "metadata_items": 2, "metadata_rows_blank": 1, "metadata_rows_header": 0}
    st = stats["stages"]
    assert {k: st[k] for k in hand} == hand
    # with --metadata, the dead letters of both readers are together in rows_dead_lettered
    assert st["rows_read"] + st["metadata_rows_read"] == (
        st["events_parsed"] + st["metadata_items"] + st["rows_dead_lettered"]
        + st["rows_blank"] + st["rows_header"] + st["metadata_rows_blank"] + st["metadata_rows_header"]
    )
    assert {(d["file"], d["line"], d["reason"].split(":")[0]) for d in dead} == {
        (str(path), 5, "json_error"), (str(meta), 4, "missing_field")}
    assert set(ds.vocab("items")[2:]) == {"B1", "B2", "B3"}


def test_quoted_newlines_are_one_record(tmp_path):
    """RFC 4180: a quoted field may hold line breaks; the record is one row (one event or one dead
    letter, at its first line), and a stray quote does not swallow the rows after it."""
    lines = [
        "user_id,item_id,timestamp,text",  # 1      header
        'u1,a,1000,"great',                # 2-3    one event, text 'great\nbook'
        'book"',
        "u1,b,1100,plain",                 # 4      event
        'u1,"c',                           # 5-6    one dead letter: an item id with a line break
        'd",1200,x',
        "u2,a,2000,",                      # 7      event
        'u2,b,2100,"stray quote',          # 8      dead letter (csv_error), alone: the quote never closes
        "u2,c,2200,ok",                    # 9      event, not swallowed
        "u3,a,3000,",                      # 10     event
        'u3,b,3100,"two',                  # 11-13  one event, text 'two\n\nlines' (a blank line inside)
        "",
        'lines"',
        "u3,c,3200,",                      # 14     event
    ]
    path = tmp_path / "events.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    # rows: 1, 2-3, 4, 5-6, 7, 8, 9, 10, 11-13, 14 -> 10 rows from 14 lines
    hand = {"rows_read": 10, "events_parsed": 7, "rows_dead_lettered": 2, "rows_blank": 0, "rows_header": 1, "lines_read": 14}
    stats, dead, ds = run_job(tmp_path, path)
    check_counts(stats, dead, ds, path, hand, {5: "item_id_control_char", 8: "csv_error"}, {"a", "b", "c"})
    by_line = {d["line"]: d for d in dead}
    assert by_line[5]["lines"] == 2 and by_line[5]["raw"] == 'u1,"c\nd",1200,x'
    assert by_line[8]["lines"] == 1 and by_line[8]["raw"] == 'u2,b,2100,"stray quote'


# --------------------------------------------------------------------------- #
# Reader level (no pipeline): other compressions, log positions, counts
# --------------------------------------------------------------------------- #
def read_file(path, source="csv"):
    fn = ReadEventsFn(source, count_rows=True)
    fn.setup()
    out = list(fn.process((3, str(path))))
    events = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == DEAD]
    counts = dict(o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == COUNTS)
    return events, dead, counts


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(
    "name, pack",
    [
        ("e.csv.xz", lzma.compress),
        ("e.csv.lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)),
        ("e.csv.deflate", zlib.compress),
        ("e.csv.zst", _zstd),
        ("e.csv.gz", lambda d: gzip.compress(d[:40]) + gzip.compress(d[40:])),  # two members (cat a.gz b.gz)
        ("e.csv.bz2", lambda d: bz2.compress(d[:40]) + bz2.compress(d[40:])),  # two streams
        ("e.csv.gz", lambda d: gzip.compress(d) + b"\0" * 512),  # zero padding after the member
    ],
)
def test_every_beam_compression_type_streams(tmp_path, name, pack):
    path = tmp_path / name
    path.write_bytes(pack(text().encode()))
    check_files("csv", [str(path)])
    events, dead, counts = read_file(path)
    assert len(events) == 8 and {d["line"] for d in dead} == set(DEAD_AT)
    assert counts == {"rows_read": 12, "rows_blank": 1, "rows_header": 1, "lines_read": 12}


def test_log_positions_are_first_lines_and_monotone(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(b'user_id,item_id,timestamp,text\nu,a,1,"x\ny"\nu,b,2,z\n\nu,c,3,"p\n\nq"\nu,d,4,\n')
    events, dead, counts = read_file(path)
    assert [e["log_position"] for e in events] == [(3, 2), (3, 4), (3, 6), (3, 9)]
    assert [e["text"] for e in events] == ["x\ny", "z", "p\n\nq", None]
    assert counts == {"rows_read": 6, "rows_blank": 1, "rows_header": 1, "lines_read": 9} and not dead


def test_bad_utf16_code_unit_is_a_dead_letter(tmp_path):
    body = text().encode("utf-16-le")
    bad = body.replace("u3,a,3000,2".encode("utf-16-le"), "u3,a,3000,2".encode("utf-16-le")[:-2] + b"\x00\xd8")
    path = tmp_path / "e.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + bad + b"\x41")  # and an odd trailing byte
    events, dead, counts = read_file(path)
    assert {d["line"]: d["reason"].split(":")[0] for d in dead} == {**DEAD_AT, 11: "non_utf16", 13: "non_utf16"}
    assert len(events) == 7 and counts["rows_read"] == 13
    assert all(isinstance(d["raw"], str) and d["raw"].encode("utf-8") for d in dead)


def test_rows_read_identity_in_stats_json(tmp_path, capsys):
    """stats.json alone shows where every row went; the summary prints rows read, not events parsed."""
    path = tmp_path / "events.csv"
    path.write_bytes((text() + HEADER + "\n\n\nu4,a,4000,1\nu4,a,-5,1\n").encode())  # a repeated header, 2 blanks
    out = tmp_path / "dataset"
    assert cli.main(["--source=csv", f"--input={path}", f"--output={out}", *IN_MEMORY]) == 0
    st = json.loads((out / "stats.json").read_text())["stages"]
    assert (st["rows_read"], st["events_parsed"], st["rows_dead_lettered"], st["rows_blank"], st["rows_header"]) == (17, 9, 3, 3, 2)
    assert st["rows_read"] == st["events_parsed"] + st["rows_dead_lettered"] + st["rows_blank"] + st["rows_header"]
    assert st["lines_read"] == 17
    summary = capsys.readouterr().out
    assert [l.split()[-1] for l in summary.splitlines() if l.startswith("rows read ")] == ["17"]
    assert [l.split()[-1] for l in summary.splitlines() if l.startswith("events parsed ")] == ["9"]


# --------------------------------------------------------------------------- #
# Files that cannot be read: one line naming the file, nothing published
# --------------------------------------------------------------------------- #
def test_truncated_gzip_found_before_the_pipeline(tmp_path, capsys):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(text().encode())[:-12])
    assert "truncated gzip" in one_line_error(tmp_path, capsys, path)


def test_truncated_gzip_found_by_the_worker(tmp_path, capsys):
    """The pre-flight check decompresses only the start; the truncation is found by the reader."""
    rng = random.Random(7)
    rows = [HEADER] + [f"u{rng.randrange(500)},i{rng.randrange(5000)},{rng.randrange(10**9)},{rng.randrange(6)}" for _ in range(100_000)]
    data = gzip.compress(("\n".join(rows) + "\n").encode())
    cut = data[: len(data) * 3 // 4]
    assert len(zlib.decompressobj(31).decompress(cut)) > 1.5 * CHUNK_BYTES  # past what the pre-flight check reads
    path = tmp_path / "events.csv.gz"
    path.write_bytes(cut)
    check_files("csv", [str(path)])  # the start is fine
    line = one_line_error(tmp_path, capsys, path)
    assert "truncated gzip" in line and "while running" not in line


def test_corrupt_gzip(tmp_path, capsys):
    data = bytearray(gzip.compress(text().encode() * 20))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "events.csv.gz"
    path.write_bytes(bytes(data))
    assert "corrupt gzip" in one_line_error(tmp_path, capsys, path)


def test_plain_text_named_gz(tmp_path, capsys):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(text().encode())
    assert "corrupt gzip" in one_line_error(tmp_path, capsys, path)


def test_gzip_bytes_named_csv(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_bytes(gzip.compress(text().encode()))
    assert "looks gzip-compressed" in one_line_error(tmp_path, capsys, path)


@pytest.mark.parametrize(
    "pack, hint",
    [(bz2.compress, "looks bzip2-compressed"), (lzma.compress, "looks xz-compressed"),
     (_zstd, "looks zstd-compressed"), (lambda d: b"PK\x03\x04" + d, "ZIP archive")],
)
def test_compressed_bytes_under_a_text_name(tmp_path, pack, hint):
    path = tmp_path / "events.csv"
    path.write_bytes(pack(text().encode()))
    with pytest.raises(SourceError, match=hint):
        check_files("csv", [str(path)])


def test_directory_as_input(tmp_path, capsys):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "events.csv").write_bytes(text().encode())
    assert "is a directory" in one_line_error(tmp_path, capsys, folder)


def test_header_over_the_csv_field_limit(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_bytes(("x" * 200_000 + "," + HEADER + "\nu1,a,1,1\n").encode())
    assert "header" in one_line_error(tmp_path, capsys, path)


def test_latin1_header_is_refused(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_bytes((HEADER + ",libell\u00e9\nu1,a,1000,5,x\n").encode("latin-1"))
    assert "not UTF-8" in one_line_error(tmp_path, capsys, path)


def test_utf16_without_bom_is_refused(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_bytes(text().encode("utf-16-le"))
    assert "byte-order mark" in one_line_error(tmp_path, capsys, path)


def test_worker_source_errors_become_one_line():
    """A reader reports a file it cannot finish as a count; the job raises it after the pipeline. If a
    runner raises it instead, the message is recovered from the in-process or multi-process form."""
    with pytest.raises(SourceError, match=r"^b.gz: truncated \(and 1 more unreadable file\)$"):
        raise_source_errors({"rows_read": 3, "source_error:c.gz: corrupt": 1, "source_error:b.gz: truncated": 1})
    raise_source_errors({"rows_read": 3})
    in_process = SourceError("a.gz: truncated gzip file [while running 'ReadEvents/ParDo(ReadEventsFn)']")
    assert str(source_error_from_runner(in_process)) == "a.gz: truncated gzip file"
    multi_process = RuntimeError(
        'Traceback (most recent call last):\n  File "x.py", line 1, in process\n'
        "beam_jobs.events.SourceError: a.gz: truncated gzip file [while running 'ReadEvents/ParDo(ReadEventsFn)']\n"
    )
    assert str(source_error_from_runner(multi_process)) == "a.gz: truncated gzip file"
    assert source_error_from_runner(RuntimeError("something else")) is None


def test_compressed_empty_file(tmp_path, capsys):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(b""))
    assert "empty after gzip decompression" in one_line_error(tmp_path, capsys, path)


def test_expand_inputs_and_check_files_raise_source_error(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(SourceError, match="is a directory"):
        expand_inputs([str(tmp_path / "d")])
    bad = tmp_path / "e.csv.bz2"
    bad.write_bytes(b"BZh9 not really")
    with pytest.raises(SourceError, match="corrupt bzip2"):
        check_files("csv", [str(bad)])
