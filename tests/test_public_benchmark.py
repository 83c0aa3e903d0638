"""benchmarks/accuracy/public.py: the tfpps runs it asks for and the table rows it builds (no training)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.accuracy import public  # noqa: E402


def args(**over) -> argparse.Namespace:
    base = dict(patience=3, valid_metric="recall@20", epochs=0, max_minutes=0.0, narm_softmax=None, set=[])
    return argparse.Namespace(**{**base, **over})


def result(model: str, recall: float, mrr: float, epochs: int = 4, best: int = 3, seconds: float = 10.0, **extra) -> dict:
    return {"model": model, "metrics": {"recall@20": recall, "mrr@20": mrr, "num_examples": 60858},
            "epochs_run": epochs, "best_epoch": best, "train_seconds_per_epoch": seconds, "test_eval_seconds": 30.0,
            "config": {"train": {"batch_size": 128, "steps_per_epoch": 0}}, **extra}


def test_model_argv_picks_the_dataset_settings():
    _, digi = public.model_argv("gru4rec", "diginetica-srgnn", args(epochs=1, max_minutes=2, set=["train.steps_per_epoch=5"]))
    assert "--config=configs/models/gru4rec_diginetica.yaml" in digi
    assert {"--patience=3", "--valid_metric=recall@20", "--epochs=1"} <= set(digi)
    assert digi[-4:] == ["--set", "train.max_minutes=2", "--set", "train.steps_per_epoch=5"]
    _, yc = public.model_argv("gru4rec", "yoochoose-100k", args())
    assert "--config=configs/models/gru4rec_bprmax.yaml" in yc and not any(a.startswith("--epochs") for a in yc)
    assert "model_params.softmax=sampled" in public.model_argv("narm", "diginetica-srgnn", args())[1]
    assert "model_params.softmax=full" in public.model_argv("narm", "yoochoose-100k", args())[1]
    assert "model_params.softmax=full" in public.model_argv("narm", "diginetica-srgnn", args(narm_softmax="full"))[1]
    _, pop = public.model_argv("pop", "diginetica-srgnn", args(epochs=1, max_minutes=2))
    assert not any(a.startswith(("--patience", "--epochs")) or "max_minutes" in a for a in pop)  # non-neural: fit once
    for path in ("configs/models/gru4rec_diginetica.yaml", "configs/models/gru4rec_bprmax.yaml"):
        assert (public.REPO / path).exists()


def test_row_scales_to_percent_and_pairs_the_published_numbers():
    row = public.tfpps_row("narm", "narm.yaml", [result("narm", 0.4971, 0.16171)], "diginetica-srgnn", examples=714_493)
    assert (row["R@20 %"], row["MRR@20 %"]) == ("49.71", "16.17")
    assert (row["published R@20"], row["published MRR@20"]) == ("49.70", "16.17")
    assert (row["epochs"], row["best epoch"], row["s/epoch"]) == ("4", "3", "10.0")
    assert row["train ex/s"] == 71_449
    assert public.tfpps_row("sknn", "sknn.yaml", [result("sknn", 0.5, 0.2)], "diginetica-srgnn")["published R@20"] == ""


def test_seeds_give_mean_and_sd_and_time_limits_show():
    runs = [result("gru4rec", 0.50, 0.17, epochs=10, best=9), result("gru4rec", 0.52, 0.19, epochs=7, best=4, time_limited=True)]
    row = public.tfpps_row("gru4rec", "gru4rec_diginetica.yaml", runs, "diginetica-srgnn")
    assert row["R@20 %"] == "51.00 ± 1.41" and row["MRR@20 %"] == "18.00 ± 1.41"
    assert (row["epochs"], row["best epoch"]) == ("10, 7", "9, 4")
    assert row["model"] == "gru4rec (time-limited)" and row["setting"].endswith("2 seeds")
    assert row["recall@20"] == pytest.approx(0.51)


def test_capped_epochs_count_only_the_steps_run():
    r = result("gru4rec", 0.1, 0.05, seconds=8.0)
    r["config"]["train"]["steps_per_epoch"] = 200
    assert public.examples_per_second(r, 714_493) == pytest.approx(200 * 128 / 8.0)


def test_reference_rows_are_the_published_models_without_a_tfpps_run():
    labels = [r["model"] for r in public.reference_rows("diginetica-srgnn", ["pop", "gru4rec"])]
    assert labels == ["Item-KNN (published)", "NARM (published)", "STAMP (published)", "SR-GNN (published)",
                      "GCE-GNN (published)"]
    assert public.reference_rows("yoochoose-100k", list(public.MODELS)) == []
    assert [r[2:4] for r in public.PUBLISHED["yoochoose-100k"]] == [(59.06, 29.65)]


def test_train_examples_from_stats(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"splits": {"train": {"records": 185230, "interactions": 899723}}}))
    assert public.train_examples(tmp_path) == 714_493
    assert public.train_examples(tmp_path / "missing") is None
