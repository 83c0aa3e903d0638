"""``python -m beam_jobs.build_features``: the Beam job's command (raw interaction logs -> a tfpps dataset).

The job lives in :mod:`beam_jobs.cli` (``run`` / ``main``) and the modules it composes:
:mod:`beam_jobs.flags`, :mod:`beam_jobs.graph`, :mod:`beam_jobs.encode`, :mod:`beam_jobs.summary`,
:mod:`beam_jobs.publish`, :mod:`beam_jobs.sources`. This module keeps the documented command and
``from beam_jobs.build_features import run, main`` working.
"""
from __future__ import annotations

import sys

from beam_jobs.cli import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
