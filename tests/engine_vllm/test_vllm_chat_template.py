"""vLLM given a chat template file through MCP serve_start: it renders by the file, and the probe compares with the file.

A server of its own (not the module world of test_vllm_engine.py), stopped at the end: one more vLLM start, hence slow.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from bare_model import GIVEN_MARKER, write_template
from mcp import Client
from vllm_helpers import call

from model_serving.mcp.server import create_server
from model_serving.serve.embedded.engine import get_model, stop_model
from model_serving.serve.vllm.vllm_probe import probe_vllm
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


def test_vllm_serves_by_the_given_template(vllm_python: str, smollm2_checkpoint: Path, tmp_path: Path) -> None:
    settings = Settings.from_env(roots=[str(tmp_path), str(smollm2_checkpoint.parent)], home=str(tmp_path / "home"),
                                 ollama_host="http://127.0.0.1:9")
    given = write_template(tmp_path)

    async def start() -> dict:
        async with Client(create_server(settings)) as client:
            return await call(client, "serve_start", {"gguf_path": str(smollm2_checkpoint), "name": "smol-given", "engine": "vllm",
                                                      "ctx_size": 1024, "parallel": 1, "chat_template": str(given)})

    served = anyio.run(start)
    try:
        assert served["chat_template_file"] == str(given.resolve())
        probe = probe_vllm(settings, "smol-given")
        assert probe.ok, probe.problems
        assert probe.template_matches is True and probe.rendered_prompt and GIVEN_MARKER in probe.rendered_prompt
        assert probe.prompt_tokens == probe.expected_prompt_tokens and probe.finish_reason == "stop"
        assert get_model(settings, "smol-given").engine == "vllm"
    finally:
        stop_model(settings, "smol-given")
