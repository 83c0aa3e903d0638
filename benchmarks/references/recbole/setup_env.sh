#!/usr/bin/env bash
# Create/refresh the RecBole reference venv (benchmarks/references/recbole/.venv).
# RecBole is NOT a dependency of tfpps: it lives only in this separate venv.
# Idempotent: re-running only installs what is missing or differs from the pins.
#
#   bash benchmarks/references/recbole/setup_env.sh            # -> benchmarks/references/recbole/.venv
#   VENV=/tmp/rbvenv bash benchmarks/references/recbole/setup_env.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"

# torch first, pinned, so pip never pulls a (multi-GB) CUDA build to satisfy recbole's
# "torch>=1.10.0"; the 2.13.0 CPU wheel is found locally via pip's find-links.
TORCH_PIN="torch==2.13.0"
# recbole 1.2.1 is the newest release (requires ray<=2.6.3). Extra pins:
#  - numpy<2: recbole aliases np.float = np.float_ etc., which numpy 2 removed.
#  - setuptools<81: ray 2.6.3 imports pkg_resources (removed in setuptools 81);
#    recbole.quick_start does `from ray import tune` at import time.
#  - pandas/scipy/tensorboard/protobuf/...: the versions this was verified with.
PINS=(
  "recbole==1.2.1"
  "numpy==1.26.4"
  "scipy==1.17.1"
  "pandas==3.0.6"
  "scikit-learn==1.9.1"
  "ray==2.6.3"
  "setuptools==80.10.2"
  "protobuf==7.36.2"
  "tensorboard==2.21.0"
  "thop==0.1.1.post2209072238"
  "plotly==7.1.0"
  "colorlog==4.7.2"
  "colorama==0.4.4"
  "texttable==1.7.2"
  "tabulate==0.10.0"
  "psutil==7.2.2"
  "pyyaml==6.0.3"
  "tqdm==4.70.1"
)

if [[ -x "$VENV/bin/python" ]]; then
  echo "[setup_env] venv exists: $VENV"
else
  echo "[setup_env] creating venv: $VENV ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# Which pins are not satisfied? (versions compared after PEP 440 normalisation,
# local labels like +cpu ignored)
missing="$("$PY" - "$TORCH_PIN" "${PINS[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
from pip._vendor.packaging.version import Version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or Version(have).public != Version(want).public:
        print(f"{name}: have {have or 'none'}, want {want}")
EOF
)"
need_install=0
if [[ -n "$missing" ]]; then
  echo "$missing" | sed 's/^/[setup_env] /'
  need_install=1
fi

if [[ $need_install == 1 ]]; then
  echo "[setup_env] installing $TORCH_PIN"
  "${PIP[@]}" install -q "$TORCH_PIN"
  echo "[setup_env] installing ${PINS[*]}"
  # torch stays pinned in the same resolve so nothing can upgrade it.
  "${PIP[@]}" install -q "$TORCH_PIN" "${PINS[@]}"
else
  echo "[setup_env] all pins already satisfied"
fi

echo "[setup_env] checking imports"
"$PY" - <<'EOF'
import warnings
warnings.filterwarnings("ignore")
import numpy, pandas, scipy, torch
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed, init_logger
from recbole.model.sequential_recommender import GRU4Rec, NARM, HRM
from recbole.quick_start import run_recbole  # pulls in ray.tune
print(f"[setup_env] ok: recbole {recbole.__version__}, torch {torch.__version__}, "
      f"numpy {numpy.__version__}, pandas {pandas.__version__}, scipy {scipy.__version__}, "
      f"cuda={torch.cuda.is_available()}, threads={torch.get_num_threads()}")
EOF
echo "[setup_env] run: $PY $HERE/run_recbole.py --model GRU4Rec --data-dir /work/shared/data/ml-100k --epochs 3 --out $HERE/work/results/GRU4Rec.json"
