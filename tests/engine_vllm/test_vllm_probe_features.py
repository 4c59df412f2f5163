"""vLLM (CPU) with the family's reasoning and tool-call parsers, chosen from the template, and the probe proving both.

The tiny Llama taught at test time (tests/support/taught.py) carries a DeepSeek-R1 distill's template, with <think>
and </think> as single tokens (vLLM's reasoning parser needs them so), or Qwen2.5's, which renders tools. vLLM's CPU
attention has no kernel for the 16-wide heads of the usual tiny model, so these are 256 wide (64-wide heads).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from checkpoints import tiny_random_checkpoint
from taught import ANSWER, CALL, THOUGHT, thinker_checkpoint, tool_checkpoint

from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.vllm.engine import serve_vllm, vllm_argv
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wide_base(artifacts: Path, smollm2_gguf: Path) -> Path:
    return tiny_random_checkpoint(artifacts / "tiny-llama-256-hf", smollm2_gguf, hidden=256)


def _served_probe(vllm_python: str, artifacts: Path, tmp_path: Path, folder: Path, name: str) -> ProbeResult:
    settings = Settings.from_env(roots=[str(tmp_path), str(artifacts)], home=str(tmp_path / "home"), ollama_host="http://127.0.0.1:9")
    try:
        return serve_vllm(settings, folder, name, ctx_size=1024, parallel=1)[1]
    finally:
        for model in list_models(settings):
            if model.state == "running":
                stop_model(settings, model.name)


def test_vllm_separates_the_reasoning_with_the_r1_parser(vllm_python: str, artifacts: Path, wide_base: Path, tmp_path: Path) -> None:
    thinker = thinker_checkpoint(artifacts, wide_base)
    argv = vllm_argv("python", thinker, "t", 1, max_model_len=1024, max_num_seqs=1, adapters={})
    assert argv[argv.index("--reasoning-parser") + 1] == "deepseek_r1" and "--tool-call-parser" not in argv
    result = _served_probe(vllm_python, artifacts, tmp_path, thinker, "thinker")
    assert result.ok, result.problems
    assert result.answer.strip() == ANSWER and (result.reasoning_chars or 0) >= len(THOUGHT) and not result.unsupported


def test_vllm_parses_tool_calls_with_the_hermes_parser(vllm_python: str, artifacts: Path, wide_base: Path, tmp_path: Path) -> None:
    caller = tool_checkpoint(artifacts, wide_base)
    argv = vllm_argv("python", caller, "c", 1, max_model_len=1024, max_num_seqs=1, adapters={})
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in argv
    result = _served_probe(vllm_python, artifacts, tmp_path, caller, "caller")
    assert result.ok, result.problems
    assert result.tools == "passed" and result.tool_call == CALL
