#!/usr/bin/env bash
# Create .venv and install model-serving with everything the demo and the tests need.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (pip skips what is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
LLAMA_CPP_PYTHON_PIN=0.3.36
# sha256 of llama_cpp_python-$LLAMA_CPP_PYTHON_PIN.tar.gz on PyPI (the converter comes from it); a new pin needs a new hash.
LLAMA_CPP_PYTHON_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
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
  python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_CPP_PYTHON_PIN"
fi
# llama.cpp's converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/, gguf-py/) of the same llama-cpp-python
# release, unpacked once into the venv: export finds it there and never downloads at run time.
LLAMA_CPP_PYTHON_VERSION=$(python -c "from importlib.metadata import version; print(version('llama-cpp-python'))")
CONVERTER_HOME=".venv/share/model-serving/llama.cpp-$LLAMA_CPP_PYTHON_VERSION"
if [ ! -f "$CONVERTER_HOME/convert_hf_to_gguf.py" ] || [ ! -f "$CONVERTER_HOME/convert_lora_to_gguf.py" ]; then  # LoRA adapters: --as-lora-gguf
  if [ "$LLAMA_CPP_PYTHON_VERSION" != "$LLAMA_CPP_PYTHON_PIN" ]; then
    echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION is installed but the converter's sha256 is pinned for $LLAMA_CPP_PYTHON_PIN: update the pin in scripts/install.sh" >&2
    exit 1
  fi
  SDIST_DIR=$(mktemp -d)  # removed below; no EXIT trap, since scripts/demo.sh and scripts/test.sh source this file
  python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$SDIST_DIR" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  SDIST="$SDIST_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
  echo "$LLAMA_CPP_PYTHON_SDIST_SHA256  $SDIST" | sha256sum --check --quiet -
  mkdir -p "$(dirname "$CONVERTER_HOME")"
  python -m model_serving.checkpoint.export unpack "$SDIST" "$CONVERTER_HOME" >/dev/null
  rm -rf "$SDIST_DIR"
fi
