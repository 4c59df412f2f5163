"""Tool-call parsing as Ollama does it (its tools/tools.go), for the Ollama double. Test tooling, not Ollama.

Facts read in Ollama's source (tools/template.go, tools/tools.go), kept here because the shared reference is
read-only:
- the tag comes from the model's TEMPLATE (model_serving.serve.ollama.tooltag.ollama_tag: the first text in the
  first `{{ if .ToolCalls }}` written as a field); `{` when there is none;
- text before the tag is content; with the tag `{` (or `[`) a reply that has anything but whitespace before it is
  all content, and no call is parsed from it;
- after the tag: a tool is the first of the request's tool names found in the text (the longest at one place); its
  arguments are the first JSON object after it that parses: the object's `arguments` or `parameters` (an object, or a
  string holding one) when it has a `name`, else the value under the tool's name, else such an object nested inside,
  else the object itself;
- several calls are read one after another; what follows the last call is dropped (only `{`/`[` tags end parsing at
  the matching brace and give the rest back as content).
"""

from __future__ import annotations

import json
from typing import Any


def parse_reply(text: str, tag: str, tools: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(content, tool calls) of a whole reply, as Ollama's parser leaves them once the reply is complete."""
    at = text.find(tag)
    if at < 0:
        return text, []
    content, rest = text[:at], text[at:]
    if tag in ("{", "[") and content.strip():
        return text, []
    calls: list[dict[str, Any]] = []
    names = [t["function"]["name"] for t in tools if t.get("function", {}).get("name")]
    while True:
        found = _find_tool(names, rest)
        if found is None:
            break
        name, end = found
        args, args_end = _find_arguments(name, rest)
        if args is None:
            break
        calls.append({"function": {"index": len(calls), "name": name, "arguments": args}})
        rest = rest[max(end, args_end):]
    if not calls:
        return (content + rest if tag in ("{", "[") else content), []
    return content, calls


def _find_tool(names: list[str], buf: str) -> tuple[str, int] | None:
    best: tuple[int, str] | None = None
    for name in names:
        pos = buf.find(name)
        if pos >= 0 and (best is None or pos < best[0] or (pos == best[0] and len(name) > len(best[1]))):
            best = (pos, name)
    return None if best is None else (best[1], best[0] + len(best[1]))


def _find_arguments(name: str, buf: str) -> tuple[dict[str, Any] | None, int]:
    start, depth, in_string, escaped = -1, 0, False, False
    for i, c in enumerate(buf):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif c == "{":
            start = i if depth == 0 else start
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
            if depth == 0 and start >= 0:
                try:
                    data = json.loads(buf[start:i + 1])
                except ValueError:
                    start = -1
                    continue
                if isinstance(data, dict):
                    found, ok = _arguments_in(name, data)  # a `name` without arguments is no call at all
                    return (found if ok else data), i + 1
    return None, 0


def _arguments_in(name: str, obj: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    def as_map(value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
        return None

    if "name" in obj:
        for key in ("arguments", "parameters"):
            if (found := as_map(obj.get(key))) is not None:
                return found, True
        return None, True
    if (found := as_map(obj.get(name))) is not None:
        return found, True
    for value in obj.values():
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, dict):
                result, ok = _arguments_in(name, child)
                if ok:
                    return result, True
    return None, False
