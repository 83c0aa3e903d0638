"""DIGINETICA item views (CIKM Cup 2016, ``train-item-views.csv``)."""

from __future__ import annotations

import re

from beam_jobs.events import BadRow, Event, ExactSeconds, parse_timestamp, short_repr
from beam_jobs.sources.base import SourceAdapter, TextState, to_int


_DG_SPEC = {
    "session_id": ("sessionId",),
    "user_id": ("userId",),
    "item_id": ("itemId",),
    "timeframe": ("timeframe",),
    "eventdate": ("eventdate",),
}
_DG_ANON = {"", "na", "nan", "null", "none"}
ANON_USER_PREFIX = "session:"
"""Diginetica rows without a userId get ``user_id = ANON_USER_PREFIX + sessionId``."""


class DigineticaSource(SourceAdapter):
    """DIGINETICA ``train-item-views.csv`` (``;``, header). Example::

        sessionId;userId;itemId;timeframe;eventdate
        1;NA;81766;526309;2016-05-09

    Per the CIKM Cup 2016 data description, ``timeframe`` is the time in
    milliseconds since the start of the session and ``eventdate`` the calendar
    date, so ``timestamp = epoch(eventdate 00:00 UTC) + timeframe / 1000``, to
    the millisecond (an :class:`~beam_jobs.events.ExactSeconds` float, not
    truncated): clicks are ordered by ``timeframe`` within a session (ties in
    file order), as SR-GNN's preprocessing sorts them, and two clicks of an item
    a few milliseconds apart are not exact duplicates (``--dedup=exact`` used to
    merge clicks within one second). The absolute time of day is not real.
    The ``session_id;user_id;item_id`` header of SR-GNN's sample file is read
    too (names are compared without ``_`` and case). Anonymous rows (userId
    ``NA`` / empty) get ``user_id = "session:<sessionId>"`` -- prefixed because
    userId and sessionId are both small integers and would otherwise collide.
    ``session_id`` is always set; ``event_type="view"``.
    """

    name = "diginetica"
    description = "DIGINETICA train-item-views.csv"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        return self._header_state(
            path, first_line, _DG_SPEC, ("session_id", "item_id", "timeframe", "eventdate"),
            layout="item-views", delimiters=";,\t",
        )

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        session = (self._get(fields, state, "session_id") or "").strip()
        if not session:
            raise BadRow("empty_session_id")
        user = self._get(fields, state, "user_id")
        if user is None or user.strip().lower() in _DG_ANON:
            user = ANON_USER_PREFIX + session
        frame = to_int(fields[state.columns["timeframe"]], "bad_timeframe")
        date_text = (self._get(fields, state, "eventdate") or "").strip()
        if not date_text:
            raise BadRow("missing_timestamp")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date_text):
            raise BadRow(f"bad_timestamp: {short_repr(date_text)}")
        day = parse_timestamp(date_text)
        return Event(
            user_id=user,
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=ExactSeconds.from_millis(day * 1000 + frame),  # type: ignore[arg-type]
            session_id=session,
            event_type="view",
        )
