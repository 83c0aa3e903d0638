"""Per-query results of product search as TREC files (the HEM code's evaluation format).

``<split>.run`` holds, for every evaluated (user, query), the top ``depth``
items after removing the user's training purchases, one line each::

    <user>_<query_id> Q0 <item> <rank> <score> tfpps-<model>

and ``<split>.qrels`` the relevant items (``<user>_<query_id> 0 <item> 1``),
so ``trec_eval -m map -m recip_rank -m ndcg_cut.10 test.qrels test.run``
scores the run the way Ai et al. report it. :func:`run_file_metrics` computes
MAP, MRR and NDCG@10 from the two files (binary relevance, trec_eval's
definitions) and is checked in the tests against the in-graph evaluator.

Example::

    write_trec_files(model.score_items, batches, users, items, "runs/hem/test", model_name="hem")
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

import tensorflow as tf

from tfpps.evaluation.evaluator import exclusion_mask
from tfpps.evaluation.trec_scores import trec_metrics


def write_trec_files(
    score_fn: Callable[[Mapping[str, tf.Tensor]], tf.Tensor],
    batches: Iterable[Mapping[str, tf.Tensor]],
    users: list[str],
    items: list[str],
    prefix: str | Path,
    model_name: str = "tfpps",
    depth: int = 100,
    query_names: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``<prefix>.run`` and ``<prefix>.qrels``; returns their paths.

    ``batches`` are search evaluation batches (:func:`tfpps.data.examples.search.eval_examples`):
    ``user_id``, ``query_id``, ``item_ids`` (masked history) and ``target_items``. ``query_names``
    (:meth:`tfpps.data.dataset_dir.DatasetDir.query_names`) names each query index in the qid
    ``<user>_<query>``; without it the index is the name. With the HEM benchmark's names the run scores
    against its official ``test.qrels`` as is.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    run_path, qrels_path = prefix.with_suffix(".run"), prefix.with_suffix(".qrels")
    seen: set[str] = set()
    with open(run_path, "w", encoding="utf-8") as run_out, open(qrels_path, "w", encoding="utf-8") as qrels_out:
        for features in batches:
            scores = tf.convert_to_tensor(score_fn(features))
            mask = exclusion_mask({**features, "target_item": tf.zeros_like(features["user_id"])}, tf.shape(scores)[1], True)
            # exclusion_mask never excludes the target column; column 0 (PAD) must go too
            mask = tf.logical_or(mask, tf.equal(tf.range(tf.shape(scores)[1]), 0)[None, :])
            masked = tf.where(mask, tf.fill(tf.shape(scores), -np.inf), scores)
            top = tf.math.top_k(masked, k=min(depth, int(scores.shape[1])))
            values, indices = top.values.numpy(), top.indices.numpy()
            for row, (user, query) in enumerate(zip(features["user_id"].numpy(), features["query_id"].numpy())):
                qid = f"{users[user]}_{query_names[int(query)] if query_names else int(query)}"
                if qid in seen:  # one (user, query) can be held out only once per split; keep the first
                    continue
                seen.add(qid)
                rank = 0
                for value, index in zip(values[row], indices[row]):
                    if not np.isfinite(value):
                        break
                    rank += 1
                    run_out.write(f"{qid} Q0 {items[index]} {rank} {value:.6f} tfpps-{model_name}\n")
                for target in dict.fromkeys(int(t) for t in features["target_items"].numpy()[row] if t > 0):
                    qrels_out.write(f"{qid} 0 {items[target]} 1\n")
    return run_path, qrels_path


def run_file_metrics(run_path: str | Path, qrels_path: str | Path, ndcg_depth: int = 10) -> dict[str, float]:
    """MAP, MRR and NDCG@``ndcg_depth`` of a TREC run against qrels (binary relevance, mean over qrels queries;
    :func:`tfpps.evaluation.trec_scores.trec_metrics`)."""
    relevant: dict[str, set[str]] = defaultdict(set)
    for line in Path(qrels_path).read_text().splitlines():
        qid, _, doc, rel = line.split()
        if int(rel) > 0:
            relevant[qid].add(doc)
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line in Path(run_path).read_text().splitlines():
        qid, _, doc, rank, _score, _tag = line.split()
        ranked[qid].append((int(rank), doc))
    return trec_metrics({qid: [d for _, d in sorted(docs)] for qid, docs in ranked.items()}, relevant, ndcg_depth)
