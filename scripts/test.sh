#!/usr/bin/env bash
# Install everything the tests need, then run them. Pass pytest arguments through, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Go renders Ollama TEMPLATEs with text/template in the template-fidelity tests.
if ! command -v go >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null) || echo "warning: golang-go not installed; Go template tests will skip" >&2
fi
EXTRAS=test . scripts/install.sh
ruff check --quiet server tests benchmarks
python -m pytest "$@"
