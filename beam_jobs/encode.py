"""Records -> TFRecord examples: the vocabularies (index 0 = PAD, 1 = OOV, then by training frequency),
the tokens each record counts towards them, and the encoding with the shared feature spec
(:mod:`tfpps.spec.schema`)."""
from __future__ import annotations

import hashlib

import apache_beam as beam

from beam_jobs import cleaning, examples


def session_hash(key: str) -> int:
    """Stable positive 63-bit id of a session key (0 is reserved for 'unknown')."""
    return (int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1) or 1


def make_vocab(counts: list[tuple[str, int]], keep_zero: bool) -> list[tuple[str, int]]:
    """Sort ``(token, train_count)`` by descending count then token; index 0/1 are PAD/OOV."""
    from tfpps.spec import schema

    rows = [(t, c) for t, c in counts if keep_zero or c > 0]
    rows.sort(key=lambda tc: (-tc[1], tc[0]))
    return [(schema.PAD_TOKEN, 0), (schema.OOV_TOKEN, 0)] + rows


class VocabCombineFn(beam.CombineFn):
    """``(token, training count)`` pairs (one per token, after ``CombinePerKey(sum)``) -> the vocabulary of
    :func:`make_vocab`. The accumulator holds only the kept ``(token, count)`` pairs, i.e. the vocabulary
    itself (zero-count tokens are dropped as they arrive unless ``keep_zero``); nothing else of the
    PCollection reaches the worker that merges it."""

    def __init__(self, keep_zero: bool):
        self.keep_zero = keep_zero

    def create_accumulator(self):
        return []

    def add_input(self, acc, token_count):
        if self.keep_zero or token_count[1] > 0:
            acc.append(tuple(token_count))
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        merged = next(accs, [])
        for acc in accs:
            merged.extend(acc)
        return merged

    def extract_output(self, acc):
        return make_vocab(acc, keep_zero=True)  # already filtered in add_input


def vocab_lines(vocab: list[tuple[str, int]]):
    for i, (token, count) in enumerate(vocab):
        yield f"{i}\t{token}\t{count}"


class EncodeFn(beam.DoFn):
    """(split, record with string tokens) -> (split, serialized tf.train.Example); drops unusable records."""

    def __init__(self, kind: str, drop_unseen_eval_items: bool, min_train_items: int = 2):
        self.kind, self.drop_unseen, self.min_train_items = kind, drop_unseen_eval_items, min_train_items

    def process(self, element, item_vocab, user_vocab, word_vocab, query_vocab):
        from tfpps.spec import schema

        split, rec = element
        yield beam.pvalue.TaggedOutput("counts", (f"{cleaning.CHECK_PREFIX}encode:kept", 1))  # arrived here
        user = user_vocab.get(rec["user_id"], schema.OOV_ID)
        if self.kind == "sequential":
            example = yield from self._sequential(split, rec, item_vocab)
            if example is None:
                return
            example["user_id"] = user
            n = len(example["item_ids"]) + (1 if example["target_item"] else 0) + len(example.get("target_items", ()))
        elif self.kind == "basket":
            baskets = [[item_vocab.get(t, schema.OOV_ID) for t in b] for b in rec["baskets"]]
            example = {
                "user_id": user,
                "baskets": baskets,
                "basket_timestamps": rec["basket_timestamps"],
                "target_items": [item_vocab.get(t, schema.OOV_ID) for t in rec["target_items"]],
                "history_query_ids": [query_vocab.get(q, schema.OOV_ID) for q in rec["history_queries"]],
                "history_timestamps": rec["history_timestamps"],
            }
            n = sum(map(len, baskets)) + len(example["target_items"])
        else:
            example = {
                "user_id": user,
                "query_id": query_vocab.get(rec["query"], schema.OOV_ID),
                "query_word_ids": [word_vocab.get(w, schema.OOV_ID) for w in rec["query_words"]],
                "item_id": item_vocab.get(rec["item_id"], schema.OOV_ID),
                "history_item_ids": [item_vocab.get(t, schema.OOV_ID) for t in rec["history_item_ids"]],
                "timestamp": rec["timestamp"],
                "target_items": [item_vocab.get(t, schema.OOV_ID) for t in rec["target_items"]],
                "history_query_ids": [query_vocab.get(q, schema.OOV_ID) for q in rec["history_queries"]],
                "history_timestamps": rec["history_timestamps"],
            }
            n = max(1, len(example["target_items"]))
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_records", 1))
        yield beam.pvalue.TaggedOutput("counts", (f"{split}_interactions", n))
        yield split, schema.encode_example(self.kind, example)

    def _sequential(self, split, rec, item_vocab):
        from tfpps.spec import schema

        items = [item_vocab.get(t, schema.OOV_ID) for t in rec["item_ids"]]
        times, starts = rec["timestamps"], rec["session_starts"]
        if self.drop_unseen and split != "train":
            keep = [i for i, it in enumerate(items) if it != schema.OOV_ID]
            dropped = len(items) - len(keep)
            given_target = rec["target_item"] is not None  # --split=given (srgnn): prefix -> target as given
            if given_target and item_vocab.get(rec["target_item"], schema.OOV_ID) == schema.OOV_ID:
                dropped += 1  # a target never seen in training cannot be ranked: the record goes
                keep = []
            if dropped:
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_unseen_items_removed", dropped))
            items, times, starts = [items[i] for i in keep], [times[i] for i in keep], [starts[i] for i in keep]
            if starts:
                starts[0] = 1
            if len(items) < (1 if given_target else 2):
                yield beam.pvalue.TaggedOutput("counts", (f"{split}_records_too_short", 1))
                return None
        if split == "train" and len(items) < self.min_train_items:
            yield beam.pvalue.TaggedOutput("counts", ("train_records_too_short", 1))
            return None
        target = item_vocab.get(rec["target_item"], schema.OOV_ID) if rec["target_item"] is not None else schema.PAD_ID
        example = {
            "session_id": session_hash(rec["session_key"]),
            "item_ids": items,
            "timestamps": times,
            "session_starts": starts,
            "target_item": target,
        }
        if "target_items" in rec:  # multi-target evaluation record (--split=fo)
            example["target_items"] = [item_vocab.get(t, schema.OOV_ID) for t in rec["target_items"]]
        return example


def given_item_occurrences(split: str, rec: dict) -> list[tuple[str, int]]:
    """``--split=given``: (item, training count) of the training input's records only: training records count,
    records carved off for validation add their items with count 0; validation / test inputs add nothing."""
    if split == "train":
        return [(t, 1) for t in rec["item_ids"]]
    return [(t, 0) for t in rec["item_ids"]] if rec.get("carved") else []


def item_occurrences(kind: str, split: str, rec: dict) -> list[tuple[str, int]]:
    """(item token, training count increment) for every item a record mentions."""
    train = int(split == "train")
    if kind == "sequential":
        out = [(t, train) for t in rec["item_ids"]] + [(t, 0) for t in rec.get("target_items", ())]
        return out + ([(rec["target_item"], 0)] if rec["target_item"] is not None else [])
    if kind == "basket":
        return [(t, train) for b in rec["baskets"] for t in b] + [(t, 0) for t in rec["target_items"]]
    return [(rec["item_id"], train)] + [(t, 0) for t in rec["history_item_ids"] + rec["target_items"]]


def user_weight(kind: str, split: str, rec: dict) -> int:
    if split != "train":
        return 0
    if kind == "sequential":
        return len(rec["item_ids"])
    if kind == "basket":
        return sum(len(b) for b in rec["baskets"])
    return 1


def encode_item_text(meta: dict, item_vocab: dict, word_vocab: dict):
    """An item metadata record -> its ``item_text`` example (:func:`examples.item_text_words`)."""
    yield from encode_item_words((meta["item_id"], examples.item_text_words(meta)), item_vocab, word_vocab)


def encode_item_words(item_words: tuple[str, list[str]], item_vocab: dict, word_vocab: dict):
    """``(item token, text words)`` -> its ``item_text`` example; nothing for an item not in the vocabulary."""
    from tfpps.spec import schema

    item = item_vocab.get(item_words[0])
    if item is None:
        return
    words = [word_vocab.get(w, schema.OOV_ID) for w in item_words[1]]
    yield schema.encode_example(schema.ITEM_TEXT, {"item_id": item, "word_ids": words})
