"""The command lines (``python -m tfpps.<command>`` runs ``tfpps.cli.<command>``; the old module paths are thin
shims): ``train``, ``evaluate``, ``tune``, ``export``, ``recommend``, ``report``, ``launch``, ``demo`` and
``build`` (``python -m tfpps.data.build``). Each parses its flags with :class:`OneLineParser`
(:mod:`tfpps.cli.parser`), so a bad flag is one line, and reports what goes wrong in the same form; the
work itself is done by the library (:mod:`tfpps.runs`, :mod:`tfpps.tuning`, :mod:`tfpps.serving`,
:mod:`tfpps.reporting`).
"""
from tfpps.cli.parser import OneLineParser

__all__ = ["OneLineParser"]
