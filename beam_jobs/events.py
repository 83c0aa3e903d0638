"""Canonical interaction events, product metadata, and row validation.

Every source adapter (see :mod:`beam_jobs.sources`) turns one raw row into one
:class:`Event` and runs it through :func:`validate_event`, so all datasets obey
the same rules before any feature is built.

Two kinds of failure, two exceptions:

* :class:`BadRow` -- one row is malformed. The Beam job routes the row to a
  dead-letter output with ``err.reason``; the job keeps running.
* :class:`SourceError` -- a whole file is unusable (missing required column,
  unreadable format, wrong Parquet type, empty input). The job stops with the
  exception's one-line message, which names the file and the column.

Reasons are short machine-friendly strings. The part before the first ``':'``
is a stable category that can be used as a counter name, the rest (if any) is a
human-readable detail, e.g. ``bad_timestamp: 'abc'`` or ``empty_user_id``.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as _dt
import decimal
import math
import numbers
import re
import time
from typing import Any, Mapping

__all__ = [
    "BadRow",
    "CANONICAL_COLUMNS",
    "EpochSeconds",
    "Event",
    "ExactSeconds",
    "ItemMeta",
    "MAX_EVENT_TYPE_CHARS",
    "MAX_ID_CHARS",
    "MAX_QUERY_CHARS",
    "MAX_TEXT_CHARS",
    "REQUIRED_COLUMNS",
    "SourceError",
    "FUTURE_SLACK_SECONDS",
    "parse_timestamp",
    "short_repr",
    "validate_event",
]

# --------------------------------------------------------------------------- #
# Limits
# --------------------------------------------------------------------------- #
MAX_ID_CHARS = 256
"""user_id / item_id / session_id / basket_id longer than this -> BadRow."""
MAX_QUERY_CHARS = 10_000
"""Search query text longer than this -> ``query_too_long``."""
MAX_TEXT_CHARS = 100_000
"""Review / product text longer than this -> ``text_too_long``."""
MAX_EVENT_TYPE_CHARS = 64
"""event_type longer than this -> ``event_type_too_long``."""
FUTURE_SLACK_SECONDS = 86_400
"""Timestamps later than ``now + FUTURE_SLACK_SECONDS`` are rejected."""

CANONICAL_COLUMNS: tuple[str, ...] = (
    "user_id",
    "item_id",
    "timestamp",
    "session_id",
    "query",
    "basket_id",
    "event_type",
    "rating",
    "text",
)
"""Field names of :class:`Event`, in order (``text`` is the review/product text)."""
REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp")


# --------------------------------------------------------------------------- #
# Exceptions
# --------------------------------------------------------------------------- #
class BadRow(ValueError):
    """A single malformed row; ``reason`` goes to the dead-letter output."""

    def __init__(self, reason: str) -> None:
        reason = _one_line(reason)
        super().__init__(reason)
        self.reason: str = reason

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # picklable across Beam workers
        return (BadRow, (self.reason,))


class SourceError(ValueError):
    """A whole input file is unusable; the message is one line naming file and column."""

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (SourceError, (str(self),))


def _one_line(text: object) -> str:
    """Collapse line breaks so messages and reasons stay on one line."""
    s = str(text)
    return " ".join(s.split()) if ("\n" in s or "\r" in s) else s


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (for reasons and messages)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


# Key of an event dict's place in the log: (input file index in sorted order, line or row number). The
# reader adds it; it breaks timestamp ties in log order (as the stable sorts of RecBole and GRU4Rec's
# preprocessing do) and decides which of several exact duplicates is kept (the earliest).
LOG_POSITION = "log_position"


def log_position(event: Mapping[str, Any]) -> tuple[int, int]:
    """The event's place in the log; ``(0, 0)`` for events built by hand (no reader)."""
    return tuple(event.get(LOG_POSITION) or (0, 0))


# --------------------------------------------------------------------------- #
# Data classes
# --------------------------------------------------------------------------- #
@dataclasses.dataclass
class Event:
    """One user-item interaction in canonical form.

    ``timestamp`` is integer epoch seconds (fractional seconds truncated), except where the adapter
    computed an exact fraction itself (:class:`ExactSeconds`: DIGINETICA's millisecond ``timeframe``):
    that float is kept, so ordering and exact de-duplication see the milliseconds. Written examples
    hold whole seconds either way.
    Adapters may construct an Event with a raw timestamp (str / float / ISO-8601
    / datetime) and raw ids (int); :func:`validate_event` normalises them.
    """

    user_id: str
    item_id: str
    timestamp: int
    session_id: str | None = None
    query: str | None = None  # raw query text (search data)
    basket_id: str | None = None
    event_type: str | None = None
    rating: float | None = None
    text: str | None = None  # review / product text (e.g. Amazon reviewText)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with every field of :data:`CANONICAL_COLUMNS`."""
        return {name: getattr(self, name) for name in CANONICAL_COLUMNS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Event":
        """Inverse of :meth:`to_dict`. Unknown keys raise ``ValueError``;
        missing optional keys default to ``None``; required ones raise ``KeyError``."""
        unknown = set(data) - set(CANONICAL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown Event fields: {sorted(unknown)}")
        for name in REQUIRED_COLUMNS:
            if name not in data:
                raise KeyError(name)
        return cls(**{k: data[k] for k in CANONICAL_COLUMNS if k in data})


@dataclasses.dataclass
class ItemMeta:
    """Product / item metadata.

    ``categories`` is a list of category *paths* (each root-to-leaf, a list of
    strings); MovieLens genres become one single-element path per genre.
    """

    item_id: str
    title: str | None = None
    categories: list[list[str]] = dataclasses.field(default_factory=list)
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "categories": [list(p) for p in self.categories],
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ItemMeta":
        return cls(
            item_id=data["item_id"],
            title=data.get("title"),
            categories=[list(p) for p in data.get("categories") or []],
            description=data.get("description"),
        )


# --------------------------------------------------------------------------- #
# Timestamps
# --------------------------------------------------------------------------- #
_NUMERIC_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)


class EpochSeconds(int):
    """An int an adapter computed in epoch seconds itself (Ta-Feng order * 86400, DIGINETICA
    date + timeframe, Amazon ``reviewTime``): :func:`parse_timestamp` returns it as it is,
    without the by-magnitude ms / us / ns rescaling meant for raw numbers, so an absurd
    value stays a ``future_timestamp`` instead of being read as milliseconds."""


class ExactSeconds(float):
    """Epoch seconds with a fraction an adapter computed exactly (DIGINETICA: ``eventdate`` +
    ``timeframe`` milliseconds): :func:`parse_timestamp` returns it as a float, neither rescaled by
    magnitude nor truncated, so that two clicks a millisecond apart keep their order and are not
    exact duplicates. Build it with :meth:`from_millis` (one correctly rounded division: distinct
    milliseconds stay distinct and ordered)."""

    @classmethod
    def from_millis(cls, millis: int) -> "ExactSeconds":
        return cls(millis / 1000)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _scale_epoch(value: int | float) -> int:
    """Epoch seconds from a non-negative number in s / ms / us / ns (by magnitude).

    > 1e11 is taken as milliseconds (1e11 s is the year 5138), > 1e14 as
    microseconds, > 1e17 as nanoseconds. Fractions are truncated.
    """
    if isinstance(value, int):
        if value > 10**17:
            return value // 10**9
        if value > 10**14:
            return value // 10**6
        if value > 10**11:
            return value // 1000
        return value
    if value > 1e17:
        value /= 1e9
    elif value > 1e14:
        value /= 1e6
    elif value > 1e11:
        value /= 1e3
    return int(value)


def _iso_to_epoch(text: str) -> int | None:
    m = _ISO_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss, _frac, tz = m.groups()
    try:
        # datetime validates the ranges (month 13, Feb 30, hour 25 ...).
        dt = _dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError:
        return None
    offset = 0
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            return None
        offset = sign * (hours * 3600 + minutes * 60)
    return calendar.timegm(dt.timetuple()) - offset


def parse_timestamp(value: Any) -> int | float:
    """Convert a raw timestamp to integer epoch seconds, or raise :class:`BadRow`
    (an :class:`ExactSeconds` comes back as a float, its fraction kept).

    Accepts ints, floats, numeric strings (seconds, or ms / us / ns by magnitude,
    see :func:`_scale_epoch`), ISO-8601 strings (``2014-04-07T10:51:09.277Z``,
    ``2016-05-09``, ``2016-05-09 12:00:00+02:00``; no zone means UTC),
    ``datetime`` (naive means UTC) and ``date`` objects. Range checks (negative,
    future) are done by :func:`validate_event`, not here; negative values are
    returned unscaled so that the check can report them.
    """
    if value is None:
        raise BadRow("missing_timestamp")
    if isinstance(value, bool):
        raise BadRow(f"bad_timestamp: {short_repr(value)}")
    if isinstance(value, _dt.datetime):
        if value != value:  # pandas NaT (a Parquet timestamp[ns] holding INT64_MIN)
            raise BadRow("missing_timestamp: NaT")
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        # exact floor; float(value.timestamp()) rounded e.g. 1700000000.999999999 up to ...001
        return (value - _EPOCH) // _dt.timedelta(seconds=1)
    if isinstance(value, _dt.date):
        return calendar.timegm(value.timetuple())
    if isinstance(value, EpochSeconds):
        return int(value)
    if isinstance(value, ExactSeconds):
        return float(value)
    if isinstance(value, numbers.Integral):
        v = int(value)
        return v if v < 0 else _scale_epoch(v)
    if isinstance(value, decimal.Decimal):  # Parquet decimal columns
        value = float(value) if value.is_finite() else math.nan
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise BadRow(f"bad_timestamp: {short_repr(f)}")
        return math.floor(f) if f < 0 else _scale_epoch(f)  # floor: -0.5 is negative, not 0
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRow(f"bad_timestamp: {short_repr(value)}") from None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise BadRow("missing_timestamp")
        if _NUMERIC_RE.match(text):
            if text.lstrip("+-").isdigit():
                try:
                    number = int(text)
                except ValueError:  # more digits than int() accepts (sys.int_info)
                    raise BadRow(f"bad_timestamp: {short_repr(value)}") from None
                return parse_timestamp(number)
            return parse_timestamp(float(text))  # may be inf for '1e999' -> bad_timestamp
        epoch = _iso_to_epoch(text)
        if epoch is None:
            raise BadRow(f"bad_timestamp: {short_repr(value)}")
        return epoch
    raise BadRow(f"bad_timestamp: {short_repr(value)}")


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")  # lone surrogates (JSON "\\ud800"): not encodable as UTF-8


def _no_surrogate(text: str, field: str) -> str:
    bad = _SURROGATE_RE.search(text)
    if bad:
        raise BadRow(f"bad_{field}: lone surrogate {bad.group()!r}")
    return text


def _norm_id(value: Any, field: str, required: bool) -> str | None:
    """Normalise an id to a stripped ``str`` (ints accepted) or raise BadRow."""
    if value is None:
        if required:
            raise BadRow(f"missing_{field}")
        return None
    if isinstance(value, bool):
        raise BadRow(f"bad_{field}: {short_repr(value)}")
    if isinstance(value, numbers.Integral):
        value = str(int(value))
    elif isinstance(value, numbers.Real):
        f = float(value)
        if not (math.isfinite(f) and f == int(f)):
            raise BadRow(f"bad_{field}: {short_repr(value)}")
        value = str(int(f))
    elif not isinstance(value, str):
        raise BadRow(f"bad_{field}: type {type(value).__name__}")
    text = value.strip()
    if not text:
        if required:
            raise BadRow(f"empty_{field}")
        return None
    if len(text) > MAX_ID_CHARS:
        raise BadRow(f"{field}_too_long: {len(text)} chars")
    bad = _CONTROL_RE.search(text)
    if bad:
        raise BadRow(f"{field}_control_char: {bad.group()!r}")
    return _no_surrogate(text, field)


def _norm_text(value: Any, field: str, limit: int) -> str | None:
    """Optional free text: scalars become ``str``; blank -> None; too long -> BadRow."""
    if value is None:
        return None
    if isinstance(value, (list, dict, tuple, set, bytes)):
        raise BadRow(f"bad_{field}: type {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        return None
    if len(text) > limit:
        raise BadRow(f"{field}_too_long: {len(text)} chars")
    return _no_surrogate(text, field)


def _norm_rating(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        if not _NUMERIC_RE.match(value.strip()):
            raise BadRow(f"bad_rating: {short_repr(value)}")
        value = float(value)
    if isinstance(value, decimal.Decimal):  # Parquet decimal columns
        value = float(value) if value.is_finite() else math.nan
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadRow(f"bad_rating: {short_repr(value)}")
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float, e.g. a 400-digit JSON number
        raise BadRow(f"bad_rating: {short_repr(value)}") from None
    if not math.isfinite(f):
        raise BadRow(f"bad_rating: {short_repr(f)}")
    return f


def validate_event(ev: Event, *, now: float | None = None) -> Event:
    """Check and normalise one event; return a new :class:`Event` or raise :class:`BadRow`.

    Rules (reason in brackets):

    * user_id / item_id: present [``missing_user_id``], not blank
      [``empty_user_id``], str or int [``bad_user_id: ...``], at most
      :data:`MAX_ID_CHARS` [``user_id_too_long: N chars``], no tab / newline /
      other ASCII control character [``user_id_control_char: '\\t'``], no lone
      surrogate [``bad_user_id: lone surrogate '\\ud800'``; also for query / text /
      event_type]; ids are whitespace-stripped. session_id / basket_id: same, but
      blank -> None.
    * timestamp: present [``missing_timestamp``], parseable, finite
      [``bad_timestamp: 'abc'``], >= 0 [``negative_timestamp: -5``], not later
      than ``now + 1 day`` [``future_timestamp: N``]; see :func:`parse_timestamp`.
    * rating: numeric and finite [``bad_rating: 'x'``]; blank -> None.
    * query at most :data:`MAX_QUERY_CHARS` [``query_too_long: N chars``], text at
      most :data:`MAX_TEXT_CHARS` [``text_too_long``], event_type at most
      :data:`MAX_EVENT_TYPE_CHARS` [``event_type_too_long``]; blank -> None.
    """
    user_id = _norm_id(ev.user_id, "user_id", required=True)
    item_id = _norm_id(ev.item_id, "item_id", required=True)
    ts = parse_timestamp(ev.timestamp)
    if ts < 0:
        raise BadRow(f"negative_timestamp: {ts}")
    limit = (time.time() if now is None else now) + FUTURE_SLACK_SECONDS
    if ts > limit:
        raise BadRow(f"future_timestamp: {ts}")
    return Event(
        user_id=user_id,  # type: ignore[arg-type]
        item_id=item_id,  # type: ignore[arg-type]
        timestamp=ts,
        session_id=_norm_id(ev.session_id, "session_id", required=False),
        query=_norm_text(ev.query, "query", MAX_QUERY_CHARS),
        basket_id=_norm_id(ev.basket_id, "basket_id", required=False),
        event_type=_norm_text(ev.event_type, "event_type", MAX_EVENT_TYPE_CHARS),
        rating=_norm_rating(ev.rating),
        text=_norm_text(ev.text, "text", MAX_TEXT_CHARS),
    )
