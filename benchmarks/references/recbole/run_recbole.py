#!/usr/bin/env python
"""RecBole reference runner for side-by-side benchmarks (GRU4Rec / NARM / HRM).

Run it with the RecBole venv's interpreter (see setup_env.sh), e.g.

    benchmarks/references/recbole/.venv/bin/python benchmarks/references/recbole/run_recbole.py \
        --model GRU4Rec --data-dir /work/shared/data/ml-100k --epochs 100 \
        --out benchmarks/references/recbole/work/gru4rec.json

Protocol: RecBole's ml-1m sequential benchmark settings applied to the given
dataset (ratings >= 3, 10-core users/items, MAX_ITEM_LIST_LENGTH 50,
leave-one-out by time (LS valid_and_test, TO), full ranking, CE loss, no
negative sampling, embedding 64, batch 4096, seed 2020, CPU).

Everything RecBole writes (logs, tensorboard, checkpoints) goes under
--work-dir (default benchmarks/references/recbole/work/, gitignored). The atomic files are
symlinked there, never copied and never written next to the source data.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import resource
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("GRU4Rec", "NARM", "HRM")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--data-dir", default="/work/shared/data/ml-100k",
                   help="folder with RecBole atomic files <dataset>.inter/.item/.user")
    p.add_argument("--dataset", default=None,
                   help="dataset name (atomic file stem); inferred from the single *.inter in --data-dir")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3, help="learning_rate (RecBole default 1e-3)")
    p.add_argument("--stopping-step", type=int, default=10)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N); default: leave torch's default")
    p.add_argument("--work-dir", default=os.path.join(HERE, "work"))
    p.add_argument("--out", default=None, help="results JSON path (default <work-dir>/<model>-<time>.json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="RecBole config override; VALUE is parsed as YAML (repeatable)")
    p.add_argument("--show-progress", action="store_true")
    return p.parse_args(argv)


def protocol_config(args):
    """The benchmark protocol (RecBole's ml-1m sequential benchmark config)."""
    return {
        # data
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "RATING_FIELD": "rating",
        "TIME_FIELD": "timestamp",
        "val_interval": {"rating": "[3,inf)"},  # RecBole >= 1.1 name (was lowest_val)
        "user_inter_num_interval": "[10,inf)",
        "item_inter_num_interval": "[10,inf)",
        "MAX_ITEM_LIST_LENGTH": 50,
        # evaluation
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        "valid_metric_bigger": True,
        "eval_batch_size": 4096,
        "metric_decimal_place": 6,  # RecBole rounds reported metrics (default 4 places)
        # training
        "train_neg_sample_args": None,  # CE loss over all items
        "loss_type": "CE",
        "embedding_size": 64,
        "train_batch_size": 4096,
        "learning_rate": args.lr,
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "eval_step": 1,
        # environment
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "gpu_id": "",
        "worker": 0,
        "show_progress": args.show_progress,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }


def parse_overrides(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def link_data(data_dir, dataset, work_dir):
    """Symlink <data_dir>/<dataset>.* into <work_dir>/data/<dataset>/ (RecBole layout)."""
    data_dir = os.path.abspath(data_dir)
    if dataset is None:
        inters = sorted(glob.glob(os.path.join(data_dir, "*.inter")))
        if len(inters) != 1:
            raise SystemExit(f"cannot infer dataset name from {data_dir}: {inters}; pass --dataset")
        dataset = os.path.basename(inters[0])[: -len(".inter")]
    src_files = sorted(glob.glob(os.path.join(data_dir, glob.escape(dataset) + ".*")))
    if not any(f.endswith(".inter") for f in src_files):
        raise SystemExit(f"{data_dir} has no {dataset}.inter")
    root = os.path.join(work_dir, "data")
    dst_dir = os.path.join(root, dataset)
    os.makedirs(dst_dir, exist_ok=True)
    for src in src_files:
        dst = os.path.join(dst_dir, os.path.basename(src))
        if os.path.islink(dst) and os.readlink(dst) == src:
            continue
        # concurrent runs may race here: link to a temp name, then atomically replace
        tmp = f"{dst}.{os.getpid()}.tmp"
        os.symlink(src, tmp)
        os.replace(tmp, dst)
    return dataset, root, [os.path.basename(f) for f in src_files]


def jsonable(x):
    try:
        json.dumps(x)
        return x
    except TypeError:
        if isinstance(x, dict):
            return {str(k): jsonable(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [jsonable(v) for v in x]
        if hasattr(x, "item"):
            try:
                return x.item()
            except Exception:
                pass
        return str(x)


def metrics_dict(result):
    return {str(k).lower(): float(v) for k, v in (result or {}).items()}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def peak_rss_mb():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    out_path = os.path.abspath(args.out) if args.out else os.path.join(
        work_dir, f"{args.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    dataset, data_root, linked = link_data(args.data_dir, args.dataset, work_dir)

    # RecBole writes ./log, ./log_tensorboard relative to cwd: keep them in work/.
    os.chdir(work_dir)

    import numpy as np
    import torch
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed
    from logging import getLogger

    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = protocol_config(args)
    # one checkpoint dir per run, so concurrent runs never share a checkpoint file
    run_tag = f"{args.model}-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    cfg.update({"data_path": data_root, "checkpoint_dir": os.path.join(work_dir, "saved", run_tag)})
    overrides = parse_overrides(args.overrides)
    cfg.update(overrides)

    config = Config(model=args.model, dataset=dataset, config_dict=cfg)
    # RecBole 1.2.1 hard-wires dataset "ml-100k" to the copy bundled in its package
    # (recbole/dataset_example/ml-100k), ignoring data_path: point it at our data.
    config["data_path"] = os.path.join(data_root, dataset)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    t0 = time.perf_counter()
    ds = create_dataset(config)
    logger.info(ds)
    inter_file = os.path.join(config["data_path"], f"{dataset}.inter")
    logger.info(f"read {inter_file} -> {os.path.realpath(inter_file)}")
    # What RecBole reports after filtering (before sequential augmentation, which
    # happens in data_preparation -> dataset.build()). user/item counts include [PAD].
    reported = {"users": ds.user_num, "items": ds.item_num, "inters": ds.inter_num,
                "sparsity": float(ds.sparsity)}
    train_data, valid_data, test_data = data_preparation(config, ds)
    data_seconds = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    n_params = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    # ---- instrument the trainer: time every training epoch and every validation
    epoch_times, epoch_losses, valid_times, valid_history = [], [], [], []
    orig_train_epoch = trainer._train_epoch
    orig_valid_epoch = trainer._valid_epoch

    def timed_train_epoch(train_data_, epoch_idx, *a, **kw):
        s = time.perf_counter()
        loss = orig_train_epoch(train_data_, epoch_idx, *a, **kw)
        epoch_times.append(time.perf_counter() - s)
        epoch_losses.append(float(sum(loss) if isinstance(loss, tuple) else loss))
        return loss

    def timed_valid_epoch(valid_data_, *a, **kw):
        s = time.perf_counter()
        score, result = orig_valid_epoch(valid_data_, *a, **kw)
        valid_times.append(time.perf_counter() - s)
        valid_history.append({"epoch": len(epoch_times) - 1, "score": float(score), **metrics_dict(result)})
        write_json(out_path, {
            "status": "running", "model": args.model, "command": [sys.executable] + sys.argv,
            "torch_num_threads": torch.get_num_threads(), "epochs_run": len(epoch_times),
            "train_seconds_per_epoch": epoch_times, "train_examples_per_epoch": len(train_data._dataset),
            "train_loss_per_epoch": epoch_losses, "valid_history": valid_history,
            "peak_rss_mb": peak_rss_mb(), "dataset_stats_recbole_reported": reported,
        })
        return score, result

    trainer._train_epoch = timed_train_epoch
    trainer._valid_epoch = timed_valid_epoch

    t0 = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=config["show_progress"])
    fit_seconds = time.perf_counter() - t0

    # ---- test with the best (early-stopping) checkpoint. torch>=2.6 defaults to
    # weights_only=True, which rejects RecBole's pickled Config, so load it here.
    ckpt = torch.load(trainer.saved_model_file, map_location=config["device"], weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    best_epoch = int(ckpt["epoch"])
    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_seconds = time.perf_counter() - t0
    logger.info(f"test result: {test_result}")

    # ---- stats. SequentialDataset.build() augments the *whole* filtered log before
    # the leave-one-out split: a user with n interactions yields n-1 (prefix -> next)
    # examples; the last goes to test, the one before to valid, the rest to train.
    n_train = len(train_data._dataset)
    mean_epoch = float(np.mean(epoch_times)) if epoch_times else float("nan")
    test = metrics_dict(test_result)

    results = {
        "status": "done",
        "framework": "recbole",
        "model": args.model,
        "dataset": dataset,
        "data_dir": os.path.abspath(args.data_dir),
        "linked_files": linked,
        "inter_file": os.path.realpath(inter_file),
        "command": [sys.executable] + sys.argv,
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "torch_num_threads": torch.get_num_threads(),
        "device": str(config["device"]),
        "test": test,
        "test_at_10": {k: test.get(k) for k in ("recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10")},
        "test_at_20": {k: test.get(k) for k in ("recall@20", "mrr@20", "ndcg@20", "hit@20", "precision@20")},
        "best_valid": metrics_dict(best_valid_result),
        "best_valid_score": float(best_valid_score),
        "best_epoch": best_epoch,
        "epochs_run": len(epoch_times),
        "max_epochs": args.epochs,
        "early_stopped": len(epoch_times) < args.epochs,
        "dataset_stats": {
            "recbole_reported": {
                **reported,
                "note": "as RecBole logs them after filtering; users/items include the [PAD] "
                        "token (id 0), so real counts are one less",
            },
            "users": reported["users"] - 1,
            "items": reported["items"] - 1,
            "interactions": reported["inters"],
            "augmented_examples": ds.inter_num,
            "train_examples": n_train,
            "valid_examples": len(valid_data._dataset),
            "test_examples": len(test_data._dataset),
        },
        "timing": {
            "train_seconds_per_epoch_mean": mean_epoch,
            "train_seconds_per_epoch_median": float(np.median(epoch_times)) if epoch_times else None,
            "train_seconds_per_epoch": epoch_times,
            "train_examples_per_epoch": n_train,
            "train_examples_per_second": n_train / mean_epoch if epoch_times else None,
            "valid_seconds_mean": float(np.mean(valid_times)) if valid_times else None,
            "test_eval_seconds": eval_seconds,
            "fit_seconds": fit_seconds,
            "data_prep_seconds": data_seconds,
            "total_seconds": time.perf_counter() - t_start,
        },
        "peak_rss_mb": peak_rss_mb(),
        "n_params": n_params,
        "train_loss_per_epoch": epoch_losses,
        "valid_history": valid_history,
        "config": {
            k: jsonable(config[k])
            for k in sorted(set(cfg) | {"hidden_size", "num_layers", "n_layers", "dropout_prob",
                                        "dropout_probs", "high_order", "pooling_type_layer_1",
                                        "pooling_type_layer_2", "learner", "weight_decay"})
            if k in config.final_config_dict
        },
        "overrides": jsonable(overrides),
        "checkpoint": trainer.saved_model_file,
    }
    write_json(out_path, results)
    logger.info(f"wrote {out_path}")
    print(json.dumps({k: results[k] for k in ("model", "test_at_10", "epochs_run", "best_epoch")}, indent=1))
    return results


if __name__ == "__main__":
    main()
