"""Beam's own log messages and warnings, hidden unless ``--verbose`` (:func:`quiet_beam_logging`).

Importing this module installs a root-logger filter for the messages Beam logs while it is imported
(``apitools not found, ...``), so the job's entry point (:mod:`beam_jobs.cli`) imports it before
``apache_beam``. It imports nothing of Beam itself.
"""
from __future__ import annotations

import logging
import os
import warnings


def _beam_noise(record: logging.LogRecord) -> bool:
    """Logging filter: False for a message below ERROR that Beam's own code logs straight to the root
    logger (``apitools not found, ...`` when Beam is imported). Installed before Beam's import; see
    :func:`quiet_beam_logging`."""
    return record.levelno >= logging.ERROR or f"{os.sep}apache_beam{os.sep}" not in record.pathname


if logging.getLogger().level >= logging.WARNING:  # a user who lowered the root level sees everything
    logging.getLogger().addFilter(_beam_noise)


# Beam's loggers and the levels they get when quiet: everything below ERROR, and the ERROR with which
# a failing step logs the exception it re-raises (the job reports that exception itself, in one line).
_QUIET_LEVELS = {"apache_beam": logging.ERROR, "apache_beam.runners.common": logging.CRITICAL}
_QUIETED: list[str] = []  # the loggers quiet_beam_logging set (so --verbose may undo it)


def quiet_beam_logging(verbose: bool) -> None:
    """Hide Apache Beam's own log messages and Python warnings, unless ``verbose`` or the user chose log
    levels: a root logger set below WARNING, or a level already set on a Beam logger (both win). What is
    hidden is harmless on every run (``apitools not found``, ``python-snappy``, ``No semi_persistent_directory``,
    ``Discarding unparseable args`` of Beam's own workers, the traceback of an error the job then reports
    in one line, ...); the job's own errors, its one warning (``--direct_running_mode=multi_processing``)
    and the summary are printed, not logged, and always show. Worker processes get
    ``--default_sdk_harness_log_level=ERROR`` in :func:`beam_jobs.cli.run`."""
    root = logging.getLogger()
    user_set = logging.getLogger("apache_beam").level != logging.NOTSET and "apache_beam" not in _QUIETED
    if verbose or user_set or root.level < logging.WARNING:
        root.removeFilter(_beam_noise)
        while _QUIETED:
            logging.getLogger(_QUIETED.pop()).setLevel(logging.NOTSET)
        warnings.filterwarnings("default", module="apache_beam")
        return
    for name, level in _QUIET_LEVELS.items():
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(level)
            _QUIETED.append(name)
    root.addFilter(_beam_noise)  # messages Beam logs on the root logger itself
    warnings.filterwarnings("ignore", module="apache_beam")
