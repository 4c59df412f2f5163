"""Modelfiles: write the one we register, and read (and validate) a user's, with line numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from model_serving.errors import InputError

# PARAMETER names Ollama reads, with their value types (api.Options / Runner in Ollama's source).
PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "use_mmap": bool, "num_thread": int, "draft_num_predict": int,
    "num_keep": int, "seed": int, "num_predict": int, "top_k": int, "top_p": float, "min_p": float, "typical_p": float,
    "repeat_last_n": int, "temperature": float, "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float, "stop": str,
}
INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires", "draft", "renderer", "parser")
MESSAGE_ROLES = ("system", "user", "assistant")


class ModelfileError(InputError):
    """A Modelfile that Ollama would refuse, with every problem and its line."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        first_line, first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"Modelfile line {first_line}: {first}{more}.", "Fix the lines listed and run the command again.",
                         detail="\n".join(f"line {n}: {msg}" for n, msg in problems))
        self.problems = problems


@dataclass
class Modelfile:
    from_: str
    parameters: list[tuple[str, Any]] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    adapter: str | None = None
    license: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    requires: str | None = None

    def parameter(self, name: str) -> list[Any]:
        return [v for n, v in self.parameters if n == name]

    def render(self) -> str:
        lines = [f"FROM {_word(self.from_, 'FROM')}"]
        if self.adapter:
            lines.append(f"ADAPTER {_word(self.adapter, 'ADAPTER')}")
        if self.template is not None:
            lines.append(f"TEMPLATE {_block(self.template, 'TEMPLATE')}")
        if self.system is not None:
            lines.append(f"SYSTEM {_block(self.system, 'SYSTEM')}")
        for name, value in self.parameters:
            lines.append(f"PARAMETER {name} {_param_text(value)}")
        for role, content in self.messages:
            if content and content == content.strip() and not any(ch in content for ch in '\n"'):
                shown = content
            elif "\n" in content:
                shown = _block(content, "MESSAGE")
            else:
                shown = json.dumps(content, ensure_ascii=False)
            lines.append(f"MESSAGE {role} {shown}")
        for text in self.license:
            lines.append(f"LICENSE {_block(text, 'LICENSE')}")
        if self.requires:
            lines.append(f"REQUIRES {_word(self.requires, 'REQUIRES')}")
        return "\n".join(lines) + "\n"

    def create_fields(self) -> dict[str, Any]:
        """The /api/create fields this Modelfile stands for (FROM and ADAPTER are resolved by the caller)."""
        body: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for name, value in self.parameters:
            if name == "stop":
                params.setdefault("stop", []).append(value)
            else:
                params[name] = value
        if params:
            body["parameters"] = params
        if self.template is not None:
            body["template"] = self.template
        if self.system is not None:
            body["system"] = self.system
        if self.license:
            body["license"] = self.license if len(self.license) > 1 else self.license[0]
        if self.messages:
            body["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        if self.requires:
            body["requires"] = self.requires
        return body


def _block(text: str, what: str) -> str:
    if '"""' in text or text.endswith('"'):
        raise InputError(f'The {what} text contains """ or ends with ", which a Modelfile cannot quote.', f'Remove those quotes from the {what.lower()}.')
    return f'"""{text}"""'


def _word(value: str, what: str) -> str:
    # a bare value ends at the line and loses its edge spaces, so anything else must go in a block to read back the same
    return _block(value, what) if "\n" in value or value != value.strip() else value


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def coerce_parameter(name: str, raw: str) -> Any:
    """The typed value of PARAMETER `name` `raw`; ValueError saying what is wrong."""
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ValueError(f"unknown parameter {name!r} (known: {', '.join(sorted(PARAMETER_TYPES))})")
    text = _unquote(raw.strip())
    if kind is str:
        return text
    if kind is bool:
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise ValueError(f"parameter {name} takes true or false, not {raw.strip()!r}")
    try:
        return int(text) if kind is int else float(text)
    except ValueError:
        raise ValueError(f"parameter {name} takes {'an integer' if kind is int else 'a number'}, not {raw.strip()!r}") from None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except json.JSONDecodeError:
            return text[1:-1]
    return text


_NAMED = ("parameter", "message")  # instructions whose value follows a name: PARAMETER num_ctx 4096


@dataclass
class _Entry:
    line: int
    instruction: str
    name: str
    value: str


def parse(text: str) -> Modelfile:
    """Read a Modelfile; ModelfileError lists every problem with its line number."""
    problems: list[tuple[int, str]] = []
    entries = _entries(text.replace("\r\n", "\n").split("\n"), problems)
    mf = Modelfile(from_="")
    for entry in entries:
        problem = _apply(mf, entry)
        if problem:
            problems.append((entry.line, problem))
    if not mf.from_ and not any(msg.startswith("FROM") for _, msg in problems):
        problems.append((1, "no FROM instruction: a Modelfile must name its base model or GGUF file"))
    if problems:
        raise ModelfileError(sorted(problems))
    return mf


def _entries(lines: list[str], problems: list[tuple[int, str]]) -> list[_Entry]:
    """The instructions of a Modelfile, with triple-quoted values joined; problems collects bad lines."""
    entries: list[_Entry] = []
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].lstrip()
        i += 1
        if not line.strip() or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        instruction = word.lower()
        rest = rest.lstrip() if '"""' in rest else rest.strip()
        if instruction not in INSTRUCTIONS:
            problems.append((number, f"unknown instruction {word!r} (expected one of {', '.join(w.upper() for w in INSTRUCTIONS)})"))
            continue
        name, value = "", rest
        if instruction in _NAMED:
            name, _, value = rest.partition(" ")
            value = value.strip()
        if value.startswith('"""'):
            quoted, i = _triple_quoted(lines, i, value[3:])
            if quoted is None:
                problems.append((number, f'{word.upper()} opens """ but it is never closed'))
                break
            value = quoted
        entries.append(_Entry(number, instruction, name, value))
    return entries


def _triple_quoted(lines: list[str], i: int, body: str) -> tuple[str | None, int]:
    """The text up to the closing triple quote (on this line or a later one) and the next line's index."""
    if '"""' in body:
        return body[: body.index('"""')], i
    chunk = [body]
    while i < len(lines) and '"""' not in lines[i]:
        chunk.append(lines[i])
        i += 1
    if i >= len(lines):
        return None, i
    chunk.append(lines[i][: lines[i].index('"""')])
    return "\n".join(chunk), i + 1


def _apply(mf: Modelfile, entry: _Entry) -> str | None:
    """Add one instruction to `mf`; the problem with it, if any."""
    instruction, value = entry.instruction, entry.value
    if instruction in _NAMED:
        if not entry.name or not value:
            return f"{instruction.upper()} needs a name and a value"
        if instruction == "parameter":
            try:
                mf.parameters.append((entry.name, coerce_parameter(entry.name, value)))
            except ValueError as exc:
                return str(exc)
        elif entry.name.lower() not in MESSAGE_ROLES:
            return f"MESSAGE role must be system, user or assistant, not {entry.name!r}"
        else:
            mf.messages.append((entry.name.lower(), _unquote(value)))
        return None
    if not value and instruction not in ("system", "template", "license"):
        return f"{instruction.upper()} needs a value"
    if instruction == "from":
        problem = "FROM appears more than once" if mf.from_ else None
        mf.from_ = value
        return problem
    if instruction == "license":
        mf.license.append(value)
    elif instruction in ("template", "system", "adapter", "requires"):
        setattr(mf, instruction, value)
    return None
