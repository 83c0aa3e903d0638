"""Training runs: what one run does and leaves behind.

* :mod:`tfpps.runs.run_dir`: the run directory (:class:`RunDir`: its file names, its state, loading its model);
* :mod:`tfpps.runs.trainer`: the training loop shared by every model (:func:`tfpps.runs.trainer.train`);
* :mod:`tfpps.runs.validation`: full-ranking evaluation of a split, and the per-epoch validation;
* :mod:`tfpps.runs.existing`: an existing run directory (complete, another config, ``--fresh``);
* :mod:`tfpps.runs.distribute`: tf.distribute strategies; :mod:`tfpps.runs.launch`: local multi-worker runs;
* :mod:`tfpps.runs.resume`: exact resume after a kill.

Importing this package must stay free of TensorFlow (``tfpps.spec.ownership``, ``tfpps.report`` and the
commands' argument checks use it before TensorFlow loads): only :mod:`tfpps.runs.run_dir` is imported here.
"""
from tfpps.runs.run_dir import LoadedRun, RunDir, has_results, is_run_dir, load_run

__all__ = ["LoadedRun", "RunDir", "has_results", "is_run_dir", "load_run"]
