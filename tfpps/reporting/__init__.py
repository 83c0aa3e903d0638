"""Pictures of runs and sweeps: learning curves, test metrics, sweep progress, and one offline HTML page.

* :mod:`tfpps.reporting.inputs`: what a run dir, a sweep dir or a folder of run dirs holds for the report;
* :mod:`tfpps.reporting.figures`: the PNG figures (matplotlib, imported only when a figure is drawn);
* :mod:`tfpps.reporting.page`: ``report.html`` and :func:`tfpps.reporting.page.make_report`, the whole report.

The command line is :mod:`tfpps.cli.report` (``python -m tfpps.report``). Nothing here imports TensorFlow.
"""
