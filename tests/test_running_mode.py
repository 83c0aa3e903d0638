"""The Beam job's local running mode (issue 14): single-process ``in_memory`` by default; an explicit mode
is kept, and the multi-process mode, which has lost data, comes with a warning."""
from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from beam_jobs.flags import pipeline_options


def _direct(opts) -> DirectOptions:
    return opts.view_as(DirectOptions)


def test_default_is_in_memory_direct_runner_with_one_worker(capsys):
    opts = pipeline_options([])
    assert opts.view_as(StandardOptions).runner == "DirectRunner"
    assert _direct(opts).direct_running_mode == "in_memory"
    # No worker count added: more than one would split bundles over threads even in memory.
    assert _direct(opts).direct_num_workers == 1
    assert "warning" not in capsys.readouterr().err


def test_explicit_multi_processing_is_kept_with_a_warning(capsys):
    opts = pipeline_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert _direct(opts).direct_running_mode == "multi_processing"
    assert _direct(opts).direct_num_workers == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "can lose data" in err and "self-checks" in err


def test_explicit_multi_processing_without_workers_uses_all_cores(capsys, monkeypatch):
    import beam_jobs.flags as bf

    monkeypatch.setattr(bf.os, "cpu_count", lambda: 3)
    opts = pipeline_options(["--direct_running_mode", "multi_processing"])
    assert _direct(opts).direct_running_mode == "multi_processing"
    assert _direct(opts).direct_num_workers == 3


def test_explicit_in_memory_and_multi_threading_are_kept(capsys):
    assert _direct(pipeline_options(["--direct_running_mode=in_memory"])).direct_running_mode == "in_memory"
    opts = pipeline_options(["--direct_running_mode=multi_threading", "--direct_num_workers=2"])
    assert _direct(opts).direct_running_mode == "multi_threading"
    assert _direct(opts).direct_num_workers == 2
    assert "warning" not in capsys.readouterr().err


def test_other_runner_gets_no_direct_defaults(capsys):
    opts = pipeline_options(["--runner=DataflowRunner"])
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    assert "direct_running_mode" not in " ".join(opts._flags)
