"""Every benchmark script answers ``--help`` with its usage (a help string with a bare ``%`` once crashed
argparse's formatter in ``benchmarks.accuracy.public_search``)."""
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(".".join(p.relative_to(REPO).with_suffix("").parts)
                 for p in (REPO / "benchmarks").glob("*/*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("module", SCRIPTS)
def test_benchmark_script_prints_its_usage(module, capsys):
    main = getattr(importlib.import_module(module), "main", None)
    if main is None:
        pytest.skip(f"{module} has no main()")
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_a_failed_training_run_stops_a_benchmark_in_one_line(tmp_path, capfd):
    from benchmarks.common import run_tfpps_cached

    with pytest.raises(SystemExit) as stopped:
        run_tfpps_cached(tmp_path / "bad.json", ["--model=no_such_model"], reuse=False)
    assert str(stopped.value) == "benchmark stopped: the tfpps run for bad.json failed (exit 2)"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "no_such_model" in err
