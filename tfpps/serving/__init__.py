"""Serving: trained runs and exported SavedModels behind one recommend interface.

* :mod:`tfpps.serving.vocab`: string id <-> vocabulary index, in Python and as in-graph lookup tables.
* :mod:`tfpps.serving.item_meta`: the dataset's item metadata (titles, categories) for display.
* :mod:`tfpps.serving.requests`: raw requests (user, history item ids) -> model features, in Python.
* :mod:`tfpps.serving.module`: the exported ``tf.Module`` (lookup in the graph, TFRS top-k index).
* :mod:`tfpps.serving.manifest`: the export manifest (what was exported, from which run, when).
* :mod:`tfpps.serving.runs`: a run directory loaded in-process (weights, or refitted non-neural models).
* :mod:`tfpps.serving.exported`: an export directory loaded with ``tf.saved_model.load``.
* :mod:`tfpps.serving.export`: a trained run exported as a SavedModel (what ``python -m tfpps.export`` runs).

Command lines: ``python -m tfpps.export`` and ``python -m tfpps.recommend`` (:mod:`tfpps.cli`).
"""
