"""Tests for beam_jobs.events / beam_jobs.sources (plain Python, no Beam); the text helpers are in test_spec.py.

Fixtures are literal lines in the real formats of each dataset, written to
``tmp_path``. One test reads the first 1000 lines of the real shared samples
when they exist (``TFPPS_SHARED_DATA`` or ``<repo>/../shared/data``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from beam_jobs.events import (
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    BadRow,
    Event,
    ItemMeta,
    SourceError,
    parse_timestamp,
    validate_event,
)
from beam_jobs.sources import get_source, known_sources
from beam_jobs.sources.amazon import parse_amazon_meta_line
from beam_jobs.sources.base import ParquetState, TextState, decode_line, iter_text_file
from beam_jobs.sources.movielens import parse_movielens_item_line

TS_2014_04_07_105109 = 1396867869  # 2014-04-07T10:51:09Z
TS_2016_05_09 = 1462752000  # 2016-05-09T00:00:00Z
TS_2024_01_02_030405 = 1704164645  # 2024-01-02T03:04:05Z


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(p)


def parse_all(source: str, path: str) -> list[Event | None | BadRow]:
    return [r for _, r in iter_text_file(get_source(source), path)]


def events(results: list) -> list[Event]:
    return [r for r in results if isinstance(r, Event)]


def reasons(results: list) -> list[str]:
    return [r.reason for r in results if isinstance(r, BadRow)]


def bad(source: str, line: str | bytes, state) -> str:
    with pytest.raises(BadRow) as info:
        get_source(source).parse_line(line, state)
    return info.value.reason


# --------------------------------------------------------------------------- #
# events.py
# --------------------------------------------------------------------------- #
def test_columns_match_event_fields():
    import dataclasses

    assert tuple(f.name for f in dataclasses.fields(Event)) == CANONICAL_COLUMNS
    assert REQUIRED_COLUMNS == ("user_id", "item_id", "timestamp")


def test_event_dict_roundtrip_is_json_safe():
    ev = Event("u1", "i1", 5, session_id="s", query="red shoes", rating=4.5, text="nice")
    d = json.loads(json.dumps(ev.to_dict()))
    assert Event.from_dict(d) == ev
    assert set(d) == set(CANONICAL_COLUMNS)
    with pytest.raises(ValueError):
        Event.from_dict({**d, "bogus": 1})
    with pytest.raises(KeyError):
        Event.from_dict({"user_id": "u", "item_id": "i"})
    meta = ItemMeta("i1", "T", [["A", "B"]], None)
    assert ItemMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


def test_exceptions_pickle_and_are_one_line():
    err = pickle.loads(pickle.dumps(BadRow("bad_timestamp: 'x'")))
    assert isinstance(err, BadRow) and err.reason == "bad_timestamp: 'x'"
    assert isinstance(err, ValueError)
    src = pickle.loads(pickle.dumps(SourceError("a\nb")))
    assert str(src) == "a b"
    assert BadRow("x\ny").reason == "x y"


@pytest.mark.parametrize(
    "raw, expected",
    [
        (881250949, 881250949),
        ("881250949", 881250949),
        ("1396860669.277", 1396860669),  # fractional seconds truncated
        (1396860669.999, 1396860669),
        ("1396867869277", TS_2014_04_07_105109),  # epoch milliseconds
        (1396867869277, TS_2014_04_07_105109),
        (1396867869277000, TS_2014_04_07_105109),  # microseconds
        ("2014-04-07T10:51:09.277Z", TS_2014_04_07_105109),
        ("2014-04-07T10:51:09Z", TS_2014_04_07_105109),
        ("2014-04-07 10:51:09", TS_2014_04_07_105109),  # no zone = UTC
        ("2014-04-07T12:51:09+02:00", TS_2014_04_07_105109),
        ("2016-05-09", TS_2016_05_09),
        (datetime(2014, 4, 7, 10, 51, 9, 500000), TS_2014_04_07_105109),
        (datetime(2014, 4, 7, 10, 51, 9, tzinfo=timezone.utc), TS_2014_04_07_105109),
        (date(2016, 5, 9), TS_2016_05_09),
    ],
)
def test_parse_timestamp(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("abc", "bad_timestamp: 'abc'"),
        ("nan", "bad_timestamp: 'nan'"),
        (float("nan"), "bad_timestamp: nan"),
        (float("inf"), "bad_timestamp: inf"),
        ("1e999", "bad_timestamp: inf"),
        ("2014-13-01", "bad_timestamp: '2014-13-01'"),
        (None, "missing_timestamp"),
        ("  ", "missing_timestamp"),
        (True, "bad_timestamp: True"),
    ],
)
def test_parse_timestamp_bad(raw, reason):
    with pytest.raises(BadRow) as info:
        parse_timestamp(raw)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"user_id": ""}, "empty_user_id"),
        ({"user_id": "   "}, "empty_user_id"),
        ({"item_id": ""}, "empty_item_id"),
        ({"user_id": None}, "missing_user_id"),
        ({"user_id": "u" * 257}, "user_id_too_long: 257 chars"),
        ({"item_id": "a\tb"}, "item_id_control_char: '\\t'"),
        ({"user_id": "a\nb"}, "user_id_control_char: '\\n'"),
        ({"user_id": 1.5}, "bad_user_id: 1.5"),
        ({"user_id": ["x"]}, "bad_user_id: type list"),
        ({"timestamp": -5}, "negative_timestamp: -5"),
        ({"timestamp": "-5"}, "negative_timestamp: -5"),
        ({"timestamp": 4_000_000_000}, "future_timestamp: 4000000000"),
        ({"rating": "x"}, "bad_rating: 'x'"),
        ({"rating": float("nan")}, "bad_rating: nan"),
        ({"query": "q" * 10_001}, "query_too_long: 10001 chars"),
        ({"session_id": "s" * 300}, "session_id_too_long: 300 chars"),
        ({"text": "t" * 100_001}, "text_too_long: 100001 chars"),
    ],
)
def test_validate_event_bad(kwargs, reason):
    base = dict(user_id="u1", item_id="i1", timestamp=1000)
    with pytest.raises(BadRow) as info:
        validate_event(Event(**{**base, **kwargs}))
    assert info.value.reason == reason


def test_validate_event_normalises():
    ev = validate_event(Event(user_id=" 7 ", item_id=42, timestamp="1000.9", session_id="",
                              rating="4", query="  "))
    assert ev == Event("7", "42", 1000, session_id=None, rating=4.0, query=None)
    # future window: now + 1 day is fine, beyond is not
    now = 1_700_000_000
    assert validate_event(Event("u", "i", now + 86_400), now=now).timestamp == now + 86_400
    with pytest.raises(BadRow, match="future_timestamp"):
        validate_event(Event("u", "i", now + 86_401), now=now)
    assert validate_event(Event("u", "i", int(time.time()))).timestamp > 0


def test_decode_line():
    assert decode_line(b"a,b\r\n") == "a,b"
    assert decode_line(b"\xef\xbb\xbfa,b\n") == "a,b"
    with pytest.raises(BadRow) as info:
        decode_line(b"u1,\xff\xfe,1\n")
    assert info.value.reason == "non_utf8"
    assert decode_line(b"V\xe9ronique", ("utf-8", "latin-1")) == "Véronique"


# --------------------------------------------------------------------------- #
# registry
# --------------------------------------------------------------------------- #
def test_registry():
    SOURCES = known_sources()
    assert set(SOURCES) == {
        "csv", "jsonl", "parquet", "movielens", "yoochoose", "diginetica", "amazon", "tafeng", "srgnn",
        "hem_qrels",
    }
    for name, adapter in SOURCES.items():
        assert adapter.name == name and adapter.file_format in ("text", "parquet", "pickle")
        assert "::\n" in (type(adapter).__doc__ or "")  # docstring shows an example line
    with pytest.raises(SourceError) as info:
        get_source("movielenz")
    assert "movielenz" in str(info.value) and "movielens, parquet" in str(info.value)
    assert pickle.loads(pickle.dumps(SOURCES))["csv"].name == "csv"


@pytest.mark.parametrize("name", ["csv", "jsonl", "movielens", "yoochoose", "diginetica",
                                  "amazon", "tafeng"])
def test_empty_input_is_source_error(tmp_path, name):
    path = write(tmp_path, "empty.txt", "")
    with pytest.raises(SourceError) as info:
        list(iter_text_file(get_source(name), path))
    assert path in str(info.value) and "empty input" in str(info.value)


def test_parquet_bytes_given_to_text_source():
    with pytest.raises(SourceError, match="use source 'parquet'"):
        get_source("csv").open_state("x.parquet", b"PAR1\x15\x04")


# --------------------------------------------------------------------------- #
# csv
# --------------------------------------------------------------------------- #
def test_csv_comma_quoted_iso_and_ms(tmp_path):
    path = write(tmp_path, "events.csv",
                 "user_id,item_id,timestamp,query,rating,session_id\n"
                 'u1,i9,2024-01-02T03:04:05Z,"red shoes, size 9",4.5,s1\n'
                 "u2,i8,1704164645000,,,\n"
                 "\n"
                 "u3,i7,1704164645,plain,,\n")
    res = parse_all("csv", path)
    assert res[0] is None and res[3] is None  # header, blank line
    assert events(res) == [
        Event("u1", "i9", TS_2024_01_02_030405, session_id="s1", query="red shoes, size 9",
              rating=4.5),
        Event("u2", "i8", TS_2024_01_02_030405),
        Event("u3", "i7", TS_2024_01_02_030405, query="plain"),
    ]


@pytest.mark.parametrize("delim", ["\t", ";", "|"])
def test_csv_sniffs_delimiter_and_aliases(tmp_path, delim):
    header = delim.join(["userId", "movie_id", "ts", "sessionId", "eventType"])
    row = delim.join(["7", "42", "881250949", "s9", "click"])
    path = write(tmp_path, "e.txt", f"{header}\n{row}\n")
    state = get_source("csv").open_state(path, header)
    assert state.delimiter == delim
    assert events(parse_all("csv", path)) == [
        Event("7", "42", 881250949, session_id="s9", event_type="click")
    ]


def test_csv_missing_column_names_file_and_column(tmp_path):
    path = write(tmp_path, "noitem.csv", "user_id,timestamp\nu1,5\n")
    with pytest.raises(SourceError) as info:
        get_source("csv").open_state(path, "user_id,timestamp")
    msg = str(info.value)
    assert path in msg and "'item_id'" in msg and "\n" not in msg
    # a header-less file is reported the same way (header required)
    with pytest.raises(SourceError, match="missing required column 'user_id'"):
        get_source("csv").open_state(path, "u1,i1,5")


def test_csv_ambiguous_alias_is_source_error():
    with pytest.raises(SourceError, match="all map to 'user_id'"):
        get_source("csv").open_state("f.csv", "user,userId,item,ts")


def test_csv_bad_rows(tmp_path):
    st = get_source("csv").open_state("f.csv", "user_id,item_id,timestamp,query")
    assert bad("csv", "u1,i1,5", st) == "wrong_column_count: expected 4, got 3"
    assert bad("csv", "u1,i1,5,q,extra", st) == "wrong_column_count: expected 4, got 5"
    assert bad("csv", "u1,i1,abc,q", st) == "bad_timestamp: 'abc'"
    assert bad("csv", "u1,i1,,q", st) == "missing_timestamp"
    assert bad("csv", ",i1,5,q", st) == "empty_user_id"
    assert bad("csv", "u1,,5,q", st) == "empty_item_id"
    assert bad("csv", "u1,i1,NaN,q", st) == "bad_timestamp: 'NaN'"
    assert bad("csv", "u1,i1,-100,q", st) == "negative_timestamp: -100"
    assert bad("csv", "u1,i1,99999999999,q", st) == "future_timestamp: 99999999999"
    assert bad("csv", 'u1,i1,5,"unterminated', st).startswith("csv_error:")
    assert bad("csv", "u1,i1,5," + "q" * 10_001, st) == "query_too_long: 10001 chars"
    assert bad("csv", "u1,i1,5," + "q" * 1_000_001, st) == "line_too_long: 1000009 chars"
    assert bad("csv", b"u\xff1,i1,5,q", st) == "non_utf8"
    assert bad("csv", "u" * 300 + ",i1,5,q", st) == "user_id_too_long: 300 chars"
    # the same file through iter_text_file: bad rows are reported, not dropped
    path = write(tmp_path, "mixed.csv", b"user_id,item_id,timestamp\nu1,i1,5\nu2,i2\n\xff,i3,5\n")
    res = parse_all("csv", path)
    assert events(res) == [Event("u1", "i1", 5)]
    assert reasons(res) == ["wrong_column_count: expected 3, got 2", "non_utf8"]


def test_csv_rating_nan_and_header_with_bom_and_crlf(tmp_path):
    path = write(tmp_path, "bom.csv", "\ufeffuser_id,item_id,timestamp,rating\r\nu1,i1,5,nan\r\nu1,i1,5,3\r\n")
    res = parse_all("csv", path)
    assert res[0] is None
    assert reasons(res) == ["bad_rating: 'nan'"]
    assert events(res) == [Event("u1", "i1", 5, rating=3.0)]


# --------------------------------------------------------------------------- #
# jsonl
# --------------------------------------------------------------------------- #
def test_jsonl(tmp_path):
    path = write(tmp_path, "e.jsonl",
                 '{"user_id": "u1", "item_id": "i9", "timestamp": 1704164645, "query": "red shoes"}\n'
                 '{"userId": 7, "productId": 42, "time": "2024-01-02T03:04:05Z", "basket_id": "b1"}\n'
                 '{"user_id": "u1", "item_id": "i9"\n'
                 '[1, 2]\n'
                 '{"user_id": "u\\t1", "item_id": "i9", "timestamp": 1}\n'
                 '{"user_id": "u1", "item_id": "i9", "timestamp": NaN}\n'
                 '{"user_id": "u1", "item_id": "i9"}\n')
    res = parse_all("jsonl", path)
    assert events(res) == [
        Event("u1", "i9", TS_2024_01_02_030405, query="red shoes"),
        Event("7", "42", TS_2024_01_02_030405, basket_id="b1"),
    ]
    rs = reasons(res)
    assert rs[0].startswith("json_error: ")
    assert rs[1:] == ["json_not_object: list", "user_id_control_char: '\\t'",
                      "bad_timestamp: nan", "missing_timestamp"]


def test_jsonl_file_level_checks():
    with pytest.raises(SourceError, match="not JSON lines"):
        get_source("jsonl").open_state("f.jsonl", "user_id,item_id,timestamp")
    with pytest.raises(SourceError) as info:
        get_source("jsonl").open_state("f.jsonl", '{"user_id": "u", "item": "i"}')
    assert "f.jsonl" in str(info.value) and "'timestamp'" in str(info.value)
    # a malformed first row is a row problem, not a file problem
    assert isinstance(get_source("jsonl").open_state("f.jsonl", '{"user_id": '), TextState)


# --------------------------------------------------------------------------- #
# parquet
# --------------------------------------------------------------------------- #
def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({
        "userId": pa.array(["u1", "u2", ""]),
        "item_id": pa.array([42, 43, 44], pa.int64()),
        "timestamp": pa.array([datetime(2024, 1, 2, 3, 4, 5), datetime(2024, 1, 2, 3, 4, 5, 999),
                               None], pa.timestamp("ms")),
        "rating": pa.array([4.5, None, 1.0]),
        "query": pa.array(["red shoes", None, None]),
    })
    path = str(tmp_path / "e.parquet")
    pq.write_table(table, path)
    src = get_source("parquet")
    state = src.open_state(path, None)
    assert isinstance(state, ParquetState) and state.columns["user_id"] == "userId"
    recs = pq.read_table(path).to_pylist()
    assert src.parse_record(recs[0], state) == Event("u1", "42", TS_2024_01_02_030405,
                                                      rating=4.5, query="red shoes")
    assert src.parse_record(recs[1], state) == Event("u2", "43", TS_2024_01_02_030405)
    with pytest.raises(BadRow) as info:
        src.parse_record(recs[2], state)
    assert info.value.reason == "empty_user_id"
    # state=None: columns looked up per record by alias
    assert src.parse_record({"user": "u", "item": 1, "ts": "5"}, None) == Event("u", "1", 5)
    with pytest.raises(SourceError, match="reads Parquet records"):
        src.parse_line("u,i,5", state)


def test_parquet_schema_errors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    src = get_source("parquet")
    with pytest.raises(SourceError) as info:
        src.check_parquet_schema("f.parquet", pa.schema([("user_id", pa.float64()),
                                                          ("item_id", pa.string()),
                                                          ("timestamp", pa.int64())]))
    assert "f.parquet" in str(info.value) and "'user_id'" in str(info.value)
    assert "double" in str(info.value)
    with pytest.raises(SourceError, match="missing required column 'timestamp'"):
        src.check_parquet_schema("f.parquet", pa.schema([("user_id", pa.string()),
                                                          ("item_id", pa.string())]))
    with pytest.raises(SourceError, match="column 'timestamp'"):
        src.check_parquet_schema("f.parquet", pa.schema([("user_id", pa.string()),
                                                          ("item_id", pa.string()),
                                                          ("timestamp", pa.list_(pa.int64()))]))
    ok = src.check_parquet_schema("f.parquet", pa.schema([
        ("user_id", pa.dictionary(pa.int32(), pa.string())), ("item_id", pa.large_string()),
        ("timestamp", pa.string()), ("rating", pa.int8())]))
    assert ok.columns == {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp",
                          "rating": "rating"}
    notparquet = write(tmp_path, "x.parquet", "user_id,item_id\n")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        src.open_state(notparquet, None)
    with pytest.raises(SourceError, match="reads text lines"):
        get_source("csv").check_parquet_schema("f.parquet", None)


# --------------------------------------------------------------------------- #
# movielens
# --------------------------------------------------------------------------- #
def test_movielens_ratings_dat(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n1::914::3\n")
    res = parse_all("movielens", path)
    assert events(res) == [
        Event("1", "1193", 978300760, rating=5.0, event_type="rating"),
        Event("1", "661", 978302109, rating=3.0, event_type="rating"),
    ]
    assert reasons(res) == ["wrong_column_count: expected 4, got 3"]


def test_movielens_u_data(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\tabc\n")
    st = get_source("movielens").open_state(path, "196\t242\t3\t881250949")
    assert st.layout == "u.data" and st.header is None
    res = parse_all("movielens", path)
    assert events(res) == [Event("196", "242", 881250949, rating=3.0, event_type="rating")]
    assert reasons(res) == ["bad_timestamp: 'abc'"]


def test_movielens_recbole_inter(tmp_path):
    # columns found by name (order differs from the usual one)
    path = write(tmp_path, "ml.inter",
                 "item_id:token\tuser_id:token\ttimestamp:float\trating:float\n"
                 "242\t196\t881250949\t3\n302\t186\t891717742\t3\n")
    res = parse_all("movielens", path)
    assert res[0] is None
    assert events(res) == [
        Event("196", "242", 881250949, rating=3.0, event_type="rating"),
        Event("186", "302", 891717742, rating=3.0, event_type="rating"),
    ]
    with pytest.raises(SourceError) as info:
        get_source("movielens").open_state("ml-100k.inter", "user_id:token\titem_id:token\trating:float")
    assert "ml-100k.inter" in str(info.value) and "'timestamp'" in str(info.value)
    with pytest.raises(SourceError, match="without a 'field:type' header"):
        get_source("movielens").open_state("ml-100k.inter", "196\t242\t3\t881250949")


def test_movielens_ratings_csv_and_unknown_layout(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n")
    assert events(parse_all("movielens", path)) == [
        Event("1", "2", 1112486027, rating=3.5, event_type="rating")]
    with pytest.raises(SourceError, match="unrecognized MovieLens layout"):
        get_source("movielens").open_state("x.txt", "hello world")


def test_movielens_item_metadata():
    parse = get_source("movielens").metadata_parser
    assert parse is parse_movielens_item_line
    u_item = ("1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)"
              "|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0")
    assert parse(u_item) == ItemMeta("1", "Toy Story (1995)",
                                     [["Animation"], ["Children's"], ["Comedy"]], None)
    latin1 = (b"1005|Double vie de V\xe9ronique, La (1991)|01-Jan-1991||http://x"
              b"|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0")
    text = decode_line(latin1, get_source("movielens").metadata_encodings)
    assert parse(text) == ItemMeta("1005", "Double vie de Véronique, La (1991)", [["Drama"]], None)
    assert parse("1::Toy Story (1995)::Animation|Children's|Comedy") == ItemMeta(
        "1", "Toy Story (1995)", [["Animation"], ["Children's"], ["Comedy"]], None)
    assert parse("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq") is None
    assert parse("1\tToy Story\t1995\tAnimation Children's Comedy") == ItemMeta(
        "1", "Toy Story", [["Animation"], ["Children's"], ["Comedy"]], None)
    assert parse("movieId,title,genres") is None
    assert parse('11,"American President, The (1995)",Comedy|Drama|Romance') == ItemMeta(
        "11", "American President, The (1995)", [["Comedy"], ["Drama"], ["Romance"]], None)
    assert parse("") is None
    with pytest.raises(BadRow, match="bad_genre_flags"):
        parse(u_item.replace("|0|0|0|1", "|0|0|x|1"))
    with pytest.raises(BadRow, match="empty_item_id"):
        parse("::Toy Story (1995)::Comedy")


# --------------------------------------------------------------------------- #
# yoochoose
# --------------------------------------------------------------------------- #
def test_yoochoose_raw_clicks(tmp_path):
    path = write(tmp_path, "yoochoose-clicks.dat",
                 "1,2014-04-07T10:51:09.277Z,214536502,0\n"
                 "1,2014-04-07T10:54:09.868Z,214536500,S\n"
                 "2,not-a-time,214662742,0\n"
                 "3,2014-04-07T10:51:09.277Z,214536502\n")
    res = parse_all("yoochoose", path)
    assert events(res) == [
        Event("1", "214536502", TS_2014_04_07_105109, session_id="1", event_type="click"),
        Event("1", "214536500", TS_2014_04_07_105109 + 180, session_id="1", event_type="click"),
    ]
    assert reasons(res) == ["bad_timestamp: 'not-a-time'", "wrong_column_count: expected 4, got 3"]


def test_yoochoose_raw_buys():
    st = get_source("yoochoose").open_state("buys.dat", "420374,2014-04-06T18:44:58.314Z,214537888,12462,1")
    ev = get_source("yoochoose").parse_line("420374,2014-04-06T18:44:58.314Z,214537888,12462,1", st)
    assert ev == Event("420374", "214537888", 1396809898, session_id="420374", event_type="buy")


def test_yoochoose_prepared(tmp_path):
    path = write(tmp_path, "yoochoose-clicks-100k_test.txt",
                 "SessionId\tItemId\tTime\n1\t214536502\t1396860669.277\n1\t214536506\t1396860886.998\n")
    res = parse_all("yoochoose", path)
    assert res[0] is None
    assert events(res) == [
        Event("1", "214536502", 1396860669, session_id="1", event_type="click"),
        Event("1", "214536506", 1396860886, session_id="1", event_type="click"),
    ]
    with pytest.raises(SourceError) as info:
        get_source("yoochoose").open_state(path, "SessionId\tItemId")
    assert path in str(info.value) and "'Time'" in str(info.value)
    with pytest.raises(SourceError, match="unrecognized YOOCHOOSE layout"):
        get_source("yoochoose").open_state(path, "1\t214536502\t1396860669.277")


# --------------------------------------------------------------------------- #
# diginetica
# --------------------------------------------------------------------------- #
def test_diginetica(tmp_path):
    path = write(tmp_path, "train-item-views.csv",
                 "sessionId;userId;itemId;timeframe;eventdate\n"
                 "1;NA;81766;526309;2016-05-09\n"
                 "1;;31331;1031018;2016-05-09\n"
                 "12;18278;32118;96;2016-05-09\n"
                 "13;NA;1;12x;2016-05-09\n"
                 "14;NA;1;5;2016/05/09\n"
                 "15;NA;1;5\n")
    res = parse_all("diginetica", path)
    assert events(res) == [
        # eventdate + timeframe to the millisecond (not truncated to seconds)
        Event("session:1", "81766", (TS_2016_05_09 * 1000 + 526309) / 1000, session_id="1", event_type="view"),
        Event("session:1", "31331", (TS_2016_05_09 * 1000 + 1031018) / 1000, session_id="1", event_type="view"),
        Event("18278", "32118", (TS_2016_05_09 * 1000 + 96) / 1000, session_id="12", event_type="view"),
    ]
    assert reasons(res) == ["bad_timeframe: '12x'", "bad_timestamp: '2016/05/09'",
                            "wrong_column_count: expected 5, got 4"]
    with pytest.raises(SourceError) as info:
        get_source("diginetica").open_state(path, "sessionId;userId;itemId;eventdate")
    assert path in str(info.value) and "'timeframe'" in str(info.value)


# --------------------------------------------------------------------------- #
# amazon
# --------------------------------------------------------------------------- #
AMZ_2014 = ('{"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald", '
            '"helpful": [2, 3], "reviewText": "I bought this for my husband who plays the piano.", '
            '"overall": 5.0, "summary": "Heavenly Highway Hymns", "unixReviewTime": 1252800000, '
            '"reviewTime": "09 13, 2009"}')
AMZ_2018 = ('{"overall": 4.0, "vote": "2", "verified": true, "reviewTime": "09 1, 2016", '
            '"reviewerID": "A3CIUOJXQ5VDQ2", "asin": "B0000530HU", "style": {"Size:": " 7.0 oz"}, '
            '"reviewerName": "Jeff A Milne", "reviewText": "As advertised.", "summary": "Four Stars", '
            '"unixReviewTime": 1472688000}')


def test_amazon_reviews(tmp_path):
    no_unix = '{"reviewerID": "A1", "asin": "B1", "overall": 3.0, "reviewTime": "09 13, 2009"}'
    no_text = '{"reviewerID": "A1", "asin": "B2", "overall": 1.0, "unixReviewTime": 1252800000}'
    path = write(tmp_path, "reviews_Beauty_5.json", "\n".join([
        AMZ_2014, AMZ_2018, no_unix, no_text,
        '{"reviewerID": "", "asin": "B1", "overall": 3.0, "unixReviewTime": 1}',
        '{"reviewerID": "A1", "asin": "B1", "overall": "great", "unixReviewTime": 1}',
        '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1, "reviewText": "' + "x" * 100_001 + '"}',
    ]) + "\n")
    res = parse_all("amazon", path)
    assert events(res) == [
        Event("A2SUAM1J3GNN3B", "0000013714", 1252800000, rating=5.0, event_type="review",
              text="I bought this for my husband who plays the piano."),
        Event("A3CIUOJXQ5VDQ2", "B0000530HU", 1472688000, rating=4.0, event_type="review",
              text="As advertised."),
        Event("A1", "B1", 1252800000, rating=3.0, event_type="review"),
        Event("A1", "B2", 1252800000, rating=1.0, event_type="review"),
    ]
    assert reasons(res) == ["empty_user_id", "bad_rating: 'great'", "text_too_long: 100001 chars"]
    with pytest.raises(SourceError) as info:
        get_source("amazon").open_state(path, '{"reviewerID": "A1", "overall": 5.0}')
    assert path in str(info.value) and "'asin'" in str(info.value)


def test_amazon_metadata_2014_literal_and_2018_json():
    parse = get_source("amazon").metadata_parser
    assert parse is parse_amazon_meta_line
    meta_2014 = ("{'asin': '0000031852', 'title': 'Girls Ballet Tutu Zebra Hot Pink', 'price': 3.17, "
                 "'imUrl': 'http://ecx.images-amazon.com/images/I/51fAmVkTbyL._SY300_.jpg', "
                 "'related': {'also_bought': ['B00JHONN1S'], 'bought_together': ['B002BZX8Z6']}, "
                 "'salesRank': {'Toys & Games': 211836}, "
                 "'categories': [['Sports & Outdoors', 'Other Sports', 'Dance'], ['Clothing, Shoes & Jewelry', 'Girls']], "
                 "'description': \"It's a tutu.\"}")
    assert parse(meta_2014) == ItemMeta(
        "0000031852", "Girls Ballet Tutu Zebra Hot Pink",
        [["Sports & Outdoors", "Other Sports", "Dance"], ["Clothing, Shoes & Jewelry", "Girls"]],
        "It's a tutu.")
    meta_2018 = ('{"category": ["Clothing, Shoes & Jewelry", "Women", "Clothing"], "tech1": "", '
                 '"description": ["Tutu for girls.", "Machine wash."], "fit": "", '
                 '"title": "Girls Ballet Tutu", "also_buy": [], "brand": "Coxlures", "feature": [], '
                 '"main_cat": "Sports & Outdoors", "asin": "0000031852"}')
    assert parse(meta_2018) == ItemMeta(
        "0000031852", "Girls Ballet Tutu", [["Clothing, Shoes & Jewelry", "Women", "Clothing"]],
        "Tutu for girls. Machine wash.")
    assert parse('{"asin": "B1", "title": "", "category": []}') == ItemMeta("B1", None, [], None)
    assert parse("   ") is None
    with pytest.raises(BadRow, match="missing_field: asin"):
        parse("{'title': 'x'}")
    with pytest.raises(BadRow, match="json_error"):
        parse("{'asin': 'x',")
    with pytest.raises(BadRow, match="bad_categories"):
        parse("{'asin': 'x', 'categories': 'Books'}")
    with pytest.raises(BadRow, match="json_not_object: list"):
        parse("['asin']")


# --------------------------------------------------------------------------- #
# tafeng
# --------------------------------------------------------------------------- #
def test_tafeng(tmp_path):
    path = write(tmp_path, "TaFang_history.csv",
                 "CUSTOMER_ID,ORDER_NUMBER,MATERIAL_NUMBER\n"
                 "00046855  ,1,0\n00046855  ,1,1\n00046855  ,2,3\n"
                 "00046855  ,x,3\n  ,1,3\n00046855  ,1\n")
    res = parse_all("tafeng", path)
    assert events(res) == [
        Event("00046855", "0", 86400, basket_id="00046855-1", event_type="purchase"),
        Event("00046855", "1", 86400, basket_id="00046855-1", event_type="purchase"),
        Event("00046855", "3", 172800, basket_id="00046855-2", event_type="purchase"),
    ]
    assert reasons(res) == ["bad_order_number: 'x'", "empty_user_id",
                            "wrong_column_count: expected 3, got 2"]
    with pytest.raises(SourceError) as info:
        get_source("tafeng").open_state(path, "CUSTOMER_ID,MATERIAL_NUMBER")
    assert path in str(info.value) and "'ORDER_NUMBER'" in str(info.value)


# --------------------------------------------------------------------------- #
# real shared samples (read-only; skipped when absent)
# --------------------------------------------------------------------------- #
def shared_data_dir() -> Path:
    env = os.environ.get("TFPPS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize("source, rel", [
    ("movielens", "ml-100k/ml-100k.inter"),
    ("yoochoose", "yoochoose-100k/yoochoose-clicks-100k_test.txt"),
    ("tafeng", "tafeng/TaFang_history.csv"),
])
def test_real_samples_first_1000_lines(source, rel):
    path = shared_data_dir() / rel
    if not path.exists():
        pytest.skip(f"real sample {path} not found (set TFPPS_SHARED_DATA to the shared data dir)")
    res = [r for _, r in iter_text_file(get_source(source), str(path), limit=1000)]
    assert len(res) == 1000
    assert res[0] is None  # header
    assert reasons(res) == []
    evs = events(res)
    assert len(evs) == 999
    assert all(e.user_id and e.item_id and e.timestamp > 0 for e in evs)
    if source == "movielens":
        assert evs[0] == Event("196", "242", 881250949, rating=3.0, event_type="rating")
        assert all(1.0 <= e.rating <= 5.0 for e in evs)
    if source == "yoochoose":
        assert all(e.user_id == e.session_id for e in evs)
        assert all(not math.isnan(e.timestamp) for e in evs)


def test_real_movielens_item_metadata():
    path = shared_data_dir() / "ml-100k" / "ml-100k.item"
    if not path.exists():
        pytest.skip(f"real sample {path} not found (set TFPPS_SHARED_DATA to the shared data dir)")
    adapter = get_source("movielens")
    metas = []
    with open(path, "rb") as fh:
        for raw in fh:
            metas.append(adapter.metadata_parser(decode_line(raw, adapter.metadata_encodings)))
    assert metas[0] is None and len(metas) == 1683
    assert metas[1] == ItemMeta("1", "Toy Story", [["Animation"], ["Children's"], ["Comedy"]], None)
