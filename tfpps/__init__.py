"""tfpps: personalized product search and sequential recommendation on TensorFlow.

TFRS 0.7.7 only works with Keras 2, so the legacy Keras switch must be set
before TensorFlow is imported anywhere. Importing ``tfpps`` first guarantees it.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        "tfpps needs TF_USE_LEGACY_KERAS=1 (TFRS 0.7.7 does not support Keras 3); "
        f"found TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r}"
    )

__version__ = "0.1.0"
