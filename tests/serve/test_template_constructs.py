"""Jinja constructs of published chat templates, each in the smallest template that needs it, rendered both ways.

Every template here is converted to a Go TEMPLATE and rendered by Go's own text/template (tests/gotmpl, with the
types Ollama hands a template); the prompt must equal Jinja's, character for character, on conversations chosen to
reach each branch (text with surrounding whitespace, mixed case, the pattern present and absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
from ollama_double import GoRenderer

from model_serving.serve.ollama import templates
from model_serving.util.chat_template import render

_PLAIN = [{"role": "system", "content": "Be brief. /no_think"}, {"role": "user", "content": "First?"},
          {"role": "assistant", "content": "One."}, {"role": "user", "content": "Second?"}]
_SPACED = [{"role": "user", "content": " \n\tHello There\n "}, {"role": "assistant", "content": "\n\n"},
           {"role": "user", "content": "x"}, {"role": "tool", "content": "  18 C  "}, {"role": "assistant", "content": ""}]
_CALL = [{"role": "user", "content": "Weather?"},
         {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
             "name": "get_weather", "arguments": {"city": "Paris", "hours": [9, 15], "metric": True, "n": 3, "opts": {"a": 1}}}}]},
         {"role": "tool", "content": "18 C"}]  # arguments in sorted key order, the order Ollama hands a TEMPLATE
_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

_SOURCES = {
    # a macro called inside an expression, its text trimmed: built up in a Go variable, then stripped
    "macro in an expression": "{% macro show(c, tag) %}\n  <{{ tag }}>{{ c }}</{{ tag }}>  \n{% endmacro %}"
                              "{% for m in messages %}{% set text = show(m.content, m.role) | trim %}[{{ text }}]{% endfor %}",
    # a macro in an if test and in a concatenation, calling another macro
    "nested macros": "{% macro inner(x) %}{{ x }}!{% endmacro %}{% macro outer(x) %}({{ inner(x) ~ '?' }}){% endmacro %}"
                     "{% for m in messages %}{% if outer(m.content).startswith('(Sec') %}S{% endif %}{{ 'a' + outer(m.role) }}{% endfor %}",
    # a set block whose text reads the conversation, with and without | trim
    "set block": "{% for m in messages %}{% set block %} {{ m.role }}: {{ m.content }} {% endset %}"
                 "{% set t | trim %}\n{{ m.content }}\n{% endset %}<{{ block }}|{{ t }}>{% endfor %}",
    # trim and the strip methods, with and without characters
    "strip": "{% for m in messages %}[{{ m.content | trim }}|{{ m.content.strip() }}|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}"
             "|{{ m.content.strip('\\n') }}|{{ m.content.strip(' H') }}|{{ m.content.strip('') }}]{% endfor %}",
    # a bool printed, `or` / `and` giving one of their operands
    "bool and operands": "{% for m in messages %}{{ m.role == 'user' }} {{ m.content or 'empty' }} {{ m.content and m.role }} "
                         "{{ not m.content }};{% endfor %}",
    # loop.nextitem, undefined after the last item
    "nextitem": "{% for m in messages %}{{ m.role }}{% if loop.nextitem is undefined or loop.nextitem.role != 'tool' %}.{% endif %}"
                "{% if loop.nextitem is defined %}>{{ loop.nextitem.role }}{% endif %} {% endfor %}",
    # a loop over a list or dict known at registration, with loop.* and an inline if
    "constant loop": "{% set table = {'b': 2, 'a': 1, 'c': 3} %}{% set ns = namespace(n='') %}"
                     "{% for k, v in table | dictsort if v != 2 %}{% set ns.n = ns.n ~ k %}{{ loop.index }}/{{ loop.length }}{{ k }}={{ v }}"
                     "{% if loop.last %}!{% endif %}{% endfor %}{% for r in ['user', 'system'] %}{% for m in messages if m.role == r %}"
                     "{{ r }}:{{ m.content }},{% endfor %}{% endfor %}{{ ns.n }}",
    # substring tests on text, a needle read at render time
    "substring in": "{% for m in messages %}{% if '/no_think' in m.content %}N{% endif %}{% if 'o' not in m.content %}-{% endif %}"
                    "{% if m.role in m.content %}R{% endif %}{% if '' in m.content %}E{% endif %};{% endfor %}",
    # lower / upper on text
    "case": "{% for m in messages %}{{ m.content | lower }}|{{ m.content | upper }}|{{ m.role | upper == 'USER' }};{% endfor %}",
    # str.replace with a constant pattern, the replacement constant or read at render time; chained
    # a namespace list of text that only grows and is only joined (LFM2's argument strings): one Go string, items marked
    "joined list": "{% set ns = namespace(parts=[], none=[]) %}{% for m in messages %}{% set ns.parts = ns.parts + [m.role ~ '=' ~ m.content] %}"
                   "{% endfor %}[{{ ns.parts | join(', ') }}][{{ ns.none | join(', ') }}][{{ ns.parts | join }}]",
    # a namespace list that starts with a computed item, grows (by other lists joined, empty items too) and is read only by
    # one join (GigaChat's sections): its joined text is built as it grows, so no item is searched for a mark
    "list built joined": "{% macro ns_of(name) %}{% set ns = namespace(parts=['<' ~ name ~ ' ' ~ messages[0].role ~ '>']) %}"
                         "{% for m in messages %}{% set inner = namespace(lines=[]) %}{% if m.content.strip() %}"
                         "{% set inner.lines = inner.lines + [m.role] %}{% endif %}{% set inner.lines = inner.lines + [m.content | trim] %}"
                         "{% set ns.parts = ns.parts + [inner.lines | join('; ')] %}{% endfor %}{% set ns.parts = ns.parts + ['</' ~ name ~ '>'] %}"
                         "{{ ns.parts | join('\\n') }}{% endmacro %}{% set out = ns_of('all') + '!' %}[{{ out }}]"
                         "{% set e = namespace(none=[], one=[]) %}{% set e.one = e.one + [''] %}({{ e.none | join(',') }}|{{ e.one | join(',') }})",
    # a loop over the pieces of text.split(sep): empty pieces, the separator at either end, a separator of several bytes
    "split loop": "{% for m in messages %}{% for line in m.content.split('\\n') %}{% if line.strip() %}<{{ line }}>{% else %}.{% endif %}"
                  "{% endfor %}|{% for p in m.content.split('e ') %}({{ p }}){% endfor %}{% set parts = m.content.split('r') %}"
                  "{% for p in parts %}/{{ p }}{% endfor %};{% endfor %}",
    # the first and last piece of text.split(sep), the separator present once, several times or not at all
    "split pieces": "{% for m in messages %}[{{ m.content.split('e')[0] }}|{{ m.content.split('e')[-1] }}|{{ m.content.split('. ')[-1] | trim }}"
                    "|{{ m.content.split('\\n')[0] }}]{% endfor %}",
    "replace": "{% for m in messages %}{{ m.content.replace('/no_think', '').replace('e', m.role) }}|{{ m.content.replace('zz', 'y') }};"
               "{% endfor %}",
    # startswith / endswith with an affix read at render time
    "runtime affix": "{% for m in messages %}{% set tag = m.role[:2] %}{% if m.content.startswith(tag) %}S{% endif %}"
                     "{% if m.content.endswith(m.role) %}E{% endif %}{% if m.role.endswith(m.content) %}X{% endif %}{% endfor %}",
    # an inline if with loop.* counting the kept items, the test's own statements inside the range; for-else
    "inline if": "{% for m in messages if 'o' in m.content %}{{ loop.index }}/{{ loop.length }}{{ m.role }}{% if loop.last %}.{% endif %}"
                 "{% endfor %}|{% for m in messages if m.role == 'nobody' %}x{% else %}none{% endfor %}"
                 "|{% for m in messages[5:] %}x{% else %}empty{% endfor %}",
    # range(): forward from 0 or a start, backward to 0, with loop.*; a constant range written out
    "range": "{% for i in range(messages | length) %}{{ i }}{{ messages[i].role }}{% if loop.last %}.{% endif %}{% endfor %}|"
             "{% set start = 1 if messages[0].role == 'system' else 0 %}{% for i in range(start, messages | length) %}{{ loop.index }}:{{ i }} {% endfor %}|"
             "{% for i in range(messages | length - 1, -1, -1) %}{{ messages[i].role }},{% endfor %}|{% for i in range(2, 0, -1) %}{{ i }}{% endfor %}",
    # emptiness of text written several ways reads as one test: the elif repeats the if, and its loop over parts never runs
    "emptiness": "{% for m in messages %}{% if m.content is string and m.content != '' %}[{{ m.content }}]"
                 "{% elif m.content | length > 0 %}{% for b in m.content %}{{ b.type }}{% endfor %}{% endif %}"
                 "{% if m.content and m.content[0].type == 'thinking' %}T{% endif %}{% if m.content['type'] is defined %}D{% endif %}"
                 "{% if m.content | length == 0 %}E{% endif %}{% if '' != m.content %}N{% endif %}{% if 0 < m.content | length %}L{% endif %};"
                 "{% endfor %}",
    # a namespace list of text that only grows and is only searched (Cohere's tool_ids_seen): one Go string, items marked
    "growing list": "{% set seen = namespace(roles=[]) %}{% for m in messages %}{% if m.role not in seen.roles %}new {% endif %}"
                    "{% set seen.roles = seen.roles + [m.role] %}{% if 'us' in seen.roles %}!{% endif %}{{ m.role }};{% endfor %}",
    # branches whose tests repeat an earlier one (a type ladder over text), and message fields Ollama does not carry
    "type ladder": "{% for m in messages %}{% set c = m.get('content') %}{% if c is string %}{{ c }}{% elif c is iterable %}"
                   "{% for part in c %}{{ part.text }}{% endfor %}{% endif %}{% if m.thinking is string %}T{% elif m.thinking is sequence %}"
                   "{% for p in m.thinking %}{{ p.type }}{% endfor %}{% endif %}{% if m.prefix %}P{% endif %}{{ m.get('current_date') }};"
                   "{% endfor %}",
}

_CALL_SOURCES = {
    # a key of an argument's value: the value's key where it is a mapping that has it, undefined otherwise
    "keys of argument values": "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | items %}"
                               "{{ k }}{% if v.a %}A{% endif %}{% if v['a'] is number %}#{% endif %}{% if v.a is defined %}D{% endif %}"
                               "{% if v.b != 'x' %}!{% endif %};{% endfor %}{% endfor %}{% endfor %}",
    # fields Ollama drops from a tool (a function's returns) read as unset, down to their own fields and loops;
    # `arguments or {}` reads as the arguments
    "dropped tool fields": "{% for t in tools %}{% if t.function.returns is defined and t.function.returns.properties %}R"
                           "{% for k, v in t.function.returns.properties.items() %}{{ k }}{% endfor %}{% endif %}{{ t.function.name }}"
                           "{% endfor %}{% for m in messages %}{% for c in m.tool_calls or [] %}{% set args = c.function.arguments or {} %}"
                           "{% for k in args %}{{ k }}={{ args[k] | tojson }};{% endfor %}{% endfor %}{% endfor %}",
    # tool-call arguments: JSON types told apart, str() of a value, |items as .items()
    "argument values": "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | items %}"
                       "{{ k }}={% if v is mapping or (v is sequence and v is not string) %}{{ v | tojson }}{% else %}{{ v | string }}{% endif %}"
                       "{% if v is number %}#{% endif %}{% if v is boolean %}?{% endif %};{% endfor %}{% endfor %}{% endfor %}",
    # an argument printed as it is (Jinja prints its str()), and substring tests behind `is string`
    "argument printed": "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | items %}"
                        "{{ k }}={{ v }}{% if v is string and ('ar' in v or '<' in v) %}!{% endif %};{% endfor %}{% endfor %}{% endfor %}",
    # upper / lower of an argument's value: Jinja recases its str() (Gemma 4 writes a JSON schema's type names upper-cased)
    "argument case": "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | items %}"
                     "{{ k }}={{ v | upper }}|{{ v | lower }}{% if v is string and v | upper == 'PARIS' %}!{% endif %};{% endfor %}{% endfor %}"
                     "{% endfor %}",
    # str() of tools, tool calls and argument values: Python's repr (text unquoted at the top, quoted inside)
    "str of tool data": "{% for t in tools %}{{ t | string }}{% endfor %}{{ tools | string }}{% for m in messages %}{% for c in m.tool_calls or [] %}"
                        "{{ c | string }}{{ c.function.arguments | string }}{% for k, v in c.function.arguments | items %}{{ k }}={{ v | string }};"
                        "{% endfor %}{% endfor %}{% endfor %}",
}



def _refused(source: str, match: str) -> None:
    """The converter refuses `source`, naming what stops it."""
    with pytest.raises(templates.UnconvertibleTemplate, match=match):
        templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)

def _rendered(source: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, renderer: GoRenderer) -> tuple[str, str]:
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    return render(source, messages, add_generation_prompt=False, tools=tools), renderer(conv.go_template, messages, tools)


@pytest.mark.parametrize("name", sorted(_SOURCES))
def test_construct_renders_as_jinja_does(name: str, go_renderer: GoRenderer) -> None:
    for messages in (_PLAIN, _SPACED):
        expected, got = _rendered(_SOURCES[name], messages, None, go_renderer)
        assert got == expected, (name, messages)


@pytest.mark.parametrize("name", sorted(_CALL_SOURCES))
def test_tool_call_construct_renders_as_jinja_does(name: str, go_renderer: GoRenderer) -> None:
    expected, got = _rendered(_CALL_SOURCES[name], _CALL, [_TOOL], go_renderer)
    if name == "argument values":
        assert "hours=[9, 15];" in expected and "metric=True#?;" in expected and "n=3#;" in expected
    if name == "keys of argument values":
        assert "optsA#D!;" in expected and "city!;" in expected
    if name == "argument case":
        assert "city=PARIS|paris!;hours=[9, 15]|[9, 15];metric=TRUE|true;n=3|3;opts={'A': 1}|{'a': 1};" in expected
    if name == "str of tool data":
        assert "{'type': 'function', 'function': {'name': 'get_weather'" in expected and "city=Paris;hours=[9, 15];" in expected
        assert "'opts': {'a': 1}}" in expected and "metric=True;" in expected
    assert got == expected


def test_str_quotes_text_as_python_does(go_renderer: GoRenderer) -> None:
    # the quote Python picks, its escapes (quote, backslash, tab, newline, control bytes) and text left as it is
    texts = ["it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\tnew\nline\rret", "bell\x07del\x7f", "Zürich 東京", ""]
    deep = "a\"b'c\\<&>\u2028\x1b\b\f"  # JSON escapes of every kind Go's encoder writes
    args = {f"k{i}": t for i, t in enumerate(texts)} | {"nested": [[1, [2, {"deep": [None, False, 1.5, deep]}]]], "none": None}
    tool = {"type": "function", "function": {"name": "quote's", "description": 'A "tool" \\ it\'s', "parameters": {
        "type": "object", "properties": {"a": {"type": ["string", "null"], "items": {"type": "integer"}, "enum": ["x'y", 'z"', 1]}}}}}
    messages = [{"role": "user", "content": "Go"},
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "quote's", "arguments": dict(sorted(args.items()))}}]}]
    source = "{% for t in tools %}{{ t | string }}{% endfor %}{% for c in messages[1].tool_calls %}{{ c.function.arguments | string }}{% endfor %}"
    expected, got = _rendered(source, messages, [tool], go_renderer)
    assert "\"it's\"" in expected and "'both \\' and \"'" in expected and "'bell\\x07del\\x7f'" in expected
    assert got == expected


_CODE_INTERPRETER = {"type": "code_interpreter"}


@pytest.mark.parametrize("tools", [None, [_TOOL], [_CODE_INTERPRETER, _TOOL], [_CODE_INTERPRETER]])
def test_tools_narrowed_by_rejectattr_behind_their_own_selectattr(tools: list[dict[str, Any]] | None, go_renderer: GoRenderer) -> None:
    # Functionary's shape: taken or not, the if leaves tools without the rejected items, so tools reads as that filter after it
    source = ('{%- if not tools is defined %}{% set tools = none %}{% endif -%}'
              '{%- set has_ci = tools | selectattr("type", "equalto", "code_interpreter") | list | length > 0 -%}'
              '{%- if has_ci -%}{%- set tools = tools | rejectattr("type", "equalto", "code_interpreter") | list -%}{%- endif -%}'
              "{% if has_ci %}CI {% endif %}{% if tools %}{% for t in tools %}{{ loop.index }}:{{ t.function.name }};{% endfor %}{% endif %}"
              "{{ messages[0].content }}")
    expected, got = _rendered(source, _PLAIN, tools, go_renderer)
    assert got == expected


def test_text_added_to_markup_is_escaped_as_jinja_does(go_renderer: GoRenderer) -> None:
    # `'...' | safe + text`: markupsafe escapes the plain operands (Functionary's tool list); `~` joins without escaping
    source = "{% for m in messages %}{{ '<b>' | safe + m.content + m.role + \"'\" | safe }}{{ '<i>' | safe ~ m.content }}{% endfor %}"
    messages = [{"role": "user", "content": "a<b & \"c\" 'd'>"}, {"role": "assistant", "content": "plain"}]
    converted = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert any("HTML-escaped" in n for n in converted.notes)
    expected, got = _rendered(source, messages, None, go_renderer)
    assert "a&lt;b &amp; &#34;c&#34; &#39;d&#39;&gt;" in expected
    assert got == expected


def test_pieces_of_a_split_held_in_a_name(go_renderer: GoRenderer) -> None:
    # MiniCPM's shape: the pieces counted, the first, each by an index read at render time, the last, one past the end;
    # a name nothing reads is not converted (its list literal never reaches Go)
    source = ("{% for m in messages %}{% set parts = m.content.split('<sep>') %}{% set unused = [parts | length, 2] | min %}"
              "{{ parts | length }}:{{ parts[0] }}{% for i in range(1, parts | length) %}[{{ i - 1 }}={{ parts[i] }}]{% endfor %}"
              "{{ parts[-1] }}|{{ parts[3] }};{% endfor %}")
    contents = ("a<sep>b<sep>c", "<sep>", "", "no sep", "<sep><sep>x<sep>y<sep>", "<se<sep>p>")
    messages = [{"role": ("user", "assistant")[k % 2], "content": c} for k, c in enumerate(contents)]
    expected, got = _rendered(source, messages, None, go_renderer)
    assert expected.startswith("3:a[0=b][1=c]c|;2:[0=]|;1:|;") and "5:[0=][1=x][2=y][3=]|y;" in expected
    assert got == expected


@pytest.mark.parametrize("use", ["{{ parts }}", "{% if parts %}x{% endif %}", "{{ 'a' in parts }}"])
def test_other_uses_of_a_split_held_in_a_name_are_refused(use: str) -> None:
    # Go holds the text under that name: printed, tested or searched, it would not read as Jinja's list
    source = "{% for m in messages %}{% set parts = m.content.split('<sep>') %}" + use + "{% endfor %}"
    _refused(source, "split|in. test")


def test_split_pieces_match_as_python_finds_them(go_renderer: GoRenderer) -> None:
    # matches do not overlap and are found left to right: 'eee'.split('ee') is ['', 'e']
    source = "{% for m in messages %}[{{ m.content.split('ee')[0] }}|{{ m.content.split('ee')[-1] }}]{% endfor %}"
    # roles alternate: Ollama joins consecutive messages of one role
    messages = [{"role": ("user", "assistant")[k % 2], "content": c} for k, c in enumerate(("eee", "eeee", "aeebeec", "ee", "e", ""))]
    expected, got = _rendered(source, messages, None, go_renderer)
    assert expected.startswith("[|e][|]")
    assert got == expected


def test_tojson_ensure_ascii_escapes_what_is_not_ascii(go_renderer: GoRenderer) -> None:
    tool = {"type": "function", "function": {"name": "météo", "description": "Température à Zürich",
                                             "parameters": {"type": "object", "properties": {"ville": {"type": "string", "description": "Ville"}}}}}
    source = "{% for t in tools %}{{ t | tojson(ensure_ascii=True) }}{% endfor %}{{ messages[0].content }}"
    expected, got = _rendered(source, _PLAIN, [tool], go_renderer)
    assert "\\u00e9" in expected and "é" not in expected
    assert got == expected


_COUNTING = "{% set ns = namespace(n=0) %}{% macro bump(x) %}{% set ns.n = ns.n + 1 %} <{{ x }}> {% endmacro %}"


def test_a_macro_that_changes_state_converts_where_it_runs_first(go_renderer: GoRenderer) -> None:
    source = _COUNTING + "{% for m in messages %}{% set t = bump(m.content) | trim %}{{ ns.n }}{{ t }}{% endfor %}"
    expected, got = _rendered(source, _PLAIN, None, go_renderer)
    assert expected.startswith("1<Be brief. /no_think>2<First?>") and got == expected


@pytest.mark.parametrize("use", [
    "{{ m.content if m.role == 'user' else bump(m.content) }}",  # Jinja calls it only when the test fails
    "{{ ns.n ~ bump(m.content) }}",  # Jinja reads the count before the call
    "{{ ns.n }}{{ bump(m.content) | trim }}",
])
def test_a_macro_that_changes_state_is_refused_where_it_would_run_early(use: str) -> None:
    # written out before the statement, the macro would count before (or without) Jinja's call
    source = _COUNTING + "{% for m in messages %}" + use + "{% endfor %}{{ ns.n }}"
    _refused(source, "a macro")


def test_str_of_a_whole_message_is_refused() -> None:
    # Python's repr of a message dict shows the keys the client sent, which Ollama's message does not keep
    source = "{% for m in messages %}{{ m | string }}{% endfor %}"
    _refused(source, "the filter 'string'")


@pytest.mark.parametrize("body", [
    "{{ messages[0].role }}{% if x %}{{ walk(x[1:]) }}{% endif %}",  # the conversation, which a Go define does not see
    "{% set ns.n = x %}{% if x %}{{ walk(x[1:]) }}{% endif %}",  # the caller's namespace, likewise
])
def test_a_recursive_macro_reading_the_templates_state_is_refused(body: str) -> None:
    source = ("{% set ns = namespace(n='') %}{% macro walk(x) %}" + body + "{% endmacro %}"
              "{% for m in messages %}{{ walk(m.content) }}{% endfor %}{{ ns.n }}")
    _refused(source, "a macro that calls itself")


def test_gigachat_message_helpers_convert(go_renderer: GoRenderer) -> None:
    # a dict literal passed to a macro read by its keys (one it lacks is unset), `content or ''` known to be text (so
    # `is not string` is false, empty or not), and a key Ollama drops (`return_parameters`) set once, false before `and`
    source = ("{% macro show(message, role=None) %}{% if not role %}{% set role = message['role'] %}{% endif %}"
              "{% set c = message['content'] or '' %}{% if c is not string %}{% set c = c | tojson %}{% endif %}"
              "{{ role }}:{{ c }}{% if message.name is defined %}!{% endif %};{% endmacro %}"
              "{% for t in tools or [] %}{% set r = t.function.get('return_parameters') %}"
              "{% if r and r.get('properties') %}R{% else %}-{% endif %}{% endfor %}"
              "{% for m in messages %}{{ show({'role': m.role ~ '*', 'content': m.content}) }}{{ show(m, 'r') }}{% endfor %}")
    for messages in (_PLAIN, _SPACED):
        expected, got = _rendered(source, messages, [_TOOL], go_renderer)
        assert expected.startswith("-") and ("assistant*:;" in expected or messages is _PLAIN)
        assert got == expected, messages


def test_get_with_a_default_of_a_key_ollama_drops_from_a_property_is_the_default(go_renderer: GoRenderer) -> None:
    # GigaChat's `schema.get("format", "none") in ['date-time', 'date']`: Ollama's property keeps no format
    source = ("{% for t in tools %}{% for n, p in t.function.parameters.properties | items %}{{ n }}={{ p.get('format', 'none') }}"
              "{% if p.get('format', 'none') in ['date-time', 'date'] %}D{% endif %}{{ p.get('description', '-') }};{% endfor %}{% endfor %}")
    expected, got = _rendered(source, _PLAIN, [_PROPERTIES_TOOL], go_renderer)
    assert expected == "city=noneCity;hours=noneHours;"
    assert got == expected


def test_get_of_a_key_ollama_drops_from_parameters_or_a_property_is_none(go_renderer: GoRenderer) -> None:
    # GigaChat's `schema.get("additionalProperties") is defined` (true: get gives None) on a tool's parameters and a property
    source = ("{% for t in tools %}{% set p = t.function.parameters %}{{ p.get('additionalProperties') is defined }}|"
              "{{ p.get('additionalProperties') is none }}|{{ p.additionalProperties is defined }}|{{ p.get('strict', 0) }}|"
              "{% for n, v in p.properties | items %}{{ v.get('format') is none }}{{ v.get('default', v.get('format')) }};{% endfor %}{% endfor %}")
    expected, got = _rendered(source, _PLAIN, [_TOOL], go_renderer)
    assert expected == "True|True|False|0|TrueNone;"
    assert got == expected


def test_a_loop_over_a_propertys_keys_that_does_nothing_for_any_key_ollama_keeps_converts(go_renderer: GoRenderer) -> None:
    # GigaChat's `for add_key, add_val in val.items()` whose body runs only `if add_key in ['format', 'maximum', ...]`
    source = ("{% for t in tools %}{% for n, v in t.function.parameters.properties | items %}{{ n }}:{% for k, x in v.items() %}"
              "{% if k in ['format', 'minimum'] %}{{ k }}={{ x }}{% endif %}{% endfor %};{% endfor %}{% endfor %}")
    expected, got = _rendered(source, _PLAIN, [_typed_tool({"a": {"type": "integer", "description": "A"}, "b": {"type": ["string", "null"]}})],
                              go_renderer)
    assert expected == "a:;b:;" and got == expected
    # a body that runs for the property's type (a list of names in Ollama, one name in Jinja) stays refused
    with pytest.raises(templates.UnconvertibleTemplate, match=r"\.items\(\) of a property that reaches its type"):
        templates.convert(source.replace("'minimum'", "'type'"), bos_token="", eos_token="", runtime_adds_bos=False)


def test_a_recursive_macro_whose_text_is_kept_is_written_out_to_a_bound(go_renderer: GoRenderer) -> None:
    # GigaChat's `set type_str = json_schema_to_typescript(val, indent + '  ')`: a define cannot hand its text back, but the
    # body written out in place of the call, and in place of its own calls, down to 4 calls, can be kept in a variable
    source = ("{% macro walk(ms, d) %}{% if ms %} <{{ d ~ ms[0].role }}{% set inner = walk(ms[1:], d ~ '.') %}{{ inner }}>{% endif %}"
              "{% endmacro %}{% set t = walk(messages[:N], '') | trim %}[{{ t }}]")
    messages = [{"role": ("user", "assistant")[k % 2], "content": str(k)} for k in range(6)]
    expected, got = _rendered(source.replace("N", "3"), messages, None, go_renderer)
    assert expected == "[<user <.assistant <..user>>>]" and got == expected
    # nested deeper, Jinja goes on, and the TEMPLATE stops with an error (Ollama answers the request with it), saying so
    deeper = source.replace("N", "6")
    assert render(deeper, messages, add_generation_prompt=False).startswith("[<user <.assistant <..user <...assistant <....user")
    conv = templates.convert(deeper, bos_token="", eos_token="", runtime_adds_bos=False)
    assert any("4 calls deep" in n for n in conv.notes)
    with pytest.raises(RuntimeError, match="a macro nested more than 4 calls deep"):
        go_renderer(conv.go_template, messages, None)


def _nested(levels: int) -> dict[str, Any]:
    """An object property with one object property inside, `levels` deep, the innermost a string."""
    return {"type": "string"} if levels == 0 else {"type": "object", "properties": {f"in{levels}": _nested(levels - 1)}}


def test_a_recursive_macro_with_an_indent_is_a_chain_of_defines_to_a_bound(go_renderer: GoRenderer) -> None:
    # GigaChat's `set type_str = json_schema_to_typescript(val, indent + '  ')`, read once in the output after it: the call is
    # written in that output, so a Go define can write it; the indent grows at each level, one define per level, 6 levels
    source = ("{%- macro walk(s, indent) -%}{%- for k, v in s.properties | items -%}{%- set inner = walk(v, indent ~ '  ') -%}"
              "{{- indent ~ k ~ ': ' ~ v.type ~ ' {' ~ inner ~ '}\n' -}}{%- endfor -%}{%- endmacro -%}"
              "{%- for t in tools %}{{ walk(t.function.parameters, '') }}{% endfor %}")
    four = [_typed_tool({"o": _nested(4), "s": {"type": "string"}})]
    expected, got = _rendered(source, _PLAIN, four, go_renderer)
    assert "        in1: string {}\n" in expected and got == expected
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert len(conv.go_template) < 20_000 and any("6 nested levels" in n for n in conv.notes)
    # nested deeper, Jinja goes on, and the TEMPLATE stops with an error naming the bound (Ollama answers with the error)
    deeper = [_typed_tool({"o": _nested(5)})]
    assert "          in1: string {}\n" in render(source, _PLAIN, add_generation_prompt=False, tools=deeper)
    with pytest.raises(RuntimeError, match="walk called with more than 6 nested values"):
        go_renderer(conv.go_template, _PLAIN, deeper)


def test_a_recursive_macro_whose_text_feeds_an_expression_is_refused_with_its_line() -> None:
    # Go's {{template}} writes its text out: it cannot hand it back to a filter
    source = "\n{% macro walk(x) %}{% if x %}{{ walk(x[1:]) }}{% endif %}{% endmacro %}{{ walk(messages[0].content) | trim }}"
    with pytest.raises(templates.UnconvertibleTemplate, match="a macro that calls itself") as err:
        templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert err.value.line == 2


# --- lists and dicts built at render time, counters that start below zero ----------------------------------------

_SHORT = [{"role": "user", "content": "Hi"}]  # no system, no assistant: lists stay empty, counters at their start
_LIST_SOURCES = {
    # a list of constants set twice in a loop body, each read below its set (Qwen3-Coder's handled_keys)
    "constants set in a loop body": "{% for m in messages %}{% set skip = ['system', 'tool'] %}{% if m.role not in skip %}{{ m.role }}"
                                    "{% endif %}{% set skip = ['user'] %}{% if m.role in skip %}!{% endif %};{% endfor %}",
    # a name set on every path before `is defined` (Nemotron's system_message)
    "set on every path": "{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% else %}{% set sys = '' %}{% endif %}"
                         "{% if sys is defined %}[{{ sys }}]{% endif %}",
    # text the template fills with think tags, searched and split for real (Nemotron's history truncation)
    "think tags built": "{% for m in messages %}{% set c = '<think>' ~ m.role ~ '</think>' ~ m.content %}{% if '</think>' in c %}"
                        "{{ c.split('</think>')[-1] }}|{{ c.split('<think>')[0] }}{% endif %};{% endfor %}",
    # a counter that starts at -1: arithmetic, an index and a slice (DeepSeek V3.2, Kimi K2 Thinking)
    "counter from -1": "{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m.role == 'assistant' and loop.index0 < 3 %}"
                       "{% set ns.last = loop.index0 %}{% endif %}{% endfor %}{{ ns.last + 1 }}|{{ messages[ns.last].role }}|"
                       "{{ messages | length - ns.last }}|{% for m in messages[:ns.last + 1] %}{{ m.role }},{% endfor %}|"
                       "{% for m in messages[ns.last + 1:] %}{{ m.role }},{% endfor %}",
    # a dict of constant keys built at render time, read by key and by tojson (Cohere 2's tool results)
    "dict built at render time": "{% for m in messages %}{% set w = {'content': m.content, 'role': m.role} %}{{ w | tojson }}"
                                 "{{ w.role }}{{ w['content'] }}{{ w | tojson(indent=2) }};{% endfor %}",
    # a list a loop fills with the fields of the messages that pass its if (Solar Open's system messages)
    "list filled by a loop": "{% set ns = namespace(sys=[]) %}{% for m in messages %}{% if m.role == 'system' or m.role == 'tool' %}"
                             "{% set ns.sys = ns.sys + [m.content] %}{% endif %}{% endfor %}{% if ns.sys %}{{ ns.sys | length }}:"
                             "{% for s in ns.sys %}[{{ s }}]{% if loop.last %}.{% endif %}{% endfor %}{% else %}none{% endif %}",
    # the same with every message, read after the loop by length only (a growing list that is not only searched)
    "list filled by a loop, counted": "{% set seen = namespace(roles=[]) %}{% for m in messages %}{% set seen.roles = seen.roles + [m.role] %}"
                                      "{% endfor %}{{ seen.roles | length }}",
}


@pytest.mark.parametrize("name", sorted(_LIST_SOURCES))
def test_list_construct_renders_as_jinja_does(name: str, go_renderer: GoRenderer) -> None:
    for messages in (_PLAIN, _SPACED, _SHORT):
        expected, got = _rendered(_LIST_SOURCES[name], messages, None, go_renderer)
        assert got == expected, (name, messages)


_PROPERTIES_TOOL = {"type": "function", "function": {"name": "get_forecast", "description": "Forecast", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": "City", "enum": ["Paris", "Rome"]},
                                     "hours": {"type": "array", "items": {"type": "integer"}, "description": "Hours"}},
    "required": ["city"]}}}


def test_keys_of_tool_structs_not_handled_yet_are_written_out(go_renderer: GoRenderer) -> None:
    # Qwen3-Coder's render_extra_keys: a loop over the keys of a property, the parameters and the function, skipping
    # a list of keys set just before the call
    source = ("{% macro extra(d, handled) %}{% for k in d if k not in handled %}<{{ k }}>{% if d[k] is mapping or (d[k] is sequence "
              "and d[k] is not string) %}{{ d[k] | tojson }}{% else %}{{ d[k] | string }}{% endif %}{% endfor %}{% endmacro %}"
              "{% for t in tools %}{% set f = t.function %}{% for name, p in f.parameters.properties | items %}{{ name }}"
              "{% set handled = ['type', 'description'] %}{{ extra(p, handled) }};{% endfor %}{% set handled = ['type', 'properties'] %}"
              "{{ extra(f.parameters, handled) }}{% set handled = ['name', 'parameters'] %}{{ extra(f, handled) }}{% endfor %}")
    expected, got = _rendered(source, _CALL, [_PROPERTIES_TOOL], go_renderer)
    assert '<enum>["Paris", "Rome"]' in expected and '<items>{"type": "integer"}' in expected and '<required>["city"]' in expected
    assert got == expected


def test_a_queue_of_text_renders_as_a_mutable_jinja_does(go_renderer: GoRenderer) -> None:
    # Kimi K2's tool_response_queue: transformers' immutable sandbox refuses list.append, llama.cpp's Jinja runs it
    from jinja2.sandbox import SandboxedEnvironment, SecurityError

    source = ("{% set q = namespace(ids=[]) %}{% for m in messages %}{% if m.role == 'user' %}{% set _ = q.ids.append(m.content) %}"
              "{% elif q.ids %}{% set first = q.ids.pop(0) %}<{{ first }}>{% else %}-{% endif %}{% endfor %}{% if q.ids %}left{% endif %}")
    with pytest.raises(SecurityError):
        render(source, _PLAIN, add_generation_prompt=False)
    mutable = SandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    for messages in (_PLAIN, _SPACED, _SHORT):
        expected = mutable.from_string(source).render(messages=messages)
        assert go_renderer(conv.go_template, messages, None) == expected, messages


@pytest.mark.parametrize("source", [
    # a counter with two negative values: the one written out for 'negative' would be wrong for the other
    "{% set ns = namespace(i=-1) %}{% for m in messages %}{% if m.role == 'tool' %}{% set ns.i = -2 %}{% endif %}{% endfor %}"
    "{{ ns.i + 1 }}",
    # a filled list read inside the loop that fills it (Go's view would show every item, Jinja only those so far)
    "{% set ns = namespace(r=[]) %}{% for m in messages %}{% set ns.r = ns.r + [m.role] %}{{ ns.r | length }}{% endfor %}",
    # one name holding a dict and, on another path, text
    "{% for m in messages %}{% if m.role == 'user' %}{% set w = {'a': m.content} %}{% else %}{% set w = m.content %}{% endif %}"
    "{{ w | tojson }}{% endfor %}",
])
def test_lists_go_cannot_follow_are_refused(source: str) -> None:
    with pytest.raises(templates.UnconvertibleTemplate):
        templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)


# Hermes-2-Pro's (and Command-R+'s) tool-schema renderer: a macro that calls itself, on a property, on `{"type": t}` for each
# name of a list of types, and on `spec | items` (whose fields are all undefined: "list[Union[]]", as published)
_PYTHON_TYPE = (
    '{%- macro py(spec) %}{%- set basic = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"} %}'
    '{%- if basic[spec.type] is defined %}{{- basic[spec.type] }}{%- elif spec.type == "array" %}{{- "list[" + py(spec|items) + "]" }}'
    '{%- elif spec.type == "object" %}{%- if spec.additionalProperties is defined %}{{- "dict[str, " + py(spec.additionalProperties) + "]" }}'
    '{%- else %}{{- "dict" }}{%- endif %}{%- elif spec.type is iterable %}{{- "Union[" }}{%- for t in spec.type %}{{- py({"type": t}) }}'
    '{%- if not loop.last %}{{- "," }}{%- endif %}{%- endfor %}{{- "]" }}{%- else %}{{- "Any" }}{%- endif %}{%- endmacro %}'
    '{%- for tool in tools %}{{ tool.function.name }}({% for name, p in tool.function.parameters.properties | items %}'
    '{{- name + ": " + py(p) }}{% if not loop.last %}, {% endif %}{% endfor %}){% endfor %}{{ messages[0].content }}'
)


def _typed_tool(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": properties}}}


def test_a_macro_that_calls_itself_on_tool_schemas_converts(go_renderer: GoRenderer) -> None:
    properties = {"a": {"type": "string"}, "b": {"type": "number"}, "c": {"type": "integer"}, "d": {"type": "boolean"},
                  "e": {"type": "array", "items": {"type": "integer"}}, "f": {"type": "object"},
                  "g": {"type": ["string", "integer"]}, "h": {"type": ["array", "object", "boolean"]}, "i": {"description": "no type"},
                  "j": {"type": ["string", ""]}}
    expected, got = _rendered(_PYTHON_TYPE, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert "e: list[Union[]]" in expected and "g: Union[str,int]" in expected and "h: Union[list[Union[]],dict,bool]" in expected
    assert "f: dict," in expected and "i: Union[]" in expected and "j: Union[str,Union[]]" in expected
    assert got == expected


@pytest.mark.parametrize(("source", "spec", "error"), [
    # an unknown type name: Jinja walks its characters, each one again, until Python's recursion limit
    (_PYTHON_TYPE, {"type": "null"}, RecursionError),
    # Command-R+'s form reads a field of additionalProperties, which Ollama drops: Jinja fails on the undefined value
    (_PYTHON_TYPE.replace("{%- if spec.additionalProperties is defined %}", "{%- if true %}"), {"type": "object"}, jinja2.UndefinedError),
])
def test_a_macro_that_calls_itself_fails_in_go_where_it_fails_in_jinja(source: str, spec: dict[str, Any], error: type, go_renderer: GoRenderer) -> None:
    tool = [_typed_tool({"a": spec})]
    with pytest.raises(error):
        render(source, _PLAIN, add_generation_prompt=False, tools=tool)
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    with pytest.raises(RuntimeError, match="template error"):
        go_renderer(conv.go_template, _PLAIN, tool)
    assert go_renderer(conv.go_template, _PLAIN, [_typed_tool({"a": {"type": "string"}})]) == "f(a: str)Be brief. /no_think"


_UNICODE = [{"role": "user", "content": "h\u00e9llo \u2603 \U0001F600"}]


@pytest.mark.parametrize(("source", "conversations"), [
    # a slice of text (Go slices bytes: ASCII text here), the call a piece of a concatenation
    ("{% macro walk(x) %}{% if x %}[{{ walk(x[1:]) }}]{% endif %}{% endmacro %}{% for m in messages %}{{ walk(m.content) ~ '.' }}{% endfor %}",
     [_PLAIN, _SPACED]),
    # a parameter only passed on to the macro's own calls (gpt-oss's required_params) takes no part: the call reads one value
    ("{% macro walk(x, seen) %}{% if x %}[{{ walk(x[1:], seen) }}]{% endif %}{% endmacro %}"
     "{% for m in messages %}{{ walk(m.content, m.role) }}{% endfor %}", [_PLAIN]),
    # the characters of text, counted as Python counts them
    ("{% macro walk(x, depth) %}{% for c in x %}<{{ c }}>{% if loop.last %}!{% endif %}{% if depth < 1 %}{{ walk(c, depth + 1) }}{% endif %}"
     "{% endfor %}{% endmacro %}{% for m in messages %}{{ walk(m.content, 0) }}{% endfor %}", [_PLAIN, _SPACED, _UNICODE]),
])
def test_a_macro_that_calls_itself_on_text_converts(source: str, conversations: list[list[dict[str, Any]]], go_renderer: GoRenderer) -> None:
    for messages in conversations:
        expected, got = _rendered(source, messages, None, go_renderer)
        assert got == expected, messages


def test_indent_of_text_renders_as_jinja_does(go_renderer: GoRenderer) -> None:
    # Command-R+'s `arguments | tojson(indent=4) | indent(8)`; Python ends lines at \r\n, \r, \v, \f, \x1c-\x1e, \x85, U+2028/9 too
    source = ("{% for m in messages %}{{ m.content | indent(2) }}|{{ m.content | indent(3, true) }}|"
              "{{ m.content | indent('> ', first=true, blank=true) }};{% endfor %}"
              "{% for c in messages[1].tool_calls or [] %}{{ c.function.arguments | tojson(indent=4) | indent(8) }}{% endfor %}")
    lines = [{"role": "user", "content": "a\r\nb\rc\x0bd\x0ce\x1cf\x85g\u2028h\u2029i\n\n\nj\n"}, {"role": "assistant", "content": ""},
             {"role": "user", "content": "\n"}]
    for messages in (_PLAIN, _SPACED, lines, _CALL):
        expected, got = _rendered(source, messages, None, go_renderer)
        assert got == expected, messages


# MiniMax-M3's argument renderer: a macro that calls itself on each value inside a tool call's arguments (a constant passed along)
_TO_XML = ("{%- set tag = ']<]m[>[' -%}{%- macro to_xml(val, ns) -%}{%- if val is mapping -%}{%- for k, v in val.items() if v is not none -%}"
           "{{ ns }}<{{ k }}>{{ to_xml(v, ns) }}{{ ns }}</{{ k }}>{%- endfor -%}{%- elif val is iterable and val is not string -%}"
           "{%- for item in val -%}{{ ns }}<item>{{ to_xml(item, ns) }}{{ ns }}</item>{%- endfor -%}{%- elif val is none -%}"
           "{%- elif val is boolean -%}{{ val | tojson }}{%- else -%}{{ val }}{%- endif -%}{%- endmacro -%}"
           "{%- for m in messages %}{% for c in m.tool_calls or [] %}{%- for k, v in c.function.arguments.items() if v is not none %}"
           "{{- tag + '<' + k + '>' -}}{{- to_xml(v, tag) -}}{{- tag + '</' + k + '>' }}{% endfor %}{% endfor %}{{ m.content }}{% endfor %}")
_NESTED_CALL = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
    "name": "f", "arguments": {"a": [1, {"b": None, "c": True, "d": "x"}, [2.5, False, 0, ""]], "city": "Paris", "n": 3, "o": {"k": {"m": "deep"}},
                               "z": None}}}]}]  # keys sorted at each level, the order Ollama hands a TEMPLATE


@pytest.mark.parametrize(("source", "messages"), [
    (_TO_XML, _NESTED_CALL),
    # a loop over an argument's value: a list's items, text's characters, a mapping's keys
    ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | items %}{{ k }}:"
     "{% for x in v %}[{{ x }}{% if loop.last %}.{% endif %}]{% endfor %};{% endfor %}{% endfor %}{% endfor %}",
     [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
         "name": "f", "arguments": {"a": [1, "b"], "m": {"x": 1, "y": 2}, "t": "h\u00e9"}}}]}]),
])
def test_a_macro_walking_call_arguments_converts(source: str, messages: list[dict[str, Any]], go_renderer: GoRenderer) -> None:
    expected, got = _rendered(source, messages, None, go_renderer)
    assert got == expected


def test_a_caller_variable_ollama_never_passes_is_named_in_the_refusal() -> None:
    # Firefunction adds `functions` (which its caller would pass) to text: Jinja fails without it, and Ollama never passes it
    source = "{% set suffix = 'Functions:' %}\n{% set suffix = suffix + '\\n' + functions %}{{ suffix }}{{ messages[0].content }}"
    with pytest.raises(templates.UnconvertibleTemplate, match="the caller variable functions, which Ollama never passes") as err:
        templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert err.value.line == 2


def test_a_loop_over_the_pieces_of_a_split_converts(go_renderer: GoRenderer) -> None:
    # Gemma 4's strip_thinking: each piece tested and split again, kept in a namespace; break, continue, a name set to the split
    source = ("{% for m in messages %}{% set ns = namespace(r='') %}{% for part in m.content.split('<c|>') %}"
              "{% if '<|c>' in part %}{% set ns.r = ns.r + part.split('<|c>')[0] %}{% else %}{% set ns.r = ns.r + part %}{% endif %}"
              "[{{ part }}]{% if part == 'stop' %}{% break %}{% endif %}{% endfor %}{{ ns.r | trim }};{% set parts = m.content.split('<c|>') %}"
              "{% for p in parts %}{% if not p %}{% continue %}{% endif %}({{ p }}){% endfor %}{% for c in m.content.split('|') %}{{ c }}.{% endfor %}"
              "{% endfor %}")
    contents = ("a<|c>think<c|> answer ", "<c|>", "", "no sep", "<c|><c|>x<c|>stop<c|>y", "<c<c|>|>", "x<c|", "||")
    messages = [{"role": ("user", "assistant")[k % 2], "content": c} for k, c in enumerate(contents)]
    expected, got = _rendered(source, messages, None, go_renderer)
    assert expected.startswith("[a<|c>think][ answer ]a answer;(a<|c>think)( answer )a<.c>think<c.> answer .[][];<c.>.[];.")
    assert got == expected


@pytest.mark.parametrize("loop", ["{{ loop.index }}", "{% else %}none"])
def test_a_loop_over_the_pieces_of_a_split_with_loop_or_else_is_refused(loop: str) -> None:
    source = "{% for m in messages %}{% for part in m.content.split('<sep>') %}{{ part }}" + loop + "{% endfor %}{% endfor %}"
    _refused(source, "pieces of a .split.. with an inline if, else or loop")


def test_a_call_or_its_function_under_one_name_converts(go_renderer: GoRenderer) -> None:
    # GigaChat's and MiniMax's shape: `if call.function` (a call Ollama hands over always has one) then `set call = call.function`,
    # in a macro that sets its own parameter and in a loop; the else branch reads a field only a bare function has
    source = ("{%- macro show(call) -%}{%- if call.function -%}{%- set call = call.function -%}{%- endif -%}"
              "{{- call['name'] ~ ':' ~ call['arguments'] | tojson -}}{%- endmacro -%}"
              "{% for m in messages %}{{ m.content }}{% for c in m.tool_calls or [] %}{{ show(c) }}|"
              "{% if c.function %}{% set c = c.function %}{% endif %}{{ c.name }};{% endfor %}"
              "{% if m.tool_calls %}{% if m.tool_calls[-1].function %}{{ m.tool_calls[-1].function.name }}"
              "{% else %}{{ m.tool_calls[-1].name }}{% endif %}{% endif %}{% endfor %}")
    expected, got = _rendered(source, _CALL, None, go_renderer)
    assert 'get_weather:{"city": "Paris"' in expected and "|get_weather;get_weather" in expected
    assert got == expected


def test_a_list_of_text_searched_while_it_grows_and_walked_converts(go_renderer: GoRenderer) -> None:
    # Muse Glimmer's shape: namespaces collected once each (`not in` while the loop fills it), then walked; a list started
    # with constant text, grown while walking another, joined; a body that adds to the list it walks sees the list as it was
    source = ("{%- set ns = namespace(seen=[], out=['\"self\"']) -%}{%- for m in messages -%}{%- set k = m.content.split('.')[0] -%}"
              "{%- if k not in ns.seen -%}{%- set ns.seen = ns.seen + [k] -%}{%- endif -%}{%- endfor -%}"
              "{%- for k in ns.seen -%}[{{ k | tojson }}]{%- set ns.out = ns.out + ['\"' + k + '.*\"'] -%}{%- endfor -%}"
              "{%- for k in ns.out -%}{%- set ns.out = ns.out + ['x'] -%}<{{ k }}>{%- endfor -%}{{ ns.out | join(', ') }}")
    contents = ("a.b", "\u00e9.c", "a.d", "", "x", "\u00e9")
    messages = [{"role": ("user", "assistant")[k % 2], "content": c} for k, c in enumerate(contents)]
    expected, got = _rendered(source, messages, None, go_renderer)
    assert expected.startswith('["a"]["\u00e9"][""]["x"]<"self"><"a.*">') and expected.endswith('"x.*", x, x, x, x, x')
    assert got == expected


def test_a_loop_over_a_list_of_text_with_loop_or_else_is_refused() -> None:
    source = "{% set ns = namespace(seen=[]) %}{% for m in messages %}{% set ns.seen = ns.seen + [m.role] %}{% endfor %}" \
             "{% for k in ns.seen %}{{ loop.index }}{{ k }}{% endfor %}"
    _refused(source, "a loop over a list built at render time")


def test_replace_filter_a_field_ollama_drops_and_caller_defaults_convert(go_renderer: GoRenderer) -> None:
    # Muse Glimmer's shape: `| replace` on text; `message.get('end_turn')` is None for every message Ollama hands over (`is none`
    # is true, then the name is set again); a name set once in an if to a caller variable's default (`{}`), searched with `in`
    source = ("{%- for m in messages -%}{%- set t = m.content | replace('effort', 'strength') | replace('a', 'A') -%}"
              "{%- set end_turn = m.get('end_turn') -%}{%- if end_turn is none -%}{%- set end_turn = m.role != 'user' -%}{%- endif -%}"
              "{%- if m.content -%}{%- set nd = descriptions if descriptions is defined else {} -%}"
              "{{ (nd[m.role] if m.role in nd else '-') }}{%- endif -%}{{ t }}{{ '.' if end_turn else '!' }}{%- endfor -%}")
    messages = [{"role": "user", "content": "Reasoning effort: high"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "a effort"}]
    expected, got = _rendered(source, messages, None, go_renderer)
    assert expected == "-ReAsoning strength: high!.-A strength!"
    assert got == expected


# Gemma 4's `format_function_declaration(tool) | trim` around its schema macro that calls itself: the declaration's text
# starts and ends with literal text that is not whitespace, so trim leaves it as it is and the call is written in place
_DECLARATION = (_PYTHON_TYPE.split("{%- for tool in tools %}")[0]
                + "{%- macro decl(tool) -%}fn:{{ tool.function.name }}({% for name, p in tool.function.parameters.properties | items %}"
                  "{{- name + ': ' + py(p) }} {% endfor %}){%- endmacro -%}"
                  "{% macro wrap(m) %}<{{ m.content }}>{% endmacro %}"
                  "{%- for tool in tools %}{{ decl(tool) | trim }}{% endfor %}{% for m in messages %}{{ wrap(m) | trim }}{% endfor %}")


def test_a_trimmed_macro_with_literal_ends_is_written_in_place(go_renderer: GoRenderer) -> None:
    properties = {"a": {"type": "string"}, "e": {"type": "array", "items": {"type": "integer"}}, "g": {"type": ["string", "integer"]}}
    for messages in (_PLAIN, _SPACED):
        expected, got = _rendered(_DECLARATION, messages, [_typed_tool(properties)], go_renderer)
        assert "fn:f(a: str e: list[Union[]] g: Union[str,int] )" in expected
        assert got == expected, messages
    assert "< \n\tHello There\n >" in expected  # only the ends of each macro's text are trimmed, and they are literal


@pytest.mark.parametrize("decl", [
    "{{ tool.function.name }}:({% for name, p in tool.function.parameters.properties | items %}{{ py(p) }}{% endfor %})",  # starts with data
    "fn:({% for name, p in tool.function.parameters.properties | items %}{{ py(p) }}{% endfor %}){{ ' ' }}",  # ends with a space
])
def test_a_trimmed_macro_without_literal_ends_is_still_captured(decl: str) -> None:
    source = _DECLARATION.replace(_DECLARATION.split("{%- macro decl(tool) -%}")[1].split("{%- endmacro -%}")[0], decl)
    _refused(source, "inside text kept in a variable")


def test_a_macro_that_calls_itself_keeps_a_namespace_of_its_own(go_renderer: GoRenderer) -> None:
    # Gemma 4's format_parameters: a namespace made in the macro (and in its loop) is each call's own, as a define's variables are
    source = ("{% macro walk(x) %}{% set ns = namespace(first=true) %}{% for c in x %}{% set inner = namespace(seen=false) %}"
              "{% if not ns.first %},{% endif %}{% set ns.first = false %}{{ c }}{% if c == 'e' %}{% set inner.seen = true %}"
              "[{{ walk(x[1:3]) }}]{% endif %}{% if inner.seen %}!{% endif %}{% endfor %}{% endmacro %}"
              "{% for m in messages %}{{ walk(m.content) }};{% endfor %}")
    for messages in (_PLAIN, _SPACED):
        expected, got = _rendered(source, messages, None, go_renderer)
        assert "S,e[e[c]!,c]!,c,o" in expected or messages is _SPACED  # the inner call starts its own list, without a comma
        assert got == expected, messages


_DICTSORT = ("{% for t in tools %}{% for k, v in t.function.parameters.properties | dictsort %}{{ loop.index }}/{{ loop.length }}{{ k }}"
             "{% if loop.first %}^{% endif %}{% if loop.last %}${% endif %}:{{ v.type }} {% endfor %}"
             "{% for k, v in t.function.parameters.properties | dictsort if k != 'b' %}{{ loop.index }}{{ k }}{% if loop.first %}^{% endif %},"
             "{% endfor %}{% endfor %}{% for m in messages %}{% for c in m.tool_calls or [] %}"
             "{% for k, v in c.function.arguments | dictsort %}{% if k == 'skip' %}{% continue %}{% endif %}{{ k }}="
             "{% if v is mapping %}{{ '{' }}{% for k2, v2 in v | dictsort %}{{ k2 }}:{{ v2 }}{% if not loop.last %},{% endif %}{% endfor %}}"
             "{% else %}{{ v }}{% endif %};{% endfor %}{% endfor %}{% endfor %}")


def test_dictsort_of_properties_and_arguments_sorts_as_jinja_does(go_renderer: GoRenderer) -> None:
    # Gemma 4 and Kimi K3 sort tool property names and call arguments with dictsort, which ignores case: `area` before `Zone`,
    # where Go's map order puts `Zone` first; each pass of a Go range picks the next key in Jinja's order
    properties = {"Zone": {"type": "string"}, "area": {"type": "number"}, "b": {"type": "integer"}, "B_c": {"type": "boolean"},
                  "_x": {"type": "string"}, "a1": {"type": "string"}}
    arguments = {"Zone": 1, "area": {"Y": 1, "x": [2], "_": None}, "skip": 0, "b": "t", "Ab": True}
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": arguments}}]}, {"role": "tool", "content": "ok"}]
    expected, got = _rendered(_DICTSORT, messages, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("1/6_x^:string 2/6a1:string 3/6area:number 4/6b:integer 5/6B_c:boolean 6/6Zone$:string 1_x^,2a1,3area,")
    assert "Ab=True;area={_:None,x:[2],Y:1};b=t;Zone=1;" in expected
    assert got == expected


def test_an_object_propertys_own_properties_and_required_are_read(go_renderer: GoRenderer) -> None:
    # Gemma 4 walks an object property's own properties (sorted) and required list; Ollama keeps both in its property
    source = ("{% for t in tools %}{% for k, v in t.function.parameters.properties | dictsort %}{{ k }}"
              "{% if v.properties %}{{ '{' }}{% for k2, v2 in v['properties'] | dictsort %}{{ k2 }}:{{ v2.type }}"
              "{% if v2.properties is defined and v2.properties %}+{% endif %},{% endfor %}}{% endif %}"
              "{% if v.required %}[{% for r in v.required %}{{ r }}{% if not loop.last %},{% endif %}{% endfor %}]{% endif %};"
              "{% endfor %}{% endfor %}")
    properties = {"plain": {"type": "string"}, "Obj": {"type": "object", "properties": {"z": {"type": "string"}, "B": {
        "type": "object", "properties": {"x": {"type": "number"}}}}, "required": ["z", "B"]}, "empty": {"type": "object", "properties": {}}}
    expected, got = _rendered(source, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert expected == "empty;Obj{B:object+,z:string,}[z,B];plain;"
    assert got == expected


def test_dictsort_of_an_argument_that_is_not_a_mapping_fails_in_go_as_in_jinja(go_renderer: GoRenderer) -> None:
    source = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | dictsort %}{{ k }}:"
              "{% for k2, v2 in v | dictsort %}{{ k2 }}{% endfor %};{% endfor %}{% endfor %}{% endfor %}")
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    with pytest.raises(AttributeError, match="no attribute 'items'"):
        render(source, _CALL, add_generation_prompt=False, tools=[_TOOL])  # `city` is text: dictsort has no items to sort
    with pytest.raises(RuntimeError, match="template error"):
        go_renderer(conv.go_template, _CALL, [_TOOL])
    nested = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {
        "b": {"Y": 1, "x": 2}, "A": {}}}}]}]
    expected, got = render(source, nested, add_generation_prompt=False, tools=[_TOOL]), go_renderer(conv.go_template, nested, [_TOOL])
    assert expected == "A:;b:xY;"
    assert got == expected


def test_dictsort_of_a_tool_struct_writes_its_fields_in_sorted_order(go_renderer: GoRenderer) -> None:
    # Kimi K3 sorts every level of a tool with dictsort: Ollama's fixed structs are written out field by field in that order
    source = ("{% for t in tools %}{% for k, v in t | dictsort %}{{ k }}{% if loop.first %}^{% endif %},{% endfor %}|"
              "{% for k, v in t.function | dictsort %}{{ loop.index }}{{ k }}{% if v is string %}={{ v }}{% endif %},{% endfor %}|"
              "{% for k, v in t.function.parameters | dictsort %}{{ k }}{% if loop.last %}${% endif %},{% endfor %};{% endfor %}")
    tools = [_TOOL, {"type": "function", "function": {"name": "n", "parameters": {"type": "object", "properties": {}}}}]
    expected, got = _rendered(source, _PLAIN, tools, go_renderer)
    assert expected.startswith("function^,type,|1description=Weather now,2name=get_weather,3parameters,|properties,required,type$,;")
    assert got == expected


def test_dictsort_of_keys_equal_ignoring_case_keeps_every_key(go_renderer: GoRenderer) -> None:
    # Jinja keeps keys equal ignoring case in their declared order, which a Go map has lost: Go writes them in byte order, each once
    source = "{% for t in tools %}{% for k, v in t.function.parameters.properties | dictsort %}{{ k }},{% endfor %}{% endfor %}"
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert any("equal ignoring case" in note for note in conv.notes)
    tools = [_typed_tool({"a": {}, "A": {}, "b": {}})]
    assert render(source, _PLAIN, add_generation_prompt=False, tools=tools) == "a,A,b,"
    assert go_renderer(conv.go_template, _PLAIN, tools) == "A,a,b,"


def test_text_joined_to_a_macro_call_is_written_in_pieces(go_renderer: GoRenderer) -> None:
    # Apertus's `'Tool Capabilities:\n' + render_tools(tools)` around its schema macro that calls itself: each piece written in turn
    source = _DECLARATION.replace("{{ decl(tool) | trim }}", "{{ 'T:' + decl(tool) + '\\n' }}").replace(
        "{{ wrap(m) | trim }}", "{{ m.role ~ wrap(m) ~ loop.index }}")
    properties = {"a": {"type": "string"}, "e": {"type": "array", "items": {"type": "integer"}}}
    for messages in (_PLAIN, _SPACED):
        expected, got = _rendered(source, messages, [_typed_tool(properties)], go_renderer)
        assert "T:fn:f(a: str e: list[Union[]] )\n" in expected and "user<First?>2" in expected or messages is _SPACED
        assert got == expected, messages


def test_a_sum_with_a_value_that_may_be_a_number_is_not_split() -> None:
    source = _DECLARATION.replace("{{ decl(tool) | trim }}", "{{ tool.function.name + decl(tool) }}")
    _refused(source, "inside text kept in a variable")


# gpt-oss's and Apertus's `param_spec['items']['type'] == "string"`: a property's items is decoded JSON in Ollama, any value at all
_ITEMS_TYPE = ("{% for t in tools %}{% for n, p in t.function.parameters.properties | items %}{{ n }}="
               "{% if p['items']['type'] == 'string' %}S{% elif p['items'].type != 'number' %}{% if p['items']['type'] %}T{% else %}-{% endif %}"
               "{% else %}N{% endif %}{% if p['items']['properties'] and 'object' == p['items']['type'] %}O{% endif %}"
               "{% if p['items'].type is iterable %}I{% endif %}{% if p['items'].type is sequence %}Q{% endif %}"
               "{% if p['items'].type is mapping %}M{% endif %}{% if p['items']['type'] is number %}#{% endif %}"
               "{% if p['items'].type is boolean %}B{% endif %}{% if p['items'].type is defined %}D{% endif %}"
               "{% if p['items'].type is none %}0{% endif %}{% if p['items'].type is string %}s{% endif %}"
               "{% if p['items'].type == '' %}E{% endif %};{% endfor %}{% endfor %}")


def test_a_key_of_a_property_items_reads_as_jinja_reads_it(go_renderer: GoRenderer) -> None:
    # items of every JSON type, a type of every JSON type, no items at all (Jinja: the dict's items method, whose keys are undefined)
    properties = {"a": {"type": "array", "items": {"type": "string"}}, "b": {"type": "array", "items": {"type": "number"}},
                  "c": {"type": "array", "items": {"type": ["string", "null"]}}, "d": {"type": "array", "items": {"type": 5}},
                  "e": {"type": "array", "items": {"type": None}}, "f": {"type": "array", "items": {}}, "g": {"type": "array", "items": ["string"]},
                  "h": {"type": "array", "items": "string"}, "i": {"type": "array", "items": 7}, "j": {"type": "array"},
                  "k": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}}},
                  "l": {"type": "array", "items": {"type": "string "}}, "m": {"type": "array", "items": {"type": True}},
                  "n": {"type": "array", "items": {"type": {"a": 1}}}, "o": {"type": "array", "items": {"type": ""}}}
    expected, got = _rendered(_ITEMS_TYPE, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("a=SIQDs;b=NIQDs;c=TIQD;d=T#D;e=-D0;f=-IQ;g=-IQ;h=-IQ;i=-IQ;j=-IQ;k=TOIQDs;l=TIQDs;m=T#BD;n=TIQMD;"
                               "o=-IQDsE;")
    assert got == expected


def test_items_of_a_property_without_them_read_as_the_method_jinja_finds(go_renderer: GoRenderer) -> None:
    # gpt-oss's `if param_spec['items']`: a property without items gives Jinja the dict's items method (true, not none), by
    # index where the key is missing and by attribute always; Ollama's Items is nil there
    source = ("{% for t in tools %}{% for n, p in t.function.parameters.properties | items %}{{ n }}={% if p['items'] %}Y{% endif %}"
              "{% if p.items %}y{% endif %}{% if p['items'] is none %}0{% endif %}{% if p['items'] is defined %}D{% endif %}"
              "{% if p['items'] is mapping %}M{% endif %};{% endfor %}{% endfor %}")
    properties = {"a": {"type": "array"}, "b": {"type": "array", "items": {"type": "string"}}, "c": {"type": "array", "items": {}},
                  "d": {"type": "array", "items": []}, "e": {"type": "string"}}
    expected, got = _rendered(source, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("a=YyD;b=YyDM;c=yDM;d=yD;e=YyD;")
    assert got == expected
    with pytest.raises(templates.UnconvertibleTemplate, match="the items method of a tool property"):
        templates.convert(source.replace("{% if p.items %}y{% endif %}", "{{ p.items }}"), bos_token="", eos_token="", runtime_adds_bos=False)


_IN_VALUE = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | items %}{{ k }}"
             "{% if v is not number and v is not none and 'x' in v %}X{% endif %}{% if v is not number and v is not none and k not in v %}-{% endif %};"
             "{% endfor %}{% endfor %}"
             "{% endfor %}{% for t in tools %}{% for n, p in t.function.parameters.properties | items %}{{ n }}{% if 'items' in p %}I{% endif %}"
             "{% endfor %}{% endfor %}")


def test_in_of_a_json_value_reads_as_jinja_reads_it(go_renderer: GoRenderer) -> None:
    # a mapping's keys, a list's items (text equal to the needle only), text's substrings; a property's items key (nil: missing)
    call = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {
        "a": {"x": 1}, "b": ["x", 1], "c": "xyz", "d": ["y", 2, None], "e": {"e": None}, "f": "f", "g": [], "n": 3, "z": None}}}]}]
    properties = {"a": {"type": "array"}, "b": {"type": "array", "items": {}}, "c": {"type": "array", "items": {"type": "string"}}}
    expected, got = _rendered(_IN_VALUE, call, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("aX-;bX-;cX-;d-;e;f;g-;n;z") and expected.endswith("abIcI")
    assert got == expected
    # Jinja fails on `in` of a number or null, and the TEMPLATE fails there too
    unguarded = _IN_VALUE.replace("v is not number and v is not none and ", "")
    with pytest.raises(TypeError):
        render(unguarded, call, add_generation_prompt=False, tools=None)
    conv = templates.convert(unguarded, bos_token="", eos_token="", runtime_adds_bos=False)
    with pytest.raises(RuntimeError, match="template error"):
        go_renderer(conv.go_template, call, None)


def test_a_key_of_a_json_value_prints_as_jinja_prints_it(go_renderer: GoRenderer) -> None:
    # Gemma 4 prints `value['description']` of a property nested in an array's items: str() of the key's value, nothing where
    # the key is missing, None for JSON null, Python's spelling of booleans, numbers, lists and dicts
    source = ("{% for t in tools %}{% for n, p in t.function.parameters.properties | items %}{{ n }}=<{{ p['items']['type'] }}>"
              "<{{ p['items'].d | upper }}>{% endfor %}{% endfor %}{% for m in messages %}{% for c in m.tool_calls or [] %}"
              "{% for k, v in c.function.arguments | dictsort %}{% if v is mapping %}{{ k }}:{{ v['a'] }}|{{ v.b }};{% endif %}{% endfor %}"
              "{% endfor %}{% endfor %}")
    properties = {"a": {"type": "array", "items": {"type": "string", "d": "x y"}}, "b": {"type": "array", "items": {"type": None, "d": True}},
                  "c": {"type": "array", "items": {"type": ["string", "null"], "d": [1, "e'"]}}, "d": {"type": "array", "items": {"type": 5}},
                  "e": {"type": "array", "items": {}}, "f": {"type": "array", "items": ["string"]}, "g": {"type": "array"},
                  "h": {"type": "array", "items": {"type": {"j": 2.5, "k": False}}}}  # keys sorted, as Go's JSON writes a map
    call = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {
        "p": {"a": "t", "b": None}, "q": {"a": [1, {"x": "y"}]}, "r": {}, "s": "no"}}}]}]
    expected, got = _rendered(source, call, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("a=<string><X Y>b=<None><TRUE>c=<['string', 'null']><[1, \"E'\"]>d=<5><>e=<><>f=<><>g=<><>h=<{'j': 2.5, 'k': False}><>")
    assert "p:t|None;q:[1, {'x': 'y'}]|;r:|;" in expected
    assert got == expected


def test_a_key_of_a_json_value_an_if_shows_is_there_reaches_a_macro_that_calls_itself(go_renderer: GoRenderer) -> None:
    # Gemma 4's `{% if value['enum'] %}...{{ format_argument(value['enum']) }}`: truthy, so there; without the if it is refused
    source = ("{% macro fa(a) %}{% if a is string %}'{{ a }}'{% elif a is mapping %}{{ '{' }}{% for k, v in a | dictsort %}{{ k }}:{{ fa(v) }},"
              "{% endfor %}}{% elif a is sequence %}[{% for x in a %}{{ fa(x) }},{% endfor %}]{% else %}{{ a }}{% endif %}{% endmacro %}"
              "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | dictsort %}{{ k }}="
              "{% if v is mapping and v['e'] %}{{ fa(v['e']) }}{% endif %};{% endfor %}{% endfor %}{% endfor %}")
    call = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {
        "p": {"e": ["a", 1, None, True]}, "q": {"e": {"B": "x", "a": [2.5]}}, "r": {"e": []}, "s": {}, "t": {"e": "s"}, "u": 3}}}]}]
    expected, got = _rendered(source, call, None, go_renderer)
    assert expected == "p=['a',1,None,True,];q={a:[2.5,],B:'x',};r=;s=;t='s';u=;"
    assert got == expected
    with pytest.raises(templates.UnconvertibleTemplate, match="a value whose type the converter cannot tell"):
        templates.convert(source.replace(" and v['e']", ""), bos_token="", eos_token="", runtime_adds_bos=False)


def test_the_key_items_of_a_json_value_reads_the_key_or_the_method_jinja_finds(go_renderer: GoRenderer) -> None:
    # Gemma 4's `value['items'] is mapping and value['items']` on a property nested in items: Jinja's subscript finds the key,
    # else a mapping's items method (true, defined, not a sequence), else undefined; inside the if, the key's value is read
    source = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | dictsort %}{{ k }}="
              "{% if v['items'] %}T{% endif %}{% if v['items'] is mapping %}M{% endif %}{% if v['items'] is defined %}D{% endif %}"
              "{% if v['items'] is sequence %}S{% endif %}{% if v['items'] is none %}0{% endif %}{% if v['items'] != 'x' %}!{% endif %}"
              "{% if v['items'] is mapping and v['items'] %}({% for a, b in v['items'] | dictsort %}{{ a }}:{{ b }}{% endfor %}){% endif %}"
              "{% if v['items'] is string %}<{{ v['items'] }}>{% endif %};"
              "{% endfor %}{% endfor %}{% endfor %}")
    call = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {
        "a": {"items": {"y": 1, "X": "s"}}, "c": {"items": None}, "d": {"items": []}, "e": "text", "f": [1], "g": 3, "h": {"items": {}},
        "i": {"items": "x"}}}}]}]
    expected, got = _rendered(source, call, None, go_renderer)
    assert expected.startswith("a=TMDS!(X:sy:1);c=D0!;d=DS!;e=S!;f=S!;g=S!;h=MDS!;i=TDS<x>;")
    assert got == expected
    with pytest.raises(templates.UnconvertibleTemplate, match="the dict method of that name"):
        templates.convert(source.replace("{% if v['items'] is string %}", "{% if v['items'] %}"),
                          bos_token="", eos_token="", runtime_adds_bos=False)  # printed where it may be the method (true)


def test_a_key_shown_there_in_the_caller_is_not_there_in_a_macro_that_calls_itself() -> None:
    # the define's `v` is its own loop's: the caller's `if v['x'] is mapping` says nothing of it
    source = ("{% macro w(d) %}{% for k, v in d | dictsort %}{{ k }}({{ w(v['x']) }}){% endfor %}{% endmacro %}"
              "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | dictsort %}"
              "{% if v is mapping and v['x'] is mapping %}{{ w(v['x']) }}{% endif %}{% endfor %}{% endfor %}{% endfor %}")
    _refused(source, "a value whose type the converter cannot tell")


_OWN_KEYS = ("{%- macro fp(props) -%}{%- set std = ['description', 'type', 'properties', 'required'] -%}"
             "{%- for k, v in props | dictsort -%}{%- if k not in std -%}{{ k }}:{% if v is mapping %}M{% endif %}"
             "{% if v is sequence %}S{% endif %}[{{ v['type'] | upper }}]{% if v['description'] %}D{% endif %},{%- endif -%}{%- endfor -%}"
             "{%- endmacro -%}{%- macro walk(props) -%}{%- for k, v in props | dictsort -%}{%- if k not in ['type', 'description', 'properties', 'required'] -%}"
             "{{ k }}{%- if v['type'] | upper == 'OBJECT' -%}{%- if v['properties'] is defined and v['properties'] is mapping -%}"
             "{ {{- walk(v['properties']) -}} }{%- elif v is mapping -%}< {{- walk(v) -}} >{%- endif -%}{%- endif -%},{%- endif -%}"
             "{%- endfor -%}{%- endmacro -%}"
             "{% for t in tools %}{% for n, p in t.function.parameters.properties | dictsort %}{{ n }}({{ fp(p) }})|{% endfor %}"
             "{{ walk(t.function.parameters.properties) }}{% endfor %}")


def test_dictsort_of_a_property_walks_the_keys_ollama_keeps(go_renderer: GoRenderer) -> None:
    # Gemma 4 sorts a property's own keys (anyOf, description, enum, items, properties, required, type) and skips the standard
    # ones, so a type that is a list of names in Ollama is never read; an object property without properties recurses on itself
    properties = {"s": {"type": "string", "description": "d", "enum": ["a", "b"]}, "n": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                  "a": {"type": "array", "items": {"type": "string", "description": "x"}},
                  "o": {"type": "object", "description": "no properties", "items": {"type": "integer"}},
                  "p": {"type": "object", "properties": {"z": {"type": "object"}, "y": {"type": "integer"}}, "required": ["y"]},
                  "u": {"description": "no type"}, "l": {"type": ["string", "null"]}}
    expected, got = _rendered(_OWN_KEYS, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("a(items:MS[STRING]D,)|l()|n(anyOf:S[],)|o(items:MS[INTEGER],)|p()|s(enum:S[],)|u()|")
    assert expected.endswith("a,l,n,o<items,>,p{y,z<>,},s,u,")
    assert got == expected
    # the type's value read: one name as text, several as a list of names, as Jinja sees them
    reads_type = _OWN_KEYS.replace("{%- if k not in std -%}", "{%- if k == 'type' -%}<{{ v }}|{{ v | tojson }}|{% if v is string %}s{% endif %}"
                                   "{% if v == 'object' %}o{% endif %}{% if v != 'string' %}!{% endif %}{% for c in v %}{{ c }}.{% endfor %}>"
                                   "{%- endif -%}{%- if k not in std -%}")
    expected, got = _rendered(reads_type, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert "l(<['string', 'null']|[\"string\", \"null\"]|!string.null.>)" in expected and "<object|\"object\"|so!o.b.j.e.c.t.>" in expected
    assert got == expected
    items = _OWN_KEYS.replace("props | dictsort", "props | items")  # .items() keeps the declared order, which Ollama's struct does not
    with pytest.raises(templates.UnconvertibleTemplate, match="of a property that reaches its type"):
        templates.convert(items.replace("{%- if k not in std -%}", "{%- if k not in std or k == 'type' -%}"), bos_token="", eos_token="",
                          runtime_adds_bos=False)


_CASED = ("{% macro fa(a) %}{% if a is string %}'{{ a }}'{% elif a is mapping %}M{% elif a is sequence %}[{% for x in a %}{{ fa(x) }}"
          "{% if not loop.last %},{% endif %}{% endfor %}]{% else %}{{ a }}{% endif %}{% endmacro %}"
          "{% for m in messages %}{% for c in m.tool_calls or [] %}{% for k, v in c.function.arguments | dictsort %}{{ k }}="
          "{% if k == 's' %}{{ fa(v | upper) }}{% else %}{{ fa(v | map('upper') | list) }}{% endif %};{% endfor %}{% endfor %}{% endfor %}")


def test_a_json_value_mapped_to_upper_case_reaches_a_macro_that_calls_itself(go_renderer: GoRenderer) -> None:
    # Gemma 4's `format_argument(item_value | map('upper') | list)`: each item's str() recased, a mapping's keys, text's characters
    arguments = {"p": ["string", "null"], "q": [1, None, True, [2, "x"], {"k": "v"}, 2.5], "r": {"a": 2, "b": 1}, "s": "text", "t": [],
                 "w": "ab"}
    call = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": arguments}}]}]
    expected, got = _rendered(_CASED, call, None, go_renderer)
    assert expected == ("p=['STRING','NULL'];q=['1','NONE','TRUE','[2, 'X']','{'K': 'V'}','2.5'];r=['A','B'];s='TEXT';t=[];"
                        "w=['A','B'];")
    assert got == expected
    number = [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"u": 3}}}]}]
    with pytest.raises(TypeError):
        render(_CASED, number, add_generation_prompt=False, tools=None)  # Jinja's map cannot walk a number, and Go stops there too
    conv = templates.convert(_CASED, bos_token="", eos_token="", runtime_adds_bos=False)
    with pytest.raises(RuntimeError, match="template error"):
        go_renderer(conv.go_template, number, None)


@pytest.mark.parametrize("use", ["{% if p['items'].type < 'a' %}x{% endif %}",
                                 "{% if p['items'].type is lower %}x{% endif %}",
                                 "{% if p['items'].items %}x{% endif %}", "{% if p['items'].type.upper %}x{% endif %}"])
def test_other_reads_of_a_key_of_items_are_refused(use: str) -> None:
    # printed, ordered, a key named like a dict method or a str method (Jinja finds the method), a key of the key
    source = "{% for t in tools %}{% for n, p in t.function.parameters.properties | items %}" + use + "{% endfor %}{% endfor %}"
    _refused(source, "of a JSON value|a value that Ollama's data does not have")


def test_the_text_of_a_macro_that_calls_itself_on_text_kept_in_a_variable_is_refused_naming_it() -> None:
    # text nests as deep as the conversation goes: no fixed depth of written-out copies covers it
    source = ("{% macro w(x) %}{% if x %}{% set inner = w(x[1:]) %}{% if inner | length > 50 %}...{% else %}[{{ inner }}]{% endif %}"
              "{% endif %}{% endmacro %}\n{% for m in messages %}{{ w(m.content) }}{% endfor %}")
    with pytest.raises(templates.UnconvertibleTemplate, match=r"calls itself \(w\) inside text kept in a variable, on a value other") as err:
        templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    assert err.value.line == 1


# Kimi K3's tag writer: a loop over a list of (name, value) pairs, some read at render time (loop.index: the caller's loop)
_PAIRS = ("{%- macro tag(t, attrs=[]) -%}<{{ t }}{%- for a in attrs -%}{{ ' ' + a[0] }}=\"{{ a[1] | string | replace('\"', '&quot;') }}\""
          "{%- endfor -%}>{%- endmacro -%}"
          "{%- for m in messages -%}{%- set attrs = [('role', m.role)] -%}{%- if m.get('name') -%}{%- set attrs = attrs + [('name', m.name)] -%}"
          "{%- endif -%}{{ tag('m', attrs) }}{{ tag('i', [('index', loop.index), ('c', m.content)]) }}{{ tag('k', [('k', 'v')]) }}"
          "{%- for c in m.tool_calls or [] -%}{{ tag('call', [('tool', c.function.name), ('n', loop.index)]) }}{%- endfor -%}{%- endfor -%}")
# a tool result's name: `name` for Jinja, `tool_name` for Ollama
_NAMED = [{"role": "user", "content": "say \"hi\""}, *_CALL[1:2], {"role": "tool", "name": "get_weather", "tool_name": "get_weather",
                                                                 "content": "18 C"}, {"role": "tool", "content": "19 C"}]


def test_a_loop_over_a_list_of_pairs_is_written_out_pair_by_pair(go_renderer: GoRenderer) -> None:
    for messages in (_PLAIN, _NAMED):
        expected, got = _rendered(_PAIRS, messages, None, go_renderer)
        assert got == expected, messages
    assert '<m role="tool" name="get_weather"><i index="3" c="18 C">' in expected and '<call tool="get_weather" n="1">' in expected


def test_a_list_of_pairs_read_other_than_by_a_loop_is_refused() -> None:
    source = _PAIRS.replace("{{ tag('m', attrs) }}", "{{ tag('m', attrs) }}{{ attrs | length }}")
    _refused(source, "list")


# Kimi K3's run of tool results: the loop stops at the first message that is not a tool's, so the list is a prefix
_RUN = ("{%- for m in messages -%}{%- if m.role == 'tool' and (loop.first or messages[loop.index0 - 1].role != 'tool') -%}"
        "{%- set run = namespace(items=[], n=0) -%}{%- for c in messages[loop.index0:] -%}"
        "{%- if c.role != 'tool' -%}{%- break -%}{%- endif -%}{%- set run.items = run.items + [c] -%}{%- set run.n = run.n + 1 -%}"
        "{%- endfor -%}[{{ run.items | length }}/{{ run.n }}:{% for t in run.items %}{{ t.content }}{% if not loop.last %},{% endif %}"
        "{% endfor %}]{%- elif m.role != 'tool' -%}{{ m.role }};{%- endif -%}{%- endfor -%}")
_RUNS = [{"role": "user", "content": "a"}, {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"},
         {"role": "assistant", "content": "b"}, {"role": "tool", "content": "3"}, {"role": "user", "content": "c"},
         {"role": "tool", "content": "4"}]


def test_a_list_filled_by_a_loop_that_stops_early_is_its_first_items(go_renderer: GoRenderer) -> None:
    for messages in (_PLAIN, _RUNS, _RUNS[1:]):
        expected, got = _rendered(_RUN, messages, None, go_renderer)
        assert got == expected, messages
    assert expected == "[2/2:1,2]assistant;[1/1:3]user;[1/1:4]"


@pytest.mark.parametrize("change", [("{%- set run.items", "{%- if c.content -%}{%- set run.items"),
                                    ("{%- break -%}", "{%- continue -%}")])
def test_a_list_filled_by_a_loop_that_stops_early_under_an_if_or_skipping_is_refused(change: tuple[str, str]) -> None:
    source = _RUN.replace(*change)
    if change[0].startswith("{%- set"):
        source = source.replace("{%- set run.n", "{%- endif -%}{%- set run.n")
    _refused(source, "list built at render time")


# Kimi K3 writes its tools as JSON with each mapping's keys sorted, by a macro that calls itself down the schema
_JSON_SORTED = ("{%- macro js(value) -%}{%- if value is mapping -%}{{- '{' -}}{%- for key, item in value | dictsort -%}"
                "{%- if not loop.first -%}{{- ',' -}}{%- endif -%}{{- key | tojson(ensure_ascii=false) -}}{{- ':' -}}{{- js(item) -}}"
                "{%- endfor -%}{{- '}' -}}{%- elif value is string or value is number or value is boolean or value is none -%}"
                "{{- value | tojson(ensure_ascii=false) -}}{%- else -%}{{- '[' -}}{%- for item in value -%}{%- if not loop.first -%}{{- ',' -}}"
                "{%- endif -%}{{- js(item) -}}{%- endfor -%}{{- ']' -}}{%- endif -%}{%- endmacro -%}{{ js(tools) }}")


def test_a_macro_writing_sorted_json_of_tools_converts(go_renderer: GoRenderer) -> None:
    # a property's anyOf is a list of properties (never none in Ollama's data), nested to any depth
    properties = {"Zone": {"type": "string", "description": "Zone \"quoted\" caf\u00e9", "enum": ["a", "b"]},
                  "area": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}], "description": "either"},
                  "obj": {"type": "object", "properties": {"deep": {"type": "object", "properties": {"x": {"type": ["string", "null"]}},
                                                                    "required": ["x"]}}},
                  "n": {"type": "integer", "enum": [1, 2.5]}}
    expected, got = _rendered(_JSON_SORTED, _PLAIN, [_typed_tool(properties), _TOOL], go_renderer)
    assert '"area":{"anyOf":[{"type":"string"},{"items":{"type":"integer"},"type":"array"}],"description":"either"}' in expected
    assert got == expected


def test_kimi_k3_orders_tool_results_by_their_calls_ids(go_renderer: GoRenderer) -> None:
    # the corpus conversations carry no ids; here results answer calls out of order, so Kimi K3 writes them in call order
    source = (Path(__file__).parents[1] / "data" / "chat_templates" / "corpus" / "Kimi-K3.jinja").read_text()
    conv = templates.convert(source, bos_token="", eos_token="", runtime_adds_bos=False)
    calls = [{"id": "a1", "function": {"name": "f", "arguments": {"x": 1}}}, {"id": "b2", "function": {"name": "g", "arguments": {"y": "t"}}}]
    prompts = []
    for results in ([("b2", "B"), ("a1", "A")], [("b2", "B"), ("", "A")]):
        ollama = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": calls},
                  *({"role": "tool", "content": text, **({"tool_call_id": i} if i else {})} for i, text in results), {"role": "user", "content": "ok"}]
        jinja = [{**m, "tool_calls": [{"type": "function", **c} for c in calls]} if m.get("tool_calls") else m for m in ollama]
        expected = render(source, jinja, add_generation_prompt=True, tools=None)
        assert go_renderer(conv.go_template, ollama, None) == expected
        prompts.append(expected)
    # every result matched: in call order; an id missing: in message order, each named by the call at its position
    assert 'tool="f" index="1"<|sep|>A' in prompts[0] and 'tool="g" index="2"<|sep|>B' in prompts[0]
    assert 'tool="f" index="1"<|sep|>B' in prompts[1] and 'tool="g" index="2"<|sep|>A' in prompts[1]


# gpt-oss's and Apertus's render_typescript_type: the text of the call on an array's items is kept, compared and measured
_KEPT = ("{%- macro ts(s) -%}{%- if s.type == 'array' -%}{%- if s['items'] is mapping -%}{%- set inner = ts(s['items']) -%}"
         "{%- if inner == 'string[]' -%}matrix{%- elif inner | length > 9 -%}any[]{%- else -%}{{ inner + '[]' }}{%- endif -%}"
         "{%- else -%}list{%- endif -%}{%- elif s.type == 'string' -%}string{%- else -%}any{%- endif -%}{%- endmacro -%}"
         "{%- for t in tools %}{% for n, p in t.function.parameters.properties | dictsort %}{{ n }}={{ ts(p) }};{% endfor %}{% endfor %}")


def _arrays(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    return leaf if depth == 0 else {"type": "array", "items": _arrays(depth - 1, leaf)}


def test_a_macro_that_calls_itself_kept_in_a_variable_is_written_out_to_its_depth(go_renderer: GoRenderer) -> None:
    # arrays 1 to 4 levels of schema deep (the property and the 3 levels of items below it that are written out), of text,
    # of a number, of items that are not a mapping
    properties = {f"s{d}": _arrays(d, {"type": "string"}) for d in range(1, 4)} | {f"n{d}": _arrays(d, {"type": "number"}) for d in range(1, 4)}
    properties |= {"deep": _arrays(3, {"type": "array"}), "odd": _arrays(2, {"type": "array", "items": ["x"]}), "e": {"type": "array"}}
    expected, got = _rendered(_KEPT, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert expected.startswith("deep=list[][][];e=list;n1=any[];n2=any[][];n3=any[][][];odd=list[][];s1=string[];s2=matrix;s3=matrix[];")
    assert got == expected
    conv = templates.convert(_KEPT, bos_token="", eos_token="", runtime_adds_bos=False)
    assert any("3 levels deep" in n for n in conv.notes)
    # one level past the depth written out: Jinja renders it, the TEMPLATE stops with an error naming the limit
    deeper = [_typed_tool({"s4": _arrays(4, {"type": "string"})})]
    assert render(_KEPT, _PLAIN, add_generation_prompt=False, tools=deeper).startswith("s4=matrix[][];")
    with pytest.raises(RuntimeError, match="nested deeper than 3 levels"):
        go_renderer(conv.go_template, _PLAIN, deeper)


# gpt-oss's and Apertus's type ladder, on a property (Ollama's list of type names) and on a schema in its items (decoded JSON)
_TYPE_LADDER = (
    "{%- macro ts(s) -%}"
    "{%- if s.type is defined and s.type is iterable and s.type is not string and s.type is not mapping and s.type[0] is defined -%}"
    "{%- if s.type | length > 1 -%}{{ s.type | join(' | ') }}{%- else -%}{{ s.type[0] }}{%- endif -%}"
    "{%- elif s.type == 'string' and s.enum -%}{{ '\"' + s.enum | join('\" | \"') + '\"' }}"
    "{%- elif s.type == 'array' and s['items'] -%}{%- set inner = ts(s['items']) -%}{{ inner }}[]"
    "{%- else -%}other{%- endif -%}{%- if s.description %} //{{ ' <' + s.description + '>' }}{% endif -%}{%- endmacro -%}"
    "{%- for t in tools %}{% for n, p in t.function.parameters.properties | dictsort %}{{ n }}={{ ts(p) }};{% endfor %}{% endfor %}")


def test_a_propertys_type_and_a_schema_in_its_items_read_as_jinja_reads_them(go_renderer: GoRenderer) -> None:
    properties = {"a": {"type": ["string", "null"]}, "c": {"type": "string", "enum": ["x", "y"]}, "l": {"type": "integer", "description": "L"},
                  "d": {"type": "array", "items": {"type": ["number", "null"], "description": "n\u00e9"}},
                  "e": {"type": "array", "items": {"type": "string", "enum": ["p", 5, 2.5, True, None]}},
                  "f": {"type": "array", "items": {"type": ["x"]}}, "g": {"type": "array", "items": {"type": "array", "items": {"type": ["a", "b", "c"]}}},
                  "h": {"type": "array", "items": {"type": 5}}, "i": {"type": "array", "items": {"type": []}},
                  "j": {"type": "array", "items": {"description": "only"}}, "k": {"type": "array"}, "m": {"type": ["integer", "string"], "description": ""}}
    expected, got = _rendered(_TYPE_LADDER, _PLAIN, [_typed_tool(properties)], go_renderer)
    assert expected.startswith('a=string | null;c="x" | "y";d=number | null // <n\u00e9>[];e="p" | "5" | "2.5" | "True" | "None"[];f=x[];'
                               "g=a | b | c[][];h=other[];i=other[];j=other // <only>[];k=other[];l=other // <L>;m=integer | string;")
    assert got == expected
    # text added to a description that is not text: Jinja fails, and so does the TEMPLATE
    odd = [_typed_tool({"a": {"type": "array", "items": {"type": "string", "description": 5}}})]
    with pytest.raises(TypeError):
        render(_TYPE_LADDER, _PLAIN, add_generation_prompt=False, tools=odd)
    conv = templates.convert(_TYPE_LADDER, bos_token="", eos_token="", runtime_adds_bos=False)
    with pytest.raises(RuntimeError, match="template error"):
        go_renderer(conv.go_template, _PLAIN, odd)


def test_the_length_of_text_counts_characters(go_renderer: GoRenderer) -> None:
    # 9 characters in 16 bytes: Go's len counts bytes
    source = ("{% for m in messages %}{% if m.content | length > 8 %}A{% endif %}{% if m.content | length <= 9 %}B{% endif %}"
              "{% if 10 > m.content | length %}C{% endif %}{% if m.content | length == 9 %}D{% endif %}{% if m.content | length >= 10 %}E{% endif %}"
              "{% if m.content | length != 9 %}F{% endif %};{% endfor %}")
    for messages in (_UNICODE, _PLAIN):
        expected, got = _rendered(source, messages, None, go_renderer)
        assert got == expected, messages
    assert _rendered(source, _UNICODE, None, go_renderer)[0] == "ABCD;"


def test_a_key_ollama_drops_from_a_calls_function_reads_as_unset(go_renderer: GoRenderer) -> None:
    # gpt-oss's `tool_call.content_type if tool_call.content_type is defined else "json"`: Ollama's call function keeps no such key
    source = ("{% for m in messages %}{% for c in m.tool_calls or [] %}{% set f = c.function %}"
              "{{ f.content_type if f.content_type is defined else 'json' }}:{{ f.name }};{% endfor %}{% endfor %}")
    expected, got = _rendered(source, _CALL, [_TOOL], go_renderer)
    assert expected == "json:get_weather;"
    assert got == expected


def test_gpt_oss_tool_schemas_nested_in_items_render_as_jinja_renders_them(go_renderer: GoRenderer) -> None:
    # the published template on schemas its corpus conversations do not reach: objects, oneOf variants, unions and arrays of
    # arrays inside items (nested keys declared sorted: Ollama hands a TEMPLATE Go maps)
    source = (Path(__file__).parent.parent / "data" / "chat_templates" / "corpus" / "openai-gpt-oss-120b.jinja").read_text()
    properties = {
        "a": {"type": "array", "items": {"properties": {"x": {"type": "string"}, "y": {"type": "integer"}}, "required": ["x"], "type": "object"}},
        "b": {"type": "array", "items": {"oneOf": [{"description": "s", "type": "string"}, {"default": 2, "type": "number"}]}},
        "c": {"type": "array", "items": {"oneOf": [{"type": "object"}, {"type": "string"}]}},
        "d": {"type": "array", "items": {"items": {"type": ["string", "null"]}, "type": "array"}},
        "e": {"type": "array", "items": {"enum": ["u", "v"], "nullable": True, "type": "string"}},
        "f": {"description": "union", "type": ["string", "integer"]},
        "g": {"type": "object", "properties": {"h": {"type": "array", "items": {"type": "boolean"}}}},
        "i": {"type": "array", "items": {"items": {"description": "long " * 12}, "type": "array"}}}
    # the last turn the assistant's: Ollama then adds no generation prompt, as Jinja here adds none
    expected, got = _rendered(source, _PLAIN[:3], [_typed_tool(properties)], go_renderer)
    assert "a?: any[],\nb?: any[],\nc?: object | \n" in expected and "d?: string | null[][],\ne?: string[],\n// union\nf?: string | integer," in expected
    assert "boolean[]},\ni?: any[][],\n" in expected
    assert got == expected
