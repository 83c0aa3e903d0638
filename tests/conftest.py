import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import tfpps  # noqa: E402,F401


def shared_data_dir() -> Path:
    return Path(os.environ.get("TFPPS_SHARED_DATA", REPO.parent / "shared" / "data"))
