"""The zoo's taught families (tests/support/zoo_taught.py) on vLLM CPU, with the tool-call and reasoning parsers the
template picks (serve/chat_features.py): the probe asks with tool_choice "auto", so the family's parser reads the
model's own call, and the row passes only on a parsed call with schema-valid arguments and an answer after reasoning."""

from __future__ import annotations

from pathlib import Path

import pytest
from taught import ANSWER, CALL, THOUGHT
from zoo import BY_NAME
from zoo_steps import taught_row
from zoo_taught import TAUGHT, taught_family

from model_serving.serve.vllm.engine import vllm_argv
from model_serving.settings import Settings

PARSERS = {"llama3": (None, "llama3_json"), "qwen2": (None, "hermes"), "qwen3": ("qwen3", "hermes"),
           "deepseek-r1-llama": ("deepseek_r1", None), "mistral-nemo": (None, "mistral")}


@pytest.mark.slow
@pytest.mark.parametrize("name", [f.name for f in TAUGHT])
def test_taught_family_proves_its_tool_call_and_reasoning_on_vllm(name: str, vllm_python: str, settings: Settings, artifacts: Path,
                                                                  smollm2_gguf: Path) -> None:
    family = BY_NAME[name]
    checkpoint = taught_family(family, artifacts, smollm2_gguf)
    argv = vllm_argv("python", checkpoint, "t", 1, max_model_len=1024, max_num_seqs=1, adapters={})
    reasoning, tools = PARSERS[name]
    assert (argv[argv.index("--reasoning-parser") + 1] if "--reasoning-parser" in argv else None) == reasoning
    assert (argv[argv.index("--tool-call-parser") + 1] if "--tool-call-parser" in argv else None) == tools
    row = taught_row(settings, family, checkpoint, "vllm")
    assert row.status == "pass", f"{row.cause} {row.next_step}"
    probe = row.detail
    # The zoo's qwen2 tokenizer is a SentencePiece model, which transformers (and so vLLM) reads as Qwen2Tokenizer:
    # its decoding drops every space and newline (the probe compares token ids, which are equal)
    words = (lambda text: "".join(text.split())) if name == "qwen2" else str.strip
    assert probe["template_matches"] and probe["finish_reason"] == "stop" and words(probe["answer"]) == words(ANSWER)
    assert probe["tool_call"] == (CALL if family.tools else None)
    assert (probe["reasoning_chars"] or 0) >= (len(THOUGHT) if family.reasoning else 0)
