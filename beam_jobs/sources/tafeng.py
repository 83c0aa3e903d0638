"""Ta-Feng baskets as Sets2Sets prepares them (no timestamps: the order number gives the time order)."""

from __future__ import annotations

from beam_jobs.events import EpochSeconds, Event
from beam_jobs.sources.base import SourceAdapter, TextState, to_int


_TF_SPEC = {
    "user_id": ("CUSTOMER_ID",),
    "order": ("ORDER_NUMBER",),
    "item_id": ("MATERIAL_NUMBER",),
}
SECONDS_PER_ORDER = 86_400


class TafengSource(SourceAdapter):
    """Ta-Feng baskets as prepared by Sets2Sets (comma, header). Example::

        CUSTOMER_ID,ORDER_NUMBER,MATERIAL_NUMBER
        00046855  ,1,0

    Customer ids are space-padded (stripped). There are no timestamps: the
    order number gives the time order, ``timestamp = ORDER_NUMBER * 86400``,
    ``basket_id = f"{customer}-{order}"``, ``event_type="purchase"``.
    """

    name = "tafeng"
    description = "Ta-Feng baskets (Sets2Sets TaFang_*.csv)"

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        return self._header_state(path, first_line, _TF_SPEC, tuple(_TF_SPEC), layout="sets2sets",
                                  delimiters=",\t;")

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        customer = (self._get(fields, state, "user_id") or "").strip()
        order = to_int(fields[state.columns["order"]], "bad_order_number")
        return Event(
            user_id=customer,
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=EpochSeconds(order * SECONDS_PER_ORDER),
            basket_id=f"{customer}-{order}" if customer else None,
            event_type="purchase",
        )
