"""GRU4Rec evaluation time: prefix-by-prefix (every prefix re-encoded from a zero state) vs streamed
(:meth:`tfpps.models.sequential.gru4rec.GRU4Rec.eval_dataset`: each test session run once, its state carried).

``states_only_seconds``: the GRU part alone (every example's state: prefix batches + ``encode``,
vs iterating the streamed batches). Three end-to-end timings: ``before`` (prefix batches, ranking with the unfused ops: the evaluation as it was),
``prefix`` (prefix batches, XLA-fused ranking of large score matrices, see
:data:`tfpps.evaluation.evaluator.XLA_RANK_MIN_ENTRIES`) and ``streamed`` (streamed states, fused ranking).

    python -m benchmarks.speed.gru4rec_eval_speed                       # YOOCHOOSE-sized test set, 37,483 items
    python -m benchmarks.speed.gru4rec_eval_speed --items 5000 --repeats 3

The synthetic test set has the shape of the official YOOCHOOSE (RSC15) GRU4Rec test set: whole
sessions (no target; every next click is an example), lengths 2 + Geometric(p=0.3) (mean ~5.3),
``--sessions`` of them. The model is an untrained GRU4Rec (layers [100], default ``max_len`` 50);
weights do not change the work. Both paths run through :func:`tfpps.evaluation.evaluator.evaluate`
in the same process, alternately, ``--repeats`` times after one untimed warm-up each (tracing), and
the metrics of the two are checked to be equal. On a shared machine report the ratio of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import tfpps  # noqa: F401
import tensorflow as tf

from tfpps.config import RunConfig, TrainConfig
from tfpps.evaluation import evaluator
from tfpps.models.base import DatasetInfo
from tfpps.models.sequential.gru4rec import GRU4Rec, GRU4RecConfig
from tfpps.runs.validation import eval_batches


class SessionsData:
    """Stands in for a :class:`tfpps.data.dataset_dir.DatasetDir` holding whole test sessions."""

    kind = "sequential"
    multi_target = False

    def __init__(self, sessions: list[np.ndarray], num_items: int):
        self.sessions = sessions
        self.num_items = num_items
        self.ragged = tf.ragged.constant([s.tolist() for s in sessions], dtype=tf.int64)

    def records(self, split, **kwargs):
        n = len(self.sessions)
        ds = tf.data.Dataset.from_tensor_slices((tf.range(n, dtype=tf.int64), self.ragged))
        return ds.map(lambda i, items: {"user_id": i, "session_id": i, "item_ids": items,
                                        "target_item": tf.constant(0, tf.int64)})

    def info(self):
        counts = np.ones(self.num_items, np.int64)
        counts[:2] = 0
        return DatasetInfo(num_items=self.num_items, num_users=len(self.sessions) + 2, item_counts=counts)


CPU_SECONDS: list = []


def timed(fn):
    """``(wall seconds, fn())``; the process CPU seconds (all threads) go to :data:`CPU_SECONDS`,
    a steadier measure of the work on a machine shared with other jobs."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    CPU_SECONDS.append(time.process_time() - c0)
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=1900)
    p.add_argument("--items", type=int, default=37_483)
    p.add_argument("--layers", type=int, default=100)
    p.add_argument("--max_len", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    sessions = [rng.integers(2, args.items, size=2 + rng.geometric(0.3) - 1) for _ in range(args.sessions)]
    data = SessionsData(sessions, args.items)
    params = GRU4RecConfig(layers=[args.layers], n_sample=0)
    run = RunConfig(model="gru4rec", train=TrainConfig(batch_size=32, seed=1), model_params=params)
    run.data.max_len = args.max_len
    run.eval.batch_size = args.batch_size
    model = GRU4Rec(params, data.info(), run)

    def unfused_scores(features):  # its own evaluator step (cached per score function), traced without XLA ranking
        return model.score_items(features)

    def before():
        return evaluator.evaluate(unfused_scores, eval_batches(data, "test", run), num_items=args.items, progress=False)

    def prefix():
        return evaluator.evaluate(model.score_items, eval_batches(data, "test", run), num_items=args.items, progress=False)

    def streamed():
        return evaluator.evaluate(model.score_items, model.eval_dataset(data, "test", run), num_items=args.items, progress=False)

    encode = tf.function(lambda f: model.encode(f["item_ids"], f["length"]), reduce_retracing=True)

    def states_prefix():  # the GRU part alone: every prefix's state, as the prefix evaluation computes them
        return sum(int(encode(b).shape[0]) for b in eval_batches(data, "test", run))

    def states_streamed():
        return sum(int(b["target_item"].shape[0]) for b in model.eval_dataset(data, "test", run))

    assert timed(states_prefix)[1] == timed(states_streamed)[1]  # warm-up (tracing)
    gru = [(timed(states_prefix)[0], timed(states_streamed)[0]) for _ in range(args.repeats)]

    threshold = evaluator.XLA_RANK_MIN_ENTRIES
    evaluator.XLA_RANK_MIN_ENTRIES = 1 << 62  # the evaluator as it was: every batch through the unfused ops
    cold_before, m_before = timed(before)
    evaluator.XLA_RANK_MIN_ENTRIES = threshold
    cold_prefix, m_prefix = timed(prefix)
    cold_stream, m_stream = timed(streamed)
    diff = max(max(abs(m_before[k] - m[k]) for k in m_before) for m in (m_prefix, m_stream))
    runs, cpu = [], []
    for _ in range(args.repeats):
        runs.append((timed(before)[0], timed(prefix)[0], timed(streamed)[0]))
        cpu.append(tuple(CPU_SECONDS[-3:]))
    result = {
        "sessions": args.sessions,
        "clicks": int(sum(len(s) for s in sessions)),
        "examples": m_prefix["num_examples"],
        "items": args.items,
        "layers": [args.layers],
        "max_len": args.max_len,
        "max_metric_difference": diff,
        "cold_seconds": {"before": round(cold_before, 3), "prefix": round(cold_prefix, 3), "streamed": round(cold_stream, 3)},
        "warm_seconds": [
            {"before": round(a, 3), "prefix": round(b, 3), "streamed": round(c, 3),
             "before/streamed": round(a / c, 2), "prefix/streamed": round(b / c, 2)}
            for a, b, c in runs
        ],
        "states_only_seconds": [
            {"prefix": round(a, 3), "streamed": round(b, 3), "ratio": round(a / b, 2)} for a, b in gru
        ],
        "warm_cpu_seconds": [
            {"before": round(a, 3), "prefix": round(b, 3), "streamed": round(c, 3),
             "before/streamed": round(a / c, 2), "prefix/streamed": round(b / c, 2)}
            for a, b, c in cpu
        ],
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
