"""Training time per step of the product-search models, on one batch of the official HEM benchmark.

    python -m benchmarks.speed.search_step_time                       # every search model, shipped and tuned configs
    python -m benchmarks.speed.search_step_time --steps 50 --batch 384

Each model (its shipped ``configs/models/<model>.yaml``, and ``<model>_cellphones.yaml`` where it exists) is
built on ``configs/datasets/amazon-cellphones-hem.yaml`` and runs the same batch of ``--batch`` training
examples through one traced training step (loss, gradients, Adam update) ``--steps`` times after a warm-up
step: the model's own cost, without the input pipeline. The table gives ms/step, training examples/s and the
ratio to HEM's shipped config (the issue's target: AEM/ZAM within 2x of HEM per step). Measure with nothing
else running.

Writes ``benchmarks/speed/results/search_step_time/search_step_time.json`` and ``.png``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks.common import REPO, bar_plot, machine, results_dir, table, write_results

RESULTS = results_dir(__file__)

DATASET = "amazon-cellphones-hem"
MODELS = ("qem", "hem", "aem", "zam", "hrnn_search")


def step_time(model_name: str, config: str | None, data, batch, steps: int) -> float:
    """Seconds per traced training step of ``model_name`` (``config``: an extra YAML merged over its own)."""
    import tensorflow as tf

    from tfpps.config import build_run_config
    from tfpps.runs.trainer import build_model

    run = build_run_config(model_name, dataset=DATASET, config_file=config, overrides={"data.dir": str(data.path)})
    model = build_model(run, data)
    optimizer = tf.keras.optimizers.legacy.Adam(1e-3)

    @tf.function
    def train_step(features):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(features, training=True)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    float(train_step(batch))  # trace and warm up
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(batch)
    float(loss)
    return (time.perf_counter() - start) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=384)
    args = p.parse_args(argv)
    from tfpps.data.datasets import ensure_dataset, shared_data_dir

    if not (shared_data_dir() / DATASET).is_dir():
        print(f"skipped: {shared_data_dir() / DATASET} not found (set TFPPS_SHARED_DATA)")
        return 0
    import tfpps  # noqa: F401
    from tfpps.data import pipeline
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.data.examples import search

    data = DatasetDir(ensure_dataset(DATASET))
    batch = next(iter(pipeline.batch_padded(search.train_examples(data.records("train"), 20), args.batch)))
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        variants = [("shipped", None)]
        tuned = REPO / "configs" / "models" / f"{name}_cellphones.yaml"
        if tuned.exists():
            variants.append(("tuned", str(tuned)))
        for label, config in variants:
            seconds = step_time(name, config, data, batch, args.steps)
            rows.append({"model": name, "config": label, "ms/step": round(1000 * seconds, 1),
                         "examples/s": int(args.batch / seconds)})
            print(f"{name} ({label}): {1000 * seconds:.1f} ms/step", flush=True)
    for label in ("shipped", "tuned"):
        hem = next((r["ms/step"] for r in rows if r["model"] == "hem" and r["config"] == label), None)
        for r in rows:
            if r["config"] == label and hem:
                r["x HEM"] = f"{r['ms/step'] / hem:.2f}"
    load_after = [round(x, 2) for x in os.getloadavg()]
    text = table(rows, ["model", "config", "ms/step", "examples/s", "x HEM"],
                 f"Search models: one training step on a batch of {args.batch} (HEM benchmark data)")
    print("\n" + text)
    info = machine()
    print(f"machine: {info}; load average before {load_before}, after {load_after}")
    payload = {"machine": info, "load_average_before": load_before, "load_average_after": load_after,
               "command": "python -m benchmarks.speed.search_step_time " + " ".join(argv if argv is not None else sys.argv[1:]),
               "rows": rows}
    print(f"wrote {write_results(RESULTS, 'search_step_time', payload)}")
    labels = [f"{r['model']} ({r['config']})" for r in rows]
    print(f"wrote {bar_plot(RESULTS, 'search_step_time', labels, {'ms/step': [r['ms/step'] for r in rows]}, 'ms', 'search models: ms per training step')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
