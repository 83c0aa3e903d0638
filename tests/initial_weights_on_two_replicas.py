"""A model's initial weights as one replica and as two (MirroredStrategy over two logical CPUs), both seeded
with the same run seed, printed as the largest difference. Run by tests/test_distributed_models.py in a fresh
process: logical devices must be set before TensorFlow starts.

    python tests/initial_weights_on_two_replicas.py DATA_DIR MODEL [--keras-seed] [TRAIN ARGS ...]

The trainable weights are read after one training step at learning rate 0, so the weights a model builds lazily (on its
first step, in a replica's thread under tf.distribute) are there too. ``--keras-seed`` seeds with
``tf.keras.utils.set_random_seed`` alone instead of :func:`tfpps.runs.seeding.set_run_seed` (to show what the
latter fixes). Prints one JSON line: ``{"max_abs_diff": ..., "copies": [...]}``; ``copies`` names the weights
of the two-replica model whose first values are a scaled copy of another weight's (a shared random stream).
"""
from __future__ import annotations

import json
import sys

import numpy as np

import tfpps  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

GLOBAL_BATCH = 8


def copies(weights: list[tf.Variable]) -> list[str]:
    """Pairs of weights whose first 64 values are proportional (correlation > 0.999), with random starts."""
    flat = [(f"{i}:{w.name}", w.numpy().ravel()[:64]) for i, w in enumerate(weights)]
    flat = [(n, v) for n, v in flat if len(v) == 64 and np.std(v) > 0]
    return [f"{a} ~ {b}" for i, (a, x) in enumerate(flat) for b, y in flat[i + 1:] if abs(np.corrcoef(x, y)[0, 1]) > 0.999]


def main(argv: list[str]) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfpps import registry
    from tfpps.cli.train import parse
    from tfpps.data.dataset_dir import DatasetDir
    from tfpps.runs.seeding import set_run_seed
    from tfpps.runs.trainer import build_model

    data_dir, model_name, *extra = argv
    seed = tf.keras.utils.set_random_seed if "--keras-seed" in extra else set_run_seed
    extra = [a for a in extra if a != "--keras-seed"]
    run = parse([f"--model={model_name}", f"--data_dir={data_dir}", f"--batch_size={GLOBAL_BATCH}", *extra])[0]
    data = DatasetDir(data_dir)
    cls = registry.get(model_name).model_cls
    batch = {k: v.numpy() for k, v in next(iter(cls.make_train_dataset(run.model_params, data, run, epoch_seed=1))).items()}

    def initial(strategy: tf.distribute.Strategy):
        seed(run.train.seed)
        with strategy.scope():
            model = build_model(run, data)
            model.compile(optimizer=tf.keras.optimizers.SGD(0.0))
            _ = model.optimizer.iterations  # created in the scope, as the trainer does
        model.fit(tf.data.Dataset.from_tensor_slices(batch).batch(GLOBAL_BATCH), epochs=1, verbose=0)
        return model.trainable_variables  # (GRU4Rec's and HRNN's session states move at rate 0 too)

    single = [w.numpy() for w in initial(tf.distribute.get_strategy())]
    mirrored = initial(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print(json.dumps({
        "max_abs_diff": max(float(np.max(np.abs(a - b.numpy()))) for a, b in zip(single, mirrored)),
        "copies": copies(mirrored),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
