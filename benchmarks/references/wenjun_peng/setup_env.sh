#!/usr/bin/env bash
# Create/refresh the venv that runs the PyTorch reference code of
# Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search (HEM, ZAM/AEM, HRNN) for
# benchmarks/references/compare_wenjun_peng.py. The reference code is NOT part of tfpps and is never copied
# here: clone it yourself at the pinned commit
#
#   git clone https://github.com/Wenjun-Peng/Advanced-Models-for-Personalized-Product-Search /tmp/wp-ref
#   git -C /tmp/wp-ref checkout 048425d8d933bdc47724b9c41b74c6f200554dab
#
# and pass it with --reference-dir. Idempotent.
#
#   bash benchmarks/references/wenjun_peng/setup_env.sh                      # -> benchmarks/references/wenjun_peng/.venv
#   REFERENCE_DIR=/tmp/wp-ref bash benchmarks/references/wenjun_peng/setup_env.sh   # also checks the checkout's commit
#   VENV=/tmp/wpvenv bash benchmarks/references/wenjun_peng/setup_env.sh
#
# The venv (benchmarks/references/wenjun_peng/.venv) is git-ignored by the repository's ".venv/" pattern.
set -euo pipefail

PINNED_COMMIT=048425d8d933bdc47724b9c41b74c6f200554dab
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-/opt/wheels}"
# The reference imports only torch and numpy (README: "Requirement: waiting to update"). torch is
# the CPU build from the local wheel directory, so pip never pulls a multi-GB CUDA build.
TORCH="torch==2.13.0+cpu"
PINS=("numpy==1.26.4")

if [[ -n "${REFERENCE_DIR:-}" ]]; then
  have="$(git -C "$REFERENCE_DIR" rev-parse HEAD 2>/dev/null || true)"
  if [[ "$have" != "$PINNED_COMMIT" ]]; then
    echo "[setup_env] $REFERENCE_DIR is at '${have:-not a git checkout}', want $PINNED_COMMIT" >&2
    echo "[setup_env]   git -C $REFERENCE_DIR checkout $PINNED_COMMIT" >&2
    exit 1
  fi
  echo "[setup_env] reference checkout ok: $REFERENCE_DIR @ ${PINNED_COMMIT:0:12}"
fi

if [[ -x "$VENV/bin/python" ]]; then
  echo "[setup_env] venv exists: $VENV"
else
  echo "[setup_env] creating venv: $VENV ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" - "$TORCH" "${PINS[@]}" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}: have {have}, want {want}")
print("\n".join(f"[setup_env] {b}" for b in bad))
sys.exit(1 if bad else 0)
PYEOF
then
  # torch's own dependencies (filelock, sympy, ...) come from the package index
  "$PY" -m pip --disable-pip-version-check install -q --find-links "$WHEELS" "$TORCH" "${PINS[@]}"
fi
"$PY" -c "import torch, numpy; print(f'[setup_env] ok: torch {torch.__version__}, numpy {numpy.__version__}')"
