"""The zoo's families that reason or call tools, taught to (tests/support/zoo_taught.py) and probed on llama.cpp with
the tool-call check on: a parsed call of the probe's tool with schema-valid arguments, and an answer left once the
reasoning is removed. The vLLM rows are tests/engine_vllm/test_vllm_zoo_taught.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from taught import ANSWER, CALL, THOUGHT
from zoo import BY_NAME, SDIST, Family
from zoo_steps import taught_row
from zoo_taught import TAUGHT, lessons, taught_family

from model_serving.settings import Settings

# Each family's call as llama.cpp's own parser tests write it (tests/test-chat.cpp of the pinned revision: Qwen 2.5's
# and Mistral Nemo's templates) and as the Llama 3.2 template's tool instructions ask for it.
PUBLISHED_CALLS = {
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "qwen2": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "qwen3": f'<think>\n{THOUGHT}\n</think>\n\n<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}\n</tool_call>',
    "mistral-nemo": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call00001"}]',
}


@pytest.fixture(scope="session")
def taught(artifacts: Path, smollm2_gguf: Path) -> Callable[[Family], Path]:
    """Each family's taught checkpoint, built once per session (a build, an export and under a minute of training)."""
    return lambda family: taught_family(family, artifacts, smollm2_gguf)


def test_each_family_is_taught_its_own_published_formats() -> None:
    if not SDIST.is_file():
        pytest.skip(f"the pinned llama-cpp-python sdist is not at {SDIST} (scripts/install.sh keeps it there)")
    assert [f.name for f in TAUGHT] == ["llama3", "qwen2", "qwen3", "deepseek-r1-llama", "mistral-nemo"]
    for family in TAUGHT:
        replies = [lesson.reply for lesson in lessons(family)]
        assert replies[0].endswith(ANSWER), family.name
        # R1's generation prompt opens the block, so its model only closes it; Qwen 3's model writes both tags
        assert ("</think>" in replies[0]) == family.reasoning and replies[0].startswith("<think>") == (family.name == "qwen3")
        assert replies[1:] == ([PUBLISHED_CALLS[family.name]] if family.tools else []), family.name


@pytest.mark.slow
@pytest.mark.parametrize("name", [f.name for f in TAUGHT])
def test_taught_family_proves_its_tool_call_and_reasoning_on_llama_cpp(name: str, settings: Settings,
                                                                        taught: Callable[[Family], Path]) -> None:
    family = BY_NAME[name]
    row = taught_row(settings, family, taught(family), "embedded")
    assert row.status == "pass", f"{row.cause} {row.next_step}"
    probe = row.detail
    assert probe["template_matches"] and probe["finish_reason"] == "stop" and probe["answer"].strip() == ANSWER
    if family.tools:
        assert probe["tools"] == "passed" and probe["tool_call"] == CALL  # parsed, its arguments valid against the tool's schema
    else:
        assert probe["tools"] is None
    assert (probe["reasoning_chars"] or 0) >= (len(THOUGHT) if family.reasoning else 0)
