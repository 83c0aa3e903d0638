"""python -m tfpps.recommend: a ranked table with item metadata from an export dir or a run dir;
unknown users/items warn and still answer; bad flags stop with one line."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving_helpers import tiny_export, tiny_run, workdir
from tfpps.cli import recommend
from tfpps.serving.exported import ExportedRecommender
from tfpps.serving.requests import Request

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return workdir(tmp_path_factory)


def _table(out: str) -> list[list[str]]:
    """Rows of the printed table (after the dashed rule) split on 2+ spaces."""
    import re

    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("----"))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[rule + 1 :] if line.strip()]


def test_export_dir_prints_a_ranked_table_with_titles(base, capsys):
    export = tiny_export("gru4rec", base)
    capsys.readouterr()  # drop the trainer's output
    assert recommend.main([f"--model-dir={export}", "--user=u1", "--history=m3,m4", "--k=5"]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    assert any(line.startswith("gru4rec on synthetic (export ") for line in cap.out.splitlines())
    assert "history (2 items, oldest first): m3 (Movie 3), m4 (Movie 4)" in cap.out
    header = next(line for line in cap.out.splitlines() if line.startswith("rank"))
    assert header.split() == ["rank", "item", "score", "title", "categories"]
    rows = _table(cap.out)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    want = ExportedRecommender(export).recommend([Request("u1", ["m3", "m4"])], 5)[0]
    assert [r[1] for r in rows] == want.items
    assert [float(r[2]) for r in rows] == pytest.approx(want.scores, abs=1e-4)
    for r in rows:
        i = int(r[1][1:])
        assert r[3] == f"Movie {i}" and r[4] == ("Drama, Film-Noir" if i % 2 else "Comedy")


@pytest.mark.parametrize("model", ["narm", "vsknn"])
def test_run_dir_gives_the_same_table_as_its_export(base, capsys, model):
    args = ["--user=u5", "--history=m10, m11,m12", "--k=7"]
    assert recommend.main([f"--model-dir={tiny_export(model, base)}", *args]) == 0
    from_export = _table(capsys.readouterr().out)
    assert recommend.main([f"--model-dir={tiny_run(model, base)}", *args]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith(f"{model} on synthetic (run ") for line in out.splitlines())
    from_run = _table(out)
    assert [r[1] for r in from_run] == [r[1] for r in from_export] and len(from_run) == 7
    assert [float(r[2]) for r in from_run] == pytest.approx([float(r[2]) for r in from_export], abs=2e-4)


def test_unknown_user_items_and_query_warn_but_answer(base, capsys):
    export = tiny_export("hrm", base)
    capsys.readouterr()
    code = recommend.main([f"--model-dir={export}", "--user=stranger", "--history=m1,bogus,m2", "--query=red shoes", "--k=40"])
    assert code == 0
    cap = capsys.readouterr()
    warnings = cap.err.strip().splitlines()
    assert warnings == [
        "tfpps.recommend: warning: user 'stranger' is not in the training vocabulary; recommending for the unknown (OOV) user",
        "tfpps.recommend: warning: 1 history item(s) not in the vocabulary, used as <OOV>: 'bogus'",
        "tfpps.recommend: warning: --query ignored: model 'hrm' does not take a search query",
        "tfpps.recommend: warning: --k=40 > 10 available (the export's k); showing 10",
    ]
    assert len(_table(cap.out)) == 10
    # an empty history and no user are fine too (cold start)
    assert recommend.main([f"--model-dir={export}", "--k=3"]) == 0
    cap = capsys.readouterr()
    assert "history: (empty)" in cap.out and len(_table(cap.out)) == 3 and cap.err == ""


def test_table_without_item_metadata_has_no_title_column(base):
    rec = ExportedRecommender(tiny_export("pop", base))
    result = rec.recommend([Request("u1", ["m1"])], 3)[0]
    text = recommend.render(rec, result, ["m1"], {}, 3)
    assert text.splitlines()[-5].split() == ["rank", "item", "score"] and len(_table(text)) == 3


@pytest.mark.parametrize("argv,message", [
    (["--k=0"], "--k=0: must be >= 1"),
    (["--history=m1"], "no such directory"),
    ([], "neither an export directory"),
])
def test_bad_input_is_one_error_line(base, capsys, tmp_path, argv, message):
    model_dir = tmp_path / "missing" if "--history=m1" in argv else tmp_path
    assert recommend.main([f"--model-dir={model_dir}", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfpps.recommend: error: ") and message in err and "\n" not in err


def test_command_line_end_to_end(base):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tfpps.recommend", f"--model-dir={tiny_export('gru4rec', base)}", "--history=m3,m4", "--k=3"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(_table(done.stdout)) == 3 and "Movie" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "tfpps.recommend", "--k=3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "tfpps.recommend: error: the following arguments are required: --model-dir/--model_dir"
    bad = subprocess.run([sys.executable, "-m", "tfpps.recommend", "--model-dir=x", "--k=two"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "tfpps.recommend: error: argument --k: invalid int value: 'two'"
