"""The HEM-benchmark conversion for the Wenjun-Peng PyTorch reference (benchmarks/references/wenjun_peng/convert.py)
and the scripts' refusal of a bad --reference-dir. No torch, no shared data: a tiny qrels fixture."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.references.wenjun_peng import convert as cv

REPO = Path(__file__).resolve().parents[1]

QUERIES = ["phone case", "phone charger", "car charger mount"]  # query 2 is test-only
TRAIN = ["u1_0 0 iA 1", "u1_1 0 iB 1", "u2_0 0 iA 1", "u2_1 0 iC 1", "u2_1 0 iC 1"]  # last line: a duplicate
TEST = ["u1_2 0 iC 1", "u1_2 0 iD 1", "u2_2 0 iB 1"]  # iD: never bought in training


def _gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt") as fh:
        fh.write("".join(f"{line} \n" for line in lines))  # the official files end lines with a blank


@pytest.fixture()
def bench(tmp_path: Path) -> Path:
    d = tmp_path / "bench"
    d.mkdir()
    _gz(d / "query_text.txt.gz", QUERIES)
    _gz(d / "train.qrels.gz", TRAIN)
    _gz(d / "test.qrels.gz", TEST)
    return d


def test_reference_files_exact(bench: Path, tmp_path: Path) -> None:
    conv = cv.convert_benchmark(bench, tmp_path / "data")
    out = tmp_path / "data" / "forEM"
    # ids: users/items by first appearance in train.qrels, words by first appearance in query_text
    assert conv.users == ["u1", "u2"] and conv.items == ["iA", "iB", "iC"]
    assert conv.words == ["phone", "case", "charger", "car", "mount"]
    files = {p.name: p.read_text() for p in out.iterdir()}
    assert json.loads(files["statistic.json"]) == {"word_num": 5, "item_num": 3, "user_num": 2, "max_click_len": 3}
    assert files["query_seg.txt"] == "2 0 1 5\n2 0 2 5\n3 3 2 4\n"          # PAD = word_num = 5
    assert files["user_word_map.txt"] == "3 0 1 2\n3 0 1 2\n"              # words of the user's training queries
    assert files["item_title_map.txt"] == "2 0 1\n2 0 2\n2 0 2\n"          # words of the item's training queries
    assert files["user_click_map.txt"] == "3 0 1 3\n3 0 2 3\n"             # len = clicks + ZAM's zero slot; PAD = 3
    assert files["word_distribution.txt"] == "4\n2\n2\n0\n0\n"             # test-only words: 0, never negatives
    assert files["item_distribution.txt"] == "2\n1\n1\n"
    assert files["click_train.txt"] == "0 0 0\n0 1 1\n1 0 0\n1 1 2\n"      # the duplicate line once
    assert files["click_test.txt"] == "0 2 2\n1 2 1\n"                     # iD has no id: only in the qrels
    assert files["click_valid.txt"] == ""
    assert conv.test_queries == {2}
    assert conv.dropped_test == [("u1", 2, "iD")]


def test_test_queries_never_in_training_files(bench: Path, tmp_path: Path) -> None:
    conv = cv.convert_benchmark(bench, tmp_path / "data")
    out = tmp_path / "data" / "forEM"
    test_only_words = {conv.words.index("car"), conv.words.index("mount")}
    train_queries = {int(line.split()[1]) for line in (out / "click_train.txt").read_text().splitlines()}
    assert not train_queries & conv.test_queries
    for name in ("user_word_map.txt", "item_title_map.txt"):
        for line in (out / name).read_text().splitlines():
            length, *ids = map(int, line.split())
            assert not set(ids[:length]) & test_only_words
    counts = [int(x) for x in (out / "word_distribution.txt").read_text().split()]
    assert all(counts[w] == 0 for w in test_only_words)


def test_ranking_removes_training_purchases(bench: Path, tmp_path: Path) -> None:
    conv = cv.convert_benchmark(bench, tmp_path / "data")
    assert conv.training_items() == {"u1": {"iA", "iB"}, "u2": {"iA", "iC"}}
    items = {i: k for k, i in enumerate(conv.items)}
    scores = [0.9, 0.8, 0.1]  # iA would win, but u1 bought it (and iB) in training
    ranked = cv.rank_items(scores, (items[i] for i in conv.training_items()["u1"]), depth=100)
    assert ranked == [(2, pytest.approx(0.1))]
    assert cv.run_lines("u1_2", ranked, conv.items, "t") == ["u1_2 Q0 iC 1 0.100000 t"]
    # ties: lower id first; depth cuts
    assert [i for i, _ in cv.rank_items([0.5, 0.7, 0.7, 0.2], [], depth=3)] == [1, 2, 0]
    assert cv.test_pairs(cv.read_qrels(bench / "test.qrels.gz")) == [("u1", 2), ("u2", 2)]


def test_trec_metrics_match_tfpps(tmp_path: Path) -> None:
    from tfpps.evaluation.trec import run_file_metrics

    relevant = {"u1_2": {"iC", "iD"}, "u2_2": {"iB"}, "u3_2": {"iA"}}  # u3_2: no ranking at all
    run = {"u1_2": ["iA", "iC", "iB", "iD"], "u2_2": ["iC", "iA", "iB"]}
    (tmp_path / "q").write_text("".join(f"{q} 0 {d} 1\n" for q, ds in relevant.items() for d in sorted(ds)))
    (tmp_path / "r").write_text("".join(f"{q} Q0 {d} {k} {1 / k:.3f} t\n" for q, ds in run.items()
                                        for k, d in enumerate(ds, start=1)))
    ours, theirs = cv.trec_metrics(run, relevant), run_file_metrics(tmp_path / "r", tmp_path / "q")
    assert ours["num_queries"] == theirs["num_queries"] == 3
    for m in ("map", "mrr", "ndcg@10"):
        assert ours[m] == pytest.approx(theirs[m])
    assert ours["map"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 / 3) / 3)
    assert ours["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 3)


@pytest.mark.parametrize("flags", [[], ["--reference-dir", "/nonexistent/wp-ref"], ["--reference-dir", "."]])
def test_run_reference_refuses_bad_reference_dir(flags: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "references" / "wenjun_peng" / "run_reference.py"), *flags,
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--reference-dir" in lines[0], proc.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("flags", [[], ["--reference-dir", "/nonexistent/wp-ref"], ["--reference-dir", "."]])
def test_compare_refuses_bad_reference_dir(flags: list[str], capsys) -> None:
    from benchmarks.references import compare_wenjun_peng

    assert compare_wenjun_peng.main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("compare_wenjun_peng: --reference-dir"), err


def test_tfpps_run_with_own_query_ids_scored_on_equivalent_qrels(tmp_path: Path) -> None:
    from benchmarks.references.compare_wenjun_peng import score_tfpps_run
    from tfpps.evaluation.trec import run_file_metrics

    (tmp_path / "official.qrels").write_text("u1_2 0 iC 1 \nu1_2 0 iD 1 \nu2_2 0 iB 1 \n")
    (tmp_path / "test.qrels").write_text("u1_7 0 iC 1\nu1_7 0 iD 1\nu2_7 0 iB 1\n")  # tfpps's query id 7
    (tmp_path / "test.run").write_text("u1_7 Q0 iD 1 0.9 t\nu2_7 Q0 iA 1 0.9 t\nu2_7 Q0 iB 2 0.8 t\n")
    scored, against = score_tfpps_run({"trec_run": str(tmp_path / "test.run")}, tmp_path / "official.qrels", run_file_metrics)
    assert against.endswith("(same judgement sets as the official qrels)")
    assert scored["num_queries"] == 2 and scored["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    (tmp_path / "test.qrels").write_text("u1_7 0 iC 1\nu2_7 0 iB 1\n")
    assert "DIFFERENT" in score_tfpps_run({"trec_run": str(tmp_path / "test.run")}, tmp_path / "official.qrels",
                                          run_file_metrics)[1]
