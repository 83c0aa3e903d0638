r"""MAP, MRR and NDCG@k of ranked lists against binary judgements, with ``trec_eval``'s definitions.

Plain Python (no TensorFlow, nothing outside the standard library), so that code running outside tfpps's
virtualenv (the third-party reference of ``benchmarks/references/wenjun_peng``) scores with the same function
as :func:`tfpps.evaluation.trec.run_file_metrics`.

For a query with relevant set :math:`R` and ranked list :math:`d_1, d_2, \dots`:

.. math::
   \mathrm{AP} = \frac{1}{|R|} \sum_{k:\, d_k \in R} \frac{|\{j \le k : d_j \in R\}|}{k}, \qquad
   \mathrm{RR} = \frac{1}{\min\{k : d_k \in R\}}, \qquad
   \mathrm{NDCG@}n = \frac{\sum_{k \le n,\, d_k \in R} 1/\log_2(k + 1)}{\sum_{k=1}^{\min(|R|, n)} 1/\log_2(k + 1)}

averaged over the judged queries; a judged query with no ranking scores 0.

Example:
  >>> scores = trec_metrics({"q1": ["a", "b", "c"]}, {"q1": {"b", "c"}, "q2": {"x"}})
  >>> round(scores["map"], 4), round(scores["mrr"], 4), scores["num_queries"]
  (0.2917, 0.25, 2)
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence


def trec_metrics(run: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], ndcg_depth: int = 10) -> dict[str, float]:
    """MAP, MRR and NDCG@``ndcg_depth`` (binary gains, mean over the queries of ``relevant``) of ``run``, the
    ranked items of each query id, plus ``num_queries``."""
    total = {"map": 0.0, "mrr": 0.0, f"ndcg@{ndcg_depth}": 0.0}
    for qid, rel in relevant.items():
        hits, ap, rr, dcg = 0, 0.0, 0.0, 0.0
        for pos, doc in enumerate(run.get(qid, ()), start=1):
            if doc in rel:
                hits += 1
                ap += hits / pos
                rr = rr or 1.0 / pos
                if pos <= ndcg_depth:
                    dcg += 1.0 / math.log2(pos + 1)
        ideal = sum(1.0 / math.log2(p + 1) for p in range(1, min(len(rel), ndcg_depth) + 1))
        total["map"] += ap / len(rel)
        total["mrr"] += rr
        total[f"ndcg@{ndcg_depth}"] += dcg / ideal
    n = max(1, len(relevant))
    return {name: value / n for name, value in total.items()} | {"num_queries": len(relevant)}
