#!/usr/bin/env bash
# The main job: deploy SmolLM2-135M-Instruct end to end on the embedded llama.cpp engine
# (build an HF checkpoint from the packaged GGUF -> export -> quantize Q8_0 -> serve -> probe -> bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/install.sh
model-serving deploy --target embedded "$@"
