"""MovieLens ratings (``ratings.dat``, ``u.data``, RecBole ``.inter``, ``ratings.csv``) and item metadata."""

from __future__ import annotations

import csv
import os
from typing import Any, Iterable

from beam_jobs.events import BadRow, Event, ItemMeta, SourceError, short_repr, validate_event
from beam_jobs.sources.base import (
    CANONICAL_ALIASES, REQUIRED_FIELDS, SourceAdapter, TextState, decode_line, first_line_text, norm_name,
    resolve_columns,
)


_ML_GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_ML_INTER_SPEC = {k: CANONICAL_ALIASES[k] for k in ("user_id", "item_id", "rating", "timestamp")}


def parse_movielens_item_line(line: str) -> ItemMeta | None:
    """Parse one MovieLens item line -> ItemMeta (genres as one-element category paths).

    Layouts detected per line:

    * ML-100K ``u.item`` (``|``, latin-1; 5 fields + 19 genre flags)::

        1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0
    * ML-1M/10M ``movies.dat``: ``1::Toy Story (1995)::Animation|Children's|Comedy``
    * ML-20M ``movies.csv`` (header ``movieId,title,genres``):
      ``1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy``
    * RecBole ``.item`` (tab; columns ``item_id:token movie_title:token_seq
      release_year:token class:token_seq`` in that order, genres space-separated):
      ``1<TAB>Toy Story<TAB>1995<TAB>Animation Children's Comedy``

    Returns None for a header or blank line; raises BadRow otherwise.
    """
    line = decode_line(line)
    if not line.strip():
        return None
    if "::" in line:
        parts = line.split("::")
        if len(parts) != 3:
            raise BadRow(f"wrong_column_count: expected 3, got {len(parts)}")
        genres = [] if parts[2].strip() in ("", "(no genres listed)") else parts[2].split("|")
        return _item_meta(parts[0], parts[1], genres)
    bars = line.split("|")
    if len(bars) == 5 + len(_ML_GENRES_100K):
        flags = bars[5:]
        if any(f.strip() not in ("0", "1") for f in flags):
            raise BadRow("bad_genre_flags")
        genres = [g for g, f in zip(_ML_GENRES_100K, flags) if f.strip() == "1"]
        return _item_meta(bars[0], bars[1], genres)
    if "\t" in line:
        parts = line.split("\t")
        if ":" in parts[0] and norm_name(parts[0]) in ("itemid", "movieid"):
            return None  # RecBole header
        if len(parts) < 2:
            raise BadRow(f"wrong_column_count: expected 4, got {len(parts)}")
        genres = parts[3].split() if len(parts) > 3 else []
        return _item_meta(parts[0], parts[1], genres)
    if norm_name(line.split(",", 1)[0]) == "movieid":
        return None  # movies.csv header
    try:
        parts = next(csv.reader([line], strict=True))
    except csv.Error as err:
        raise BadRow(f"csv_error: {err}") from None
    if len(parts) != 3:
        raise BadRow(f"unrecognized_item_line: {short_repr(line)}")
    genres = [] if parts[2].strip() in ("", "(no genres listed)") else parts[2].split("|")
    return _item_meta(parts[0], parts[1], genres)


def _item_meta(item_id: Any, title: Any, genres: Iterable[str]) -> ItemMeta:
    """Build ItemMeta with the same id rules as events (BadRow on a bad id)."""
    probe = validate_event(Event(user_id="-", item_id=item_id, timestamp=0))
    title_s = str(title).strip() if title is not None else ""
    return ItemMeta(
        item_id=probe.item_id,
        title=title_s or None,
        categories=[[g.strip()] for g in genres if g.strip()],
        description=None,
    )


class MovieLensSource(SourceAdapter):
    """MovieLens ratings; layout auto-detected from the first line (and file name).

    * ML-1M / ML-10M ``ratings.dat`` (no header): ``1::1193::5::978300760``
    * ML-100K ``u.data`` (tab, no header): ``196	242	3	881250949``
    * RecBole ``.inter`` (tab, header ``user_id:token	item_id:token	rating:float	timestamp:float``;
      columns found by the part before ``:``): ``196	242	3	881250949``
    * ML-20M/25M ``ratings.csv`` (header ``userId,movieId,rating,timestamp``): ``1,2,3.5,1112486027``

    Example (``ratings.dat``)::

        1::1193::5::978300760   ->  Event("1", "1193", 978300760, rating=5.0, event_type="rating")

    Events get ``rating`` and ``event_type="rating"``. Item metadata:
    :func:`parse_movielens_item_line` (``metadata_parser``; utf-8, falling back to latin-1).
    """

    name = "movielens"
    description = "MovieLens ratings.dat / u.data / RecBole .inter / ratings.csv"
    metadata_parser = staticmethod(parse_movielens_item_line)
    metadata_encodings = ("utf-8", "latin-1")

    _FIXED = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}

    def open_state(self, path: str, first_line: str | bytes | None) -> TextState:
        text = first_line_text(path, first_line)
        base = os.path.basename(path).lower()
        if "::" in text:
            n = len(text.split("::"))
            if n != 4:
                raise SourceError(
                    f"{path}: ratings.dat layout needs 4 fields user::item::rating::timestamp, got {n}"
                )
            return TextState(path, "ratings.dat", "::", self._FIXED, 4)
        if "\t" in text:
            parts = text.split("\t")
            if any(":" in p for p in parts) or not parts[0].strip().isdigit():
                cols = resolve_columns(path, parts, _ML_INTER_SPEC, REQUIRED_FIELDS)
                return TextState(path, "recbole", "\t", cols, len(parts), text)
            if base.endswith(".inter"):
                raise SourceError(f"{path}: RecBole .inter file without a 'field:type' header")
            if len(parts) != 4:
                raise SourceError(
                    f"{path}: u.data layout needs 4 tab-separated fields user item rating timestamp, "
                    f"got {len(parts)}"
                )
            return TextState(path, "u.data", "\t", self._FIXED, 4)
        if "," in text and not text.split(",", 1)[0].strip().isdigit():
            names = text.split(",")
            cols = resolve_columns(path, names, _ML_INTER_SPEC, REQUIRED_FIELDS)
            return TextState(path, "ratings.csv", ",", cols, len(names), text)
        raise SourceError(
            f"{path}: unrecognized MovieLens layout (expected ratings.dat 'u::i::r::t', u.data "
            f"'u<TAB>i<TAB>r<TAB>t', RecBole .inter header or ratings.csv header); first line "
            f"{short_repr(text)}"
        )

    def _parse(self, line: str, state: TextState) -> Event:
        fields = self._split(line, state)
        return Event(
            user_id=self._get(fields, state, "user_id"),  # type: ignore[arg-type]
            item_id=self._get(fields, state, "item_id"),  # type: ignore[arg-type]
            timestamp=self._get(fields, state, "timestamp"),  # type: ignore[arg-type]
            rating=self._get(fields, state, "rating"),  # type: ignore[arg-type]
            event_type="rating",
        )
