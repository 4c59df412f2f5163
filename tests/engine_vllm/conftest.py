"""vLLM fixtures: the vLLM interpreter (configured or installed by scripts/install.sh), and one vLLM server per session.

The tests skip only where vLLM could not be installed; the reason the install recorded is the skip reason, and the
end of the run prints it (pytest_terminal_summary), so a skipped vLLM path is never silent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from lora_fixtures import tiny_lora_adapter
from mcp import Client
from vllm_helpers import ADAPTER, SERVED, World, call

from model_serving.mcp.server import create_server
from model_serving.serve.vllm import env as vllm_env
from model_serving.settings import Settings

_SEEN: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "status" in _SEEN:
        terminalreporter.write_line(f"vLLM tests: {_SEEN['status']}")


@pytest.fixture(scope="session")
def vllm_python() -> Iterator[str]:
    """The interpreter with vllm: MODEL_SERVING_VLLM_PYTHON, else the managed venv in the default state directory."""
    found = vllm_env.find(Settings.from_env())  # the home scripts/install.sh installed into, before any test changes it
    if not found.installed or not found.python:
        _SEEN["status"] = f"skipped: {found.error} ({found.next_step})"
        pytest.skip(f"vLLM is not installed here: {found.error}. {found.next_step}")
    _SEEN["status"] = f"vllm {found.version} ({found.source}) in {found.python}"
    before = os.environ.get(vllm_env.PYTHON_ENV)
    os.environ[vllm_env.PYTHON_ENV] = found.python
    yield found.python
    if before is None:
        os.environ.pop(vllm_env.PYTHON_ENV, None)
    else:
        os.environ[vllm_env.PYTHON_ENV] = before


@pytest.fixture(scope="session")
def vllm_lora(artifacts: Path, smollm2_checkpoint: Path) -> Path:
    """A LoRA on the real SmolLM2 that changes its answers (random weights), no tokens of its own."""
    return tiny_lora_adapter(artifacts / "smollm2-vllm-lora", smollm2_checkpoint, seed=5, scale=0.3)


@pytest.fixture(scope="session")
def vllm_world(vllm_python: str, smollm2_checkpoint: Path, vllm_lora: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """SmolLM2 (HF checkpoint) and its LoRA served by vLLM, started once through the MCP serve_start tool (which probes it)."""
    root = tmp_path_factory.mktemp("vllm")
    settings = Settings.from_env(roots=[str(root), str(smollm2_checkpoint.parent)], home=str(root / "home"),
                                 ollama_host="http://127.0.0.1:9")

    async def start() -> dict[str, Any]:
        async with Client(create_server(settings)) as client:
            return await call(client, "serve_start", {"gguf_path": str(smollm2_checkpoint), "name": SERVED, "engine": "vllm",
                                                      "ctx_size": 1024, "parallel": 4, "lora": [f"{ADAPTER}={vllm_lora}"]})

    world = World(settings, root, smollm2_checkpoint, vllm_lora, anyio.run(start))
    yield world
    from model_serving.serve.embedded.engine import list_models, stop_model

    for model in list_models(settings):
        if model.state == "running":
            stop_model(settings, model.name)
