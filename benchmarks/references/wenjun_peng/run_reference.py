"""Train and test one model of the PyTorch reference Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search
on the official HEM benchmark (Amazon Cell Phones qrels), from a checkout given by ``--reference-dir``.

Runs inside the reference venv (``benchmarks/references/wenjun_peng/setup_env.sh``), never in tfpps's own:

    benchmarks/references/wenjun_peng/.venv/bin/python benchmarks/references/wenjun_peng/run_reference.py \\
        --reference-dir /tmp/wp-ref --model hem --epochs 2 --seed 1 --threads 1 --out hem.json

1. converts the qrels into the reference's ``forEM`` files (:mod:`convert`; no review text: an item's
   and a user's words are those of its TRAINING queries only) under ``--work-dir``;
2. builds the data and the model with the checkout's own ``main.load_data`` / ``main.load_model``
   and its own defaults (``main.parse_args([])``) unless a flag overrides them;
3. trains as the checkout's ``main.run`` does (Adam, shuffled ``DataLoader`` of the training rows,
   ``loss = model(batch)``), timing each epoch. The reference's validation (``--is_val``) only saves
   checkpoints that its test never reloads, and the benchmark has no validation split, so it is
   skipped: the final model is tested, as in the reference;
4. scores every official test (user, query) pair against ALL items with the checkout's
   ``model.all_item_test``, removes the user's training purchases, writes the top ``--depth`` as a
   TREC run file and computes MAP, MRR, NDCG@10 (trec_eval definitions) against ``test.qrels``.
   With ``--reference-eval`` the checkout's own ``utils.test.test_all_items`` (another protocol: no
   removal of training purchases, groups by query id, skips the last group) is run too, for reference.

The JSON written to ``--out`` (and its metrics printed) holds the metrics, seconds and loss per epoch,
the settings used and the conversion's counts.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import convert as cv  # noqa: E402  (our own module next to this file)

STRUCTURES = {"hem": "HEM", "zam": "ZAM", "aem": "AEM"}
DEFAULT_DATA = HERE.parents[3] / "shared" / "data" / "amazon-cellphones-hem"
# flag of this script -> attribute of the reference's argparse namespace
OVERRIDES = {"epochs": "EPOCH", "emb_dim": "emb_dim", "batch_size": "batch_size", "lr": "LR",
             "neg": "neg_sample_num", "noise_rate": "noise_rate", "lambda_": "LAMBDA",
             "att_hidden": "att_hidden_units_num", "score_function": "score_function"}


def load_reference_main(reference_dir: Path):
    """The checkout's ``main.py`` as a module (its imports of ``utils`` / ``structures`` resolve in the checkout)."""
    sys.path.insert(0, str(reference_dir))
    spec = importlib.util.spec_from_file_location("wenjun_peng_reference_main", reference_dir / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-dir", type=Path, default=None,
                   help="checkout of Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                   help="the official benchmark: train.qrels.gz, test.qrels.gz, query_text.txt.gz")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/tfpps-wenjun-peng"),
                   help="converted files and run files go here (never the repository)")
    p.add_argument("--model", choices=sorted(STRUCTURES), default="hem")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many batches (timing probes)")
    p.add_argument("--reference-eval", action="store_true", help="also run the checkout's own test_all_items")
    p.add_argument("--out", type=Path, required=True)
    g = p.add_argument_group("overrides of the reference's defaults (main.parse_args)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--emb-dim", dest="emb_dim", type=int)
    g.add_argument("--batch-size", dest="batch_size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--neg", type=int)
    g.add_argument("--noise-rate", dest="noise_rate", type=float)
    g.add_argument("--lambda", dest="lambda_", type=float)
    g.add_argument("--att-hidden", dest="att_hidden", type=int)
    g.add_argument("--score-function", dest="score_function", default="bias_product",
                   help="the reference's default 'product' fails in HEM.forward (word_bias_with_zero is only "
                        "made for 'bias_product'); its README runs bias_product, so that is the default here")
    args = p.parse_args(argv)
    problem = cv.check_reference_dir(args.reference_dir)
    if problem:
        print(f"run_reference: {problem}", file=sys.stderr)
        return 2

    import numpy as np
    import torch
    import torch.utils.data as Data

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    ref_dir = args.reference_dir.resolve()
    ref = load_reference_main(ref_dir)
    commit = subprocess.run(["git", "-C", str(ref_dir), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    # 1. the benchmark in the reference's files
    t0 = time.time()
    data_root = args.work_dir / "data"
    conv = cv.convert_benchmark(args.data_dir, data_root)
    test_rows = cv.read_qrels(next(f for f in (args.data_dir / "test.qrels.gz", args.data_dir / "test.qrels") if f.exists()))
    convert_seconds = time.time() - t0

    # 2. the reference's settings, data and model
    structure = STRUCTURES[args.model]
    ref_args = ref.parse_args([])
    defaults = dict(vars(ref_args))
    ref_args.structure_name = structure
    ref_args.device = "cpu"
    ref_args.is_val = False
    for ours, theirs in OVERRIDES.items():
        value = getattr(args, ours)
        if value is not None:
            setattr(ref_args, theirs, value)
    # the reference's load_data knows the forEM folder only by the names HEM and ZAM; its AEM is ZAM's data
    # with one fewer attention slot (no zero vector), which is what its own load_data does for "AEM"
    data_dict = ref.load_data("ZAM" if structure == "AEM" else structure, str(data_root))
    if structure == "AEM":
        data_dict["user_click_lens"] = data_dict["user_click_lens"] - 1
    model = ref.load_model(ref_args, data_dict)

    # 3. training, as main.run does it
    optimizer = torch.optim.Adam(model.parameters(), lr=ref_args.LR)
    loader = Data.DataLoader(dataset=Data.TensorDataset(torch.Tensor(data_dict["train_set"])),
                             batch_size=ref_args.batch_size, shuffle=True)
    epoch_seconds, epoch_losses, steps = [], [], 0
    model.train()
    for epoch in range(ref_args.EPOCH):
        start, total, n = time.time(), 0.0, 0
        for step, [b_x] in enumerate(loader):
            if args.max_steps and step >= args.max_steps:
                break
            loss = model(b_x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            n += 1
        epoch_seconds.append(time.time() - start)
        epoch_losses.append(total / max(1, n))
        steps = n
        print(f"[{args.model} seed {args.seed}] epoch {epoch + 1}/{ref_args.EPOCH}: loss {epoch_losses[-1]:.4f}, "
              f"{epoch_seconds[-1]:.1f}s ({n} batches)", flush=True)

    # 4. the official protocol: all items, training purchases removed, depth 100
    model.eval()
    users = {u: k for k, u in enumerate(conv.users)}
    items = {i: k for k, i in enumerate(conv.items)}
    bought = conv.training_items()
    run_path = args.work_dir / f"{args.model}-seed{args.seed}.run"
    run_path.parent.mkdir(parents=True, exist_ok=True)
    ranked_docs, unscored = {}, 0
    start = time.time()
    with torch.no_grad(), open(run_path, "w", encoding="utf-8") as fh:
        for user, query in cv.test_pairs(test_rows):
            qid = f"{user}_{query}"
            if user not in users:  # no embedding for a user without training purchases: empty ranking
                unscored += 1
                continue
            scores = model.all_item_test(torch.LongTensor([users[user]]), torch.LongTensor([query])).view(-1).numpy()
            ranked = cv.rank_items(scores, (items[i] for i in bought.get(user, ())), args.depth)
            lines = cv.run_lines(qid, ranked, conv.items, f"wenjun-peng-{args.model}")
            fh.write("".join(line + "\n" for line in lines))
            ranked_docs[qid] = [conv.items[i] for i, _ in ranked]
    eval_seconds = time.time() - start
    metrics = cv.trec_metrics(ranked_docs, cv.relevant_of(test_rows))

    own_eval = None
    if args.reference_eval:
        from utils.test import test_all_items  # the checkout's evaluation

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            ndcg5 = test_all_items(model, [list(r) for r in conv.test], False, len(conv.items), torch.device("cpu"))
        own_eval = {"ndcg@5": float(ndcg5), "printed": buf.getvalue().strip().splitlines()}

    result = {
        "side": "reference",
        "model": args.model,
        "structure": structure,
        "seed": args.seed,
        "reference_commit": commit,
        "metrics": metrics,
        "epoch_seconds": [round(s, 2) for s in epoch_seconds],
        "epoch_losses": epoch_losses,
        "batches_per_epoch": steps,
        "train_seconds": round(sum(epoch_seconds), 2),
        "eval_seconds": round(eval_seconds, 3),
        "convert_seconds": round(convert_seconds, 2),
        "run_file": str(run_path),
        "unscored_pairs": unscored,
        "settings": {k: getattr(ref_args, k) for k in defaults},
        "reference_defaults": defaults,
        "conversion": {**conv.statistic(), "train_rows": len(conv.train), "test_rows": len(conv.test),
                       "test_pairs": len(cv.test_pairs(test_rows)), "test_only_queries": len(conv.test_queries),
                       "dropped_test_rows": len(conv.dropped_test),
                       "user_word_width": max(map(len, conv.user_words)), "item_word_width": max(map(len, conv.item_words))},
        "reference_own_eval": own_eval,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"model": args.model, "seed": args.seed, **{k: round(v, 4) for k, v in metrics.items() if k != "num_queries"},
                      "s/epoch": round(sum(epoch_seconds) / max(1, len(epoch_seconds)), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
