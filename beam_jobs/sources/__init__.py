"""Source adapters: raw interaction logs -> canonical :class:`~beam_jobs.events.Event`; the registry.

Every adapter is listed here, in :data:`SOURCES` or :data:`LAZY_SOURCES`; the shared base class and
helpers are in :mod:`beam_jobs.sources.base`, each adapter in a module of its own:

=============  ===================================================================  =========================
name           input                                                                module
=============  ===================================================================  =========================
csv            canonical CSV / TSV with a header                                    :mod:`.generic`
jsonl          canonical JSON lines                                                 :mod:`.generic`
parquet        canonical Parquet                                                    :mod:`.generic`
movielens      ratings.dat / u.data / RecBole .inter / ratings.csv                  :mod:`.movielens`
yoochoose      YOOCHOOSE raw clicks / buys or GRU4Rec's prepared files              :mod:`.yoochoose`
diginetica     DIGINETICA train-item-views.csv                                      :mod:`.diginetica`
amazon         Amazon review JSON lines + meta_*.json                               :mod:`.amazon`
tafeng         Ta-Feng baskets (Sets2Sets)                                          :mod:`.tafeng`
srgnn          SR-GNN / NARM pickles (restricted unpickler)                         :mod:`.srgnn`
hem_qrels      the HEM product-search benchmark's qrels (Beam transforms too)       :mod:`.hem_qrels`
=============  ===================================================================  =========================

Plain Python (no Beam) except ``hem_qrels``, which is imported on first use (:func:`known_sources`).
"""

from __future__ import annotations

import importlib

from beam_jobs.events import SourceError
from beam_jobs.sources.amazon import AmazonSource
from beam_jobs.sources.base import SourceAdapter
from beam_jobs.sources.diginetica import DigineticaSource
from beam_jobs.sources.generic import CsvSource, JsonlSource, ParquetSource
from beam_jobs.sources.movielens import MovieLensSource
from beam_jobs.sources.srgnn import SrgnnSource
from beam_jobs.sources.tafeng import TafengSource
from beam_jobs.sources.yoochoose import YoochooseSource

SOURCES: dict[str, SourceAdapter] = {
    a.name: a
    for a in (
        CsvSource(),
        JsonlSource(),
        ParquetSource(),
        MovieLensSource(),
        YoochooseSource(),
        DigineticaSource(),
        AmazonSource(),
        TafengSource(),
        SrgnnSource(),
    )
}
"""The registered adapters by name (those of :data:`LAZY_SOURCES` join on first use)."""

LAZY_SOURCES: dict[str, tuple[str, str]] = {
    "hem_qrels": ("beam_jobs.sources.hem_qrels", "HemQrelsSource"),
}
"""Adapters whose module imports Apache Beam (and :mod:`beam_jobs.reading`): name -> (module, class),
imported by :func:`known_sources` on first use, as the model registry imports model files."""


def known_sources() -> dict[str, SourceAdapter]:
    """Every registered source adapter by name (:data:`SOURCES`, after adding :data:`LAZY_SOURCES`)."""
    for name, (module, cls) in LAZY_SOURCES.items():
        if name not in SOURCES:
            SOURCES[name] = getattr(importlib.import_module(module), cls)()
    return SOURCES


def get_source(name: str) -> SourceAdapter:
    """The adapter registered as ``name``; SourceError listing the known names."""
    try:
        return known_sources()[name]
    except KeyError:
        raise SourceError(
            f"unknown source {name!r}; known sources: {', '.join(sorted(SOURCES))}"
        ) from None
