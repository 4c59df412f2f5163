#!/usr/bin/env bash
# Create .venv and install model-serving with everything the demo and the tests need.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (pip skips what is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
# torch first, pinned: the converter needs it, and an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q --disable-pip-version-check "torch==2.13.0"
# llama-cpp-python compiles llama.cpp on first install (about 5 minutes on 2 cores); pip caches the wheel.
python -m pip install -q --disable-pip-version-check -e ".[export,smollm2${EXTRAS:+,$EXTRAS}]"
