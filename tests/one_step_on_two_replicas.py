"""One training step of a model on one global batch, as one replica and as two (MirroredStrategy over two
logical CPUs), printed as the largest weight difference. Run by tests/test_distributed_models.py in a fresh
process: logical devices must be set before TensorFlow starts.

    python tests/one_step_on_two_replicas.py DATA_DIR MODEL [TRAIN ARGS ...]

Prints one JSON line: ``{"max_abs_diff": ..., "max_abs_update": ..., "max_row_norm": ...}``; the update is
the largest weight change of the single-replica step (to show the step moved the weights at all), the row
norm the largest of the two-replica model's user/item rows (the metric models' clipping).
"""
from __future__ import annotations

import json
import sys

import numpy as np

import tfpps  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

GLOBAL_BATCH = 8


def main(argv: list[str]) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfpps import registry
    from tfpps.cli.train import parse
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.runs.trainer import build_model

    data_dir, model_name, *extra = argv
    run = parse([f"--model={model_name}", f"--data_dir={data_dir}", f"--batch_size={GLOBAL_BATCH}", *extra])[0]
    data = DatasetDir(data_dir)
    cls = registry.get(model_name).model_cls
    batch = next(iter(cls.make_train_dataset(run.model_params, data, run, epoch_seed=1)))  # one fixed global batch
    batch = {k: v.numpy() for k, v in batch.items()}
    assert len(next(iter(batch.values()))) == GLOBAL_BATCH, "the first batch must be full"

    def one_step(strategy: tf.distribute.Strategy) -> tuple[list[np.ndarray], list[np.ndarray], object]:
        with strategy.scope():
            model = build_model(run, data)
            model.compile(optimizer=tf.keras.optimizers.SGD(0.5))
        before = [w.numpy().copy() for w in model.weights]
        ds = tf.data.Dataset.from_tensor_slices(batch).batch(GLOBAL_BATCH)  # split 4 + 4 over two replicas
        model.fit(ds, epochs=1, verbose=0)
        return before, [w.numpy() for w in model.weights], model

    start, single, _ = one_step(tf.distribute.get_strategy())
    _, mirrored, model = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    assert model.distribute_strategy.num_replicas_in_sync == 2
    tables = [t for t in (getattr(model, "user_embedding", None), getattr(model, "item_embedding", None)) if t is not None]
    print(json.dumps({
        "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored)),
        "max_abs_update": max(float(np.max(np.abs(a - b))) for a, b in zip(single, start)),
        "max_row_norm": max(float(np.max(np.linalg.norm(t.numpy(), axis=1))) for t in tables),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
