#!/usr/bin/env bash
# Create/refresh the venv that runs the official PyTorch GRU4Rec (benchmarks/references/gru4rec_official/.venv).
# The official code is NOT part of tfpps and is never copied here: clone it yourself at the pinned commit
#
#   git clone https://github.com/hidasib/GRU4Rec_PyTorch_Official /tmp/GRU4Rec_PyTorch_Official
#   git -C /tmp/GRU4Rec_PyTorch_Official checkout d1fc31105577665d2f105de1c8d9a38d223a9a22
#
# and pass it to benchmarks/references/compare_official_gru4rec.py with --official-dir. Idempotent.
#
#   bash benchmarks/references/gru4rec_official/setup_env.sh          # -> benchmarks/references/gru4rec_official/.venv
#   VENV=/tmp/g4venv bash benchmarks/references/gru4rec_official/setup_env.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
# torch pinned to the CPU build so pip never pulls a multi-GB CUDA build; numpy<2 and pandas as the
# official code was written against (it only uses numpy, pandas, torch and joblib).
PINS=("torch==2.13.0" "numpy==1.26.4" "pandas==2.2.3" "joblib==1.4.2")

if [[ -x "$VENV/bin/python" ]]; then
  echo "[setup_env] venv exists: $VENV"
else
  echo "[setup_env] creating venv: $VENV ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" - "${PINS[@]}" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        have = version(name).split("+")[0]
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}: have {have}, want {want}")
print("\n".join(f"[setup_env] {b}" for b in bad))
sys.exit(1 if bad else 0)
PYEOF
then
  "$PY" -m pip --disable-pip-version-check install -q "${PINS[@]}"
fi
"$PY" -c "import torch, numpy, pandas; print(f'[setup_env] ok: torch {torch.__version__}, numpy {numpy.__version__}, pandas {pandas.__version__}')"
