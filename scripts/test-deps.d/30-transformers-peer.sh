#!/usr/bin/env bash
# Builds .peer-venv/: `transformers serve`, the independent OpenAI-compatible peer that
# tests/test_peer_transformers.py drives. It gets its own venv so its torch never touches .venv, and torch is
# pinned to the local +cpu wheel because an unpinned torch pulls gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.peer-venv
TORCH_VERSION=2.13.0
if [ -x "$VENV/bin/transformers" ] && "$VENV/bin/python" -c "import torch, transformers" 2>/dev/null; then
    exit 0
fi
WHEEL_DIR="${PIP_FIND_LINKS:-/opt/wheels}"
if ! ls "$WHEEL_DIR"/torch-"$TORCH_VERSION"+cpu-*.whl >/dev/null 2>&1; then
    echo "30-transformers-peer: no torch-$TORCH_VERSION+cpu wheel in $WHEEL_DIR; put it there (CUDA torch is not allowed)" >&2
    exit 1
fi
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --find-links "$WHEEL_DIR" "torch==$TORCH_VERSION" "transformers[serving]" \
    || { echo "30-transformers-peer: pip could not install torch==$TORCH_VERSION (+cpu) and transformers[serving] into $VENV" >&2; exit 1; }
if "$VENV/bin/pip" list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "30-transformers-peer: CUDA packages got into $VENV; the +cpu torch wheel was not picked" >&2
    exit 1
fi
