#!/usr/bin/env bash
# Set up streamlearn in ./.venv: the CPU build of torch first (an unpinned torch
# would pull a multi-GB CUDA build), then the package with its test extras.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "streamlearn is set up in .venv ($(.venv/bin/streamlearn --version))"
