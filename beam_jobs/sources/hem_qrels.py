"""``--source=hem_qrels``: the official HEM product-search benchmark, read with its split kept exactly.

The benchmark of Ai et al. (SIGIR 2017, "Learning a Hierarchical Embedding Model for Personalized
Product Search") is a directory (``--input=<dir>``) holding::

    query_text.txt.gz        one query per line; the line number (from 0) is the query id
    train.qrels.gz           <reviewerID>_<query id> 0 <asin> 1     (training judgements)
    test.qrels.gz            the same for test; its queries never occur in training
    train_review_id.txt.gz   line_<n>: the lines (from 0) of the 5-core review dump that are training reviews

Each qrels line is one (user, query, item) judgement; the reader (:class:`HemQrelsSource`) turns it
into one event with that single query and the split of its file (``train`` / ``test``), and
:class:`PurchasesFromQrels` then merges the lines of one (split, user, item) into ONE purchase event
carrying ALL its queries as a ``queries`` list (a product bought once is one purchase, whatever the
number of its queries; one event per query would be taken for repeat purchases and dropped).

Timestamps: the qrels have none. A purchase's timestamp is its first qrels line number plus
:data:`TIME_BASE` (training) or :data:`TIME_BASE` + :data:`TEST_TIME_OFFSET` (test), so events have a
deterministic order (the order of the files, test after training) and no time information is invented
beyond it. Example: the purchase of line 3 of ``train.qrels.gz`` gets ``1_000_000_003``.

Bad lines (a field count other than 4, a ``<user>_<query>`` field without a numeric query id, a query id
outside ``query_text.txt.gz``, a relevance label other than 1) go to the job's dead-letter output with
their reason and are counted like every source's. A missing benchmark file stops the job with one line
(:func:`benchmark_files`).

Item text without leaks (:class:`TrainingQueryText`, :class:`TrainingReviewText`): the words of the
item's TRAINING queries, or with ``--reviews=<reviews_*_5.json.gz>`` the words of its training reviews
(``reviewText`` + ``summary`` of the lines ``train_review_id.txt.gz`` lists); a test query or a test
review never contributes.
"""
from __future__ import annotations

import dataclasses
import json
import posixpath
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.events import LOG_POSITION, BadRow, Event, SourceError, short_repr
from beam_jobs.sources.base import SourceAdapter, SplitEvent

SOURCE_NAME = "hem_qrels"
QUERY_FILE = "query_text.txt.gz"
QRELS_FILES = {"train.qrels.gz": "train", "test.qrels.gz": "test"}
TRAIN_REVIEW_IDS_FILE = "train_review_id.txt.gz"
TIME_BASE = 1_000_000_000
"""Timestamp of line 0 of ``train.qrels.gz`` (2001-09-09; any fixed epoch would do)."""
TEST_TIME_OFFSET = 100_000_000
"""Test purchases come after every training one (a qrels file has far fewer lines than this)."""
MAX_ITEM_TEXT_WORDS = 200
"""Item text words kept per item, as :func:`beam_jobs.examples.item_text_words` caps them."""


def _join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name) if "://" in directory else posixpath.join(directory, name)


def benchmark_files(input_dir: str) -> list[str]:
    """The qrels files of the benchmark directory ``input_dir`` (training first), after checking that the
    directory holds ``query_text.txt.gz``, ``train.qrels.gz`` and ``test.qrels.gz``; SourceError (one
    line) naming what is missing."""
    root = input_dir.rstrip("/")
    needed = [QUERY_FILE, *QRELS_FILES]
    if not root:
        raise SourceError(f"--source={SOURCE_NAME} needs --input=<the HEM benchmark directory> (holding {', '.join(needed)})")
    missing = [name for name in needed if not FileSystems.exists(_join(root, name))]
    if missing:
        raise SourceError(f"--input={input_dir}: missing {', '.join(missing)} (a HEM benchmark directory holds "
                          f"{', '.join(needed)})")
    return [_join(root, name) for name in QRELS_FILES]


def review_ids_file(input_dir: str) -> str:
    """``train_review_id.txt.gz`` of the benchmark directory; SourceError (one line) when it is absent."""
    path = _join(input_dir.rstrip("/"), TRAIN_REVIEW_IDS_FILE)
    if not FileSystems.exists(path):
        raise SourceError(f"--reviews needs {path} (which lines of the review dump are training reviews)")
    return path


def _read_text(path: str) -> str:
    try:
        with FileSystems.open(path) as fh:  # .gz decompressed by extension
            return fh.read().decode("utf-8")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text") from None


def read_query_texts(path: str) -> tuple[str, ...]:
    """The query strings of ``query_text.txt.gz``, indexed by query id (line number from 0).

    >>> # query_text.txt.gz: "cell phone accessory case\\nheadset\\n" -> ("cell phone accessory case", "headset")
    """
    text = _read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(line.rstrip("\r").strip() for line in lines)


def query_source_ids(input_dir: str) -> list[str]:
    """``<normalised query>\t<query id>`` lines for every query of the benchmark's ``query_text.txt.gz``
    (:data:`tfpps.spec.schema.QUERY_SOURCE_IDS_FILE`); SourceError when two ids normalise to one query (their
    qrels could not be told apart)."""
    from tfpps.spec.text import normalize_words

    ids: dict[str, int] = {}
    for query_id, text in enumerate(read_query_texts(_join(input_dir.rstrip("/"), QUERY_FILE))):
        query = " ".join(normalize_words(text))
        if not query:
            continue
        if query in ids:
            raise SourceError(f"{QUERY_FILE}: queries {ids[query]} and {query_id} normalise to the same words "
                              f"({query!r}); their qrels could not be told apart")
        ids[query] = query_id
    return [f"{query}\t{query_id}" for query, query_id in ids.items()]


@dataclasses.dataclass(frozen=True)
class QrelsState:
    """Per-file state: the file, its split and the query strings by id."""

    path: str
    split: str
    queries: tuple[str, ...]
    header: str | None = None  # the reader looks for one; qrels have none


class HemQrelsSource(SourceAdapter):
    """One qrels line -> an event ``(user, item, query text, split)``; see the module docstring. Example::

        A21O5ULBAZD8SZ_8 0 B009NLTW60 1

    -> ``SplitEvent(user_id="A21O5ULBAZD8SZ", item_id="B009NLTW60", query=<line 8 of query_text.txt.gz>,
    split="train", event_type="purchase")`` in ``train.qrels.gz``. The timestamp is the split's base, to
    which :class:`PurchasesFromQrels` adds the line number."""

    name = SOURCE_NAME
    description = "HEM benchmark directory (query_text.txt.gz, train.qrels.gz, test.qrels.gz); --input=<dir>"

    def open_state(self, path: str, first_line: str | bytes | None) -> QrelsState:
        base = posixpath.basename(path)
        if base not in QRELS_FILES:
            raise SourceError(f"{path}: not a HEM qrels file (expected one of {', '.join(QRELS_FILES)})")
        query_file = _join(posixpath.dirname(path), QUERY_FILE)
        if not FileSystems.exists(query_file):
            raise SourceError(f"{path}: missing {query_file} (the query strings the qrels refer to)")
        return QrelsState(path, QRELS_FILES[base], read_query_texts(query_file))

    def _parse(self, line: str, state: QrelsState) -> Event:
        fields = line.split()
        if len(fields) != 4:
            raise BadRow(f"wrong_column_count: expected 4 (<user>_<query> 0 <item> <label>), got {len(fields)}")
        user_query, _, item, label = fields
        user, sep, query_id = user_query.rpartition("_")
        if not sep or not user or not query_id.isdigit():
            raise BadRow(f"bad_user_query: {short_repr(user_query)} (expected <reviewerID>_<query line number>)")
        if int(query_id) >= len(state.queries):
            raise BadRow(f"unknown_query: {query_id} ({QUERY_FILE} has {len(state.queries)} lines)")
        if label != "1":
            raise BadRow(f"not_a_purchase: relevance label {short_repr(label)} (only label 1 judgements are purchases)")
        base = TIME_BASE + (TEST_TIME_OFFSET if state.split == "test" else 0)
        return Event(user_id=user, item_id=item, timestamp=base, query=state.queries[int(query_id)] or None,
                     event_type="purchase")

    def parse_line(self, line: str | bytes, state: QrelsState) -> Event | None:
        event = super().parse_line(line, state)
        if event is None:
            return None
        if not event.query:
            raise BadRow("empty_query: the query id names a blank line of " + QUERY_FILE)
        return SplitEvent(**dataclasses.asdict(event), split=state.split)


def merge_purchase(lines: list[dict]) -> dict:
    """The qrels line events of one (split, user, item) -> one purchase event with all their queries (in
    line order, de-duplicated), timestamped by its first line (see the module docstring)."""
    lines = sorted(lines, key=lambda e: tuple(e.get(LOG_POSITION) or (0, 0)))
    first = lines[0]
    queries = list(dict.fromkeys(e["query"] for e in lines if e.get("query")))
    line_no = (first.get(LOG_POSITION) or (0, 0))[1]
    return {**first, "timestamp": int(first["timestamp"]) + int(line_no), "query": None, "queries": queries}


class PurchasesFromQrels(beam.PTransform):
    """qrels line events -> one purchase event per (split, user, item) carrying all its queries."""

    def expand(self, lines):
        return (
            lines
            | "KeyByPurchase" >> beam.Map(lambda e: ((e.get("split"), e["user_id"], e["item_id"]), e))
            | "GroupPurchase" >> beam.GroupByKey()
            | "OnePurchase" >> beam.Map(lambda kv: merge_purchase(list(kv[1])))
        )


def capped_words(text: str) -> list[str]:
    """Normalised words of ``text`` (:func:`tfpps.spec.text.normalize_words`), the first
    :data:`MAX_ITEM_TEXT_WORDS` kept."""
    from tfpps.spec.text import normalize_words

    return normalize_words(text)[:MAX_ITEM_TEXT_WORDS]


class TrainingQueryText(beam.PTransform):
    """Purchase events -> ``(item, words)``: the words of the queries the item was bought with in the
    TRAINING qrels (events of split ``train``; queries in sorted order, so every runner gives the same
    words). Test queries never reach an item's text, nor do the validation-only queries ``valid_queries``
    (a side input of a set; ``--valid_query_fraction``) when given."""

    def __init__(self, valid_queries=None):
        super().__init__()
        self.valid_queries = valid_queries

    def expand(self, events):
        from beam_jobs.examples import event_queries

        def pairs(e, held_out=None):
            return [(e["item_id"], q) for q in event_queries(e) if not held_out or q not in held_out]

        side = {} if self.valid_queries is None else {"held_out": self.valid_queries}
        return (
            events
            | "TrainingPurchases" >> beam.Filter(lambda e: e.get("split") == "train")
            | "ItemTrainingQueries" >> beam.FlatMap(pairs, **side)
            | "DistinctItemQueries" >> beam.Distinct()
            | "QueriesByItem" >> beam.GroupByKey()
            | "QueryWords" >> beam.Map(lambda kv: (kv[0], capped_words(" ".join(sorted(kv[1])))))
        )


def parse_review_id(line: str) -> int:
    """``line_<n>`` -> ``n``; BadRow otherwise."""
    name, sep, number = line.strip().partition("_")
    if name != "line" or not sep or not number.isdigit():
        raise BadRow(f"bad_review_id: {short_repr(line.strip())} (expected line_<review line number>)")
    return int(number)


def review_text(obj: Any) -> tuple[str, str]:
    """``(asin, reviewText + summary)`` of one review JSON object; BadRow when it has no item."""
    if not isinstance(obj, dict) or not str(obj.get("asin") or "").strip():
        raise BadRow("bad_review: no asin")
    parts = [obj.get("reviewText"), obj.get("summary")]
    return str(obj["asin"]).strip(), " ".join(p for p in parts if isinstance(p, str))


class ReadTrainingReviewsFn(beam.DoFn):
    """review dump path -> ``(asin, (line, text))`` for the TRAINING reviews only: the lines (from 0)
    that ``train_review_id.txt.gz`` lists. Other lines (test reviews) are never parsed. Bad id lines and
    bad training review lines go to the ``dead_letter`` output; counts to ``row_counts``."""

    def __init__(self, review_ids_path: str):
        self.review_ids_path = review_ids_path

    def process(self, path: str):
        from beam_jobs.reading import COUNTS, DEAD, TextInput, dead_letter

        wanted: set[int] = set()
        with TextInput(self.review_ids_path) as ids:
            for line_no, raw in ids.lines():
                try:
                    text = ids.decode(raw).strip()
                    if text:
                        wanted.add(parse_review_id(text))
                except BadRow as exc:
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter(self.review_ids_path, line_no, exc.reason, raw))
        counts = {"train_review_ids": len(wanted), "review_rows_read": 0, "train_reviews_used": 0,
                  "reviews_not_training": 0}
        with TextInput(path) as src:
            for line_no, raw in src.lines():
                counts["review_rows_read"] += 1
                if line_no - 1 not in wanted:  # a test review: never read
                    counts["reviews_not_training"] += 1
                    continue
                wanted.discard(line_no - 1)
                try:
                    try:
                        obj = json.loads(src.decode(raw))
                    except json.JSONDecodeError as exc:
                        raise BadRow(f"bad_review: json_error: {exc.msg}") from None
                    asin, text = review_text(obj)
                except BadRow as exc:
                    yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, line_no, exc.reason, raw))
                    continue
                counts["train_reviews_used"] += 1
                yield asin, (line_no - 1, text)
        counts["train_review_ids_past_end"] = len(wanted)  # ids of lines the dump does not have
        for name, value in counts.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (name, value))


class TrainingReviewText(beam.PTransform):
    """Pipeline root -> ``(item, words)`` from the item's training reviews in dump order, plus the dead
    letters and counts of the read (``.dead``, ``.counts`` after expansion)."""

    def __init__(self, reviews_path: str, review_ids_path: str):
        super().__init__()
        self.reviews_path, self.review_ids_path = reviews_path, review_ids_path
        self.dead = self.counts = None

    def expand(self, root):
        from beam_jobs.reading import COUNTS, DEAD

        read = (
            root
            | "ReviewFile" >> beam.Create([self.reviews_path])
            | "ReadTrainingReviews" >> beam.ParDo(ReadTrainingReviewsFn(self.review_ids_path)).with_outputs(
                DEAD, COUNTS, main="reviews")
        )
        self.dead, self.counts = read[DEAD], read[COUNTS]
        return (
            read.reviews
            | "ReviewsByItem" >> beam.GroupByKey()
            | "ReviewWords" >> beam.Map(lambda kv: (kv[0], capped_words(" ".join(t for _, t in sorted(kv[1])))))
        )

