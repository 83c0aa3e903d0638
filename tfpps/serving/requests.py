"""Raw requests -> model features, in Python (the exported graph does the same in TensorFlow).

A request is a user id and a history of item ids, oldest first, as raw
strings. Features follow the evaluation contract of
:mod:`tfpps.models.base`: ``item_ids [B, L]`` left-aligned and 0-padded
(``L = max(1, longest history in the batch)``), ``length [B]``,
``user_id [B]`` and a dummy ``target_item [B]``. Empty strings are dropped,
unknown ids become ``OOV_ID`` (:mod:`tfpps.serving.vocab`) and only the most
recent ``max_len`` items are kept, as in evaluation.

Product-search models also take the request's ``query`` text: it is
normalised exactly as the Beam job normalises queries
(:func:`normalize_query`: lower-case, split on non-alphanumerics, Porter-stem,
de-duplicate) and looked up in the word vocabulary (``query_word_ids [B, Q]``,
unknown words -> ``OOV_ID``).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from tfpps.serving.vocab import Vocabulary
from tfpps.spec.text import normalize_words


@dataclasses.dataclass
class Request:
    user: str
    history: list[str]
    query: str = ""


def normalize_query(text: str) -> str:
    """The Beam job's query normalisation, as space-joined words (``"Running Shoes!"`` -> ``"run shoe"``)."""
    return " ".join(normalize_words(text or ""))


@dataclasses.dataclass
class Recommendations:
    """One request's answer: items best first, their scores, and what was not in the vocabularies."""

    items: list[str]
    scores: list[float]
    known_user: bool
    unknown_history: list[str]


def parse_history(text: str) -> list[str]:
    """``"i1, i2,,i3"`` -> ``["i1", "i2", "i3"]`` (comma-separated, blanks dropped)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def encode_requests(requests: Sequence[Request], items: Vocabulary, users: Vocabulary, max_len: int,
                    words: Vocabulary | None = None) -> dict:
    """Model features (numpy) for ``requests``; with ``words`` also ``query_word_ids``. See the module docstring."""
    rows = [[items.index(t) for t in r.history if t][-max_len:] if max_len > 0 else [] for r in requests]
    width = max([1] + [len(r) for r in rows])
    ids = np.zeros((len(rows), width), np.int64)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = row
    features = {
        "item_ids": ids,
        "length": np.array([len(r) for r in rows], np.int64),
        "user_id": np.array([users.index(r.user) for r in requests], np.int64),
        "target_item": np.zeros(len(rows), np.int64),
    }
    if words is not None:
        queries = [[words.index(w) for w in normalize_query(r.query).split()] for r in requests]
        q = np.zeros((len(queries), max([1] + [len(x) for x in queries])), np.int64)
        for b, row in enumerate(queries):
            q[b, : len(row)] = row
        features["query_word_ids"] = q
    return features
