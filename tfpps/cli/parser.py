"""The argument parser every tfpps command line shares: its errors are one line.

    >>> p = OneLineParser(prog="python -m tfpps.example")
    >>> _ = p.add_argument("--k", type=int)
    >>> p.parse_args(["--k=two"])
    Traceback (most recent call last):
    SystemExit: 2

prints ``tfpps.example: error: argument --k: invalid int value: 'two'`` on stderr, without argparse's
usage block. With ``raise_errors=True`` the message is raised as :class:`tfpps.errors.ConfigError`
instead, for a ``main`` that reports every error of its own in the same one-line form and returns 2.
"""
from __future__ import annotations

import argparse
import sys

from tfpps.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``<tool>: error: <message>`` and exit 2."""

    def __init__(self, *args, raise_errors: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.raise_errors = raise_errors

    def error(self, message):
        if self.raise_errors:
            raise ConfigError(message)
        print(f"{self.prog.removeprefix('python -m ')}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
