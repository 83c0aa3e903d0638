"""Training runs: the run directory (:mod:`tfpps.runs.run_dir`).

Importing this package must stay free of TensorFlow (``tfpps.ownership``, ``tfpps.report`` and the
commands' argument checks use it before TensorFlow loads).
"""
from tfpps.runs.run_dir import LoadedRun, RunDir, has_results, is_run_dir, load_run

__all__ = ["LoadedRun", "RunDir", "has_results", "is_run_dir", "load_run"]
