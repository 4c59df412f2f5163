"""Template fidelity: our Go TEMPLATE, rendered by Go's text/template, equals the Jinja prompt.

The family templates under data/chat_templates are test data written for these tests in the shape
of each family's published template; SmolLM2's is read from the packaged GGUF itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ollama_double import GoRenderer

from model_serving.errors import InputError
from model_serving.gguf.info import GGUFInfo, read_gguf
from model_serving.serve.ollama import templates
from model_serving.serve.ollama.fidelity import CONVERSATIONS, check_live, check_rendered, first_difference
from model_serving.util.chat_template import render

DATA = Path(__file__).parents[1] / "data" / "chat_templates"
# family file -> (bos, eos, runtime adds BOS, expected family)
FAMILIES = {
    "qwen2.5": ("", "<|im_end|>", False, "chatml"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", True, "llama3"),
    "gemma": ("<bos>", "<eos>", True, "gemma"),
    "mistral": ("<s>", "</s>", True, "mistral"),
    "phi3": ("<s>", "<|endoftext|>", False, "phi3"),
    "generic": ("", "</s>", False, "generic"),
}


def _check(source: str, bos: str, eos: str, adds_bos: bool, renderer: GoRenderer):
    conv = templates.convert(source, bos_token=bos, eos_token=eos, runtime_adds_bos=adds_bos)
    report = check_rendered(source, conv.go_template, renderer, bos=bos, eos=eos, bos_left_to_runtime=conv.bos_left_to_runtime,
                            template_uses_tools=templates.uses_tools(source), notes=conv.notes)
    return conv, report


def test_smollm2_template_from_the_gguf_renders_identically(smollm2_gguf: Path, go_renderer: GoRenderer) -> None:
    info = read_gguf(smollm2_gguf)
    assert info.chat_template and "<|im_start|>" in info.chat_template
    conv, report = _check(info.chat_template, info.bos_token or "", info.eos_token or "", bool(info.add_bos_token), go_renderer)
    assert conv.family == "chatml"
    assert report.passed, report.describe()
    equal = {c.conversation for c in report.cases if c.status == "equal"}
    assert equal == {"system+user", "user only", "multi-turn", "no generation prompt"}
    # the default system prompt appears only when the conversation has none
    user_only = go_renderer(conv.go_template, [{"role": "user", "content": "hi"}], None)
    assert user_only.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_templates_render_identically(family: str, go_renderer: GoRenderer) -> None:
    bos, eos, adds_bos, expected_family = FAMILIES[family]
    source = (DATA / f"{family}.jinja").read_text()
    conv, report = _check(source, bos, eos, adds_bos, go_renderer)
    assert conv.family == expected_family
    non_tool = [c for c in report.cases if c.conversation != "tools"]
    assert all(c.status != "different" for c in non_tool), report.describe()
    assert sum(c.status == "equal" for c in non_tool) >= 2, report.describe()
    # Ollama must see .Messages to use the messages path
    assert "$.Messages" in conv.go_template


def test_rejected_conversations_are_reported_not_compared(go_renderer: GoRenderer) -> None:
    _, report = _check((DATA / "gemma.jinja").read_text(), "<bos>", "<eos>", True, go_renderer)
    rejected = {c.conversation: c.reason for c in report.cases if c.status == "not applicable"}
    assert "System role not supported" in rejected["system+user"]


def test_double_bos_is_left_to_the_runtime(go_renderer: GoRenderer) -> None:
    source = (DATA / "llama3.jinja").read_text()
    conv = templates.convert(source, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", runtime_adds_bos=True)
    assert conv.bos_left_to_runtime
    out = go_renderer(conv.go_template, [{"role": "user", "content": "Hi"}], None)
    assert out.startswith("<|start_header_id|>user") and "<|begin_of_text|>" not in out
    kept = templates.convert(source, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", runtime_adds_bos=False)
    assert go_renderer(kept.go_template, [{"role": "user", "content": "Hi"}], None).startswith("<|begin_of_text|><|start_header_id|>")


def test_tool_definitions_and_calls_render_as_the_jinja_writes_them(go_renderer: GoRenderer) -> None:
    source = (DATA / "qwen2.5.jinja").read_text()
    assert templates.uses_tools(source)
    conv, report = _check(source, "", "<|im_end|>", False, go_renderer)
    tools_case = next(c for c in report.cases if c.conversation == "tools")
    # transformers' tojson: ", " and ": " separators, keys in the order the dicts were written
    assert tools_case.status == "equal", report.describe()
    rendered = go_renderer(conv.go_template, [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ], [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & \"later\"",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    assert '{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & \\"later\\"", "parameters": ' \
           '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}' in rendered
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call><|im_end|>' in rendered
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n" in rendered


def test_go_renderer_prints_tool_lists_as_json_like_ollama(go_renderer: GoRenderer) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}}}
    out = go_renderer("{{ .Tools }}|{{ range .Tools }}{{ . }}|{{ .Function }}{{ end }}{{ range .Messages }}{{ .Content }}{{ end }}", [{"role": "user", "content": "x"}], [tool])
    # Ollama's template view of tools: compact JSON in struct field order, the description always written, properties a Go
    # map (sorted keys); a bare function has no String method and prints as a Go struct, in Ollama too
    listed = '{"type":"function","function":{"name":"f","description":"","parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}}}}}'
    assert out == f'[{listed}]|{listed}|{{f  {{object <nil> <nil> [] {{"a":{{"type":"integer"}},"b":{{"type":"string"}}}}}}}}x'


@pytest.mark.parametrize(("source", "construct", "column"), [
    ("{% for m in messages %}{{ m['content'].upper() }}{% endfor %}", "the method .upper()", 40),
    # a recursive macro whose text feeds a filter: Go's {{template}} writes its text out, it cannot hand it back
    ("{% macro f(x) %}{% if x %}{{ f(x[1:]) }}{% endif %}{% endmacro %}{{ f(messages[0].content) | trim }}", "a macro that calls itself", 10),
    ("{% for m in messages %}{{ loop.index0 * 2 }}{% endfor %}", "arithmetic (*)", 39),
    ("{% for k, v in messages[0].items() %}{{ k }}{% endfor %}", "a loop over .items() of a message", 28),
    ("{{ messages[0]['content'] | title }}", "the filter 'title'", 29),
    ("{% for m in messages %}{% if m.role in m.tool_calls %}x{% endif %}{% endfor %}", "an `in` test", 37),
    # read inside the loop that fills it (read after the loop, the list is the filtered messages)
    ("{% set ns = namespace(seen=[]) %}{% for m in messages %}{% set ns.seen = ns.seen + [m.role] %}{{ ns.seen | length }}{% endfor %}",
     "a list built at render time", 82),
])
def test_unconvertible_templates_name_the_construct_line_and_column(source: str, construct: str, column: int | None) -> None:
    with pytest.raises(templates.UnconvertibleTemplate) as err:
        templates.convert("\n" + source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert construct in err.value.cause
    assert err.value.line == 2 and "line 2" in err.value.cause
    if column is not None:
        assert err.value.column == column and f"column {column}" in err.value.cause
    assert "--template gguf" in err.value.next_step and "ollama check-template" in err.value.next_step


def test_invalid_jinja_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not valid Jinja"):
        templates.convert("{% for m in messages %}", bos_token="", eos_token="", runtime_adds_bos=False)


def test_go_literal_text_cannot_open_an_action(go_renderer: GoRenderer) -> None:
    source = "{% for m in messages %}{{ '{{' }}{{ m.content }}}}\\\"{% endfor %}"
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert go_renderer(conv.go_template, [{"role": "user", "content": "x"}], None) == '{{x}}\\"'
    # text ending in `{` right before an action (`{"a": {` then a field) must not merge into `{{{`
    conv = templates.convert("{% for m in messages %}{ {{- m.content }}}{% endfor %}", bos_token="", eos_token="", runtime_adds_bos=False)
    assert go_renderer(conv.go_template, [{"role": "user", "content": "x"}], None) == "{x}"


def _vocab(*special: str, plain: tuple[str, ...] = ("a", "b")) -> GGUFInfo:
    tokens = [*plain, *special]
    return GGUFInfo(path="x.gguf", size_bytes=0, architecture="llama", vocab_size=len(tokens),
                    special_tokens={i: t for i, t in enumerate(tokens) if t in special})


def test_stop_tokens_cover_eos_eot_generation_config_and_turn_markers() -> None:
    info = _vocab("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>")
    info.special_token_ids.update(eos=3, eot=4)
    stops = templates.stop_tokens(info, (DATA / "llama3.jinja").read_text(), extra_eos_ids=[7])
    assert stops[:2] == ["<|end_of_text|>", "<|eot_id|>"]
    assert "<|eom_id|>" in stops  # from generation_config.json's eos_token_id list
    assert {"<|start_header_id|>", "<|end_header_id|>"} <= set(stops)
    assert len(stops) == len(set(stops))


def test_first_difference_points_at_line_and_column() -> None:
    diff = first_difference("ab\ncdef", "ab\ncdXf")
    assert diff is not None and (diff.index, diff.line, diff.column) == (5, 2, 3)
    assert first_difference("same", "same") is None
    short = first_difference("abc", "ab")
    assert short is not None and short.index == 2


def test_live_check_flags_truncation_and_doubled_bos() -> None:
    source = (DATA / "llama3.jinja").read_text()

    def tokenize(text: str, add_bos: bool) -> list[int]:
        return ([0] if add_bos else []) + list(range(len(text.split())))

    def expected(conv) -> int:
        from model_serving.serve.ollama.fidelity import jinja_prompt

        prompt = jinja_prompt(source, conv, "<|begin_of_text|>", "<|eot_id|>").removeprefix("<|begin_of_text|>")
        return len(tokenize(prompt, True))

    ok = check_live(expected, source, tokenize, bos="<|begin_of_text|>", eos="<|eot_id|>", add_bos=True, template_uses_tools=False)
    assert ok.passed and all(c.status != "different" for c in ok.cases)
    doubled = check_live(lambda c: expected(c) + 1, source, tokenize, bos="<|begin_of_text|>", eos="<|eot_id|>", add_bos=True, template_uses_tools=False)
    assert not doubled.passed and "doubled BOS" in doubled.failures()[0].reason
    cut = check_live(lambda c: expected(c) - 5, source, tokenize, bos="<|begin_of_text|>", eos="<|eot_id|>", add_bos=True, template_uses_tools=False)
    assert "truncated" in cut.failures()[0].reason


def test_every_fixed_conversation_has_a_distinct_name() -> None:
    assert len({c.name for c in CONVERSATIONS}) == len(CONVERSATIONS)


_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "First?"},
    {"role": "assistant", "content": "One."},
    {"role": "user", "content": "Second?"},
]


@pytest.mark.parametrize("source", [
    # negative indexes and slices with negative bounds
    "{{ messages[-1].content }}|{{ messages[-2]['role'] }}|{% for m in messages[:-1] %}{{ m.role }},{% endfor %}",
    # arithmetic on lengths and loop counters
    "{% for m in messages %}{% if loop.index0 == messages|length - 1 %}last:{% endif %}{{ loop.index + 1 }}{% endfor %}",
    "{% for m in messages %}{{ loop.index0 % 2 }}{{ loop.index % 3 }}{% if loop.index0 % 2 == 0 %}e{% endif %}{% endfor %}",
    # a filtered list: bound to a name, counted, picked, looped with loop.*
    "{% set users = messages | selectattr('role', 'equalto', 'user') | list %}{{ users | length }}:{{ users[-1].content }}"
    "{% for u in users %}{{ loop.index }}/{{ loop.length }}{% if loop.last %}!{% endif %}{% endfor %}"
    "{{ messages | rejectattr('role', 'equalto', 'system') | map(attribute='content') | join(' + ') }}",
    # a reversed scan with namespace state across the loop
    "{% set ns = namespace(found=-1) %}{% for m in messages[::-1] %}{% if m.role == 'user' and ns.found == -1 %}"
    "{% set ns.found = messages|length - 1 - loop.index0 %}{% endif %}{% endfor %}{{ ns.found }}",
    # a dict literal indexed at render time, an inline if inside an expression, a comparison with false
    "{% set names = {'user': 'U', 'assistant': 'A'} %}{% set sys = false %}{% for m in messages %}"
    "{{ (names[m.role] if m.role != 'system' else 'S') + ':' + m.content }}{% if m.role == 'system' %}{% set sys = m.content %}{% endif %}{% endfor %}"
    "{% if sys != false %}[{{ sys }}]{% endif %}",
    # string methods Go can evaluate exactly, type tests Ollama's data decides
    "{% for m in messages %}{% if m.content.startswith('Sec') %}S{% endif %}{% if m.content.endswith('?') %}Q{% endif %}"
    "{% if m.content is string and m is mapping and m.tool_calls is not string %}.{% endif %}{% endfor %}",
    # strftime_now and caller variables Ollama does not pass, decided at registration
    "{% if not date_string is defined %}{% set date_string = strftime_now('%Y') %}{% endif %}{{ date_string }}"
    "{% if enable_thinking is defined and enable_thinking %}think{% else %}plain{% endif %}{{ messages[0].content }}",
])
def test_widened_constructs_render_identically(source: str, go_renderer: GoRenderer) -> None:
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    expected = render(source, _TURNS, add_generation_prompt=True)
    assert go_renderer(conv.go_template, _TURNS, None) == expected


def test_only_the_first_bos_is_left_to_the_runtime(go_renderer: GoRenderer) -> None:
    source = "{% for m in messages %}{{ bos_token + m.role }}{% endfor %}"
    conv = templates.convert(source, bos_token="<s>", eos_token="</s>", runtime_adds_bos=True)
    assert conv.bos_left_to_runtime
    assert go_renderer(conv.go_template, _TURNS, None) == "system<s>user<s>assistant<s>user"


_ITEMS_TOOLS = [
    {"type": "function", "function": {"name": "weather", "description": 'Weather "now"',
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City"}},
                                                     "required": ["city"]},
                                      "return": {"type": "string"}}},
    {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}},
]


@pytest.mark.parametrize("source", [
    # Mistral Nemo's shape: the loop filter on the key, `is string`, tojson and loop.last per field
    '{% for tool in tools %}{% set tool = tool.function %}{% for key, val in tool.items() if key != "return" %}'
    '{% if val is string %}{{ \'"\' + key + \'": "\' + val + \'"\' }}{% else %}{{ \'"\' + key + \'": \' + val|tojson }}{% endif %}'
    '{% if not loop.last %}, {% endif %}{% endfor %}\n{% endfor %}{{ messages[-1].content }}',
    # loop counters over fields that may be absent, a tool's own fields, the parameters' optional required list
    "{% for tool in tools %}{% for k, v in tool.function.items() if k != 'return' %}{{ loop.index }}/{{ loop.length }}"
    "{% if loop.first %}^{% endif %}{{ k }}{% if v is mapping %}M{% endif %};{% endfor %}|"
    "{% for k, v in tool.items() %}{{ loop.index0 }}{{ k }}{% if loop.last %}.{% endif %}{% endfor %}|"
    "{% for k, v in tool.function.parameters.items() %}{{ k }}={{ v|tojson }}{{ '' if loop.last else ' ' }}{% endfor %}\n{% endfor %}",
])
def test_items_of_a_tool_struct_are_unrolled_field_by_field(source: str, go_renderer: GoRenderer) -> None:
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert "range $key" not in conv.go_template and "range $k," not in conv.go_template  # written out, not a map range
    for tools in (_ITEMS_TOOLS, _ITEMS_TOOLS[1:]):
        expected = render(source, _TURNS, add_generation_prompt=True, tools=tools)
        assert go_renderer(conv.go_template, _TURNS, tools) == expected


def test_items_of_a_property_map_stay_a_range() -> None:
    source = "{% for tool in tools %}{% for name, p in tool.function.parameters.properties.items() %}{{ name }}{% endfor %}{% endfor %}"
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert "range $name, $p := " in conv.go_template
    with pytest.raises(templates.UnconvertibleTemplate, match=r"\.items\(\) of a property"):
        # a property's type is a list of names in Ollama and a string in Jinja: `is string` on it could not be decided
        templates.convert(source.replace("{{ name }}", "{% for k, v in p.items() %}{{ k }}{% endfor %}"), bos_token="", eos_token="",
                          runtime_adds_bos=False)


def test_mistral_nemo_published_template_renders_tools_as_the_jinja_does(go_renderer: GoRenderer) -> None:
    # the corpus round trip leaves its tool conversations out (the template demands 9-character call IDs); these carry them
    source = (DATA / "corpus" / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text(encoding="utf-8")
    conv = templates.convert(source, bos_token="<s>", eos_token="</s>", runtime_adds_bos=False)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call00001", "type": "function",
                                                              "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call00001"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    for tools in (_ITEMS_TOOLS, _ITEMS_TOOLS[1:]):
        expected = render(source, messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>", tools=tools)
        assert '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": ' in expected
        assert go_renderer(conv.go_template, messages, tools) == expected
