"""Hyperparameter sweeps with Keras Tuner, every trial an ordinary tfpps training run.

* :mod:`tfpps.tuning.space`: the search space (``configs/tune/<model>.yaml``), checked against the model's config;
* :mod:`tfpps.tuning.trials`: the Keras Tuner ``Tuner`` that trains each trial (:func:`tfpps.runs.trainer.train`)
  in its own run dir, and the oracles;
* :mod:`tfpps.tuning.results`: the sweep's trials, best first, as a table, ``trials.csv``/``trials.json``
  and ``best.yaml``.

The command line, and the sweep directory's layout, are :mod:`tfpps.cli.tune` (``python -m tfpps.tune``).
"""
