"""NARM at catalogue scale: training examples/s with the full vs the sampled softmax, and full evaluation time.

    python -m benchmarks.scale.catalogue_scale                    # 43,000 items, batch 512, n_sample 2048 (a few minutes)
    python -m benchmarks.scale.catalogue_scale --items 10000 --full-steps 16 --sampled-steps 64 --test-prefixes 5000

DIGINETICA's scale (43,097 items, 719,470 training prefixes, 60,858 test prefixes) without the download: a
synthetic session dataset with a Zipf-popular ``--items`` catalogue is written in the Beam job's output
layout (a temporary directory), then, in this one process so that the ratios share the machine's load:

1. NARM (official sizes: embedding 50, hidden 100) trains ``--warmup-steps + --full-steps`` steps with
   ``softmax: full`` and ``--warmup-steps + --sampled-steps`` with ``softmax: sampled`` (``--n-sample``
   shared negatives + the in-batch targets, logQ), same batch size, through the model's own training
   pipeline. Examples/s counts the steps after the warm-up (which holds the tracing and the shuffle
   buffer's first fill), timed at the ends of fused executions (``steps_per_execution``).
2. The trained full-softmax model scores every test prefix (``--test-prefixes``) against all items with the
   trainer's batched evaluator (``tfpps.runs.validation.evaluate_split``), and a fixed sample of
   ``--valid-sample`` of them as ``eval.valid_sample`` would.

Prints a table and writes ``benchmarks/scale/results/catalogue_scale/catalogue_scale.{json,png}`` with the machine, its load
average before/after, and every setting. On a shared machine compare the ratios of one run, not absolute
numbers across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, results_dir, table, write_results

RESULTS = results_dir(__file__)


# ---------------------------------------------------------------------------- data
def _sessions(rng: np.random.Generator, count: int, num_items: int, zipf: float, mean_len: float) -> list[np.ndarray]:
    """``count`` sessions of item indices ``0..num_items-1``: a Zipf-popular start, then a local walk
    (next = previous + 1..4) with probability 0.6, else another Zipf-popular item."""
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    pop = ranks ** -zipf
    pop /= pop.sum()
    perm = rng.permutation(num_items)  # popularity is not aligned with the walk
    lengths = np.maximum(2, rng.poisson(mean_len - 2, size=count) + 2)
    total = int(lengths.sum())
    popular = perm[rng.choice(num_items, size=total, p=pop)]
    steps = rng.integers(1, 5, size=total)
    walk = rng.random(total) < 0.6
    out, at = [], 0
    for n in lengths:
        seq = np.empty(n, np.int64)
        seq[0] = popular[at]
        for j in range(1, n):
            seq[j] = (seq[j - 1] + steps[at + j]) % num_items if walk[at + j] else popular[at + j]
        out.append(seq)
        at += n
    return out


def write_dataset(out: Path, num_items: int, train_sessions: int, test_prefixes: int, seed: int = 0) -> dict:
    """A sequential dataset in the Beam job's layout: session records (``target_item = 0``: every prefix of a
    test session is an example), vocabularies with training counts, ``dataset.json``."""
    import tfpps  # noqa: F401
    import tensorflow as tf

    from tfpps.spec import schema

    rng = np.random.default_rng(seed)
    mean_len = 5.0  # DIGINETICA: ~4.9 clicks per session
    train = _sessions(rng, train_sessions, num_items, 1.0, mean_len)
    test = _sessions(rng, int(test_prefixes / (mean_len - 1)) + 1, num_items, 1.0, mean_len)
    valid = test[:200]
    counts = np.bincount(np.concatenate(train), minlength=num_items)
    (out / schema.VOCAB_DIR).mkdir(parents=True)
    rows = [f"0\t{schema.PAD_TOKEN}\t0", f"1\t{schema.OOV_TOKEN}\t0"]
    rows += [f"{i + schema.FIRST_ID}\ti{i}\t{counts[i]}" for i in range(num_items)]
    (out / schema.VOCAB_DIR / schema.VOCAB_FILES["items"]).write_text("\n".join(rows) + "\n")
    n_users = train_sessions + len(test)
    users = [f"0\t{schema.PAD_TOKEN}\t0", f"1\t{schema.OOV_TOKEN}\t0"] + [f"{u + 2}\tu{u}\t1" for u in range(n_users)]
    (out / schema.VOCAB_DIR / schema.VOCAB_FILES["users"]).write_text("\n".join(users) + "\n")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    split_counts, prefixes = {}, {}
    user = 2
    for split, seqs, shards in (("train", train, 4), ("valid", valid, 1), ("test", test, 2)):
        (out / split).mkdir()
        writers = [tf.io.TFRecordWriter(str(out / split / f"part-{s:05d}-of-{shards:05d}{schema.TFRECORD_SUFFIX}"),
                                        options) for s in range(shards)]
        for i, seq in enumerate(seqs):
            ids = (seq + schema.FIRST_ID).tolist()
            rec = {"user_id": user, "session_id": user, "item_ids": ids, "timestamps": list(range(len(ids))),
                   "session_starts": [1] + [0] * (len(ids) - 1), "target_item": 0}
            writers[i % shards].write(schema.encode_example(schema.SEQUENTIAL, rec))
            user += 1
        for w in writers:
            w.close()
        split_counts[split] = len(seqs)
        prefixes[split] = int(sum(len(s) - 1 for s in seqs))
    meta = {"kind": schema.SEQUENTIAL, "split": "session", "source": "benchmark", "num_items": num_items + 2,
            "num_users": n_users + 2, "num_words": 0, "num_queries": 0, "counts": split_counts,
            "has_item_meta": False, "format_version": 1, "job_version": schema.JOB_VERSION}
    (out / schema.DATASET_FILE).write_text(json.dumps(meta))
    return {"items": num_items, "train_sessions": len(train), "train_prefixes": prefixes["train"],
            "test_sessions": len(test), "test_prefixes": prefixes["test"]}


# ---------------------------------------------------------------------------- measurements
def _run_config(data_dir: Path, args, softmax: str):
    from tfpps.config import build_run_config

    overrides = {"data.dir": str(data_dir), "batch_size": str(args.batch_size), "steps_per_execution": str(args.steps_per_execution),
                 "data.shuffle_buffer": "20000", "max_len": "50", "softmax": softmax, "n_sample": str(args.n_sample),
                 "sample_alpha": str(args.sample_alpha), "eval.batch_size": str(args.eval_batch_size), "verbose": "0"}
    return build_run_config("narm", overrides=overrides)


class _ExecutionClock:
    """Timestamps of the ends of fused executions (Keras calls batch hooks once per execution)."""

    def __init__(self):
        import tensorflow as tf

        outer = self

        class Clock(tf.keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.marks.append((batch + 1, time.perf_counter()))

        self.marks: list[tuple[int, float]] = []
        self.callback = Clock()


def train_throughput(data, args, softmax: str, steps: int) -> tuple[dict, object]:
    import tensorflow as tf

    from tfpps.models.sequential.narm import NARM
    from tfpps.runs.trainer import build_model
    from tfpps.runs.seeding import set_run_seed

    run = _run_config(data.path, args, softmax)
    set_run_seed(run.train.seed)
    model = build_model(run, data)
    model.compile(optimizer=tf.keras.optimizers.Adam(run.train.learning_rate), steps_per_execution=run.train.steps_per_execution)
    total = args.warmup_steps + steps
    ds = NARM.make_train_dataset(run.model_params, data, run, epoch_seed=run.train.seed).take(total)
    clock = _ExecutionClock()
    t0 = time.perf_counter()
    history = model.fit(ds, epochs=1, verbose=0, callbacks=[clock.callback])
    wall = time.perf_counter() - t0
    marks = [(s, t) for s, t in clock.marks if s >= args.warmup_steps]
    (s0, t_start), (s1, t_end) = marks[0], marks[-1]
    timed_steps = s1 - s0
    seconds = t_end - t_start
    row = {
        "softmax": softmax,
        "steps_timed": timed_steps,
        "seconds_timed": round(seconds, 3),
        "seconds_per_step": round(seconds / timed_steps, 4),
        "examples_per_s": round(timed_steps * args.batch_size / seconds, 1),
        "fit_wall_seconds": round(wall, 2),
        "final_loss": round(float(history.history["loss"][-1]), 4),
    }
    return row, model


def eval_seconds(model, data, args, sample: int = 0) -> dict:
    from tfpps.runs.validation import evaluate_split

    run = _run_config(data.path, args, "full")
    evaluate_split(model, data, "test", run, sample=1024)  # trace the evaluator (and count the examples) first
    t0 = time.perf_counter()
    metrics = evaluate_split(model, data, "test", run, sample=sample)
    seconds = time.perf_counter() - t0
    return {"examples": int(metrics["num_examples"]), "seconds": round(seconds, 2),
            "examples_per_s": round(metrics["num_examples"] / seconds, 1), "recall@20": round(metrics.get("recall@20", 0.0), 4)}


def plot(path: Path, rows: list[dict], evals: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['softmax']} softmax" for r in rows]
    bars = left.bar(labels, [r["examples_per_s"] for r in rows], color=["tab:gray", "tab:blue"][: len(rows)])
    left.bar_label(bars, fmt="%.0f")
    left.set_ylabel("training examples / s")
    left.set_title("NARM training throughput")
    left.set_ylim(0, max(r["examples_per_s"] for r in rows) * 1.15)
    bars = right.bar([e["label"] for e in evals], [e["seconds"] for e in evals], color="tab:orange")
    right.bar_label(bars, fmt="%.1f s")
    right.set_ylabel("seconds")
    right.set_title("scoring against every item")
    right.set_ylim(0, max(e["seconds"] for e in evals) * 1.15)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=43_000)
    p.add_argument("--train-sessions", type=int, default=30_000)
    p.add_argument("--test-prefixes", type=int, default=60_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-sample", type=int, default=2048)
    p.add_argument("--sample-alpha", type=float, default=0.5)
    p.add_argument("--steps-per-execution", type=int, default=8)
    p.add_argument("--warmup-steps", type=int, default=8)
    p.add_argument("--full-steps", type=int, default=40)
    p.add_argument("--sampled-steps", type=int, default=200)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--valid-sample", type=int, default=5000)
    p.add_argument("--name", default="catalogue_scale", help="results file stem under benchmarks/scale/results/catalogue_scale/")
    args = p.parse_args(argv)

    import tfpps  # noqa: F401
    import tensorflow as tf

    from tfpps.data.dataset_dir import DatasetDir

    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfpps-catalogue-") as tmp:
        t0 = time.perf_counter()
        sizes = write_dataset(Path(tmp) / "data", args.items, args.train_sessions, args.test_prefixes)
        write_seconds = time.perf_counter() - t0
        print(f"dataset: {sizes} (written in {write_seconds:.1f} s)", flush=True)
        data = DatasetDir(Path(tmp) / "data")
        rows = []
        full_row, full_model = train_throughput(data, args, "full", args.full_steps)
        print(f"full softmax:    {full_row}", flush=True)
        rows.append(full_row)
        sampled_row, _ = train_throughput(data, args, "sampled", args.sampled_steps)
        print(f"sampled softmax: {sampled_row}", flush=True)
        rows.append(sampled_row)
        evals = [dict(eval_seconds(full_model, data, args), label="all test prefixes")]
        print(f"evaluation: {evals[0]}", flush=True)
        if 0 < args.valid_sample < evals[0]["examples"]:
            evals.append(dict(eval_seconds(full_model, data, args, sample=args.valid_sample), label=f"valid_sample={args.valid_sample}"))
            print(f"evaluation (sample): {evals[1]}", flush=True)
    ratio = sampled_row["examples_per_s"] / full_row["examples_per_s"]
    payload = {
        "benchmark": "catalogue_scale",
        "machine": machine(),
        "tensorflow_devices": [d.name for d in tf.config.list_physical_devices()],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "settings": {**vars(args), "model": "narm (official sizes: embedding 50, hidden 100)", "max_len": 50},
        "dataset": sizes,
        "training": rows,
        "sampled_over_full": round(ratio, 2),
        "evaluation": evals,
        "total_seconds": round(time.perf_counter() - started, 1),
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    write_results(RESULTS, args.name, payload)
    title = (f"{args.items:,} items, batch {args.batch_size}, n_sample {args.n_sample}; "
             f"sampled/full = {ratio:.1f}x; load {payload['load_average_before'][0]:.1f} on {os.cpu_count()} cores")
    plot(RESULTS / f"{args.name}.png", rows, evals, title)
    print(table(rows, ["softmax", "steps_timed", "seconds_per_step", "examples_per_s", "final_loss"],
                title=f"NARM training, {args.items:,} items, batch {args.batch_size}"))
    print(f"\nsampled / full examples per second: {ratio:.2f}x")
    print(table(evals, ["label", "examples", "seconds", "examples_per_s"], title="evaluation against all items"))
    print(f"\nwrote {RESULTS / (args.name + '.json')} and .png ({payload['total_seconds']} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
