"""The official HEM benchmark (Ai et al. 2017 qrels) in the input format of the PyTorch reference code
Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search, plus the ranking and TREC metrics of
the comparison. Plain Python (numpy only for :func:`rank_items`): importable without torch and without
TensorFlow, in both venvs; the TREC metrics are :func:`tfpps.evaluation.trec_scores.trec_metrics`, which imports
nothing outside the standard library.

The reference's HEM / ZAM / AEM read one directory ``<data_root>/forEM`` of space-separated integer
files (``utils/tools.load_list``; every file but the click lists must be rectangular, because the
reference turns it into one ``torch.Tensor``):

=====================  =====================================================================
``statistic.json``     ``word_num``, ``item_num``, ``user_num``, ``max_click_len``
``query_seg.txt``      row = query id: ``len w1 .. wlen PAD ..`` (PAD = ``word_num``, the zero
                       row the models append to the word table; the query vector is the sum of
                       its word vectors divided by ``len``)
``user_word_map.txt``  row = user id: ``len w1 .. PAD ..`` (words the user "wrote")
``item_title_map.txt`` row = item id: ``len w1 .. PAD ..`` (words of the item)
``user_click_map.txt`` row = user id: ``len i1 .. ik PAD ..`` (PAD = ``item_num``); ``len = k + 1``
                       counts one PAD slot, the zero vector ZAM attends to (the reference's AEM
                       uses ``len - 1``); the row width is ``max_click_len``
``word_distribution``  one count per word id (negative words ~ count ** 0.75)
``item_distribution``  one count per item id (negative items ~ count ** 0.75)
``click_train.txt``    ``user query item`` per training purchase-under-a-query
``click_test.txt``     the same for the test judgements, grouped by (user, query)
``click_valid.txt``    validation rows (empty here: the benchmark has no validation split)
=====================  =====================================================================

Mapping of the benchmark (``train.qrels``: ``<reviewerID>_<query line> 0 <asin> 1``):

* users and items get ids in order of first appearance in ``train.qrels``; query ids are the
  official query line numbers (so ``query_seg`` has one row per line of ``query_text``);
* word ids: every distinct word of ``query_text`` in order of first appearance. The review texts
  are not available, so an item's "title" words and a user's words are the distinct words of the
  item's / the user's TRAINING queries only (first-appearance order), and ``word_distribution``
  counts the words of the query of every training row. The 30 test-only queries' words are in the
  vocabulary (the models must read the test query) but never in a training file: their count is 0,
  they are never drawn as negatives, never part of a user's or an item's words;
* ``user_click_map`` holds the user's distinct training purchases; ``item_distribution`` counts
  each item's training rows.
"""
from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:  # the reference venv runs this from its own directory, without tfpps installed
    sys.path.insert(0, str(_REPO))
from tfpps.evaluation.trec_scores import trec_metrics  # noqa: E402,F401  (plain Python; both sides score with it)

FOR_EM = "forEM"


def open_text(path: str | Path):
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_qrels(path: str | Path) -> list[tuple[str, int, str]]:
    """``(user, query_id, item)`` of each relevant line (``<user>_<query> 0 <item> <rel>``), file order."""
    rows = []
    with open_text(path) as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            qid, _, item, rel = parts[:4]
            if int(rel) <= 0:
                continue
            user, query = qid.rsplit("_", 1)
            rows.append((user, int(query), item))
    return rows


def read_queries(path: str | Path) -> list[list[str]]:
    """Words of each query (line number = query id)."""
    with open_text(path) as fh:
        return [line.split() for line in fh]


def _index(values: Iterable[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for v in values:
        ids.setdefault(v, len(ids))
    return ids


def _padded(rows: Sequence[Sequence[int]], pad: int, width: int, extra_len: int = 0) -> list[list[int]]:
    """``[len(row) + extra_len, *row, pad ...]``, every line ``1 + width`` long."""
    out = []
    for row in rows:
        if len(row) + extra_len > width:
            raise ValueError(f"row of {len(row)} (+{extra_len}) does not fit width {width}")
        out.append([len(row) + extra_len, *row, *([pad] * (width - len(row)))])
    return out


@dataclass
class Converted:
    """The benchmark in the reference's ids (see the module doc)."""

    users: list[str]
    items: list[str]
    words: list[str]
    queries: list[list[int]]            # word ids of each query id
    train: list[tuple[int, int, int]]   # (user, query, item)
    test: list[tuple[int, int, int]]    # test judgements whose user and item have ids
    user_words: list[list[int]]
    item_words: list[list[int]]
    user_clicks: list[list[int]]
    word_counts: list[int]
    item_counts: list[int]
    test_queries: set[int] = field(default_factory=set)      # query ids that occur in test.qrels only
    dropped_test: list[tuple[str, int, str]] = field(default_factory=list)  # user or item unknown in training

    @property
    def max_click_len(self) -> int:
        """Width of ``user_click_map``: the longest purchase list plus ZAM's zero-vector slot."""
        return max((len(c) for c in self.user_clicks), default=0) + 1

    def statistic(self) -> dict:
        return {"word_num": len(self.words), "item_num": len(self.items), "user_num": len(self.users),
                "max_click_len": self.max_click_len}

    def training_items(self) -> dict[str, set[str]]:
        """Each user's training purchases (asins): removed from that user's rankings."""
        out: dict[str, set[str]] = defaultdict(set)
        for u, _, i in self.train:
            out[self.users[u]].add(self.items[i])
        return out


def convert(train_rows: list[tuple[str, int, str]], test_rows: list[tuple[str, int, str]],
            query_words: list[list[str]]) -> Converted:
    """Ids and maps of the reference's format from the qrels rows (only training rows feed the maps)."""
    seen_rows = set()
    train_rows = [r for r in train_rows if not (r in seen_rows or seen_rows.add(r))]  # exact duplicates once
    users = _index(u for u, _, _ in train_rows)
    items = _index(i for _, _, i in train_rows)
    words = _index(w for q in query_words for w in q)
    n_queries = len(query_words)
    for _, q, _ in [*train_rows, *test_rows]:
        if not 0 <= q < n_queries:
            raise ValueError(f"query id {q} is not a line of query_text ({n_queries} lines)")
    queries = [[words[w] for w in q] for q in query_words]
    user_words: list[dict[int, None]] = [dict() for _ in users]
    item_words: list[dict[int, None]] = [dict() for _ in items]
    user_clicks: list[dict[int, None]] = [dict() for _ in users]
    word_counts = [0] * len(words)
    item_counts = [0] * len(items)
    train = []
    for user, query, item in train_rows:
        u, i = users[user], items[item]
        train.append((u, query, i))
        item_counts[i] += 1
        user_clicks[u].setdefault(i)
        for w in queries[query]:
            word_counts[w] += 1
            user_words[u].setdefault(w)
            item_words[i].setdefault(w)
    test, dropped = [], []
    for row in test_rows:
        user, query, item = row
        if user in users and item in items:
            test.append((users[user], query, items[item]))
        else:
            dropped.append(row)
    train_queries = {q for _, q, _ in train_rows}
    return Converted(
        users=list(users), items=list(items), words=list(words), queries=queries, train=train, test=test,
        user_words=[list(d) for d in user_words], item_words=[list(d) for d in item_words],
        user_clicks=[list(d) for d in user_clicks], word_counts=word_counts, item_counts=item_counts,
        test_queries={q for _, q, _ in test_rows} - train_queries, dropped_test=dropped)


def _write_rows(path: Path, rows: Iterable[Sequence[int]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(" ".join(str(int(v)) for v in row) + "\n")


def write_reference_dir(conv: Converted, data_root: str | Path) -> Path:
    """Write ``<data_root>/forEM`` (the files :func:`main.load_data` of the reference reads); returns it."""
    out = Path(data_root) / FOR_EM
    out.mkdir(parents=True, exist_ok=True)
    word_pad, item_pad = len(conv.words), len(conv.items)
    _write_rows(out / "query_seg.txt", _padded(conv.queries, word_pad, max(map(len, conv.queries), default=0)))
    _write_rows(out / "user_word_map.txt", _padded(conv.user_words, word_pad, max(map(len, conv.user_words), default=0)))
    _write_rows(out / "item_title_map.txt", _padded(conv.item_words, word_pad, max(map(len, conv.item_words), default=0)))
    _write_rows(out / "user_click_map.txt", _padded(conv.user_clicks, item_pad, conv.max_click_len, extra_len=1))
    _write_rows(out / "word_distribution.txt", ([c] for c in conv.word_counts))
    _write_rows(out / "item_distribution.txt", ([c] for c in conv.item_counts))
    _write_rows(out / "click_train.txt", conv.train)
    groups: dict[tuple[int, int], list[int]] = {}
    for u, q, i in conv.test:
        groups.setdefault((u, q), []).append(i)
    _write_rows(out / "click_test.txt", ((u, q, i) for (u, q), its in groups.items() for i in its))
    (out / "click_valid.txt").write_text("")
    (out / "statistic.json").write_text(json.dumps(conv.statistic(), indent=2) + "\n")
    (out / "ids.json").write_text(json.dumps({"users": conv.users, "items": conv.items, "words": conv.words}) + "\n")
    return out


def convert_benchmark(data_dir: str | Path, data_root: str | Path) -> Converted:
    """``train.qrels.gz``, ``test.qrels.gz`` and ``query_text.txt.gz`` of ``data_dir`` -> ``data_root/forEM``."""
    data_dir = Path(data_dir)

    def find(name: str) -> Path:
        for candidate in (data_dir / f"{name}.gz", data_dir / name):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"{data_dir}: no {name}(.gz)")

    conv = convert(read_qrels(find("train.qrels")), read_qrels(find("test.qrels")), read_queries(find("query_text.txt")))
    write_reference_dir(conv, data_root)
    return conv


def test_pairs(test_rows: list[tuple[str, int, str]]) -> list[tuple[str, int]]:
    """The distinct (user, query) pairs of the test judgements, in file order."""
    return list(dict.fromkeys((u, q) for u, q, _ in test_rows))


def rank_items(scores, exclude: Iterable[int], depth: int = 100) -> list[tuple[int, float]]:
    """The ``depth`` best ``(item id, score)`` of ``scores`` (one per item id) without ``exclude``;
    ties by the lower item id."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64).copy()
    ex = np.fromiter(exclude, dtype=np.int64)
    if ex.size:
        s[ex] = -np.inf
    order = np.lexsort((np.arange(s.size), -s))  # score descending, then id ascending
    return [(int(i), float(s[i])) for i in order[:depth] if np.isfinite(s[i])]


def run_lines(qid: str, ranked: list[tuple[int, float]], items: Sequence[str], tag: str) -> list[str]:
    """TREC run lines ``<qid> Q0 <item> <rank> <score> <tag>``."""
    return [f"{qid} Q0 {items[i]} {rank} {score:.6f} {tag}" for rank, (i, score) in enumerate(ranked, start=1)]


def relevant_of(test_rows: list[tuple[str, int, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for u, q, i in test_rows:
        out[f"{u}_{q}"].add(i)
    return dict(out)


def check_reference_dir(path) -> str | None:
    """``None`` when ``path`` looks like a checkout of the reference, else a one-line reason."""
    if path is None or str(path) == "":
        return "--reference-dir is required: a checkout of Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search"
    p = Path(path)
    missing = [f for f in ("main.py", "structures/HEM.py", "structures/ZAM.py") if not (p / f).is_file()]
    if not p.is_dir():
        return f"--reference-dir={p}: no such directory (clone Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search)"
    if missing:
        return f"--reference-dir={p}: not a checkout of Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search (no {missing[0]})"
    return None
