"""Tool calls through Ollama: the tag Ollama reads from a TEMPLATE, the tag our converted TEMPLATEs give it, and a call
that comes back as `tool_calls` from the strict double (not as text).

Ollama's rule (tools/template.go) is rewritten in model_serving.serve.ollama.tooltag; the cases below are those of
Ollama's own tools/template_test.go, plus the forms a converted TEMPLATE writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from ollama_double import GoRenderer, OllamaDouble
from ollama_toolcalls import parse_reply

from model_serving.serve.ollama import templates
from model_serving.serve.ollama.client import OllamaClient
from model_serving.serve.ollama.fidelity import WEATHER_TOOL
from model_serving.serve.ollama.tooltag import FALLBACK, jinja_tag, ollama_tag
from model_serving.settings import Settings
from model_serving.util.chat_template import render

PUBLISHED = Path(__file__).parents[1] / "data" / "chat_templates" / "corpus"

UPSTREAM_CASES = [
    ("", "{"), ("{{if .ToolCalls}}{{end}}", "{"), ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
    ("{{if .ToolCalls}}```json\n{{end}}", "```json"), ("{{if .ToolCalls}}[{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
    ("{{if .ToolCalls}}\n [ {{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["), ("{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "{"),
    ("{{if .ToolCalls}} {{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"), ("{{if .ToolCalls}}{{range .ToolCalls}}\n{{ . }}\n{{end}}{{end}}", "{"),
    ('{{if .ToolCalls}}{{range .ToolCalls}}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{end}}{{end}}', "{"),
    ('{{if .ToolCalls}}{{range .ToolCalls}}\r\n{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{end}}{{end}}', "{"),
    ("{{if .ToolCalls}}<|tool▁calls▁begin|>{{range .ToolCalls}}<|tool▁call▁begin|>functionget_current_weather\n```json\n"
     '{"location": "Tokyo"}\n```<|tool▁call▁end|>\n{{end}}<|tool▁calls▁end|>{{end}}', "<|tool▁calls▁begin|>"),
    ('{{if .ToolCalls}}{{range .ToolCalls}}<tool_call>{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}</tool_call>{{end}}{{end}}',
     "<tool_call>"),
    ('{{if .ToolCalls}}\n{{range .ToolCalls}}<tool_call>{"name": "{{ .Function.Name }}"}</tool_call>{{end}}{{end}}', "<tool_call>"),
    ("{{if .ToolCalls}}First text{{if .Something}}inner{{end}}Second text{{end}}", "First text"),
    ("{{if .ToolCalls}}Action: ```json{{end}}", "Action: ```json"), ("{{if .ToolCalls}}functools[{{end}}", "functools["),
    ("{{if .ToolCalls}}[TOOL_CALL] [{{end}}", "[TOOL_CALL] ["), ("{{if .ToolCalls}}[TOOL_CALL][{{end}}", "[TOOL_CALL]["),
]
# What a converted TEMPLATE writes: a variable is not a field, nor is a field inside parentheses.
OUR_FORMS = [
    ("{{ range $i, $m := $.Messages }}{{ if $m.ToolCalls }}<tool_call>{{ end }}{{ end }}", "{"),
    ("{{ if (.ToolCalls) }}<tool_call>{{ end }}", "{"),
    ("{{ range .Messages }}{{ if .ToolCalls }}<tool_call>{{ end }}{{ end }}", "<tool_call>"),
    ("{{ if .Content }}{{ else if and .Content .ToolCalls }}<x>{{ end }}", "<x>"),
    ("{{ if .ToolCalls }}{{ $x := 1 }}<tool_call>{{ end }}", "{"),
    ("{{- if .ToolCalls -}}\n  <z>\n{{- end }}{{/* {{ if .ToolCalls }}<no>{{ end }} */}}", "<z>"),
]

# The tag Ollama's own library templates give each family (what our TEMPLATE must give too).
LIBRARY_TAGS = {
    "Qwen-Qwen2.5-7B-Instruct": "<tool_call>", "Qwen-QwQ-32B": "<tool_call>", "Qwen-Qwen3-0.6B": "<tool_call>",
    "ibm-granite-granite-4.0": "<tool_call>", "ibm-granite-granite-4.1": "<tool_call>",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": "<|START_ACTION|>", "Cohere2MoE": "<|START_ACTION|>",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": "<tool_call>", "mistralai-Mistral-Nemo-Instruct-2407": "[TOOL_CALLS]",
    "meta-llama-Llama-3.1-8B-Instruct": "{", "meta-llama-Llama-3.2-3B-Instruct": "{", "meta-llama-Llama-3.3-70B-Instruct": "{",
}


@pytest.mark.parametrize(("template", "tag"), UPSTREAM_CASES + OUR_FORMS)
def test_the_tag_ollama_reads_from_a_template(template: str, tag: str) -> None:
    assert ollama_tag(template) == tag


def test_each_family_template_writes_the_tag_of_ollamas_library_template() -> None:
    found = {name: jinja_tag((PUBLISHED / f"{name}.jinja").read_text()) for name in LIBRARY_TAGS}
    assert found == LIBRARY_TAGS


def _converted_tool_templates() -> list[tuple[str, str, templates.Conversion]]:
    out = []
    for path in sorted(PUBLISHED.glob("*.jinja")):
        source = path.read_text()
        if jinja_tag(source) is None:
            continue
        try:
            out.append((path.stem, source, templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)))
        except templates.UnconvertibleTemplate:
            continue  # no TEMPLATE at all: registration relies on Ollama rendering the GGUF's Jinja
    return out


def test_every_converted_tool_template_gives_ollama_its_tag_and_keeps_tools() -> None:
    converted = _converted_tool_templates()
    assert len(converted) >= 8
    assert {name: ollama_tag(conv.go_template) for name, _, conv in converted} == {name: conv.tool_tag for name, _, conv in converted}
    assert all(conv.tool_tag is not None for _, _, conv in converted)
    # a bare JSON call (no tag) only where Ollama's own library template has none either, or where nothing marks a call
    # before its name (Muse Glimmer's call is the turn's recipient, `to=NAME`, where a turn without one writes `to=user`)
    no_marker = {"muse-glimmer"}
    assert {name for name, _, conv in converted if conv.tool_tag == FALLBACK} == {n for n, t in LIBRARY_TAGS.items() if t == FALLBACK} | no_marker
    assert [name for name, source, conv in converted if templates.uses_tools(source) and "$.Tools" not in conv.go_template] == []
    by_name = {name: conv for name, _, conv in converted}
    assert all(by_name[n].tool_tag == t for n, t in LIBRARY_TAGS.items() if n in by_name)
    assert {"Qwen-Qwen2.5-7B-Instruct", "Qwen-QwQ-32B", "Qwen-Qwen3-0.6B", "ibm-granite-granite-4.0", "meta-llama-Llama-3.1-8B-Instruct"} <= set(by_name)


def test_the_tag_declaration_changes_no_prompt(go_renderer: GoRenderer) -> None:
    source = (PUBLISHED / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    conv = templates.convert(source, bos_token="", eos_token="<|im_end|>", runtime_adds_bos=False)
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    messages = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": "18 C"}]
    expected = render(source, messages, add_generation_prompt=True, tools=[WEATHER_TOOL])
    assert go_renderer(conv.go_template, messages, [WEATHER_TOOL]) == expected
    assert "<tool_call>\n" in expected


def test_the_parser_follows_ollamas_rules() -> None:
    tools = [WEATHER_TOOL]
    qwen = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse_reply("Let me look. " + qwen, "<tool_call>", tools) == ("Let me look. ", [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}])
    # with the fallback tag a call must come first: text before it makes the whole reply text
    assert parse_reply("Let me look. " + qwen, FALLBACK, tools) == ("Let me look. " + qwen, [])
    assert parse_reply(' {"name": "get_weather", "parameters": {"city": "Oslo"}}', FALLBACK, tools)[1][0]["function"]["arguments"] == {"city": "Oslo"}
    assert parse_reply('<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}', "<tool_call>", tools)[1][0][
        "function"]["arguments"] == {"city": "Rome"}
    assert parse_reply("no call here", "<tool_call>", tools) == ("no call here", [])


def _create(client: OllamaClient, gguf: Path, name: str, template: str) -> None:
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    client.push_blob(gguf, digest)
    client.create({"model": name, "files": {gguf.name: digest}, "template": template, "parameters": {"num_ctx": 1024}})


@pytest.mark.slow
def test_a_call_after_the_family_tag_comes_back_as_tool_calls(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    source = (PUBLISHED / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    conv = templates.convert(source, bos_token="", eos_token="<|im_end|>", runtime_adds_bos=False)
    reply = 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    with OllamaClient(ollama_settings) as client:
        _create(client, smollm2_gguf, "qwen-tools", conv.go_template)
        ollama_double.replies = [reply]
        native = httpx.post(f"{ollama_double.url}/api/chat", json={"model": "qwen-tools", "messages": ask, "tools": [WEATHER_TOOL],
                                                                   "stream": False}, timeout=120).json()
        assert native["message"]["tool_calls"] == [{"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}]
        assert native["message"]["content"] == "I will check.\n"
        ollama_double.replies = [reply]
        openai = httpx.post(f"{ollama_double.url}/v1/chat/completions", json={"model": "qwen-tools", "messages": ask, "tools": [WEATHER_TOOL]},
                            timeout=120).json()
        [choice] = openai["choices"]
        assert choice["finish_reason"] == "tool_calls"
        assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
        # the same reply under a TEMPLATE without the declaration (Ollama's `{` fallback): the call is plain text
        bare = conv.go_template.split("{{ end }}{{ end }}", 1)[1]
        assert ollama_tag(bare) == FALLBACK
        _create(client, smollm2_gguf, "qwen-bare", bare)
        ollama_double.replies = [reply]
        lost = httpx.post(f"{ollama_double.url}/api/chat", json={"model": "qwen-bare", "messages": ask, "tools": [WEATHER_TOOL],
                                                                 "stream": False}, timeout=120).json()
        assert "tool_calls" not in lost["message"] and lost["message"]["content"] == reply
