"""The names engines go by, at the bottom of serve/: records, probes and deploys name an engine with these.

serve/engines.ENGINES holds one class for each name in `EngineName` (tests/serve/test_engines.py checks both agree).
"""

from __future__ import annotations

from typing import Literal

# Every name an engine is registered under (serve/engines.ENGINES holds one class for each; a test checks both agree).
EngineName = Literal["embedded", "vllm", "replicas", "gateway", "ollama"]
# The engines whose processes we run and record (serve/registry.py); Ollama runs its own, the gateway has its own record.
ServedEngine = Literal["embedded", "vllm", "replicas"]
