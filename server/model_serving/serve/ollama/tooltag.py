"""The tool-call tag: how Ollama tells a tool call from text in a model's output, and how our TEMPLATE tells it the tag.

Ollama reads the tag from the model's TEMPLATE (its tools/template.go): the first `{{ if ... }}` whose pipeline has
a field argument naming `ToolCalls` (`.ToolCalls`, `.Message.ToolCalls`; not `$m.ToolCalls`, a variable, nor one
inside parentheses), searched depth first through if/range/with bodies and else branches; then the first text in
that if's body that is not only whitespace, stopping at the first action or at a nested block without text; the
text is cut at its first `{` and trimmed. No such if, or no text, or nothing left: the tag is `{`, and then a
reply counts as a tool call only when it starts with `{` (anything written before it turns the call into text).

A converted TEMPLATE reads messages through variables (`$message.ToolCalls`), which Ollama's search does not see,
so the converter adds a declaration that is never executed: `{{ if false }}{{ if .ToolCalls }}TAG{{ end }}{{ end }}`,
with TAG the text the Jinja template writes before a call's JSON.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from model_serving.util.chat_template import TemplateRejected, render

FALLBACK = "{"
_FIELD = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_MARKER = re.compile(r"<[^<>{}\s]+>|\[[A-Z_]+\]")
_CALL: dict[str, Any] = {"id": "a1b2c3d4e", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


@dataclass
class _Node:
    kind: str  # text | action | if | range | with | other
    text: str = ""
    pipe: str = ""
    body: list[_Node] = field(default_factory=list)
    other: list[_Node] | None = None


def _actions(source: str) -> list[tuple[str, str]]:
    """("text", t) and ("action", a) pieces, with Go's `{{-` / `-}}` whitespace trimming applied."""
    pieces: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if start < 0:
            pieces.append(("text", text))
            return pieces
        inner_start = start + 2
        left_trim = source[inner_start:inner_start + 2] in ("- ", "-\t", "-\n", "-\r")
        if left_trim:
            text, inner_start = text.rstrip(" \t\r\n"), inner_start + 1
        pieces.append(("text", text))
        end = _action_end(source, inner_start)
        inner = source[inner_start:end]
        trim_next = inner.endswith((" -", "\t-", "\n-", "\r-"))
        pieces.append(("action", (inner[:-1] if trim_next else inner).strip()))
        pos = end + 2


def _action_end(source: str, pos: int) -> int:
    """Index of the `}}` closing the action that starts at `pos` (quotes and comments skipped)."""
    i = pos
    while i < len(source):
        c = source[i]
        if source.startswith("/*", i):
            i = source.find("*/", i + 2)
            i = len(source) if i < 0 else i + 2
            continue
        if c in "\"'`":
            i += 1
            while i < len(source) and source[i] != c:
                i += 2 if c != "`" and source[i] == "\\" else 1
        elif source.startswith("}}", i):
            return i
        i += 1
    return len(source)


def _parse(pieces: list[tuple[str, str]]) -> list[_Node]:
    """The node tree Go's parser builds, as far as the tag search needs it (else-if/else-with nest as Go nests them)."""
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]  # (open block, the list being filled)
    for kind, value in pieces:
        lst = stack[-1][1]
        if kind == "text":
            if value:
                lst.append(_Node("text", value))
            continue
        word, _, rest = value.partition(" ")
        if value.startswith("/*"):
            continue
        if word in ("if", "range", "with", "define", "block"):
            node = _Node(word if word in ("if", "range", "with") else "other", pipe=rest.strip())
            if node.kind != "other":  # define/block bodies are other trees, which Ollama's search does not enter
                lst.append(node)
            stack.append((node, node.body))
        elif word in ("else", "end"):
            block = stack.pop()[0] if len(stack) > 1 else None
            if block is None:
                raise ValueError(f"unexpected {{{{ {word} }}}}")
            if word == "else":
                block.other = []
                chained, _, pipe = rest.strip().partition(" ")
                if chained in ("if", "with"):  # else if: a block nested in the else branch, closed by the same end
                    inner = _Node(chained, pipe=pipe.strip())
                    block.other.append(inner)
                    stack.append((inner, inner.body))
                else:
                    stack.append((block, block.other))
        else:
            lst.append(_Node("other" if word in ("break", "continue", "template") else "action", text=value))
    return root


def _pipe_names_tool_calls(pipe: str) -> bool:
    decl = re.match(r"^\s*\$\w*(\s*,\s*\$\w*)?\s*:?=\s*", pipe)
    body = pipe[decl.end():] if decl else pipe
    for cmd in _split_top(body, "|"):
        if any(_FIELD.match(arg) and "ToolCalls" in arg.split(".") for arg in _split_top(cmd, " ")):
            return True
    return False


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside parentheses and quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for c in text:
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == sep and depth == 0 and not quote or (sep == " " and c in "\t\n\r" and depth == 0 and not quote):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _find_if(nodes: list[_Node]) -> _Node | None:
    for n in nodes:
        if n.kind == "if" and _pipe_names_tool_calls(n.pipe):
            return n
        if n.kind in ("if", "range", "with"):
            found = _find_if(n.body) or (_find_if(n.other) if n.other else None)
            if found is not None:
                return found
    return None


def _first_text(nodes: list[_Node]) -> str | None:
    for n in nodes:
        if n.kind == "text":
            if n.text.strip():
                return n.text
        elif n.kind in ("if", "range", "with"):
            return _first_text(n.body) or (_first_text(n.other) if n.other else None)
        elif n.kind == "action":
            return None
    return None


def ollama_tag(go_template: str) -> str:
    """The tool-call tag Ollama derives from this TEMPLATE (`{` when it finds none)."""
    try:
        found = _find_if(_parse(_actions(go_template)))
    except ValueError:
        return FALLBACK
    text = _first_text(found.body) if found is not None else None
    if text is None:
        return FALLBACK
    tag = text.replace("\r\n", "\n").split("{", 1)[0].strip()
    return tag or FALLBACK


def jinja_tag(source: str, *, bos: str = "", eos: str = "") -> str | None:
    """The text a Jinja template writes right before a tool call's name or JSON (None: it writes no tool calls).

    Rendered twice, an assistant turn with and without a call; the tag is what the call adds before its name, id or
    first `{`: its last run of markers (`<...>`, `[UPPER]`, thinking markers left out) with nothing but whitespace
    between them, or the bare text when there are no markers (`{` when that is empty, as Ollama has it).
    """
    user = {"role": "user", "content": "Weather in Paris?"}
    try:
        with_call = render(source, [user, {"role": "assistant", "content": "", "tool_calls": [_CALL]}], add_generation_prompt=False,
                           bos_token=bos, eos_token=eos, tools=[_weather_tool()])
        without = render(source, [user, {"role": "assistant", "content": ""}], add_generation_prompt=False, bos_token=bos, eos_token=eos,
                         tools=[_weather_tool()])
    except (TemplateRejected, Exception):  # noqa: BLE001 - a template that cannot render a call has no tag to declare
        return None
    if with_call == without:
        return None
    start = len(os.path.commonprefix([with_call, without]))
    for opener, closer in (("<", ">"), ("[", "]")):  # a marker both renders begin alike starts where it opens
        head = with_call[:start]
        if head.rfind(opener) > head.rfind(closer):
            start = head.rfind(opener)
    added = with_call[start:]
    ends = [i for i in (added.find("{"), added.find(_CALL["function"]["name"]), added.find(_CALL["id"])) if i >= 0]
    before = added[: min(ends)] if ends else added
    markers = [m for m in _MARKER.finditer(before) if "think" not in m.group().lower()]
    if not markers:
        return before.strip() or FALLBACK
    first = len(markers) - 1  # the last run of markers with only whitespace between them
    while first > 0 and not before[markers[first - 1].end(): markers[first].start()].strip():
        first -= 1
    return before[markers[first].start(): markers[-1].end()]


def declaration(tag: str) -> str:
    """A block Ollama's tag search finds first and that never runs: it only names the tag."""
    return "{{- if false }}{{ if .ToolCalls }}" + tag.replace("{{", "") + "{{ end }}{{ end }}"


def _weather_tool() -> dict:
    return {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}
