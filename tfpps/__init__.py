"""tfpps: personalized product search and sequential recommendation on TensorFlow.

TFRS 0.7.7 only works with Keras 2, so the legacy Keras switch must be set
before TensorFlow is imported anywhere. Importing ``tfpps`` first guarantees it; every module of the
package gets it by being in the package (Python runs this file before any ``tfpps.*`` module), so only
code outside the package (tests, benchmarks, scripts) imports ``tfpps`` for the switch alone.

Quiet by default: unless ``TF_CPP_MIN_LOG_LEVEL`` is set in the environment,
TensorFlow's C++ log lines (``Unable to register cuFFT/cuDNN/cuBLAS factory``
and the like) are off; the commands (``tfpps.train``, ``tfpps.evaluate``,
``tfpps.recommend``, ``tfpps.data.build``) also keep TensorFlow's Python and
absl loggers to errors, and their ``--verbose`` flag turns everything back on
(:func:`configure_logging`). A ``TF_CPP_MIN_LOG_LEVEL`` the user set always wins.
"""
import logging
import os

_OURS = "TFPPS_SET_TF_CPP_MIN_LOG_LEVEL"  # the level tfpps chose, so its child processes (tfpps.launch) know it
# None when the user left the C++ log level to tfpps.
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
if USER_TF_LOG_LEVEL is not None and os.environ.get(_OURS) == USER_TF_LOG_LEVEL:
    USER_TF_LOG_LEVEL = None  # set by a parent tfpps process, not by the user


def _set_tf_log_level(level: str) -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ[_OURS] = level


os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if USER_TF_LOG_LEVEL is None:
    _set_tf_log_level("3")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        "tfpps needs TF_USE_LEGACY_KERAS=1 (TFRS 0.7.7 does not support Keras 3); "
        f"found TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r}"
    )

__version__ = "0.1.0"
VERBOSE = False  # set by configure_logging: a command ran with --verbose


def configure_logging(verbose: bool = False) -> None:
    """TensorFlow's own logging: errors only (``verbose=False``) or TensorFlow's defaults (``verbose=True``:
    every C++ line, Python and absl warnings).

    Does nothing when the user set ``TF_CPP_MIN_LOG_LEVEL``. The C++ level only takes effect when
    this runs before TensorFlow is imported (the commands call it first thing).
    """
    global VERBOSE
    VERBOSE = bool(verbose)
    if USER_TF_LOG_LEVEL is not None:
        return
    _set_tf_log_level("0" if verbose else "3")
    level = logging.WARNING if verbose else logging.ERROR
    logging.getLogger("tensorflow").setLevel(level)
    try:  # absl must create its own logger (a custom class): import it rather than logging.getLogger("absl")
        from absl import logging as absl_logging
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        return
    absl_logging.set_verbosity(absl_logging.WARNING if verbose else absl_logging.ERROR)
