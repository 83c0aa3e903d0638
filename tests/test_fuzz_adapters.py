"""Property-based fuzzing of the dataset adapters and the Parquet source (hypothesis).

``tests/test_fuzz_inputs.py`` fuzzes the generic ``csv`` / ``jsonl`` sources; this file does the
same for the rest of the adapters (:mod:`beam_jobs.sources`):

* ``movielens``: ML-1M ``ratings.dat`` (``::``), ML-100K ``u.data`` (tab, no header), RecBole
  ``.inter`` (``field:type`` header, any column order, extra columns) and ML-20M ``ratings.csv``;
* ``yoochoose``: raw clicks / buys (ISO times with milliseconds, session -> user) and GRU4Rec's
  prepared ``SessionId<TAB>ItemId<TAB>Time``;
* ``diginetica``: ``train-item-views.csv`` (anonymous rows -> ``session:<id>`` users,
  ``timestamp = eventdate + timeframe / 1000``, to the millisecond), with and without a userId column;
* ``amazon``: review lines as JSON (2014 / 2018 / 2023 keys) or Python literals, ``reviewTime``
  fallback; and the ``meta_*.json`` lines of :func:`beam_jobs.sources.amazon.parse_amazon_meta_line`;
* ``tafeng``: Sets2Sets baskets (``timestamp = ORDER_NUMBER * 86400``);
* ``parquet``: tables of canonical columns (string / integer ids; integer, float, timestamp,
  date or string timestamps; optional rating) whose *values* are adversarial.

For every text format, generated good rows in the dataset's real layout (with the event each
must become), crafted bad rows (with the dead-letter reason each must get), random and
mutated rows are mixed in one file and run through :class:`beam_jobs.reading.ReadEventsFn` with
the oracle ``_run_dofn`` of ``test_fuzz_inputs``: parsing never raises; parsed + dead-lettered
+ skipped (blank / header repeat) == lines read; every good row parsed, every bad row
dead-lettered with its reason; dead letters carry file, line, reason and raw. Outputs must
also be UTF-8 encodable: Beam's coders encode every string, so a lone surrogate (a JSON
``"\\ud800"`` escape) in an output once stopped the whole job.

For Parquet the oracle judges each row from its values (first failing field in validation
order: user_id, item_id, timestamp, rating) and checks the same accounting per row number, the
events in row order, and the dead letters; plus the file-level checks (wrong column type,
missing column, not Parquet at all -> one-line ``SourceError``) and one end-to-end job run.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import gzip
import json
import random
import tempfile
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_jobs.events import MAX_ID_CHARS, MAX_TEXT_CHARS, SourceError
from beam_jobs.reading import DEAD, MAX_RAW_CHARS, ReadEventsFn, check_files
from beam_jobs.sources.base import CANONICAL_ALIASES, MAX_LINE_CHARS
from beam_jobs.sources.diginetica import ANON_USER_PREFIX
from beam_jobs.sources.tafeng import SECONDS_PER_ORDER
from test_fuzz_inputs import NOW, _bad, _iso, _run_dofn, ids, random_rows, run_job_and_account, timestamps

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MORE = settings(SETTINGS, max_examples=150)  # the formats with the most ways to be wrong (Amazon JSON / literals)
BIG_HEX = "0x" + "f" * 5000  # a Python literal int too large to print (int -> str digit limit)
HUGE_LINE = "x" * (MAX_LINE_CHARS + 1)


# --------------------------------------------------------------------------- #
# Shared pieces
# --------------------------------------------------------------------------- #
def _ids_without(delims: str, max_len: int = MAX_ID_CHARS):
    """Valid ids that cannot contain the layout's delimiter (the readers split without quoting)."""
    chars = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\ufeff" + delims)
    text = st.text(chars, min_size=1, max_size=24).filter(lambda s: s.strip() and len(s.strip()) <= max_len)
    return st.one_of(text, text, text, st.just("k" * max_len))  # ... and one at the length limit


def _free_text(delims: str = ""):
    return st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=delims), max_size=16)


def _ts_texts(ts: int):
    """Ways the text formats may write epoch second ``ts`` (ms only where its magnitude says ms)."""
    forms = [str(ts), _iso(ts), f"{ts}.5", f" {ts} "] + ([str(ts * 1000)] if ts * 1000 > 10**11 else [])
    return st.sampled_from(forms)


def _skip(line: str):
    """A line the reader must skip without a dead letter (blank / whitespace / header repeat)."""
    return [line.encode()], ("blank", None)


def _non_utf8(line: str) -> bytes:
    """``line`` with each ``\\udcXX`` (surrogateescape) written as the raw byte XX."""
    return line.encode("utf-8", "surrogateescape")


def _random_delimited(delim: str):
    fields = st.lists(st.text(st.characters(exclude_characters="\n"), max_size=12), max_size=7)
    return fields.map(lambda fs: ([delim.join(fs).encode("utf-8", "surrogatepass")], ("any", None)))


@st.composite
def _mutated(draw, good):
    """A good row with a few random byte edits: near-valid rows of unknown verdict."""
    lines, _ = draw(good)
    b = bytearray(lines[0])
    for _ in range(draw(st.integers(1, 3))):
        op, pos = draw(st.sampled_from(["del", "ins", "set"])), draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "ins" or not b:
            b[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "del":
            del b[pos]
        else:
            b[pos] = draw(st.integers(0, 255))
    return [bytes(b).replace(b"\n", b" ")], ("any", None)


# Number-like text: Unicode digits ('\u0661' is int()-able, '\u00b2' is isdigit() but not), huge ones.
weird_numbers = st.one_of(
    st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=6),
    st.integers(0, 10**40).map(str),
    st.integers(4290, 4400).map(lambda n: "9" * n),  # around int()'s digit limit
)


def _weird_field(layout: "Layout", ok: dict, field: str):
    """``ok`` with ``field`` replaced by number-like text: a row of unknown verdict."""
    return weird_numbers.map(lambda v: ([layout.line(**{**ok, field: v}).encode()], ("any", None)))


def _rows(good, crafted, delim: str, *more):
    """Mixed rows of one file: good ones twice as likely as each other kind."""
    return st.lists(
        st.one_of(good, good, st.sampled_from(crafted), random_rows, _random_delimited(delim), _mutated(good), *more),
        max_size=20,
    )


def _check(source, rows, header=None, first=None, filename=None, **kw):
    """``_run_dofn`` (every accounting property) plus: outputs are UTF-8 encodable."""
    events, dead = _run_dofn(source, rows, header, first_good=first, filename=filename, **kw)
    json.dumps(events, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    json.dumps(dead, ensure_ascii=False).encode("utf-8")
    return events, dead


def _n_bad(crafted) -> int:
    return sum(1 for lines, (kind, _) in crafted for b in lines if kind == "bad" and b)


@dataclasses.dataclass(frozen=True)
class Layout:
    """One text layout: delimiter, field keys in column order, optional header, file name."""

    name: str
    filename: str
    delim: str
    cols: tuple[str, ...]
    header: str | None = None

    def line(self, **values: str) -> str:
        return self.delim.join(values[c] for c in self.cols)

    def crafted(self, ok: dict, cases) -> list:
        """Bad rows: ``ok`` with one field replaced, for the cases whose field this layout has."""
        rows = [
            _bad(self.delim.join(ok[c] for c in self.cols[:-1]), reason="wrong_column_count"),
            _bad(self.line(**ok) + self.delim + "7", reason="wrong_column_count"),
            _bad(_non_utf8(self.line(**{**ok, self.cols[-1]: ok[self.cols[-1]] + "\udcff"})), reason="non_utf8"),
            _bad(_non_utf8(self.line(**{**ok, self.cols[0]: "\udcc3("})), reason="non_utf8"),
            _bad(self.line(**{**ok, self.cols[0]: HUGE_LINE}), reason="line_too_long"),
            _skip(""),
            _skip(" \t "),
        ]
        if self.header is not None:
            rows.append(_skip(self.header))
        for field, value, reason in cases:
            if field in self.cols:
                rows.append(_bad(self.line(**{**ok, field: value}), reason=reason))
        return rows


def _ts_cases(field: str = "ts"):
    return [
        (field, "-5", "negative_timestamp"),
        (field, "-0.5", "negative_timestamp"),
        (field, str(NOW + 10**7), "future_timestamp"),
        (field, "2999-01-01T00:00:00Z", "future_timestamp"),
        (field, "NaN", "bad_timestamp"),
        (field, "inf", "bad_timestamp"),
        (field, "1e999", "bad_timestamp"),
        (field, "9" * 5000, "bad_timestamp"),  # beyond int()'s digit limit
        (field, "yesterday", "bad_timestamp"),
        (field, "2014-13-01T00:00:00Z", "bad_timestamp"),
        (field, "", "missing_timestamp"),
    ]


def _id_cases(field: str, canonical: str):
    return [
        (field, "", f"empty_{canonical}"),
        (field, "   ", f"empty_{canonical}"),
        (field, "7" * (MAX_ID_CHARS + 1), f"{canonical}_too_long"),
        (field, "1\x002", f"{canonical}_control_char"),
        (field, "1\x1b2", f"{canonical}_control_char"),
        (field, "1\x7f", f"{canonical}_control_char"),
    ]


# --------------------------------------------------------------------------- #
# MovieLens
# --------------------------------------------------------------------------- #
ML_LAYOUTS = [
    Layout("ratings.dat", "ratings.dat", "::", ("user", "item", "rating", "ts")),
    Layout("u.data", "u.data", "\t", ("user", "item", "rating", "ts")),
    Layout("recbole", "ml-100k.inter", "\t", ("user", "item", "rating", "ts"),
           "user_id:token\titem_id:token\trating:float\ttimestamp:float"),
    Layout("recbole-reordered", "Amazon_Books.inter", "\t", ("ts", "extra", "item", "user"),
           "timestamp:float\treview:token_seq\titem_id:token\tuser_id:token"),
    Layout("ratings.csv", "ratings.csv", ",", ("user", "item", "rating", "ts"), "userId,movieId,rating,timestamp"),
]
_ml_ratings = st.one_of(st.just(""), st.integers(1, 5).map(str), st.floats(-10, 10, allow_nan=False).map(repr))


@st.composite
def good_ml_rows(draw, layout: Layout, first: bool = False):
    if first:  # the first line of a headerless file decides its layout: integers, as in the real files
        u, i, ts = str(draw(st.integers(1, 10**6))), str(draw(st.integers(1, 10**6))), draw(timestamps)
        rating, ts_text = str(draw(st.integers(1, 5))), str(ts)
    else:
        id_st = _ids_without(":" if layout.delim == "::" else layout.delim)
        u, i, ts = draw(id_st), draw(id_st), draw(timestamps)
        rating, ts_text = draw(_ml_ratings), draw(_ts_texts(ts))
    extra = draw(_free_text(layout.delim + ":"))
    line = layout.line(user=u, item=i, rating=rating, ts=ts_text, extra=extra)
    return [line.encode()], ("good", (u.strip(), i.strip(), ts))


def _ml_crafted(layout: Layout) -> list:
    ok = {"user": "196", "item": "242", "rating": "3", "ts": "881250949", "extra": "x"}
    cases = _id_cases("user", "user_id") + _id_cases("item", "item_id") + _ts_cases() + [
        ("rating", "NaN", "bad_rating"),
        ("rating", "five", "bad_rating"),
        ("rating", "1e999", "bad_rating"),
    ]
    return layout.crafted(ok, cases)


ML_CRAFTED = {lay.name: _ml_crafted(lay) for lay in ML_LAYOUTS}


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("layout", ML_LAYOUTS, ids=lambda lay: lay.name)
def test_movielens_rows_are_parsed_or_dead_lettered(layout, data):
    rows = data.draw(_rows(good_ml_rows(layout), ML_CRAFTED[layout.name], layout.delim))
    first = data.draw(good_ml_rows(layout, first=True)) if layout.header is None else None
    events, _ = _check("movielens", rows, layout.header, first, layout.filename)
    assert all(e["event_type"] == "rating" for e in events)


# --------------------------------------------------------------------------- #
# YOOCHOOSE
# --------------------------------------------------------------------------- #
YC_LAYOUTS = [
    Layout("clicks", "yoochoose-clicks.dat", ",", ("user", "ts", "item", "extra")),
    Layout("buys", "yoochoose-buys.dat", ",", ("user", "ts", "item", "extra", "extra2")),
    Layout("prepared", "rsc15_train_full.txt", "\t", ("user", "item", "ts"), "SessionId\tItemId\tTime"),
]


def _iso_ms(ts: int, ms: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


@st.composite
def good_yc_rows(draw, layout: Layout, first: bool = False):
    ts, ms = draw(timestamps), draw(st.integers(0, 999))
    if first:  # raw files have no header: the first line must look like 'digits,...'
        session, item = str(draw(st.integers(1, 10**7))), str(draw(st.integers(1, 10**9)))
    else:
        session, item = draw(_ids_without(layout.delim)), draw(_ids_without(layout.delim))
    if layout.header is None:  # raw RecSys'15 files: ISO-8601 UTC with milliseconds
        ts_text = draw(st.sampled_from([_iso_ms(ts, ms), _iso_ms(ts, ms)[:-1], _iso(ts)]))
    else:  # GRU4Rec's prepared files: epoch seconds, fractional
        ts_text = draw(st.sampled_from([f"{ts}.{ms:03d}", str(ts)]))
    extra = draw(st.sampled_from(["0", "S", "2053", "", "1523"]))
    extra2 = draw(st.sampled_from(["1", "0", "3"]))
    line = layout.line(user=session, item=item, ts=ts_text, extra=extra, extra2=extra2)
    return [line.encode()], ("good", (session.strip(), item.strip(), ts))


def _yc_crafted(layout: Layout) -> list:
    ok = {"user": "1", "ts": "2014-04-07T10:51:09.277Z", "item": "214536502", "extra": "0", "extra2": "1"}
    cases = _id_cases("user", "user_id") + _id_cases("item", "item_id") + _ts_cases() + [
        ("ts", "2014-04-07T25:51:09.277Z", "bad_timestamp"),
        ("ts", "2014-02-30T10:51:09.277Z", "bad_timestamp"),
        ("ts", "07/04/2014 10:51", "bad_timestamp"),
        ("ts", "1969-12-31T23:59:59.999Z", "negative_timestamp"),
        ("ts", "2999-04-07T10:51:09.277Z", "future_timestamp"),
        ("ts", "-1396860669.277", "negative_timestamp"),
    ]
    return layout.crafted(ok, cases)


YC_CRAFTED = {lay.name: _yc_crafted(lay) for lay in YC_LAYOUTS}


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("layout", YC_LAYOUTS, ids=lambda lay: lay.name)
def test_yoochoose_rows_are_parsed_or_dead_lettered(layout, data):
    rows = data.draw(_rows(good_yc_rows(layout), YC_CRAFTED[layout.name], layout.delim))
    first = data.draw(good_yc_rows(layout, first=True)) if layout.header is None else None
    events, _ = _check("yoochoose", rows, layout.header, first, layout.filename)
    kind = "buy" if layout.name == "buys" else "click"
    assert all(e["session_id"] == e["user_id"] and e["event_type"] == kind for e in events)


# --------------------------------------------------------------------------- #
# DIGINETICA
# --------------------------------------------------------------------------- #
DG_LAYOUTS = [
    Layout("item-views", "train-item-views.csv", ";", ("session", "user", "item", "frame", "date"),
           "sessionId;userId;itemId;timeframe;eventdate"),
    Layout("no-user-comma", "views.csv", ",", ("date", "item", "session", "frame"), "eventdate,itemId,sessionId,timeframe"),
]
_DG_ANON = ["NA", "", "na", " NaN ", "null", "None", "  "]


@st.composite
def good_dg_rows(draw, layout: Layout):
    session = draw(_ids_without(layout.delim, max_len=MAX_ID_CHARS - len(ANON_USER_PREFIX)))
    user = draw(st.one_of(_ids_without(layout.delim), st.sampled_from(_DG_ANON)))
    item = draw(_ids_without(layout.delim))
    day = draw(st.integers(0, (NOW - 10**5) // 86400))
    frame = draw(st.integers(0, 10**7))
    frame_text = draw(st.sampled_from([str(frame), f"{frame:012d}", f" {frame} "]))
    date = (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
    line = layout.line(session=session, user=user, item=item, frame=frame_text, date=date)
    anon = "user" not in layout.cols or user.strip().lower() in ("", "na", "nan", "null", "none")
    expected_user = ANON_USER_PREFIX + session.strip() if anon else user.strip()
    return [line.encode()], ("good", (expected_user, item.strip(), (day * 86400 * 1000 + frame) / 1000))


def _dg_crafted(layout: Layout) -> list:
    ok = {"session": "1", "user": "NA", "item": "81766", "frame": "526309", "date": "2016-05-09"}
    cases = _id_cases("item", "item_id") + [
        ("session", "", "empty_session_id"),
        ("session", "  ", "empty_session_id"),
        ("session", "1\x01", "user_id_control_char"),  # anonymous: user_id is 'session:1\x01'
        ("user", "u\x01x", "user_id_control_char"),
        ("user", "u" * (MAX_ID_CHARS + 1), "user_id_too_long"),
        ("frame", "abc", "bad_timeframe"),
        ("frame", "-5", "bad_timeframe"),
        ("frame", "1.5", "bad_timeframe"),
        ("frame", "", "bad_timeframe"),
        ("frame", "\u00b2", "bad_timeframe"),  # str.isdigit() is true for a superscript two, int() fails
        ("frame", "9" * 5000, "bad_timeframe"),  # beyond int()'s digit limit
        ("frame", str(10**15), "future_timestamp"),  # 31,000 years into the session
        ("frame", "9" * 18, "future_timestamp"),
        ("date", "", "missing_timestamp"),
        ("date", "  ", "missing_timestamp"),
        ("date", "2016/05/09", "bad_timestamp"),
        ("date", "2016-02-30", "bad_timestamp"),
        ("date", "2016-05-09T10:00:00", "bad_timestamp"),
        ("date", "09-05-2016", "bad_timestamp"),
        ("date", "NaN", "bad_timestamp"),
        ("date", "1960-01-01", "negative_timestamp"),
        ("date", "2999-01-01", "future_timestamp"),
    ]
    return layout.crafted(ok, cases)


DG_CRAFTED = {lay.name: _dg_crafted(lay) for lay in DG_LAYOUTS}


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("layout", DG_LAYOUTS, ids=lambda lay: lay.name)
def test_diginetica_rows_are_parsed_or_dead_lettered(layout, data):
    ok = {"session": "1", "user": "NA", "item": "81766", "frame": "526309", "date": "2016-05-09"}
    rows = data.draw(_rows(good_dg_rows(layout), DG_CRAFTED[layout.name], layout.delim, _weird_field(layout, ok, "frame")))
    events, _ = _check("diginetica", rows, layout.header, None, layout.filename)
    for e in events:
        assert e["session_id"] and e["event_type"] == "view"
        assert not e["user_id"].startswith(ANON_USER_PREFIX) or e["user_id"] == ANON_USER_PREFIX + e["session_id"]


# --------------------------------------------------------------------------- #
# Ta-Feng
# --------------------------------------------------------------------------- #
TF_LAYOUTS = [
    Layout("sets2sets", "TaFang_history_NB.csv", ",", ("user", "order", "item"), "CUSTOMER_ID,ORDER_NUMBER,MATERIAL_NUMBER"),
    Layout("reordered-tab", "tafeng.tsv", "\t", ("item", "user", "order"), "MATERIAL_NUMBER\tCUSTOMER_ID\tORDER_NUMBER"),
]


@st.composite
def good_tf_rows(draw, layout: Layout):
    customer = draw(_ids_without(layout.delim, max_len=200))  # basket_id 'customer-order' must fit too
    customer = draw(st.sampled_from([customer, f"{customer:<10}", f" {customer}"]))  # the real ids are space-padded
    order = draw(st.integers(0, NOW // SECONDS_PER_ORDER))
    item = draw(_ids_without(layout.delim))
    order_text = draw(st.sampled_from([str(order), f"{order:06d}", f" {order} "]))
    line = layout.line(user=customer, order=order_text, item=item)
    return [line.encode()], ("good", (customer.strip(), item.strip(), order * SECONDS_PER_ORDER))


def _tf_crafted(layout: Layout) -> list:
    ok = {"user": "00046855  ", "order": "1", "item": "4710088620137"}
    cases = _id_cases("user", "user_id") + _id_cases("item", "item_id") + [
        ("order", "x", "bad_order_number"),
        ("order", "-1", "bad_order_number"),
        ("order", "1.5", "bad_order_number"),
        ("order", "1e3", "bad_order_number"),
        ("order", "", "bad_order_number"),
        ("order", "\u00b2", "bad_order_number"),  # isdigit() but not int()-able
        ("order", "9" * 5000, "bad_order_number"),  # beyond int()'s digit limit
        ("order", "2000000", "future_timestamp"),  # 2e6 days: was read as milliseconds (1975)
        ("order", "99999999", "future_timestamp"),
    ]
    return layout.crafted(ok, cases)


TF_CRAFTED = {lay.name: _tf_crafted(lay) for lay in TF_LAYOUTS}


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("layout", TF_LAYOUTS, ids=lambda lay: lay.name)
def test_tafeng_rows_are_parsed_or_dead_lettered(layout, data):
    ok = {"user": "00046855", "order": "1", "item": "4710088620137"}
    rows = data.draw(_rows(good_tf_rows(layout), TF_CRAFTED[layout.name], layout.delim, _weird_field(layout, ok, "order")))
    events, _ = _check("tafeng", rows, layout.header, None, layout.filename)
    for e in events:
        assert e["event_type"] == "purchase"
        assert e["basket_id"] == f"{e['user_id']}-{e['timestamp'] // SECONDS_PER_ORDER}"


# --------------------------------------------------------------------------- #
# Amazon reviews
# --------------------------------------------------------------------------- #
_review_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def _review_date(day: int) -> str:
    d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
    return f"{d.month:02d} {d.day:02d}, {d.year}"


@st.composite
def good_amazon_rows(draw):
    u, i, ts = draw(ids), draw(ids), draw(timestamps)
    style = draw(st.sampled_from(["2014", "2018", "2023", "reviewTime"]))
    text = draw(st.one_of(_review_text, st.just("t" * MAX_TEXT_CHARS)))
    day = ts // 86400
    if style == "2023":  # Amazon Reviews'23: user_id / parent_asin / timestamp in ms
        obj = {"rating": draw(st.sampled_from([1.0, 5.0, 3])), "title": "ok", "text": text, "images": [],
               "asin": i, "parent_asin": "B0" + i, "user_id": u, "timestamp": ts * 1000 if ts > 10**8 else ts,
               "helpful_vote": 0, "verified_purchase": True}
    else:
        obj = {"reviewerID": u, "asin": i, "reviewerName": draw(_review_text), "helpful": [2, 3],
               "reviewText": text, "overall": draw(st.sampled_from([1.0, 5.0, 4])), "summary": draw(_review_text),
               "reviewTime": _review_date(day)}
        if style == "2018":
            obj.update(vote="2", verified=True, style={"Format:": " Paperback"})
        if style == "reviewTime":  # no unixReviewTime: midnight UTC of reviewTime
            ts = day * 86400
        else:
            obj["unixReviewTime"] = ts
    if style == "2014" and draw(st.booleans()):
        line = repr(obj)  # the 2014 dumps are Python literals, not JSON
    else:
        line = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    return [line.encode("utf-8")], ("good", (u.strip(), i.strip(), ts))


def _amz(**fields) -> str:
    return json.dumps({"reviewerID": "u", "asin": "a", "unixReviewTime": 1, **fields})


def _amz_lit(**fields) -> str:
    """A Python-literal review line; values are source text (so they can be non-JSON literals)."""
    base = {"reviewerID": "'u'", "asin": "'a'", "unixReviewTime": "1", **fields}
    return "{" + ", ".join(f"'{k}': {v}" for k, v in base.items()) + "}"


AMAZON_CRAFTED = [
    _bad('{"reviewerID": "u", "asin": "a", "unixReviewTime": 1', reason="json_error"),
    _bad(_amz_lit()[:-1], reason="json_error"),
    _bad(_amz_lit(unixReviewTime="__import__('os').getpid()"), reason="json_error"),  # no code runs
    _bad(_amz_lit(unixReviewTime="float('nan')"), reason="json_error"),
    _bad("{'reviewerID': 'u', **x}", reason="json_error"),
    _bad("[1, 2]", reason="json_not_object"),
    _bad("'just a string'", reason="json_not_object"),
    _bad("42", reason="json_not_object"),
    _bad("[" * 100_000, reason="json_error"),
    _bad("{'a': " + "(" * 100_000, reason="json_error"),
    _bad(_amz(unixReviewTime=0) + "9" * 5000 + "}", reason="json_error"),
    _bad('{"reviewerID": "u", "asin": "a", "unixReviewTime": ' + "9" * 5000 + "}", reason="json_error"),
    _bad(_amz_lit(unixReviewTime="9" * 5000), reason="json_error"),
    _bad(_amz_lit(reviewerID=BIG_HEX), reason="json_error"),  # these five once raised ValueError
    _bad(_amz_lit(unixReviewTime=BIG_HEX), reason="json_error"),
    _bad(_amz_lit(overall=BIG_HEX), reason="json_error"),
    _bad(_amz_lit(reviewText=BIG_HEX), reason="json_error"),
    _bad("{" + BIG_HEX + ": 1, 'reviewerID': 'u', 'asin': 'a', 'unixReviewTime': 1}", reason="json_error"),
    _bad(json.dumps({"asin": "a", "unixReviewTime": 1}), reason="missing_user_id"),
    _bad(json.dumps({"reviewerID": "u", "unixReviewTime": 1}), reason="missing_item_id"),
    _bad(_amz(reviewerID=""), reason="empty_user_id"),
    _bad(_amz(asin="  "), reason="empty_item_id"),
    _bad(_amz(reviewerID=["u"]), reason="bad_user_id"),
    _bad(_amz(reviewerID=5.5), reason="bad_user_id"),
    _bad(_amz(reviewerID=True), reason="bad_user_id"),
    _bad(_amz_lit(reviewerID="{'u'}"), reason="bad_user_id"),
    _bad(_amz_lit(reviewerID="b'u'"), reason="bad_user_id"),
    _bad(_amz_lit(reviewerID="1j"), reason="bad_user_id"),
    _bad(_amz(reviewerID="u" * (MAX_ID_CHARS + 1)), reason="user_id_too_long"),
    _bad(_amz(asin="a\nb"), reason="item_id_control_char"),
    _bad('{"reviewerID": "u\\ud800", "asin": "a", "unixReviewTime": 1}', reason="bad_user_id"),  # lone surrogate
    _bad('{"reviewerID": "u", "asin": "\\udfff", "unixReviewTime": 1}', reason="bad_item_id"),
    _bad(_amz_lit(reviewerID="'\\ud800'"), reason="bad_user_id"),
    _bad('{"reviewerID": "u", "asin": "a", "unixReviewTime": 1, "reviewText": "x\\udc80"}', reason="bad_text"),
    _bad(json.dumps({"reviewerID": "u", "asin": "a"}), reason="missing_timestamp"),
    _bad(_amz(unixReviewTime=-1), reason="negative_timestamp"),
    _bad(_amz(unixReviewTime=-0.5), reason="negative_timestamp"),
    _bad(_amz(unixReviewTime=NOW + 10**7), reason="future_timestamp"),
    _bad(_amz(unixReviewTime=10**20), reason="future_timestamp"),
    _bad('{"reviewerID": "u", "asin": "a", "unixReviewTime": NaN}', reason="bad_timestamp"),
    _bad('{"reviewerID": "u", "asin": "a", "unixReviewTime": 1e999}', reason="bad_timestamp"),
    _bad(_amz(unixReviewTime="yesterday"), reason="bad_timestamp"),
    _bad(_amz(unixReviewTime=True), reason="bad_timestamp"),
    _bad(_amz(unixReviewTime=[1]), reason="bad_timestamp"),
    _bad(json.dumps({"reviewerID": "u", "asin": "a", "reviewTime": "13 45, 2009"}), reason="bad_timestamp"),
    _bad(json.dumps({"reviewerID": "u", "asin": "a", "reviewTime": "01 01, 1960"}), reason="negative_timestamp"),
    _bad(json.dumps({"reviewerID": "u", "asin": "a", "reviewTime": "01 01, 6000"}), reason="future_timestamp"),
    _bad(json.dumps({"reviewerID": "u", "asin": "a", "reviewTime": "12 31, 9999"}), reason="future_timestamp"),
    _bad('{"reviewerID": "u", "asin": "a", "unixReviewTime": 1, "overall": NaN}', reason="bad_rating"),
    _bad(_amz(overall="five"), reason="bad_rating"),
    _bad(_amz(overall=[5]), reason="bad_rating"),
    _bad(_amz(reviewText="t" * (MAX_TEXT_CHARS + 1)), reason="text_too_long"),
    _bad(_amz(reviewText={"a": 1}), reason="bad_text"),
    _bad(b'{"reviewerID": "\xff", "asin": "a", "unixReviewTime": 1}', reason="non_utf8"),
    _bad(_amz(reviewText=HUGE_LINE), reason="line_too_long"),
    _skip(""),
    _skip("   "),
]


def _literal(v) -> str:
    """Python-literal source text for ``v``; huge ints in hex (decimal text that long does not parse)."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return hex(v) if v.bit_length() > 1000 else repr(v)
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else ("1e999" if v > 0 else "-1e999" if v < 0 else "None")
    if isinstance(v, list):
        return "[" + ", ".join(map(_literal, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(x)}" for k, x in v.items()) + "}"
    return repr(v)


_printable = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=4)
_any_text = st.one_of(  # any text, and id-like text with a lone surrogate (valid after a JSON "\\ud800" escape)
    st.text(max_size=8),
    st.tuples(_printable, st.characters(categories=("Cs",)), _printable).map("".join),
)
_any_value = st.recursive(
    st.one_of(_any_text, _any_text, st.none(), st.booleans(), st.integers(), st.floats()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_any_text, inner, max_size=3)),
    max_leaves=6,
)
_huge_ints = st.integers(2**14_000, 2**14_400)  # beyond str()'s 4300 digits; only writable as a hex literal


@st.composite
def fuzzed_objects(draw, base: dict, more_keys=()):
    """``base`` (a valid line's object) with one or two fields dropped or set to an arbitrary
    JSON / Python-literal value (lone surrogates, huge ints, NaN, nesting): verdict unknown."""
    literal = draw(st.booleans())
    value = st.one_of(_any_text, _any_text, _any_value, *([_huge_ints] if literal else []))
    keys = st.one_of(st.sampled_from(list(base)), st.sampled_from(list(base)), st.sampled_from(more_keys))
    obj = dict(base)
    for key in draw(st.lists(keys, min_size=1, max_size=2, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            obj.pop(key, None)
        else:
            obj[key] = draw(value)
    line = _literal(obj) if literal else json.dumps(obj, ensure_ascii=draw(st.booleans()))
    return [line.encode("utf-8", "surrogatepass")], ("any", None)


_REVIEW = {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "unixReviewTime": 1252800000, "overall": 5.0,
           "reviewText": "I bought this for my husband", "reviewTime": "09 13, 2009"}
_REVIEW_KEYS = ("user_id", "parent_asin", "timestamp", "rating", "text", "summary")
_META = {"asin": "0000031852", "title": "Girls Ballet Tutu", "categories": [["Sports & Outdoors", "Dance"]],
         "description": "Tutu.", "price": 3.17}
_META_KEYS = ("category", "brand")


@MORE
@given(data=st.data())
def test_amazon_reviews_are_parsed_or_dead_lettered(data):
    good = good_amazon_rows()
    fuzzed = fuzzed_objects(_REVIEW, _REVIEW_KEYS)
    rows = data.draw(_rows(good, AMAZON_CRAFTED, ",", fuzzed, fuzzed))
    events, _ = _check("amazon", rows, None, data.draw(good))  # open_state needs a good first line
    assert all(e["event_type"] == "review" for e in events)


# --------------------------------------------------------------------------- #
# Amazon item metadata (parse_amazon_meta_line through the job's metadata reader)
# --------------------------------------------------------------------------- #
_meta_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=16)


def _joined(value):
    if isinstance(value, list):
        value = " ".join(v.strip() for v in value if v.strip())
    return value.strip() or None if value is not None else None


def _clean_path(path):
    return [c.strip() for c in path if c.strip()]


@st.composite
def good_amazon_meta(draw):
    asin = draw(ids)
    title = draw(st.one_of(st.none(), _meta_text))
    desc = draw(st.one_of(st.none(), _meta_text, st.lists(_meta_text, max_size=3)))
    paths = draw(st.lists(st.lists(_meta_text, max_size=4), max_size=3))
    obj = {"asin": asin, "price": 3.17, "imUrl": "http://ecx.images-amazon.com/x.jpg"}
    obj.update({k: v for k, v in (("title", title), ("description", desc)) if v is not None})
    if draw(st.booleans()):  # 2014: 'categories' = list of paths, Python-literal or JSON lines
        obj.update(categories=paths, salesRank={"Toys & Games": 211836}, related={"also_bought": ["B00JHONN1S"]})
        cats = [p for p in map(_clean_path, paths) if p]
        line = repr(obj) if draw(st.booleans()) else json.dumps(obj)
    else:  # 2018: 'category' = one path, description a list of strings
        path = paths[0] if paths else []
        obj.update(category=path, brand="x", feature=["f"])
        cats = [_clean_path(path)] if _clean_path(path) else []
        line = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    meta = {"item_id": asin.strip(), "title": _joined(title), "categories": cats, "description": _joined(desc)}
    return [line.encode("utf-8")], ("good", json.dumps(meta, sort_keys=True))


AMAZON_META_CRAFTED = [
    _bad("{'title': 'Girls Ballet Tutu'}", reason="missing_field"),
    _bad("{'asin': ''}", reason="empty_item_id"),
    _bad("{'asin': None}", reason="missing_field"),
    _bad("{'asin': ['a']}", reason="bad_item_id"),
    _bad("{'asin': 'a\\x00b'}", reason="item_id_control_char"),
    _bad(json.dumps({"asin": "x" * (MAX_ID_CHARS + 1)}), reason="item_id_too_long"),
    _bad("{'asin': 'a', 'categories': 'Books'}", reason="bad_categories"),
    _bad("{'asin': 'a', 'categories': ['Books']}", reason="bad_categories"),
    _bad('{"asin": "a", "category": "Books"}', reason="bad_categories"),
    _bad("{'asin': 'a'", reason="json_error"),
    _bad("{'asin': " + BIG_HEX + "}", reason="json_error"),  # these two once raised ValueError
    _bad("{'asin': 'a', 'categories': [[" + BIG_HEX + "]]}", reason="json_error"),
    _bad("[1]", reason="json_not_object"),
    _bad("[" * 100_000, reason="json_error"),
    _bad('{"asin": "a", "title": "t\\ud800"}', reason="bad_title"),  # lone surrogates once crashed the job
    _bad('{"asin": "a", "category": ["x\\udc00"]}', reason="bad_categories"),
    _bad('{"asin": "a", "description": ["d", "\\udfff"]}', reason="bad_description"),
    _bad(b'{"asin": "\xff"}', reason="non_utf8"),
    _bad(json.dumps({"asin": "a", "description": HUGE_LINE}), reason="line_too_long"),
    _skip(""),
    _skip(" "),
]


def _meta_key(m: dict) -> str:
    return json.dumps(m, sort_keys=True)


@MORE
@given(rows=st.lists(st.one_of(good_amazon_meta(), good_amazon_meta(), st.sampled_from(AMAZON_META_CRAFTED), random_rows,
                               _mutated(good_amazon_meta()), fuzzed_objects(_META, _META_KEYS)), max_size=20))
def test_amazon_metadata_lines_are_parsed_or_dead_lettered(rows):
    _check("amazon", rows, filename="meta_Toys_and_Games.json", metadata=True, key=_meta_key)


def test_movielens_latin1_item_metadata_through_the_job_reader(tmp_path):
    """The job reads u.item with the adapter's metadata encodings (UTF-8, then latin-1)."""
    path = tmp_path / "u.item"
    flags = "|0" * 18 + "|1"
    path.write_bytes(b"1005|Double vie de V\xe9ronique, La (1991)|01-Jan-1991||http://x" + flags.encode() + b"\n"
                     b"1|Toy Story (1995)|01-Jan-1995||http://x" + flags.encode() + b"\n")
    fn = ReadEventsFn("movielens", metadata=True)
    fn.setup()
    out = list(fn.process(str(path)))
    assert [o["title"] for o in out] == ["Double vie de V\u00e9ronique, La (1991)", "Toy Story (1995)"]


# --------------------------------------------------------------------------- #
# Every crafted row of every format at once (deterministic)
# --------------------------------------------------------------------------- #
_FIRST = {
    "movielens": lambda lay: ([lay.line(user="1", item="2", rating="3", ts="4", extra="").encode()], ("good", ("1", "2", 4))),
    "yoochoose": lambda lay: ([lay.line(user="1", item="2", ts=_iso_ms(1396867869, 277), extra="0", extra2="1").encode()],
                              ("good", ("1", "2", 1396867869))),
}
_ALL_TEXT = (
    [("movielens", lay, ML_CRAFTED[lay.name]) for lay in ML_LAYOUTS]
    + [("yoochoose", lay, YC_CRAFTED[lay.name]) for lay in YC_LAYOUTS]
    + [("diginetica", lay, DG_CRAFTED[lay.name]) for lay in DG_LAYOUTS]
    + [("tafeng", lay, TF_CRAFTED[lay.name]) for lay in TF_LAYOUTS]
)


@pytest.mark.parametrize("source,layout,crafted", _ALL_TEXT, ids=[f"{s}-{lay.name}" for s, lay, _ in _ALL_TEXT])
def test_every_crafted_row_at_once(source, layout, crafted):
    first = _FIRST[source](layout) if layout.header is None else None
    _, dead = _check(source, crafted, layout.header, first, layout.filename)
    assert len(dead) == _n_bad(crafted)


def test_every_crafted_amazon_row_at_once():
    first = ([_amz().encode()], ("good", ("u", "a", 1)))
    _, dead = _check("amazon", AMAZON_CRAFTED, None, first)
    assert len(dead) == _n_bad(AMAZON_CRAFTED)
    _, dead = _check("amazon", AMAZON_META_CRAFTED, filename="meta.json", metadata=True, key=_meta_key)
    assert len(dead) == _n_bad(AMAZON_META_CRAFTED)


# --------------------------------------------------------------------------- #
# Parquet: adversarial values in canonical columns
# --------------------------------------------------------------------------- #
# Each value strategy yields (value, verdict): verdict ("ok", normalised) or ("bad", reason category).
MIN_S, MAX_S = -62135596800, 253402300799  # datetime(1, 1, 1) and datetime(9999, 12, 31, 23, 59, 59), UTC
MIN_DAY, MAX_DAY = -719162, 2932896  # date.min / date.max as days since the epoch
I64 = 2**63 - 1
FUTURE = NOW + 10**6


def _ok(value, norm):
    return value, ("ok", norm)


def _no(value, reason):
    return value, ("bad", reason)


_pq_id_text = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    lambda s: s.strip() and len(s.strip()) <= MAX_ID_CHARS)


def _pq_str_ids(f: str):
    bad = st.sampled_from([
        _no(None, f"missing_{f}"), _no("", f"empty_{f}"), _no(" \t\u3000 ", f"empty_{f}"),
        _no("k" * (MAX_ID_CHARS + 1), f"{f}_too_long"), _no("h" * 100_000, f"{f}_too_long"),
        _no("a\x00b", f"{f}_control_char"), _no("a\nb", f"{f}_control_char"), _no("a\x1b[31mb", f"{f}_control_char"),
        _no("a\x7f", f"{f}_control_char"),
    ])
    edge = st.sampled_from([_ok("k" * MAX_ID_CHARS, "k" * MAX_ID_CHARS), _ok("  x\u2028y  ", "x\u2028y"), _ok("0", "0")])
    return st.one_of(_pq_id_text.map(lambda s: _ok(s, s.strip())), _pq_id_text.map(lambda s: _ok(s, s.strip())), edge, bad)


def _pq_int_ids(f: str):
    return st.one_of(st.integers(-I64 - 1, I64).map(lambda v: _ok(v, str(v))), st.just(_no(None, f"missing_{f}")))


ID_KINDS = {
    "string": (pa.string(), _pq_str_ids),
    "large_string": (pa.large_string(), _pq_str_ids),
    "dictionary": ("dictionary", _pq_str_ids),
    "int64": (pa.int64(), _pq_int_ids),
    "uint32": (pa.uint32(), lambda f: st.one_of(st.integers(0, 2**32 - 1).map(lambda v: _ok(v, str(v))),
                                                st.just(_no(None, f"missing_{f}")))),
}


def _temporal(mult: int):
    """Stored integers of a timestamp column with ``mult`` units per second (Parquet keeps
    timestamp[s] as milliseconds, so its range is that of int64 milliseconds)."""
    lo, hi = -(2**63) // max(mult, 1000) + 1, I64 // max(mult, 1000) - 1
    sub = st.integers(0, mult - 1)

    def at(seconds, verdict):
        return st.tuples(seconds, sub).map(lambda t: (t[0] * mult + t[1], verdict(t[0])))

    parts = [
        at(st.integers(0, NOW), lambda s: ("ok", s)),
        at(st.integers(max(lo, MIN_S), -1), lambda s: ("bad", "negative_timestamp")),
        at(st.integers(FUTURE, min(hi, MAX_S)), lambda s: ("bad", "future_timestamp")),
        st.just(_no(None, "missing_timestamp")),
    ]
    if hi > MAX_S:  # beyond year 9999 / before year 1: Python's datetime cannot hold these
        parts.append(at(st.integers(MAX_S + 1, hi), lambda s: ("bad", "future_timestamp")))
        parts.append(at(st.integers(lo, MIN_S - 1), lambda s: ("bad", "negative_timestamp")))
        parts.append(st.sampled_from([_no(hi * mult, "future_timestamp"), _no(lo * mult, "negative_timestamp")]))
    else:  # timestamp[ns]: INT64_MIN is pandas' NaT, which once raised ValueError in parse_timestamp
        parts.append(st.just(_no(-(2**63), "missing_timestamp")))
    return st.one_of(parts[0], *parts)


_date32 = st.one_of(
    st.integers(0, NOW // 86400).map(lambda d: _ok(d, d * 86400)),
    st.integers(0, NOW // 86400).map(lambda d: _ok(d, d * 86400)),
    st.integers(MIN_DAY, -1).map(lambda d: _no(d, "negative_timestamp")),
    st.integers(FUTURE // 86400 + 1, MAX_DAY).map(lambda d: _no(d, "future_timestamp")),
    st.integers(MAX_DAY + 1, 2**31 - 1).map(lambda d: _no(d, "future_timestamp")),
    st.integers(-(2**31), MIN_DAY - 1).map(lambda d: _no(d, "negative_timestamp")),
    st.just(_no(None, "missing_timestamp")),
)
_int_epoch = st.one_of(
    st.integers(0, NOW).map(lambda s: _ok(s, s)),
    st.tuples(st.integers(10**8 + 1, NOW), st.sampled_from([1000, 10**6, 10**9]), st.integers(0, 999)).map(
        lambda t: _ok(t[0] * t[1] + t[2], t[0])),  # ms / us / ns by magnitude
    st.integers(-I64 - 1, -1).map(lambda v: _no(v, "negative_timestamp")),
    st.integers(FUTURE, 10**11).map(lambda v: _no(v, "future_timestamp")),
    st.integers(FUTURE * 1000, 10**14).map(lambda v: _no(v, "future_timestamp")),
    st.integers(FUTURE * 10**9, I64).map(lambda v: _no(v, "future_timestamp")),
    st.just(_no(None, "missing_timestamp")),
)
_float_epoch = st.one_of(
    st.tuples(st.integers(0, NOW - 1), st.floats(0, 0.99)).map(lambda t: _ok(t[0] + t[1], t[0])),
    st.integers(10**8 + 1, NOW).map(lambda s: _ok(s * 1000.0 + 0.5, s)),
    st.sampled_from([_no(float("nan"), "bad_timestamp"), _no(float("inf"), "bad_timestamp"),
                     _no(float("-inf"), "bad_timestamp"), _no(-0.5, "negative_timestamp"), _ok(-0.0, 0)]),
    st.floats(max_value=0, exclude_max=True, allow_infinity=False).map(lambda v: _no(v, "negative_timestamp")),
    st.floats(-1, 0, exclude_min=True, exclude_max=True).map(lambda v: _no(v, "negative_timestamp")),  # floor, not int()
    st.floats(FUTURE, 1e11).map(lambda v: _no(v, "future_timestamp")),
    st.floats(FUTURE * 1e9, 1e300).map(lambda v: _no(v, "future_timestamp")),
    st.just(_no(None, "missing_timestamp")),
)
_str_epoch = st.one_of(
    timestamps.flatmap(lambda s: st.sampled_from([str(s), _iso(s), f"{s}.5", f" {s} "]).map(lambda t: _ok(t, s))),
    st.sampled_from([
        _no("", "missing_timestamp"), _no("  ", "missing_timestamp"), _no(None, "missing_timestamp"),
        _no("NaN", "bad_timestamp"), _no("abc", "bad_timestamp"), _no("1e999", "bad_timestamp"),
        _no("9" * 5000, "bad_timestamp"), _no("2024-13-45", "bad_timestamp"), _no("-5", "negative_timestamp"),
        _no("-0.5", "negative_timestamp"), _no("2999-01-01", "future_timestamp"),
    ]),
)
_decimal_epoch = st.one_of(  # decimal128(16, 3): epoch seconds with milliseconds
    st.tuples(timestamps, st.integers(0, 999)).map(lambda t: _ok(decimal.Decimal(t[0] * 1000 + t[1]).scaleb(-3), t[0])),
    st.integers(1, 10**12).map(lambda m: _no(decimal.Decimal(-m).scaleb(-3), "negative_timestamp")),
    st.integers(FUTURE, 10**11).map(lambda s: _no(decimal.Decimal(s), "future_timestamp")),
    st.just(_no(None, "missing_timestamp")),
)
TS_KINDS = {
    "decimal128(16, 3)": (pa.decimal128(16, 3), _decimal_epoch),
    "int64": (pa.int64(), _int_epoch),
    "float64": (pa.float64(), _float_epoch),
    "string": (pa.string(), _str_epoch),
    "timestamp[s]": (pa.timestamp("s"), _temporal(1)),
    "timestamp[ms, UTC]": (pa.timestamp("ms", tz="UTC"), _temporal(1000)),
    "timestamp[us, New York]": (pa.timestamp("us", tz="America/New_York"), _temporal(10**6)),
    "timestamp[ns]": (pa.timestamp("ns"), _temporal(10**9)),
    "date32": (pa.date32(), _date32),
}
_bad_floats = st.sampled_from([_no(float("nan"), "bad_rating"), _no(float("inf"), "bad_rating"), _no(float("-inf"), "bad_rating")])
RATING_KINDS = {
    "float64": (pa.float64(), st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(lambda v: _ok(v, v)),
                                        st.just(_ok(None, None)), _bad_floats)),
    "float32": (pa.float32(), st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda v: _ok(v, v)),
                                        _bad_floats)),
    "int32": (pa.int32(), st.one_of(st.integers(-(2**31), 2**31 - 1).map(lambda v: _ok(v, float(v))), st.just(_ok(None, None)))),
    "string": (pa.string(), st.one_of(
        st.floats(-10, 10, allow_nan=False).map(lambda v: _ok(repr(v), v)),
        st.sampled_from([_ok("", None), _ok(" ", None), _ok(None, None), _ok(" 4.5 ", 4.5), _no("five", "bad_rating"),
                         _no("NaN", "bad_rating"), _no("1e999", "bad_rating"), _no("4,5", "bad_rating")]))),
    "decimal128(7, 2)": (pa.decimal128(7, 2), st.one_of(
        st.integers(-(10**7) + 1, 10**7 - 1).map(lambda c: _ok(decimal.Decimal(c).scaleb(-2), c / 100)),
        st.just(_ok(None, None)))),
}
_extra_note = st.one_of(st.none(), st.text(max_size=30).map(lambda s: s.encode("utf-8", "replace").decode()),
                        st.just("n" * 50_000))
_seen_at = st.one_of(st.none(), st.integers(-(I64 // 1000), I64 // 1000))  # an unused timestamp[s] column, often out of range


def _array(values, typ):
    if typ == "dictionary":
        return pa.array(values, pa.string()).dictionary_encode()
    return pa.array(values, typ)


@st.composite
def parquet_tables(draw):
    """(table, per-row expectation, row group size): expectation ("good", (u, i, ts, rating)) or ("bad", reason)."""
    fields = {"user_id": draw(st.sampled_from(sorted(ID_KINDS))), "item_id": draw(st.sampled_from(sorted(ID_KINDS))),
              "timestamp": draw(st.sampled_from(sorted(TS_KINDS))), "rating": draw(st.sampled_from([None, *sorted(RATING_KINDS)]))}
    specs = {}
    for f, kind in fields.items():
        if kind is None:
            continue
        if f in ("user_id", "item_id"):
            typ, make = ID_KINDS[kind]
            strat = make(f)
        else:
            typ, strat = (TS_KINDS if f == "timestamp" else RATING_KINDS)[kind]
        specs[f] = (draw(st.sampled_from(CANONICAL_ALIASES[f])), typ, strat)
    n = draw(st.integers(0, 30))
    values = {f: [draw(strat) for _ in range(n)] for f, (_, _, strat) in specs.items()}
    columns = {name: _array([v for v, _ in values[f]], typ) for f, (name, typ, _) in specs.items()}
    if draw(st.booleans()):
        columns["extra_note"] = pa.array([draw(_extra_note) for _ in range(n)], pa.string())
    if draw(st.booleans()):
        columns["seen_at"] = pa.array([draw(_seen_at) for _ in range(n)], pa.timestamp("s"))
    order = draw(st.permutations(sorted(columns)))
    table = pa.table({name: columns[name] for name in order})
    expect = []
    for r in range(n):
        verdicts = [values[f][r][1] for f in ("user_id", "item_id", "timestamp", "rating") if f in values]
        bad = [v for kind, v in verdicts if kind == "bad"]
        if bad:
            expect.append(("bad", bad[0]))
        else:
            rating = values["rating"][r][1][1] if "rating" in values else None
            expect.append(("good", (*(v for _, v in verdicts[:3]), rating)))
    return table, expect, draw(st.integers(1, 8)), fields


def _row_record(table: pa.Table, r: int):
    try:
        return table.slice(r, 1).to_pylist()[0]
    except (OverflowError, ValueError):  # a timestamp Python's datetime cannot hold
        return None


def _run_parquet(table: pa.Table, expect, row_group_size: int, name: str = "events.parquet"):
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / name)
        pq.write_table(table, path, row_group_size=row_group_size)
        check_files("parquet", [path])
        fn = ReadEventsFn("parquet")
        fn.setup()
        out = list(fn.process(path))  # must not raise
    events = [o for o in out if not isinstance(o, beam.pvalue.TaggedOutput)]
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert all(o.tag == DEAD for o in out if isinstance(o, beam.pvalue.TaggedOutput))
    assert len(events) + len(dead) == table.num_rows == len(expect)  # exact accounting, per row
    by_row = {}
    for d in dead:
        assert d["file"] == path and 1 <= d["line"] <= table.num_rows and d["line"] not in by_row
        assert isinstance(d["reason"], str) and d["reason"].strip() and "\n" not in d["reason"]
        assert isinstance(d["raw"], str) and d["raw"] and (not d["truncated"] or len(d["raw"]) == MAX_RAW_CHARS)
        record = _row_record(table, d["line"] - 1)
        if record is not None:
            raw = json.dumps(record, default=str)
            assert d["raw"] == raw[:MAX_RAW_CHARS] and d["truncated"] == (len(raw) > MAX_RAW_CHARS)
        by_row[d["line"]] = d
    for r, (kind, info) in enumerate(expect, start=1):
        if kind == "good":
            assert r not in by_row, (r, by_row.get(r), _row_record(table, r - 1))
        else:
            assert r in by_row, (r, info, _row_record(table, r - 1))
            assert by_row[r]["reason"].split(":")[0] == info, (by_row[r]["reason"], info, by_row[r]["raw"][:300])
    # good rows come out in row order, as the expected events
    got = [(e["user_id"], e["item_id"], e["timestamp"], e["rating"]) for e in events]
    assert got == [info for kind, info in expect if kind == "good"]
    json.dumps(events, ensure_ascii=False, default=str).encode("utf-8")
    return events, dead


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=parquet_tables())
def test_parquet_rows_are_parsed_or_dead_lettered(case):
    table, expect, row_group_size, _ = case
    _run_parquet(table, expect, row_group_size)


def test_parquet_several_batches_with_out_of_range_timestamps():
    """> 10,000 rows (the reader's batch size): a value Python cannot hold in one batch costs only its row."""
    n = 25_003
    bad = {1: -(10**13), 10_000: 10**13, 10_001: I64 // 1000, 20_001: -(I64 // 1000), n: 10**12}  # beyond year 9999 / before year 1
    ts = [bad.get(r, r * 1000) for r in range(1, n + 1)]
    users = [None if r == 17 else f"u{r % 101}" for r in range(1, n + 1)]
    table = pa.table({"user_id": users, "item_id": pa.array([r % 997 for r in range(n)], pa.int64()),
                      "timestamp": pa.array(ts, pa.timestamp("s"))})
    expect = []
    for r in range(1, n + 1):
        if r == 17:
            expect.append(("bad", "missing_user_id"))
        elif r in bad:
            expect.append(("bad", "future_timestamp" if bad[r] > 0 else "negative_timestamp"))
        else:
            expect.append(("good", (users[r - 1], str((r - 1) % 997), r * 1000, None)))
    _, dead = _run_parquet(table, expect, 4096)
    assert sorted(d["line"] for d in dead) == sorted([17, *bad])
    assert str(10**13) in next(d["raw"] for d in dead if d["line"] == 10_000)  # the stored value is shown


# ---- file-level checks --------------------------------------------------------- #
_ALLOWED = {  # arrow type -> the canonical fields it may hold (written independently of the adapter)
    "string": {"user_id", "item_id", "timestamp", "rating"},
    "large_string": {"user_id", "item_id", "timestamp", "rating"},
    "dictionary<string>": {"user_id", "item_id", "timestamp", "rating"},
    "int8": {"user_id", "item_id", "timestamp", "rating"},
    "uint64": {"user_id", "item_id", "timestamp", "rating"},
    "float32": {"timestamp", "rating"},
    "float64": {"timestamp", "rating"},
    "decimal128": {"timestamp", "rating"},
    "timestamp[ms]": {"timestamp"},
    "timestamp[s, UTC]": {"timestamp"},
    "date32": {"timestamp"},
    "null": {"rating"},
    "bool": set(),
    "binary": set(),
    "list<int64>": set(),
    "struct": set(),
    "time64[us]": set(),
    "duration[s]": set(),
}
_ARROW = {
    "string": pa.string(), "large_string": pa.large_string(), "dictionary<string>": pa.dictionary(pa.int32(), pa.string()),
    "int8": pa.int8(), "uint64": pa.uint64(), "float32": pa.float32(), "float64": pa.float64(),
    "decimal128": pa.decimal128(10, 2), "timestamp[ms]": pa.timestamp("ms"), "timestamp[s, UTC]": pa.timestamp("s", tz="UTC"),
    "date32": pa.date32(), "null": pa.null(), "bool": pa.bool_(), "binary": pa.binary(), "list<int64>": pa.list_(pa.int64()),
    "struct": pa.struct([("a", pa.int64())]), "time64[us]": pa.time64("us"), "duration[s]": pa.duration("s"),
}


@settings(max_examples=100, deadline=None)
@given(types=st.fixed_dictionaries({f: st.sampled_from(sorted(_ARROW)) for f in ("user_id", "item_id", "timestamp", "rating")}),
       drop=st.sampled_from([None, None, "user_id", "item_id", "timestamp", "rating"]),
       aliases=st.fixed_dictionaries({f: st.sampled_from(CANONICAL_ALIASES[f]) for f in ("user_id", "item_id", "timestamp", "rating")}))
def test_parquet_schema_errors_are_one_clear_line(types, drop, aliases):
    fields = [f for f in ("user_id", "item_id", "timestamp", "rating") if f != drop]
    table = pa.table({aliases[f]: pa.array([], _ARROW[types[f]]) for f in fields})
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "schema.parquet")
        pq.write_table(table, path)
        wrong = [f for f in fields if f not in _ALLOWED[types[f]]]
        if drop in ("user_id", "item_id", "timestamp"):
            with pytest.raises(SourceError) as info:
                check_files("parquet", [path])
            assert f"missing required column '{drop}'" in str(info.value)
        elif wrong:
            with pytest.raises(SourceError) as info:
                check_files("parquet", [path])
            assert f"column '{aliases[wrong[0]]}' ({wrong[0]}) has Parquet type" in str(info.value)
        else:
            check_files("parquet", [path])
            return
    msg = str(info.value)
    assert msg.startswith(path + ":") and "\n" not in msg and len(msg) < 1000


def _real_parquet_bytes() -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [1]}), buf)
    return buf.getvalue().to_pybytes()


_NOT_PARQUET = [
    b"", b"user_id,item_id,timestamp\nu,i,1\n", b"PAR1", b"PAR1PAR1", b"PAR1" + b"\x00" * 64 + b"PAR1",
    b"PAR1" + b"\xff" * 8 + b"\xff\xff\xff\x7fPAR1", gzip.compress(b"u,i,1\n"), _real_parquet_bytes()[:-9],
    _real_parquet_bytes()[: len(_real_parquet_bytes()) // 2], b"\x00" * 1000,
]


@settings(max_examples=100, deadline=None)
@given(data=st.one_of(st.sampled_from(_NOT_PARQUET), st.binary(max_size=300),
                      st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1")))
def test_non_parquet_file_is_one_clear_line(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "events.parquet")
        Path(path).write_bytes(data)
        with pytest.raises(SourceError) as info:
            check_files("parquet", [path])
    msg = str(info.value)
    assert msg.startswith(path + ":") and "not a readable Parquet file" in msg and "\n" not in msg


# --------------------------------------------------------------------------- #
# End to end: the real job on one seeded fuzzed Parquet file
# --------------------------------------------------------------------------- #
ODD_USERS = ["a\u2028b", "c\x85d", 'q"uo,te', "\u00df", "  padded  ", "\ufeffbom"]
PARQUET_BAD = [  # (user_id, item_id, timestamp[s] stored value, rating, reason)
    (None, "i1", 1000, 4.0, "missing_user_id"),
    ("", "i1", 1000, 4.0, "empty_user_id"),
    (" \t ", "i1", 1000, None, "empty_user_id"),
    ("u" * (MAX_ID_CHARS + 1), "i1", 1000, None, "user_id_too_long"),
    ("u\x00v", "i1", 1000, None, "user_id_control_char"),
    ("u1", None, 1000, None, "missing_item_id"),
    ("u1", "i\n1", 1000, None, "item_id_control_char"),
    ("u1", "i1", None, 3.0, "missing_timestamp"),
    ("u1", "i1", -5, None, "negative_timestamp"),
    ("u1", "i1", NOW + 10**7, None, "future_timestamp"),
    ("u1", "i1", 10**13, None, "future_timestamp"),  # year 318857: out of Python's datetime range
    ("u1", "i1", -(10**13), None, "negative_timestamp"),
    ("u1", "i1", 1000, float("nan"), "bad_rating"),
    ("u1", "i1", 1000, float("inf"), "bad_rating"),
]


def _seeded_parquet_file(path: Path, seed: int = 4321, n: int = 300):
    rng = random.Random(seed)
    users = [f"user{k}" for k in range(12)] + ODD_USERS
    rows, good, bad = [], [], []
    for r in range(1, n + 1):
        if rng.random() < 0.7:
            u, i, ts = rng.choice(users), f"item{rng.randint(0, 30)}", rng.randint(0, NOW)
            rows.append((u, i, ts, rng.choice([None, 1.0, 4.5])))
            good.append((r, (u.strip(), i, ts)))
        else:
            *row, reason = rng.choice(PARQUET_BAD)
            rows.append(tuple(row))
            bad.append((r, reason))
    u, i, ts, rating = zip(*rows)
    table = pa.table({"userId": pa.array(u, pa.string()), "asin": pa.array(i, pa.string()),
                      "unix_time": pa.array(ts, pa.timestamp("s")), "overall": pa.array(rating, pa.float64())})
    pq.write_table(table, path, row_group_size=37)
    return table, good, bad


def test_job_end_to_end_on_fuzzed_parquet_file(tmp_path):
    log = tmp_path / "fuzz.parquet"
    table, good, bad = _seeded_parquet_file(log)
    _, got, _ = run_job_and_account("parquet", log, tmp_path / "dataset", table.num_rows, good, bad)
    for r, _ in bad:
        assert got[r]["raw"]
        record = _row_record(table, r - 1)
        if record is not None:
            assert got[r]["raw"] == json.dumps(record, default=str)[:MAX_RAW_CHARS]
    assert {g[0] for _, g in good} & {u.strip() for u in ODD_USERS}  # the odd user ids made it through
