"""Train and evaluate the official PyTorch GRU4Rec once, from a checkout given by ``--official-dir``.

Runs inside the reference venv (``benchmarks/references/gru4rec_official/setup_env.sh``), never in tfpps's own:

    benchmarks/references/gru4rec_official/.venv/bin/python benchmarks/references/gru4rec_official/run_official.py \\
        --official-dir /tmp/GRU4Rec_PyTorch_Official --train TRAIN.tsv --test TEST.tsv \\
        --params loss=bpr-max,layers=100,... --seed 1 --out result.json

It does what the checkout's ``run.py`` does (``GRU4Rec.set_params``, ``fit`` on the TAB-separated
training file, ``evaluation.batch_eval`` with batch 512 on the test file), with three additions that
do not change the algorithm: the seed of torch's and numpy's generators is set from ``--seed`` (it
moves the negative sampler and dropout), the official code's fixed numpy seed 42 of its
compatibility-mode weight initialisation can be replaced by ``--init-seed``, the number of CPU threads is fixed, and the seconds of
each epoch (printed by ``fit``) and of the evaluation are written to a JSON file with the metrics.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from collections import OrderedDict


class _Tee(io.TextIOBase):
    """Write to the real stdout and keep a copy (``fit`` prints one line per epoch)."""

    def __init__(self, real):
        self.real, self.copy = real, io.StringIO()

    def write(self, text):
        self.real.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self):
        self.real.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official-dir", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--params", required=True, help="run.py's -ps string: name=value,... (lists with /)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--init-seed", type=int, default=42,
                   help="numpy seed of the compatibility-mode weight initialisation (the official code: always 42)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-mode", default="standard", choices=["standard", "conservative"])
    p.add_argument("--cutoffs", default="5,10,20")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    sys.path.insert(0, args.official_dir)
    import numpy as np
    import pandas as pd
    import torch

    import evaluation  # the official checkout's module
    from gru4rec_pytorch import GRU4Rec

    if args.init_seed != 42:  # the official code seeds numpy with 42 right before drawing the weights
        from gru4rec_pytorch import GRU4RecModel

        draw = GRU4RecModel._reset_weights_to_compatibility_mode

        def reseeded(model):
            real_seed = np.random.seed
            np.random.seed = lambda _=None: real_seed(args.init_seed)
            try:
                draw(model)
            finally:
                np.random.seed = real_seed

        GRU4RecModel._reset_weights_to_compatibility_mode = reseeded
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    def load(path):
        return pd.read_csv(path, sep="\t", usecols=["SessionId", "ItemId", "Time"],
                           dtype={"SessionId": "int32", "ItemId": "str"})

    params = OrderedDict(x.split("=") for x in args.params.split(","))
    gru = GRU4Rec(device="cpu")
    gru.set_params(**params)
    train, test = load(args.train), load(args.test)
    tee = _Tee(sys.stdout)
    start = time.time()
    with contextlib.redirect_stdout(tee):
        gru.fit(train)
    train_seconds = time.time() - start
    epochs = [(float(loss), float(secs)) for loss, secs in
              re.findall(r"Epoch\d+ --> loss: ([0-9.naninf]+)\s+\(([0-9.]+)s\)", tee.copy.getvalue())]
    cutoffs = [int(c) for c in args.cutoffs.split(",")]
    start = time.time()
    recall, mrr = evaluation.batch_eval(gru, test, batch_size=512, cutoff=cutoffs, mode=args.eval_mode)
    eval_seconds = time.time() - start
    metrics = {}
    for c in cutoffs:
        metrics[f"recall@{c}"] = float(recall[c])
        metrics[f"mrr@{c}"] = float(mrr[c])
    n_events = int(len(train) - train["SessionId"].nunique())
    result = {
        "side": "official",
        "seed": args.seed,
        "init_seed": args.init_seed,
        "params": dict(params),
        "metrics": metrics,
        "epoch_losses": [loss for loss, _ in epochs],
        "epoch_seconds": [secs for _, secs in epochs],
        "train_seconds": round(train_seconds, 2),
        "train_events_per_epoch": n_events,
        "eval_seconds": round(eval_seconds, 3),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "error_during_train": bool(gru.error_during_train),
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
