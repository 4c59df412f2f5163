"""Reasoning and tool support read from published chat templates, and the probe's checks of both."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_serving.serve import probe_checks as probe
from model_serving.serve.chat_features import chat_features, split_reasoning
from model_serving.serve.embedded.native import Build, server_argv
from model_serving.serve.gateway.preset import render

TEMPLATES = Path(__file__).parents[1] / "data" / "chat_templates"


@pytest.mark.parametrize(("name", "reasoning", "tools", "reasoning_parser", "tool_parser"), [
    ("deepseek-r1-distill-llama.jinja", True, False, "deepseek_r1", None),
    ("qwen3.jinja", True, True, "qwen3", "hermes"),
    ("qwen2.5.jinja", False, True, None, "hermes"),
    ("llama3.jinja", False, False, None, None),
])
def test_published_templates_name_their_features_and_vllm_parsers(name: str, reasoning: bool, tools: bool, reasoning_parser: str | None,
                                                                  tool_parser: str | None) -> None:
    features = chat_features((TEMPLATES / name).read_text(encoding="utf-8"), vocab={"<think>", "</think>"})
    assert (features.reasoning, features.tools, features.reasoning_parser, features.tool_parser) == (reasoning, tools, reasoning_parser, tool_parser)
    argv = features.vllm_argv()
    assert ("--reasoning-parser" in argv) == bool(reasoning_parser)
    assert argv[argv.index("--tool-call-parser") + 1] == tool_parser if tool_parser else "--enable-auto-tool-choice" not in argv
    assert features.unsupported("vllm") == []


def test_vllm_cannot_separate_reasoning_without_single_think_tokens() -> None:
    features = chat_features((TEMPLATES / "deepseek-r1-distill-llama.jinja").read_text(encoding="utf-8"), vocab={"<s>", "</s>"})
    assert features.reasoning and features.reasoning_parser is None and "--reasoning-parser" not in features.vllm_argv()
    assert features.unsupported("vllm") == ["reasoning: not separated by vllm for this template (the tokenizer has no single <think> and "
                                            "</think> tokens, which vLLM's parser needs)"]
    assert features.unsupported("embedded") == []


def test_a_tool_template_no_parser_knows_is_said_unsupported_on_vllm() -> None:
    template = "{% for tool in tools %}{{ tool | tojson }}{% endfor %}{% for m in messages %}<<{{ m.content }}>>{% endfor %}"
    features = chat_features(template)
    assert features.tools and features.tool_parser is None
    assert features.unsupported("vllm") == ["tools: not supported by vllm for this template (no tool-call parser matches its markers)"]


def test_the_embedded_engine_renders_jinja_and_separates_reasoning(tmp_path: Path) -> None:
    argv = server_argv(Build("native", tmp_path / "llama-server", "test"), tmp_path / "m.gguf", alias="m", port=1, ctx_size=512,
                       parallel=1, threads=1)
    assert "--jinja" in argv and argv[argv.index("--reasoning-format") + 1] == "deepseek"
    assert "reasoning-format = deepseek" in render([], keep_alive_s=60).splitlines()  # the gateway's instances too


@pytest.mark.parametrize(("text", "reasoning", "answer"), [
    ("<think>\nhmm\n</think>\n\nParis.", "hmm", "Paris."),
    ("hmm\n</think>Paris.", "hmm", "Paris."),  # the prompt opened the block
    ("Paris.", "", "Paris."),
    ("<think>still thinking", "still thinking", ""),
])
def test_reasoning_left_in_the_text_is_split_off(text: str, reasoning: str, answer: str) -> None:
    assert split_reasoning(text) == (reasoning, answer)


def _result(reply: probe.Reply, **details: object) -> probe.ProbeResult:
    return probe.result("embedded", "m", reply, expected_prompt_tokens=None, max_tokens=64, messages=probe.PROBE_MESSAGES, seconds=0.1, **details)


def test_an_answer_after_the_reasoning_passes_and_reports_its_length() -> None:
    out = _result(probe.Reply("Paris.", "stop", 20, reasoning="The user asks."), reasoning_expected=True)
    assert out.ok and out.reasoning_chars == len("The user asks.")
    assert out.features() == ["reasoning: separated from the answer (14 characters)"]


def test_an_empty_answer_once_the_reasoning_is_removed_fails() -> None:
    out = _result(probe.Reply("", "stop", 20, reasoning="thinking and thinking"), reasoning_expected=True)
    assert not out.ok and out.problems == ["the answer is empty once the reasoning (21 characters) is removed: "
                                           "the model spent its tokens thinking or never closed </think>"]


def test_reasoning_left_in_the_answer_fails() -> None:
    out = _result(probe.Reply("<think>hmm</think>Paris.", "stop", 20), reasoning_expected=True)
    assert not out.ok and "the reasoning came back inside the answer text" in out.problems[0]


def _call(arguments: object, name: str = "get_weather") -> dict:
    return {"content": None, "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}


@pytest.mark.parametrize(("message", "verdict"), [
    (_call('{"city": "Paris"}'), "passed"),
    (_call({"city": "Paris"}), "passed"),  # Ollama hands arguments as an object
    (_call('{"city": "Paris"'), "failed: the call's arguments are not valid JSON ('{\"city\": \"Paris\"')"),
    (_call('{"town": "Paris"}'), "failed: the call's arguments {'town': 'Paris'} do not match the tool's schema"),
    (_call('{"city": 3}'), "failed: the call's arguments {'city': 3} do not match the tool's schema"),
    (_call('{"city": "Paris"}', name="get_time"), "failed: the call names 'get_time', not 'get_weather'"),
    ({"content": '<tool_call>{"name": "get_weather"}</tool_call>'},
     "failed: the reply carries no tool_calls (the text was '<tool_call>{\"name\": \"get_weather\"}</tool_call>'): the call came back as text or not at all"),
])
def test_a_tool_call_must_be_parsed_and_match_the_schema(message: dict, verdict: str) -> None:
    tools, call = probe.tool_call_check(message)
    assert tools == verdict
    assert (call == {"name": "get_weather", "arguments": {"city": "Paris"}}) == (verdict == "passed")


def test_a_failed_tool_call_fails_the_probe() -> None:
    out = _result(probe.Reply("Paris.", "stop", 20), tools="failed: the reply carries no tool_calls")
    assert not out.ok and out.problems == ["tool call failed: the reply carries no tool_calls"]
    assert out.features() == ["tools: failed: the reply carries no tool_calls"]


def test_the_tool_check_is_left_out_only_when_the_configuration_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(probe.PROBE_TOOLS_ENV, raising=False)
    assert probe.tools_not_checked() is None
    monkeypatch.setenv(probe.PROBE_TOOLS_ENV, "0")
    skipped = probe.tools_not_checked()
    assert skipped is not None and skipped["tools"] == f"not checked ({probe.PROBE_TOOLS_ENV}=0)"
    reply = probe.Reply(answer="Paris.", finish_reason="stop", prompt_tokens=12)
    left_out = probe.result("embedded", "m", reply, expected_prompt_tokens=None, max_tokens=8, messages=probe.PROBE_MESSAGES, seconds=0.1, **skipped)
    failed = probe.result("embedded", "m", reply, expected_prompt_tokens=None, max_tokens=8, messages=probe.PROBE_MESSAGES, seconds=0.1,
                          tools="failed: the reply carries no tool_calls")
    assert not any("tool" in p for p in left_out.problems) and f"tools: {skipped['tools']}" in left_out.features()
    assert any(p.startswith("tool call failed") for p in failed.problems)
