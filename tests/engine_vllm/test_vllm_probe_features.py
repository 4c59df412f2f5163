"""vLLM (CPU) with the family's reasoning and tool-call parsers, chosen from the template, and the probe proving both.

The tiny Llama taught at test time (tests/support/taught.py) carries a DeepSeek-R1 distill's template, with <think>
and </think> as single tokens (vLLM's reasoning parser needs them so), or Qwen2.5's, which renders tools.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from taught import ANSWER, CALL, THOUGHT, thinker_checkpoint, tool_checkpoint

from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.vllm.engine import serve_vllm, vllm_argv
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


def _settings(root: Path, artifacts: Path) -> Settings:
    return Settings.from_env(roots=[str(root), str(artifacts)], home=str(root / "home"), ollama_host="http://127.0.0.1:9")


def test_vllm_separates_the_reasoning_and_parses_tool_calls(vllm_python: str, artifacts: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, artifacts)
    thinker, caller = thinker_checkpoint(artifacts, tiny_checkpoint), tool_checkpoint(artifacts, tiny_checkpoint)
    argv = vllm_argv("python", thinker, "t", 1, max_model_len=512, max_num_seqs=1, adapters={})
    assert argv[argv.index("--reasoning-parser") + 1] == "deepseek_r1" and "--tool-call-parser" not in argv
    argv = vllm_argv("python", caller, "c", 1, max_model_len=512, max_num_seqs=1, adapters={})
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes" and "--enable-auto-tool-choice" in argv
    for name, folder in (("thinker", thinker), ("caller", caller)):
        try:
            _, result = serve_vllm(settings, folder, name, ctx_size=512, parallel=1)
            assert result.ok, result.problems
            if name == "thinker":
                assert result.answer.strip() == ANSWER and (result.reasoning_chars or 0) >= len(THOUGHT) and not result.unsupported
            else:
                assert result.tools == "passed" and result.tool_call == CALL
        finally:
            if any(m.name == name for m in list_models(settings)):
                stop_model(settings, name)
