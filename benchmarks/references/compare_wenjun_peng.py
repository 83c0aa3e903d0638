"""tfpps HEM / ZAM / AEM against the PyTorch reference Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search
on the official HEM benchmark (Amazon Cell Phones & Accessories qrels of Ai et al. 2017), one table.

    bash benchmarks/references/wenjun_peng/setup_env.sh
    git clone https://github.com/Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search /tmp/wp-ref
    git -C /tmp/wp-ref checkout 048425d8d933bdc47724b9c41b74c6f200554dab
    python -m benchmarks.references.compare_wenjun_peng --reference-dir /tmp/wp-ref --models hem zam --seeds 1 --epochs 2

Data: ``../shared/data/amazon-cellphones-hem`` (``train.qrels.gz``, ``test.qrels.gz``,
``query_text.txt.gz``; never copied into the repository). The reference side converts the qrels into
its ``forEM`` files (``benchmarks/references/wenjun_peng/convert.py``: there is no review text, so an item's
and a user's words are the words of its TRAINING queries only; the 30 test-only queries are in no
training file) and trains in its own venv (``benchmarks/references/wenjun_peng/.venv``), one run at a time.

Protocol, both sides: each of the 665 official test (user, query) pairs is scored against all
10,428 items, the user's training purchases are removed, the top 100 are written as a TREC run file,
and both run files are scored here by the same code, :func:`tfpps.evaluation.trec.run_file_metrics`
(trec_eval's MAP, MRR at depth 100 and NDCG@10, binary gains) against the official ``test.qrels``.
The reference's own evaluation (``utils/test.py``) differs (it keeps training purchases in the
ranking, groups test rows by query id only and never scores the last group): not used for the table.

The tfpps side is :func:`tfpps_side`: ``python -m tfpps.train --model=<m> --dataset=amazon-cellphones-hem
--set train.seed=<s> --set train.epochs=<e>`` (through ``benchmarks.run_tfpps``), skipped with one
line while ``configs/datasets/amazon-cellphones-hem.yaml`` does not exist.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from benchmarks.common import REPO, machine, results_dir, run_tfpps_cached, table
from benchmarks.references.wenjun_peng.convert import check_reference_dir

PINNED_COMMIT = "048425d8d933bdc47724b9c41b74c6f200554dab"
REFERENCE_DIR = REPO / "benchmarks" / "references" / "wenjun_peng"
REFERENCE_PY = REFERENCE_DIR / ".venv" / "bin" / "python"
RUNNER = REFERENCE_DIR / "run_reference.py"
DATASET = "amazon-cellphones-hem"
MODELS = ("hem", "zam", "aem")
METRICS = ("map", "mrr", "ndcg@10")
THREADS = 1  # set from --threads in main(); tfpps_side reads it


def tfpps_side(model: str, seed: int, epochs: int, reuse: bool = False) -> dict | None:
    """Train tfpps ``model`` on the benchmark with ``seed`` for ``epochs`` epochs; the result of
    ``benchmarks.run_tfpps`` (its ``trec_run`` is the test run file), or ``None`` (with one printed line)
    while the dataset config is not there yet."""
    config = REPO / "configs" / "datasets" / f"{DATASET}.yaml"
    if not config.exists():
        print(f"tfpps side skipped: {config.relative_to(REPO)} does not exist yet", flush=True)
        return None
    out = REPO / "runs" / "wenjun-peng" / f"tfpps-{model}-{epochs}ep-seed{seed}.json"  # runs/ is git-ignored
    argv = [f"--model={model}", f"--dataset={DATASET}", "--set", f"train.seed={seed}", "--set", f"train.epochs={epochs}",
            "--set", f"train.run_dir=runs/wenjun-peng/tfpps-{model}-seed{seed}"]
    os.environ["TFPPS_BENCH_THREADS"] = str(THREADS)
    return run_tfpps_cached(out, argv, reuse)


def reference_side(args, model: str, seed: int) -> dict:
    """One run of ``benchmarks/references/wenjun_peng/run_reference.py`` in the reference venv; its result JSON."""
    out = args.work_dir / f"reference-{model}-{args.epochs}ep-seed{seed}.json"
    cmd = [str(args.reference_python), str(RUNNER), "--reference-dir", str(args.reference_dir),
           "--data-dir", str(args.data_dir), "--work-dir", str(args.work_dir), "--model", model,
           "--seed", str(seed), "--threads", str(args.threads), "--epochs", str(args.epochs), "--out", str(out)]
    if args.reuse and out.exists() and json.loads(out.read_text()).get("cmd") == cmd:
        print(f"reusing {out}", flush=True)
        return json.loads(out.read_text())
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = json.loads(out.read_text())
    result["cmd"] = cmd
    out.write_text(json.dumps(result, indent=2))
    return result


def plain_qrels(data_dir: Path, work_dir: Path) -> Path:
    """``test.qrels`` uncompressed in the work dir (``run_file_metrics`` reads plain text)."""
    src = data_dir / "test.qrels.gz"
    if not src.exists():
        return data_dir / "test.qrels"
    dst = work_dir / "test.qrels"
    work_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rt") as fh:
        dst.write_text(fh.read())
    return dst


def qids(path: Path, column: int = 0) -> set[str]:
    return {line.split()[column] for line in Path(path).read_text().splitlines() if line.strip()}


def score_tfpps_run(result: dict, official_qrels: Path, run_file_metrics) -> tuple[dict | None, str | None]:
    """Metrics of tfpps's test run file against the official qrels when its ``<user>_<query>`` ids are the
    official ones (>= 99% of the official pairs present); otherwise against the ``test.qrels`` tfpps wrote
    next to it (its own query ids; same pairs and judgements), which is said in the second value."""
    run = result.get("trec_run")
    if not run or not Path(run).exists():
        return None, None
    official = qids(official_qrels)
    if len(official & qids(run)) >= 0.99 * len(official):
        return run_file_metrics(run, official_qrels), str(official_qrels)
    own = Path(run).with_suffix(".qrels")
    same = judgement_sets(own) == judgement_sets(official_qrels)
    print(f"tfpps run {run}: its query ids are tfpps's own; scored against its {own.name}, whose (user, relevant items) "
          f"sets {'are exactly' if same else 'are NOT'} those of the official qrels", flush=True)
    return run_file_metrics(run, own), f"{own} ({'same' if same else 'DIFFERENT'} judgement sets as the official qrels)"


def judgement_sets(qrels: Path) -> Counter:
    """Multiset of (user, relevant items) over the qrels' ``<user>_<query>`` ids (query ids left out)."""
    rel: dict[str, set[str]] = {}
    for line in Path(qrels).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and int(parts[3]) > 0:
            rel.setdefault(parts[0], set()).add(parts[2])
    return Counter((qid.rsplit("_", 1)[0], frozenset(items)) for qid, items in rel.items())


def mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {s:.{digits}f}"


def plot(path: Path, rows: list[dict], title: str) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        print("no matplotlib in this venv: plot skipped")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['model']}\n{r['side']}" for r in rows]
    x = np.arange(len(labels))
    width = 0.8 / len(METRICS)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4))
    for k, m in enumerate(METRICS):
        values = [statistics.mean(r["_values"][m]) for r in rows]
        bars = ax.bar(x + k * width - 0.4 + width / 2, values, width, label=m)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_ylabel("score (mean over seeds)")
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    global THREADS
    p = argparse.ArgumentParser(description="tfpps vs the Wenjun-Peng PyTorch reference (HEM benchmark, Cell Phones)")
    p.add_argument("--reference-dir", type=Path, default=None,
                   help=f"checkout of Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search (pinned {PINNED_COMMIT[:12]})")
    p.add_argument("--reference-python", type=Path, default=REFERENCE_PY, help="python of the reference venv")
    p.add_argument("--models", nargs="+", default=["hem", "zam"], choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1])
    p.add_argument("--epochs", type=int, default=20, help="both sides (the reference's default EPOCH is 20)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each side (torch; TF intra-op)")
    p.add_argument("--data-dir", type=Path, default=None, help="default: <shared data>/amazon-cellphones-hem")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/tfpps-wenjun-peng"),
                   help="converted files, run files and per-run JSON (outside the repository)")
    p.add_argument("--reuse", action="store_true", help="reuse per-run JSON made by the same command")
    p.add_argument("--out", type=Path, default=results_dir(__file__) / "compare_wenjun_peng.json")
    args = p.parse_args(argv)

    problem = check_reference_dir(args.reference_dir)
    if problem:
        print(f"compare_wenjun_peng: {problem}", file=sys.stderr)
        return 2
    if not args.reference_python.exists():
        print(f"compare_wenjun_peng: --reference-python={args.reference_python}: missing; "
              f"run bash benchmarks/references/wenjun_peng/setup_env.sh", file=sys.stderr)
        return 2
    if args.data_dir is None:
        from tfpps.data.datasets import shared_data_dir

        args.data_dir = shared_data_dir() / DATASET
    if not (args.data_dir / "test.qrels.gz").exists() and not (args.data_dir / "test.qrels").exists():
        print(f"compare_wenjun_peng: {args.data_dir}: no test.qrels(.gz) (set TFPPS_SHARED_DATA or --data-dir)", file=sys.stderr)
        return 2
    THREADS = args.threads
    args.reference_dir = args.reference_dir.resolve()
    commit = subprocess.run(["git", "-C", str(args.reference_dir), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    if commit != PINNED_COMMIT:
        print(f"warning: {args.reference_dir} is at {commit or 'an unknown commit'}, pinned is {PINNED_COMMIT}", flush=True)

    from tfpps.evaluation.trec import run_file_metrics

    qrels = plain_qrels(args.data_dir, args.work_dir)
    raw: dict = {}
    for model in args.models:
        for seed in args.seeds:  # alternate the sides seed by seed: a drift in machine load hits both
            ref = reference_side(args, model, seed)
            ref["scored"] = run_file_metrics(ref["run_file"], qrels)
            ref["seconds_per_epoch"] = statistics.mean(ref["epoch_seconds"])
            raw.setdefault(model, {}).setdefault("reference", []).append(ref)
            ours = tfpps_side(model, seed, args.epochs, reuse=args.reuse)
            if ours is not None:
                ours["scored"], ours["scored_against"] = score_tfpps_run(ours, qrels, run_file_metrics)
                ours["seconds_per_epoch"] = float(ours.get("train_seconds_per_epoch", float("nan")))
                raw[model].setdefault("tfpps", []).append(ours)

    rows = []
    for model in args.models:
        for side in ("reference", "tfpps"):
            runs = [r for r in raw[model].get(side, []) if r.get("scored")]
            if not runs:
                continue
            values = {m: [r["scored"][m] for r in runs] for m in METRICS}
            rows.append({"model": model, "side": side, "seeds": len(runs),
                         **{m: mean_std(values[m]) for m in METRICS},
                         "s/epoch": mean_std([r["seconds_per_epoch"] for r in runs], digits=1),
                         "queries": runs[0]["scored"]["num_queries"], "_values": values})
    title = (f"HEM benchmark (Cell Phones, 665 test pairs, all items, training purchases removed), "
             f"{args.epochs} epochs, {args.threads} thread(s), mean ± std over seeds {args.seeds}")
    print()
    print(table(rows, ["model", "side", "seeds", *METRICS, "s/epoch", "queries"], title=title))
    payload = {"machine": machine(), "reference_commit": commit, "pinned_commit": PINNED_COMMIT,
               "epochs": args.epochs, "seeds": args.seeds, "threads": args.threads, "data_dir": str(args.data_dir),
               "protocol": "665 official test (user, query) pairs, all items, user's training purchases removed, "
                           "depth 100, scored by tfpps.evaluation.trec.run_file_metrics",
               "table": [{k: v for k, v in r.items() if k != "_values"} for r in rows],
               "values": {f"{r['model']}/{r['side']}": r["_values"] for r in rows},
               "runs": raw}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    png = plot(args.out.with_suffix(".png"), rows, title) if rows else None
    print(f"\nwrote {args.out}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
