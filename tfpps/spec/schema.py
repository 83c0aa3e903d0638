"""The one feature spec shared by the Beam writer and the tf.data reader.

Every TFRecord that tfpps writes is a ``tf.train.Example`` whose features are
declared here, and every reader parses with the spec built from the same
declaration, so the two can never disagree.

Conventions
-----------
* Ids are vocabulary indices (``int64``). Index ``PAD_ID = 0`` is padding and
  ``OOV_ID = 1`` is out-of-vocabulary; real tokens start at ``FIRST_ID = 2``.
* Timestamps are integer seconds since the epoch (``int64``; a float32 would
  lose whole minutes at today's epoch values).
* Variable-length features are stored unpadded; readers pad. A ragged feature
  (a sequence of baskets) is stored flat plus a ``<name>_lengths`` row-length
  feature and parsed back into a ``tf.RaggedTensor``.

Example kinds
-------------
``sequential``
    one record per user sequence or session: ``user_id``, ``session_id``,
    ``item_ids`` (time ordered), ``timestamps``, ``session_starts`` (1 where a
    new session starts, for session-aware models) and ``target_item``
    (``PAD_ID`` on training records, whose targets are inside the sequence;
    for evaluation records the item to predict after ``item_ids``).
    Multi-target evaluation records (``--split=fo``) leave ``target_item``
    at ``PAD_ID`` and list every held-out item of the user in
    ``target_items``; ``item_ids`` is then the user's whole known history
    (the items to mask at ranking time). ``target_items`` is empty elsewhere.
``basket``
    ``user_id``, ``baskets`` (ragged item ids, one row per basket, time
    ordered), ``basket_timestamps`` and ``target_items`` (the next basket on
    evaluation records, empty on training records).
``search``
    ``user_id``, ``query_id``, ``query_word_ids``, ``item_id`` (the purchased
    item), ``history_item_ids`` (the user's training purchases, time ordered:
    those made before the purchase on training records, all of them on
    evaluation records), ``timestamp`` and ``target_items`` (evaluation
    records, one per (user, query): every item the user bought with that
    query in the split; empty on training records), and aligned with the
    history ``history_query_ids`` (the query each was bought with) and
    ``history_timestamps``.
``item_text``
    ``item_id`` and ``word_ids``: product text for item->word losses.

>>> from tfpps.spec import schema
>>> raw = schema.encode_example("sequential", {"user_id": 3, "item_ids": [5, 7]})
>>> sorted(schema.parse_single(schema.SEQUENTIAL, raw))[:3]
['item_ids', 'session_id', 'session_starts']
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2
PAD_TOKEN = "<PAD>"
OOV_TOKEN = "<OOV>"

SEQUENTIAL = "sequential"
BASKET = "basket"
SEARCH = "search"
ITEM_TEXT = "item_text"

SCALAR = "scalar"
VARLEN = "varlen"
RAGGED = "ragged"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One stored feature: its name, kind of shape, and meaning."""

    name: str
    shape: str  # SCALAR | VARLEN | RAGGED
    doc: str
    dtype: str = "int64"


FEATURES: dict[str, tuple[Feature, ...]] = {
    SEQUENTIAL: (
        Feature("user_id", SCALAR, "user vocabulary index"),
        Feature("session_id", SCALAR, "session number (dense, per dataset); 0 when unknown"),
        Feature("item_ids", VARLEN, "item vocabulary indices, time ordered"),
        Feature("timestamps", VARLEN, "event times, epoch seconds, aligned with item_ids"),
        Feature("session_starts", VARLEN, "1 where a new session starts, aligned with item_ids"),
        Feature("target_item", SCALAR, "item to predict after item_ids; PAD_ID on training records"),
        Feature("target_items", VARLEN, "all held-out items of a multi-target evaluation record (--split=fo); else empty"),
    ),
    BASKET: (
        Feature("user_id", SCALAR, "user vocabulary index"),
        Feature("baskets", RAGGED, "item indices, one row per basket, time ordered"),
        Feature("basket_timestamps", VARLEN, "basket times, epoch seconds"),
        Feature("target_items", VARLEN, "the next basket (evaluation records); empty for training"),
    ),
    SEARCH: (
        Feature("user_id", SCALAR, "user vocabulary index"),
        Feature("query_id", SCALAR, "query vocabulary index"),
        Feature("query_word_ids", VARLEN, "word vocabulary indices of the query"),
        Feature("item_id", SCALAR, "purchased item"),
        Feature("history_item_ids", VARLEN, "the user's earlier purchases, time ordered"),
        Feature("timestamp", SCALAR, "purchase time, epoch seconds"),
        Feature("target_items", VARLEN, "evaluation records: all items bought with this query in the split; else empty"),
        Feature("history_query_ids", VARLEN, "query of each history purchase (aligned with history_item_ids; OOV if none)"),
        Feature("history_timestamps", VARLEN, "time of each history purchase, epoch seconds"),
    ),
    ITEM_TEXT: (
        Feature("item_id", SCALAR, "item vocabulary index"),
        Feature("word_ids", VARLEN, "word vocabulary indices of the item's text"),
    ),
}

KINDS = tuple(FEATURES)

# Where the Beam job puts things inside its output directory; the reader uses the same names.
SPLITS = ("train", "valid", "test")
DATASET_FILE = "dataset.json"
STATS_FILE = "stats.json"
VOCAB_DIR = "vocab"
DEAD_LETTER_DIR = "dead_letter"
ITEM_TEXT_DIR = "item_text"
TFRECORD_SUFFIX = ".tfrecord.gz"
VOCAB_FILES = {"items": "items.tsv", "users": "users.tsv", "words": "words.tsv", "queries": "queries.tsv"}
QUERY_SOURCE_IDS_FILE = "query_source_ids.tsv"
"""Under :data:`VOCAB_DIR`, written by sources whose queries have ids of their own (``--source=hem_qrels``: the
line of ``query_text.txt.gz``): ``<normalised query>\t<source id>`` per line, so TREC files name queries as the
source's qrels do (``<user>_<source id>``) and ``trec_eval`` scores a run against the official qrels file."""
# Version of what the job writes for the same input and flags (in dataset.json as "job_version"); named
# datasets built by an older version are rebuilt on first use. 1: same-timestamp events ordered by item
# id. 2: same-timestamp events in log order, as RecBole and GRU4Rec's preprocessing order them.
JOB_VERSION = 2


def split_file_prefix(split: str) -> str:
    """Shard prefix of one split, relative to the dataset directory."""
    return f"{split}/part"


def split_file_pattern(split: str) -> str:
    """Glob of one split's shards, relative to the dataset directory."""
    return f"{split}/part-*{TFRECORD_SUFFIX}"


def features_of(kind: str) -> tuple[Feature, ...]:
    if kind not in FEATURES:
        raise ValueError(f"unknown example kind {kind!r}; expected one of {', '.join(KINDS)}")
    return FEATURES[kind]


def _lengths_name(name: str) -> str:
    return f"{name}_lengths"


# ----------------------------------------------------------------------------- writing
def encode_example(kind: str, record: Mapping[str, Any]) -> bytes:
    """Serialise ``record`` as a ``tf.train.Example`` of ``kind``.

    Missing scalar features default to 0 and missing sequences to empty; an
    unknown key is an error (it would be silently lost otherwise).
    """
    from tensorflow.core.example import example_pb2, feature_pb2

    spec = features_of(kind)
    known = {f.name for f in spec}
    unknown = set(record) - known
    if unknown:
        raise ValueError(f"{kind} record has unknown feature(s) {sorted(unknown)}; known: {sorted(known)}")
    feats: dict[str, feature_pb2.Feature] = {}
    for f in spec:
        value = record.get(f.name)
        if f.shape == SCALAR:
            values: Iterable[int] = [int(value or 0)]
        elif f.shape == VARLEN:
            values = [int(v) for v in (value or ())]
        else:  # RAGGED: list of lists
            rows = [list(map(int, row)) for row in (value or ())]
            values = [v for row in rows for v in row]
            feats[_lengths_name(f.name)] = feature_pb2.Feature(
                int64_list=feature_pb2.Int64List(value=[len(r) for r in rows])
            )
        feats[f.name] = feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=list(values)))
    return example_pb2.Example(features=feature_pb2.Features(feature=feats)).SerializeToString()


# ----------------------------------------------------------------------------- reading
def parsing_spec(kind: str) -> dict:
    """The ``tf.io.parse_example`` spec for ``kind``."""
    import tensorflow as tf

    spec: dict = {}
    for f in features_of(kind):
        if f.shape == SCALAR:
            spec[f.name] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
        elif f.shape == VARLEN:
            spec[f.name] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)
        else:
            spec[f.name] = tf.io.RaggedFeature(
                tf.int64,
                value_key=f.name,
                partitions=[tf.io.RaggedFeature.RowLengths(_lengths_name(f.name))],
                row_splits_dtype=tf.int64,
            )
    return spec


def parse_batch(kind: str, serialized):
    """Parse a batch of serialized examples: scalars dense, sequences ragged."""
    import tensorflow as tf

    return tf.io.parse_example(serialized, parsing_spec(kind))


def parse_single(kind: str, serialized) -> dict:
    """Parse one serialized example into a dict of numpy values (lists for sequences)."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, parsing_spec(kind))
    out = {}
    for name, value in parsed.items():
        out[name] = value.to_list() if isinstance(value, tf.RaggedTensor) else value.numpy().tolist()
    return out
