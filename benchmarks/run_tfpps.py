"""Run one tfpps training in this process and write its result plus peak memory as JSON.

    python -m benchmarks.run_tfpps --out result.json -- --model=narm --dataset=ml-100k --lr=0.005

Used by the comparison benchmarks so each model is measured in its own process. With
``TFPPS_BENCH_THREADS=N`` in the environment, TensorFlow runs N intra-op threads and 1 inter-op
thread, and NumPy's BLAS N threads (to match a reference that runs with N threads).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time


def main() -> int:
    argv = sys.argv[1:]
    out = argv[argv.index("--out") + 1]
    train_argv = argv[argv.index("--") + 1 :]
    threads = int(os.environ.get("TFPPS_BENCH_THREADS", "0") or 0)
    if threads > 0:  # NumPy's BLAS too (GRU4Rec's evaluation runs in NumPy): set before NumPy is imported
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    from tfpps.cli import train as train_cli

    if threads > 0:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from tfpps.errors import ConfigError
    from tfpps.runs.trainer import train

    start = time.time()
    try:
        run, args = train_cli.parse(train_argv)
        result = train(run, fresh=True)
    except ConfigError as exc:  # a bad flag or config: one line, as python -m tfpps.train prints it
        print(f"benchmarks.run_tfpps: error: {exc}", file=sys.stderr)
        return 2
    result["wall_seconds"] = round(time.time() - start, 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["argv"] = train_argv
    result["config"] = run.to_dict()
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
