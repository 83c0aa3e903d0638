"""Shared by test_export.py and test_recommend.py: a tiny dataset written directly, and tiny trained runs.

The dataset is written straight in the Beam job's output layout (dataset.json,
vocab/*.tsv, vocab/item_meta.jsonl, gzip TFRecord shards of the shared feature
spec) in well under a second, so the tests spend their time on training and
exporting. Histories follow a strong Markov chain (item m_i is followed by
m_{i+1} or m_{i+2}), so even one epoch learns something.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps import registry
from tfpps.config import build_run_config
from tfpps.spec import schema
from markov_data import leave_one_out_records, write_loo_vocabularies

N_ITEMS, N_USERS = 30, 40
_CACHE: dict = {}


def write_tiny_dataset(out: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(N_USERS):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(8, 13))
        seq = [start]
        for _ in range(n - 1):
            seq.append((seq[-1] + 1 + int(rng.integers(2))) % N_ITEMS)
        seqs[f"u{u}"] = [f"m{i}" for i in seq]
    item_id, user_id = write_loo_vocabularies(out, seqs, sorted(seqs, key=lambda u: int(u[1:])))
    with open(out / schema.VOCAB_DIR / "item_meta.jsonl", "w") as fh:
        for i in range(N_ITEMS):
            fh.write(json.dumps({"item_id": f"m{i}", "title": f"Movie {i}", "categories": [["Drama"], ["Film-Noir"]] if i % 2 else [["Comedy"]], "description": None}) + "\n")
    splits = leave_one_out_records(seqs, item_id, user_id)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for split, records in splits.items():
        (out / split).mkdir()
        with tf.io.TFRecordWriter(str(out / split / f"part-00000-of-00001{schema.TFRECORD_SUFFIX}"), options) as w:
            for r in records:
                w.write(r)
    meta = {"kind": schema.SEQUENTIAL, "split": "loo", "source": "test", "num_items": len(item_id) + 2,
            "num_users": len(user_id) + 2, "num_words": 0, "num_queries": 0,
            "counts": {s: len(r) for s, r in splits.items()}, "has_item_meta": True, "format_version": 1, "job_version": schema.JOB_VERSION}
    (out / schema.DATASET_FILE).write_text(json.dumps(meta))
    return out


# Small, fast settings per model (the tests check export fidelity, not accuracy).
TINY = {
    "gru4rec": {"layers": "[16]", "n_sample": "8", "batch_size": "8", "steps_per_execution": "4"},
    "narm": {"embedding_size": "8", "hidden_size": "8", "batch_size": "64"},
    "hrm": {"embedding_size": "8", "batch_size": "64"},
    "hrnn": {"session_layers": "[8]", "user_layers": "[8]", "batch_size": "8"},
    "pop": {},
    "itemknn": {},
    "sknn": {},
    "vsknn": {"weighting_score": "div"},  # the score decay too (default none), so the export covers it
}


TRAINED = ("gru4rec",)  # through the real trainer; others: initial weights (or refitted, non-neural)


def tiny_dataset(base: Path) -> Path:
    if "dataset" not in _CACHE:
        _CACHE["dataset"] = write_tiny_dataset(base / "tiny_dataset")
    return _CACHE["dataset"]


def _run_config(model: str, base: Path):
    overrides = {"data.dir": str(tiny_dataset(base)), "run_dir": str(base / f"run-{model}"), "verbose": "0", "epochs": "1",
                 "max_len": "6", "eval.ks": "[5,10]", "train.valid_metric": "ndcg@10", **TINY[model]}
    return build_run_config(model, overrides=overrides)


def tiny_run(model: str, base: Path, trained: bool | None = None) -> Path:
    """A run dir of ``model`` on the tiny dataset (made once per session).

    ``trained`` (default: ``model in TRAINED``): one epoch through the real trainer. Otherwise the run dir is
    written in the trainer's layout (config.yaml, weights/best) with the
    model's initial weights (non-neural models: config.yaml only; they are
    refitted when loaded), which is enough to test export fidelity and skips
    the costly tracing of ``fit`` (NARM: ~15 s).
    """
    if model not in _CACHE:
        run = _run_config(model, base)
        if trained if trained is not None else model in TRAINED:
            from tfpps.runs.trainer import train

            train(run, fresh=True)
        else:
            from tfpps.data.dataset_dir import DatasetDir
            from tfpps.serving.requests import Request, encode_requests
            from tfpps.serving.vocab import Vocabulary
            from tfpps.runs import trainer

            run_dir = Path(run.train.run_dir)
            (run_dir / "weights").mkdir(parents=True)
            trainer.save_run_config(run, run_dir)
            if registry.get(model).family == registry.NONNEURAL:  # refitted when loaded: config.yaml is all
                _CACHE[model] = run_dir
                return run_dir
            data = DatasetDir(run.data.dir)
            m = trainer.build_model(run, data)
            items, users = Vocabulary(data.vocab("items")), Vocabulary(data.vocab("users"))
            m.score_items(encode_requests([Request("u1", ["m1"])], items, users, 6))  # builds every layer
            m.save_weights(str(run_dir / trainer.BEST_WEIGHTS))
        _CACHE[model] = Path(run.train.run_dir)
    return _CACHE[model]


def tiny_export(model: str, base: Path, k: int = 10, index: str = "brute-force") -> Path:
    key = ("export", model, k, index)
    if key not in _CACHE:
        from tfpps.serving.export import export_run

        out = base / f"export-{model}-{k}-{index}"
        export_run(tiny_run(model, base), out, k=k, index=index, log=lambda msg: None)
        _CACHE[key] = out
    return _CACHE[key]


def workdir(tmp_path_factory) -> Path:
    """One folder per test session for the tiny dataset, runs and exports (shared by both test files)."""
    if "base" not in _CACHE:
        _CACHE["base"] = tmp_path_factory.mktemp("serving")
    return _CACHE["base"]
