"""YOOCHOOSE clicks / buys (RecSys Challenge 2015), raw or in GRU4Rec's prepared layout."""

from __future__ import annotations

from beam_jobs.events import Event, SourceError, short_repr
from beam_jobs.sources.base import SourceAdapter, TextState, first_line_text, sniff_delimiter


_YC_SPEC = {
    "session_id": ("SessionId", "session_id", "session"),
    "item_id": ("ItemId", "item_id", "item"),
    "timestamp": ("Time", "timestamp", "ts"),
}


class YoochooseSource(SourceAdapter):
    """YOOCHOOSE clicks. There are no users: ``user_id = session_id`` (and session_id set).

    * raw RecSys'15 ``yoochoose-clicks.dat`` (no header; category ignored)::

        1,2014-04-07T10:51:09.277Z,214536502,0

      raw ``yoochoose-buys.dat`` (``session,ts,item,price,quantity``) -> event_type "buy".
    * GRU4Rec's prepared format (tab, header ``SessionId	ItemId	Time``, Time in epoch s)::

        1	214536502	1396860669.277

    Clicks get ``event_type="click"``; fractional seconds are truncated.
    """

    name = "yoochoose"
    description = "YOOCHOOSE raw clicks/buys or GRU4Rec prepared SessionId/ItemId/Time"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        text = first_line_text(path, first_line)
        delim = sniff_delimiter(text, ",\t")
        first = text.split(delim)[0].strip()
        if first.isdigit():  # raw, no header
            n = len(text.split(","))
            if delim != "," or n not in (4, 5):
                raise SourceError(
                    f"{path}: unrecognized YOOCHOOSE layout: expected raw clicks "
                    f"'session,ISO-time,item,category' (no header), raw buys (5 fields) or a header "
                    f"'SessionId<TAB>ItemId<TAB>Time'; first line {short_repr(text)}"
                )
            layout = "raw_clicks" if n == 4 else "raw_buys"
            return TextState(path, layout, ",", {"session_id": 0, "timestamp": 1, "item_id": 2}, n)
        return self._header_state(path, text, _YC_SPEC, tuple(_YC_SPEC), layout="prepared",
                                  delimiters="\t,")

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        session = self._get(fields, state, "session_id")
        return Event(
            user_id=session,  # type: ignore[arg-type]
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=self._get(fields, state, "timestamp"),  # type: ignore[arg-type]
            session_id=session,
            event_type="buy" if state.layout == "raw_buys" else "click",
        )
