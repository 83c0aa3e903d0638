"""Amazon reviews (JSON lines, 2014 / 2018 formats) and their ``meta_*.json`` item metadata."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from beam_jobs.events import BadRow, EpochSeconds, Event, ItemMeta, short_repr, validate_event
from beam_jobs.sources.base import (
    MAX_LINE_CHARS, SourceAdapter, TextState, check_first_json, decode_line, first_line_text,
    load_json_object, lookup, normed_keys,
)


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
    obj = load_json_object(line, allow_literal=True)
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
        text = first_line_text(path, first_line)
        check_first_json(path, text, {"user_id": _AMZ_USER, "item_id": _AMZ_ITEM},
                          allow_literal=True)
        return TextState(path, "amazon-reviews")

    def _parse(self, line: str, state: TextState) -> Event:
        obj = load_json_object(line, allow_literal=True)
        ts: Any = lookup(normed_keys(obj), _AMZ_TIME)
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
