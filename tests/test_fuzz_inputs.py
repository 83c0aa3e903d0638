"""Property-based fuzzing of the Beam job's input parsing (hypothesis).

Random and adversarial rows -- wrong column counts, non-UTF-8 bytes, huge
fields, negative / future / NaN / absurdly long timestamps, empty ids, control
characters, broken quoting, non-object JSON, deep nesting -- are mixed with
generated good rows and run through :class:`beam_jobs.reading.ReadEventsFn`
(the DoFn the job uses, called directly without a pipeline), then once through
the real job on the DirectRunner.

Properties: parsing never raises; every row read is either parsed into an
event, dead-lettered with a non-empty reason, or (only if blank or a repeat of
the header) skipped, by the reader's own counts (``rows_read == parsed +
dead-lettered + blank + header``, ``lines_read`` == physical lines); every
generated good row comes out as an event and is never inside a dead letter;
every crafted bad row is dead-lettered (with the expected reason category
where one is known).

A row is a record: one physical line split on ``\n`` (a bare ``\r`` does not
end a line in a file that has ``\n`` endings), except that a CSV quoted field
may hold line breaks (RFC 4180): such lines form one row, judged as a whole
and dead-lettered at its first line (``lines`` = how many lines it spans).
Lines that would swallow a row valid on its own, or that never close their
quote, are judged one by one instead. Generated good rows never contain
``\r``, ``\n`` or an unbalanced quote, so without random rows the expected
rows are exact; random rows may open quotes that later lines close.
"""
from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import random
import tempfile
import time
from pathlib import Path

import apache_beam as beam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_jobs.events import MAX_ID_CHARS
from beam_jobs.reading import COUNTS, DEAD, MAX_RAW_CHARS, SOURCE_ERROR_PREFIX, ReadEventsFn
from beam_jobs.sources.base import MAX_LINE_CHARS

NOW = int(time.time())
CSV_HEADER = "user_id,item_id,timestamp,rating"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------- #
# Generators
# --------------------------------------------------------------------------- #
# Ids: any printable text except control characters (invalid in ids), surrogates and
# the BOM (stripped from line starts by the reader); leading/trailing whitespace is
# allowed (ids are stripped), the stripped id must be non-empty and short enough.
_id_chars = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff")
ids = st.text(_id_chars, min_size=1, max_size=24).filter(lambda s: s.strip() and len(s.strip()) <= MAX_ID_CHARS)
timestamps = st.integers(min_value=0, max_value=NOW)
ratings = st.one_of(st.just(""), st.floats(min_value=-10, max_value=10, allow_nan=False).map(repr))


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def good_csv_rows(draw):
    u, i, ts, r = draw(ids), draw(ids), draw(timestamps), draw(ratings)
    # epoch ms is only recognised by magnitude (> 1e11), so offer it for large enough values
    forms = [str(ts), _iso(ts), f"{ts}.5"] + ([str(ts * 1000)] if ts * 1000 > 10**11 else [])
    ts_text = draw(st.sampled_from(forms))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([u, i, ts_text, r])
    return [buf.getvalue().encode("utf-8")], ("good", (u.strip(), i.strip(), ts))


def _bad(*lines, reason=None):
    return [l.encode("utf-8") if isinstance(l, str) else l for l in lines], ("bad", reason)


def _record(*lines, kind, info=None):
    """Lines that form one CSV record (a quoted field with line breaks): one row, ``kind`` at its first line."""
    return [l.encode("utf-8") for l in lines], ("record", (kind, info))


CSV_CRAFTED = [
    _bad("u1,i1", reason="wrong_column_count"),
    _bad("u1,i1,1000,5,extra", reason="wrong_column_count"),
    _bad(",,,,,,,,,,", reason="wrong_column_count"),
    _bad(b"u1,\xff\xfe,1000,5", reason="non_utf8"),
    _bad(b"\xc3\x28,i1,1000,", reason="non_utf8"),
    _bad(",i1,1000,", reason="empty_user_id"),
    _bad("u1,   ,1000,", reason="empty_item_id"),
    _bad("u1,i1,-5,", reason="negative_timestamp"),
    _bad("u1,i1,-1e30,", reason="negative_timestamp"),
    _bad(f"u1,i1,{NOW + 10**7},", reason="future_timestamp"),
    _bad("u1,i1,2999-01-01T00:00:00Z,", reason="future_timestamp"),
    _bad("u1,i1,NaN,", reason="bad_timestamp"),
    _bad("u1,i1,nan,", reason="bad_timestamp"),
    _bad("u1,i1,inf,", reason="bad_timestamp"),
    _bad("u1,i1,1e999,", reason="bad_timestamp"),
    _bad("u1,i1," + "9" * 5000 + ",", reason="bad_timestamp"),  # beyond int() digit limit
    _bad("u1,i1,yesterday,", reason="bad_timestamp"),
    _bad("u1,i1,2024-13-45,", reason="bad_timestamp"),
    _bad("u1,i1,,", reason="missing_timestamp"),
    _bad("u1,i1,1000,NaN", reason="bad_rating"),
    _bad("u1,i1,1000,1e999", reason="bad_rating"),
    _bad("u1,i1,1000,five", reason="bad_rating"),
    _bad("x" * (MAX_ID_CHARS + 1) + ",i1,1000,", reason="user_id_too_long"),
    _bad("u1,i1,1000," + "x" * (MAX_LINE_CHARS + 1), reason="line_too_long"),
    _bad("u1\tx,i1,1000,", reason="user_id_control_char"),
    _bad("u1\x00,i1,1000,", reason=None),
    _bad('u1,"i1,1000,', reason="csv_error"),
    _bad('"u1"x,i1,1000,', reason="csv_error"),
    _bad("u1,i1,1000\r5,", reason="csv_error"),
    # RFC 4180 quoted line breaks: one record (row) over two lines, judged as a whole
    _record('u1,"i', '1",1000,', kind="bad", info="item_id_control_char"),  # an id with a line break
    _record('"u1', '",i1,1000,', kind="good", info=("u1", "i1", 1000)),  # ids are stripped: 'u1\n' -> 'u1'
    _bad("", reason=None),  # a blank line (skipped)
]
# An empty physical line ("" above) is blank: skipped, not dead-lettered (see _expected_skip).


def _no_newline(b: bytes) -> bytes:
    return b.replace(b"\n", b" ")


random_rows = st.one_of(
    st.binary(max_size=80).map(_no_newline),
    st.text(max_size=80).map(lambda s: _no_newline(s.encode("utf-8", "surrogatepass"))),
    st.lists(st.text(st.characters(blacklist_characters="\n"), max_size=12), max_size=7).map(
        lambda fs: ",".join(fs).encode("utf-8", "surrogatepass")
    ),
).map(lambda b: ([b], ("any", None)))
csv_rows = st.one_of(good_csv_rows(), good_csv_rows(), st.sampled_from(CSV_CRAFTED), random_rows)


@st.composite
def good_json_rows(draw):
    u = draw(st.one_of(ids, st.integers(0, 10**12)))
    i = draw(st.one_of(ids, st.integers(0, 10**12)))
    ts = draw(timestamps)
    obj = {"user_id": u, "item_id": i, "timestamp": draw(st.sampled_from([ts, str(ts), _iso(ts), ts + 0.25]))}
    if draw(st.booleans()):
        obj["rating"] = draw(st.one_of(st.none(), st.floats(-10, 10, allow_nan=False)))
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    return [text.encode("utf-8")], ("good", (str(u).strip(), str(i).strip(), ts))


def _j(obj, reason=None):
    return _bad(json.dumps(obj), reason=reason)


JSON_CRAFTED = [
    _bad('{"user_id": "u", "item_id": "i", "timestamp": NaN}', reason="bad_timestamp"),
    _bad('{"user_id": "u", "item_id": "i", "timestamp": Infinity}', reason="bad_timestamp"),
    _bad('{"user_id": "u", "item_id": "i", "timestamp": 1000, "rating": NaN}', reason="bad_rating"),
    _bad('{"user_id": "u", "item_id": "i", "timestamp": 1000, "rating": ' + "9" * 400 + "}", reason="bad_rating"),
    _bad('{"user_id": "u", "item_id": "i", "timestamp": ' + "9" * 400 + "}", reason="future_timestamp"),
    _bad('{"user_id": ' + "9" * 5000 + ', "item_id": "i", "timestamp": 1}', reason="json_error"),
    _j({"user_id": "u", "item_id": "i", "timestamp": "9" * 5000}, reason="bad_timestamp"),
    _j({"user_id": "u", "item_id": "i", "timestamp": -1}, reason="negative_timestamp"),
    _j({"user_id": "u", "item_id": "i", "timestamp": NOW + 10**7}, reason="future_timestamp"),
    _j({"user_id": "", "item_id": "i", "timestamp": 1}, reason="empty_user_id"),
    _j({"user_id": "u", "item_id": "  ", "timestamp": 1}, reason="empty_item_id"),
    _j({"user_id": None, "item_id": "i", "timestamp": 1}, reason="missing_user_id"),
    _j({"item_id": "i", "timestamp": 1}, reason="missing_user_id"),
    _j({"user_id": "u", "item_id": "i"}, reason="missing_timestamp"),
    _j({"user_id": ["u"], "item_id": "i", "timestamp": 1}, reason="bad_user_id"),
    _j({"user_id": {"a": 1}, "item_id": "i", "timestamp": 1}, reason="bad_user_id"),
    _j({"user_id": True, "item_id": "i", "timestamp": 1}, reason="bad_user_id"),
    _j({"user_id": 1.5, "item_id": "i", "timestamp": 1}, reason="bad_user_id"),
    _j({"user_id": "u", "item_id": "i", "timestamp": [1]}, reason="bad_timestamp"),
    _j({"user_id": "u", "item_id": "i", "timestamp": True}, reason="bad_timestamp"),
    _j({"user_id": "u" * 300, "item_id": "i", "timestamp": 1}, reason="user_id_too_long"),
    _j({"user_id": "u\nv", "item_id": "i", "timestamp": 1}, reason="user_id_control_char"),
    _j({"user_id": "u", "item_id": "i", "timestamp": 1, "text": "t" * 100_001}, reason="text_too_long"),
    _j({"user_id": "u", "item_id": "i", "timestamp": 1, "text": {"a": 1}}, reason="bad_text"),
    _j([1, 2, 3], reason="json_not_object"),
    _j("just a string", reason="json_not_object"),
    _bad("42", reason="json_not_object"),
    _bad("null", reason="json_not_object"),
    _bad('{"user_id": "u", "item_id": "i", "timestamp": 1', reason="json_error"),
    _bad("[" * 100_000 + "]" * 100_000, reason="json_error"),
    _bad('{"user_id": "' + "[" * 50, reason="json_error"),
    _bad(b'{"user_id": "\xff", "item_id": "i", "timestamp": 1}', reason="non_utf8"),
    _bad('{"user_id": "u", "item_id": "i", "timestamp": 1, "x": "a' + "b" * MAX_LINE_CHARS + '"}', reason="line_too_long"),
    _bad('{"user_id": "u", "item_id": "i', '", "timestamp": 1}', "", reason="json_error"),  # raw newline in a string
]
json_rows = st.one_of(good_json_rows(), good_json_rows(), st.sampled_from(JSON_CRAFTED), random_rows)


# --------------------------------------------------------------------------- #
# Oracle
# --------------------------------------------------------------------------- #
def _expected_skip(line: bytes, header: str | None) -> bool:
    """Lines the reader skips without a dead letter: blank ones and header repeats."""
    try:
        text = line.decode("utf-8").rstrip("\r\n").lstrip("\ufeff")
    except UnicodeDecodeError:
        return False
    return not text.strip() or (header is not None and text == header)


def _event_key(e: dict) -> tuple:
    return (e["user_id"], e["item_id"], e["timestamp"])


def _run_dofn(source: str, rows, header: str | None, first_good=None, *, filename: str | None = None,
              metadata: bool = False, key=_event_key):
    """Write the file, run ReadEventsFn.process on it and check every property.

    ``filename`` names the file (default ``events.<source>``); ``metadata`` reads it as an
    item-metadata file; ``key`` maps an output to what a good row's expected info is compared with.
    """
    lines: list[bytes] = []
    expect: list[tuple[str, object, int]] = []  # per physical data line: kind, info, lines of its record
    if header is not None:
        lines.append(header.encode())
    if first_good is not None:
        rows = [first_good, *rows]
    for physical, (kind, info) in rows:
        if kind == "record":  # one multi-line record: its outcome at its first line
            for i, b in enumerate(physical):
                assert b"\n" not in b
                lines.append(b)
                expect.append((*info, len(physical)) if i == 0 else ("cont", None, 0))
            continue
        for b in physical:
            assert b"\n" not in b
            lines.append(b)
            expect.append(((kind, info) if kind != "bad" or b else ("blank", None)) + (1,))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / (filename or f"events.{source}"))
        Path(path).write_bytes(b"\n".join(lines) + b"\n")
        fn = ReadEventsFn(source, metadata=metadata, count_rows=True)
        fn.setup()
        out = list(fn.process(path))  # must not raise

    events = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == DEAD]
    counts = dict(o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput) and o.tag == COUNTS)
    assert all(o.tag in (DEAD, COUNTS) for o in out if isinstance(o, beam.pvalue.TaggedOutput))
    assert not [k for k in counts if k.startswith(SOURCE_ERROR_PREFIX)], counts
    counts = {k.removeprefix("metadata_"): v for k, v in counts.items()}
    assert all(isinstance(e, dict) for e in events)
    offset = 1 if header is not None else 0
    data_lines = lines[offset:]
    skipped = [n for n, b in enumerate(data_lines, start=1 + offset) if _expected_skip(b, header)]
    # exact accounting from the reader's own counts: every row read is parsed, dead-lettered or skipped
    physical = max(len(lines), 1)  # no rows at all: the file is one empty line ("\n")
    assert counts["lines_read"] == physical
    assert len(events) + len(dead) + counts["rows_blank"] + counts["rows_header"] == counts["rows_read"]
    # Random rows may open a quote that later lines close, forming records of their own; without
    # them, the rows are exactly the crafted records and the other physical lines.
    strict = not any(kind == "any" for kind, _, _ in expect)
    n_cont = sum(kind == "cont" for kind, _, _ in expect)
    if strict:
        assert counts["rows_read"] == physical - n_cont
        assert len(events) + len(dead) + len(skipped) + n_cont == len(data_lines)

    by_line = {}
    covered = set()  # physical lines inside a dead-lettered row
    for d in dead:
        assert isinstance(d["reason"], str) and d["reason"].strip() and "\n" not in d["reason"]
        assert d["file"] == path and d["line"] not in by_line and d["line"] not in skipped
        assert 1 + offset <= d["line"] <= d["line"] + d["lines"] - 1 <= len(lines)
        raw = b"\n".join(lines[d["line"] - 1 : d["line"] - 1 + d["lines"]])
        raw = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")  # line ending dropped
        if d["lines"] > 1:
            raw = raw.lstrip("\ufeff")
        assert d["raw"] == raw[:MAX_RAW_CHARS] and d["truncated"] == (len(raw) > MAX_RAW_CHARS)
        by_line[d["line"]] = d
        covered.update(range(d["line"], d["line"] + d["lines"]))

    parsed = collections.Counter(key(e) for e in events)
    wanted = collections.Counter()
    for n, (kind, info, span) in enumerate(expect, start=1 + offset):
        if kind == "good":
            assert n not in covered, (n, by_line.get(n))
            wanted[info] += 1
        elif kind == "bad":
            assert n in covered, (n, lines[n - 1][:200])
            if strict:
                assert by_line.get(n, {}).get("lines") == span, (n, lines[n - 1][:200], by_line.get(n))
            if info is not None and by_line.get(n, {}).get("lines") == span:
                assert by_line[n]["reason"].split(":")[0] == info, (lines[n - 1][:200], by_line[n]["reason"])
        elif kind == "blank":
            assert n in skipped
    assert not wanted - parsed, wanted - parsed
    for e in events if not metadata else ():
        assert set(e) >= {"user_id", "item_id", "timestamp"}
        assert e["user_id"] and e["item_id"] and 0 <= e["timestamp"] <= NOW + 86_400
    return events, dead


# --------------------------------------------------------------------------- #
# Per-file properties (no pipeline)
# --------------------------------------------------------------------------- #
@SETTINGS
@given(rows=st.lists(csv_rows, min_size=0, max_size=25))
def test_csv_rows_are_parsed_or_dead_lettered(rows):
    _run_dofn("csv", rows, CSV_HEADER)


@SETTINGS
@given(rows=st.lists(json_rows, min_size=0, max_size=25), first=good_json_rows())
def test_jsonl_rows_are_parsed_or_dead_lettered(rows, first):
    # open_state checks the first line has the required keys, so it is always a good row
    _run_dofn("jsonl", rows, None, first_good=first)


def test_every_crafted_row_at_once():
    """All crafted cases in one file each (deterministic; hypothesis may not draw every one)."""
    _, dead = _run_dofn("csv", CSV_CRAFTED, CSV_HEADER)
    assert len(dead) == sum(
        len([b for b in p if b]) if kind == "bad" else info[0] == "bad" for p, (kind, info) in CSV_CRAFTED
    )
    _, dead = _run_dofn("jsonl", JSON_CRAFTED, None, first_good=([b'{"user_id":"u","item_id":"i","timestamp":1}'], ("good", ("u", "i", 1))))
    assert len(dead) == sum(len([b for b in p if b]) for p, _ in JSON_CRAFTED)


# --------------------------------------------------------------------------- #
# End to end: the real job on one seeded fuzzed file
# --------------------------------------------------------------------------- #
# Valid ids that Python's str.splitlines() treats as line breaks (they once broke the
# job's summary, which re-read the vocab files with splitlines()).
ODD_IDS = ["a\u2028b", "c\x85d", "e\u2029f", "g\u00a0h", 'q"uo,te', "ß"]


def _seeded_csv_file(path: Path, seed: int = 1234, n: int = 200):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzé日本 ,\"'-_.;|"
    bad_pool = [(p[0], r) for p, (_, r) in CSV_CRAFTED if len(p) == 1 and r is not None]
    lines, good, bad = [CSV_HEADER.encode()], [], []
    users = [f"user{k}" for k in range(12)] + ['us,"er" 日本', "u\u2028v"]
    for _ in range(n):
        roll = rng.random()
        if roll < 0.6:
            u = rng.choice(users)
            i = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))).strip() or "x"
            i = rng.choice([i, f"item{rng.randint(0, 20)}", rng.choice(ODD_IDS)])
            ts = rng.randint(0, NOW)
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow([u, i, rng.choice([str(ts), _iso(ts)]), rng.choice(["", "4", "2.5"])])
            lines.append(buf.getvalue().encode())
            good.append((len(lines), (u, i.strip(), ts)))
        elif roll < 0.85:
            raw, reason = rng.choice(bad_pool)
            lines.append(raw)
            bad.append((len(lines), reason))
        else:  # random bytes, made bad for sure by an invalid UTF-8 lead byte
            raw = b"\xff" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 60))).replace(b"\n", b"")
            lines.append(raw)
            bad.append((len(lines), "non_utf8"))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines, good, bad


def run_job_and_account(source: str, log: Path, out: Path, rows_read: int, good: list, bad: list):
    """Run the Beam job on ``log`` and check that its counts add up exactly: every row parsed or
    dead-lettered, with the expected reasons, one dead-letter record per bad row (at its line), and
    every good (user, item) in the vocabularies. Returns ``(stats, dead letters by line, dataset)``."""
    from beam_jobs import cli
    from tfpps.data.dataset_dir import DatasetDir

    stats = cli.run(
        [f"--source={source}", f"--input={log}", f"--output={out}", "--split=loo", "--direct_running_mode=in_memory"]
    )
    st_ = stats["stages"]
    assert st_["events_parsed"] + st_["rows_dead_lettered"] == rows_read
    assert st_["rows_read"] == st_["events_parsed"] + st_["rows_dead_lettered"] + st_["rows_blank"] + st_["rows_header"]
    assert st_["events_parsed"] == len(good) and st_["rows_dead_lettered"] == len(bad)
    assert stats["dead_letter_reasons"] == dict(collections.Counter(r for _, r in bad))
    assert st_["after_dedup"] == len({g for _, g in good})

    dead = [json.loads(l) for p in (out / "dead_letter").glob("*.jsonl") for l in p.read_text().splitlines()]
    assert len(dead) == len(bad)
    got = {d["line"]: d for d in dead}
    assert set(got) == {n for n, _ in bad}
    for n, reason in bad:
        assert got[n]["file"].endswith(log.name) and got[n]["reason"].split(":")[0] == reason

    ds = DatasetDir(out)
    assert {g[1] for _, g in good} <= set(ds.vocab("items"))
    assert {g[0] for _, g in good} <= set(ds.vocab("users"))
    assert stats["num_items"] == len(ds.vocab("items")) and stats["num_users"] == len(ds.vocab("users"))
    assert sum(s["interactions"] for s in stats["splits"].values()) > 0
    return stats, got, ds


def test_job_end_to_end_on_fuzzed_file(tmp_path):
    log = tmp_path / "fuzz.csv"
    lines, good, bad = _seeded_csv_file(log)
    _, got, _ = run_job_and_account("csv", log, tmp_path / "dataset", len(lines) - 1, good, bad)
    for n, _ in bad:
        raw = lines[n - 1].decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        assert got[n]["raw"] == raw[:MAX_RAW_CHARS]
    assert {g[1] for _, g in good} & set(ODD_IDS)  # the odd ids made it through
