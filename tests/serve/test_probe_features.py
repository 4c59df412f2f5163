"""The reasoning and tool-call probes on the real llama.cpp engine, with tiny models taught to behave.

Two published templates on the tiny Llama (tests/support/taught.py): a DeepSeek-R1 distill's, the model taught to
think and then answer; Qwen2.5's, which renders tools, the model taught to answer and to call the probe's tool.
Each is exported by our export (llama.cpp's converter), served by llama-server and probed as a deploy probes it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from ollama_double import OllamaDouble
from taught import ANSWER, CALL, THOUGHT, thinker_checkpoint, tool_checkpoint

from model_serving.serve import probe_checks as probe
from model_serving.serve.embedded.engine import register_embedded, stop_model
from model_serving.serve.ollama.client import OllamaAPIError, OllamaClient
from model_serving.serve.ollama.register import register_gguf
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


def _gguf(artifacts: Path, folder: Path, name: str) -> Path:
    from model_serving.checkpoint.export import export_gguf

    settings = Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home"))
    return Path(export_gguf(settings, str(folder), str(artifacts / f"{name}-f16.gguf")).output_path)


@pytest.fixture(scope="module")
def thinker_gguf(artifacts: Path, tiny_checkpoint: Path) -> Path:
    return _gguf(artifacts, thinker_checkpoint(artifacts, tiny_checkpoint), "tiny-r1")


@pytest.fixture(scope="module")
def tool_gguf(artifacts: Path, tiny_checkpoint: Path) -> Path:
    return _gguf(artifacts, tool_checkpoint(artifacts, tiny_checkpoint), "tiny-qwen-tools")


def test_a_reasoning_model_answers_once_its_reasoning_is_removed(settings: Settings, thinker_gguf: Path) -> None:
    model, result = register_embedded(settings, thinker_gguf, "thinker", ctx_size=1024, parallel=1)
    try:
        assert result.ok, result.problems
        assert result.reasoning_expected and result.answer.strip() == ANSWER
        assert result.reasoning_chars is not None and result.reasoning_chars >= len(THOUGHT)  # the thought, with its line breaks
        assert result.features() == [f"reasoning: separated from the answer ({result.reasoning_chars} characters)"]
        assert result.tools is None  # the R1 distill template renders no tools
        # The same reply without the engine's split: the thought and its tag stay in the text, and the probe says so.
        raw = httpx.post(f"{model.base_url}/v1/chat/completions", timeout=120,
                         json={"messages": probe.PROBE_MESSAGES, "max_tokens": 96, "temperature": 0, "reasoning_format": "none"}).json()
        text = raw["choices"][0]["message"]["content"]
        assert "</think>" in text
        assert "reasoning came back inside the answer" in probe.reasoning_problems(probe.Reply(text, "stop", 0))[0]
    finally:
        stop_model(settings, "thinker")


def test_a_tool_template_gets_a_parsed_tool_call(settings: Settings, tool_gguf: Path) -> None:
    model, result = register_embedded(settings, tool_gguf, "caller", ctx_size=1024, parallel=1)
    try:
        assert result.ok, result.problems
        assert result.tools == "passed" and result.tool_call == CALL
        assert result.features() == ["tools: passed"]
        assert not result.reasoning_expected
    finally:
        stop_model(settings, "caller")


def test_ollama_splits_the_reasoning_when_the_probe_asks_it_to_think(ollama_settings: Settings, ollama_double: OllamaDouble,
                                                                     thinker_gguf: Path, smollm2_gguf: Path) -> None:
    # Ollama 0.30+ renders the GGUF's Jinja template, whose <think>...</think> pair gives the model the thinking capability.
    reg, result = register_gguf(ollama_settings, thinker_gguf, "thinker", num_ctx=1024)
    assert result.ok, result.problems
    assert "thinking" in result.capabilities and result.reasoning_expected and not result.unsupported
    assert result.answer.strip() == ANSWER and result.reasoning_chars is not None and result.reasoning_chars >= len(THOUGHT)
    # Asked without think, Ollama hands the text back as written; a model that cannot think refuses think.
    register_gguf(ollama_settings, smollm2_gguf, "plain", num_ctx=1024)
    with OllamaClient(ollama_settings) as client:
        raw = client.chat("thinker", probe.PROBE_MESSAGES, options={"temperature": 0, "num_predict": 96})
        assert "</think>" in raw.content and raw.thinking == ""
        with pytest.raises(OllamaAPIError, match="does not support thinking"):
            client.chat("plain", probe.PROBE_MESSAGES, options={"num_predict": 4}, think=True)
