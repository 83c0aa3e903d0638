"""tfpps.report renders valid PNG files and a self-contained HTML page from run and sweep directories."""
import base64
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from tfpps.cli import report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(path: Path, epochs: int, scale: float, metric: str = "ndcg@10", csv_only: bool = False) -> Path:
    """A run dir as tfpps.train writes it: validation.json, history.csv, metrics.json, config.yaml."""
    path.mkdir(parents=True)
    history = [{"epoch": e, "loss": 5.0 / e, "train_seconds": 1.0, f"val_{metric}": scale * (1 - 0.5 / e), "val_recall@10": scale * 2 * (1 - 0.5 / e)}
               for e in range(1, epochs + 1)]
    if not csv_only:
        (path / "validation.json").write_text(json.dumps({"best": history[-1][f"val_{metric}"], "best_epoch": epochs, "wait": 0, "history": history}))
    with open(path / "history.csv", "w", newline="") as fh:  # CSVLogger: 0-based epochs
        w = csv.writer(fh)
        w.writerow(["epoch", "loss", f"val_{metric}"])
        for h in history:
            w.writerow([h["epoch"] - 1, h["loss"], h[f"val_{metric}"]])
    metrics = {"recall@10": scale * 2, "mrr@10": scale * 0.7, "ndcg@10": scale, "recall@20": scale * 3, "num_examples": 100}
    (path / "metrics.json").write_text(json.dumps({"model": "gru4rec", "metrics": metrics}))
    (path / "config.yaml").write_text(yaml.safe_dump({"model": "gru4rec", "train": {"valid_metric": metric}}))
    return path


def fake_sweep(path: Path, n: int = 4) -> Path:
    path.mkdir(parents=True)
    trials = []
    for i in range(n):
        run_dir = fake_run(path / f"trial_{i}" / "exec-0", 3, 0.05 + 0.01 * i)
        trials.append({"trial_id": str(i), "status": "COMPLETED", "objective": 0.05 + 0.01 * i,
                       "hyperparameters": {"train.learning_rate": 0.01 * (i + 1), "model_params.layers": [64]},
                       "epochs": 3, "seconds": 10.0, "test": {"ndcg@10": 0.05 + 0.01 * i}, "run_dirs": [str(run_dir)]})
    trials.append({"trial_id": str(n), "status": "FAILED", "objective": None, "hyperparameters": {}, "test": {}, "run_dirs": []})
    trials.sort(key=lambda t: -(t["objective"] or -1))
    (path / "trials.json").write_text(json.dumps({"objective": "val_ndcg@10", "direction": "max", "trials": trials}))
    (path / "sweep.json").write_text(json.dumps({"model": "gru4rec", "dataset": "ml-100k", "tuner": "random"}))
    return path


def check_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01  # not a blank canvas


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_report_of_runs_and_a_sweep_writes_valid_pngs_and_self_contained_html(tmp_path):
    a = fake_run(tmp_path / "runs" / "gru4rec-a", 4, 0.08)
    b = fake_run(tmp_path / "runs" / "narm-b", 3, 0.06, metric="recall@20", csv_only=True)
    sweep = fake_sweep(tmp_path / "sweep")
    out = tmp_path / "report"
    assert report.main([f"--runs={a}", str(b), f"--runs={sweep}", f"--out={out}"]) == 0

    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["learning_curves.png", "metrics.png", "sweep-sweep.png"]
    for png in out.glob("*.png"):
        check_png(png)

    page = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(page)
    assert parser.tags[0] == "html" and "table" in parser.tags
    assert len(parser.images) == 3
    for src in parser.images:  # every picture is embedded, none is linked
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert not re.search(r'src="(?!data:)', page)
    assert "gru4rec-a" in page and "Sweep sweep" in page and "FAILED" in page and "train.learning_rate" in page


def test_sweep_plot_and_history_csv_fallback(tmp_path):
    run = report.read_run(fake_run(tmp_path / "r", 3, 0.1, csv_only=True))
    assert [h["epoch"] for h in run["history"]] == [1, 2, 3]  # CSVLogger's 0-based epochs shifted
    assert run["history"][-1]["val_ndcg@10"] == pytest.approx(0.1 * (1 - 0.5 / 3))
    sweep = report.load_sweep(fake_sweep(tmp_path / "s", n=3))
    path = report.plot_sweep(sweep, tmp_path / "sweep.png", reference={"default": 0.055})
    check_png(path)


def test_png_only_and_folder_of_runs(tmp_path):
    fake_run(tmp_path / "runs" / "one", 2, 0.05)
    fake_run(tmp_path / "runs" / "two", 2, 0.07)
    out = tmp_path / "out"
    assert report.main([f"--runs={tmp_path / 'runs'}", f"--out={out}", "--format=png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["learning_curves.png", "metrics.png"]


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv in ([f"--runs={tmp_path / 'nope'}"], [f"--runs={tmp_path / 'empty'}"], ["--runs"], ["--out=x"],
                 [f"--runs={tmp_path}", "--format=pdf"], [f"--runs={tmp_path}", "--bogus=1"]):
        assert report.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tfpps.report: error:"), (argv, err)
