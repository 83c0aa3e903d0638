"""A small sequential dataset with strong signal, written straight in the Beam job's output layout.

Shared by test_distributed.py and test_resume.py. Users follow a Markov chain
(item m_i is followed by m_{i+1} or m_{i+2}, 10% noise), so a sequence model
learns it in one or two epochs and beats popularity by far; records are spread
over ``shards`` gzip TFRecord files (record i in shard i mod shards), so file
sharding across workers can be tested. Writing takes well under a second.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.spec import schema


def leave_one_out_records(seqs: dict, item_id: dict, user_id: dict) -> dict[str, list[bytes]]:
    """Serialized sequential records per split of each user's sequence: train = all but the last two items,
    valid/test = that prefix (plus one item for test) with the next item as target (the Beam job's ``loo``)."""
    splits: dict = {"train": [], "valid": [], "test": []}
    for u, seq in seqs.items():
        ids = [item_id.get(t, schema.OOV_ID) for t in seq]
        base = {"user_id": user_id[u], "session_id": user_id[u]}
        for split, cut in (("train", len(ids) - 2), ("valid", len(ids) - 2), ("test", len(ids) - 1)):
            rec = dict(base, item_ids=ids[:cut], timestamps=[1000 * user_id[u] + t for t in range(cut)],
                       session_starts=[1] + [0] * (cut - 1), target_item=0 if split == "train" else ids[cut])
            splits[split].append(schema.encode_example(schema.SEQUENTIAL, rec))
    return splits


def write_loo_vocabularies(out: Path, seqs: dict, users: list) -> tuple[dict, dict]:
    """Write the item and user vocabularies of leave-one-out ``seqs`` (items by training count, as the job
    orders them; ``users`` in the given order) and return ``(item_id, user_id)`` token -> index maps."""
    counts: dict = {}
    for seq in seqs.values():
        for tok in seq[:-2]:
            counts[tok] = counts.get(tok, 0) + 1
    items = sorted(counts, key=lambda t: (-counts[t], t))
    item_id = {t: i + schema.FIRST_ID for i, t in enumerate(items)}
    user_id = {t: i + schema.FIRST_ID for i, t in enumerate(users)}
    (out / schema.VOCAB_DIR).mkdir(parents=True)
    for name, tokens, count in (("items", items, counts), ("users", users, {u: len(seqs[u]) - 2 for u in users})):
        rows = [f"0\t{schema.PAD_TOKEN}\t0", f"1\t{schema.OOV_TOKEN}\t0"]
        rows += [f"{i + schema.FIRST_ID}\t{t}\t{count[t]}" for i, t in enumerate(tokens)]
        (out / schema.VOCAB_DIR / schema.VOCAB_FILES[name]).write_text("\n".join(rows) + "\n")
    return item_id, user_id


def write_markov_dataset(out: Path, n_users: int = 400, n_items: int = 60, shards: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(n_users):
        item, n = int(rng.integers(n_items)), int(rng.integers(8, 16))
        seq = [item]
        for _ in range(n - 1):
            item = (item + 1 + int(rng.integers(2))) % n_items if rng.random() < 0.9 else int(rng.integers(n_items))
            seq.append(item)
        seqs[f"u{u}"] = [f"m{i}" for i in seq]
    return write_sequences_dataset(out, seqs, shards)


def write_sequences_dataset(out: Path, seqs: dict, shards: int = 4) -> Path:
    """Write ``{user: [item token, ...]}`` as a leave-one-out sequential dataset in the Beam job's layout."""
    item_id, user_id = write_loo_vocabularies(out, seqs, list(seqs))
    splits = leave_one_out_records(seqs, item_id, user_id)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for split, records in splits.items():
        (out / split).mkdir()
        n = shards if split == "train" else 1
        for shard in range(n):
            name = f"part-{shard:05d}-of-{n:05d}{schema.TFRECORD_SUFFIX}"
            with tf.io.TFRecordWriter(str(out / split / name), options) as w:
                for r in records[shard::n]:
                    w.write(r)
    meta = {"kind": schema.SEQUENTIAL, "split": "loo", "source": "test", "num_items": len(item_id) + 2,
            "num_users": len(user_id) + 2, "num_words": 0, "num_queries": 0,
            "counts": {s: len(r) for s, r in splits.items()}, "has_item_meta": False, "format_version": 1, "job_version": schema.JOB_VERSION}
    (out / schema.DATASET_FILE).write_text(json.dumps(meta))
    return out


# NARM settings small enough for a few seconds per run on a 2-core CPU that still learn the chain.
NARM_ARGS = ["--model=narm", "--set", "model_params.embedding_size=16", "--set", "model_params.hidden_size=32",
             "--lr=0.01", "--batch_size=64", "--max_len=10", "--steps_per_execution=8", "--patience=0",
             "--set", "eval.ks=[10,20]", "--valid_metric=ndcg@10", "--set", "data.shuffle_buffer=2000"]
