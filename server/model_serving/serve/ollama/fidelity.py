"""Template fidelity: does Ollama build the same prompt the checkpoint's Jinja template does?

Two checks over one fixed set of conversations:
- `check_rendered`: render our Go TEMPLATE with a Go renderer (Go's own text/template, given by
  the caller) and compare it with the Jinja prompt character for character, showing the first
  difference.
- `check_live`: against a registered model, compare each conversation's `prompt_eval_count` with
  the token count of the Jinja prompt; this needs no Go, so it runs on a user's machine.

`REASONING` and `REASONING_LAST` add reasoning turns (transformers' `reasoning_content`, Ollama's
`thinking`) for templates that keep or drop earlier reasoning; the template corpus uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, Field

from model_serving.util.chat_template import TemplateRejected, render

# Renders a Go TEMPLATE for Ollama-shaped messages and tools.
GoRenderer = Callable[[str, list[dict[str, Any]], list[dict[str, Any]] | None], str]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]},
    },
}


class Conversation(BaseModel):
    name: str
    messages: list[dict[str, Any]]
    add_generation_prompt: bool = True
    tools: list[dict[str, Any]] | None = None


CONVERSATIONS: list[Conversation] = [
    Conversation(name="system+user", messages=[
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]),
    Conversation(name="user only", messages=[{"role": "user", "content": "Hello! Who are you?"}]),
    Conversation(name="multi-turn", messages=[
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": "Name a primary colour."},
        {"role": "assistant", "content": "Red is a primary colour."},
        {"role": "user", "content": "Name another one."},
    ]),
    Conversation(name="no generation prompt", add_generation_prompt=False, messages=[
        {"role": "user", "content": "Say yes."},
        {"role": "assistant", "content": "Yes."},
    ]),
    Conversation(name="tools", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "name": "get_weather", "content": "22 C and sunny"},
    ]),
]


# A reasoning turn: transformers templates read the reasoning of an earlier turn from
# `reasoning_content`, some (Solar Open, Laguna) from vLLM's `reasoning`, some (LFM2) from `thinking`; Ollama's API carries
# it as `thinking`, its one field, which a converted TEMPLATE reads under any of these names, so the Jinja side gets the
# text under all three.
REASONING = Conversation(name="reasoning", messages=[
    {"role": "user", "content": "Is 17 prime?"},
    {"role": "assistant", "reasoning_content": "17 has no divisor between 2 and 4.", "reasoning": "17 has no divisor between 2 and 4.",
     "thinking": "17 has no divisor between 2 and 4.", "content": "Yes, 17 is prime."},
    {"role": "user", "content": "And 21?"},
])
# ...and one that ends in the reasoning answer itself, which reasoning templates write out in full.
REASONING_LAST = Conversation(name="reasoning, last turn", add_generation_prompt=False, messages=[
    {"role": "user", "content": "Is 17 prime?"},
    {"role": "assistant", "reasoning_content": "17 has no divisor between 2 and 4.", "reasoning": "17 has no divisor between 2 and 4.",
     "thinking": "17 has no divisor between 2 and 4.", "content": "Yes, 17 is prime."},
])


def to_ollama_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """transformers/OpenAI-style messages as Ollama's /api/chat takes them."""
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("reasoning_content"):
            item["thinking"] = m["reasoning_content"]
        if m.get("tool_calls"):
            item["tool_calls"] = [{"function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}} for c in m["tool_calls"]]
        if m["role"] == "tool" and m.get("name"):
            item["tool_name"] = m["name"]
        out.append(item)
    return out


class Difference(BaseModel):
    index: int = Field(description="character offset of the first difference")
    line: int
    column: int
    expected: str = Field(description="Jinja prompt around the difference")
    got: str = Field(description="Ollama prompt around the difference")


class FidelityCase(BaseModel):
    conversation: str
    status: Literal["equal", "different", "not applicable"]
    reason: str = ""
    difference: Difference | None = None
    expected_tokens: int | None = None
    prompt_eval_count: int | None = None


class FidelityReport(BaseModel):
    method: Literal["go-render", "prompt-eval-count"]
    cases: list[FidelityCase]
    notes: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "different" for c in self.cases) and any(c.status == "equal" for c in self.cases)

    def failures(self) -> list[FidelityCase]:
        return [c for c in self.cases if c.status == "different"]

    def describe(self) -> str:
        lines = []
        for case in self.cases:
            line = f"{case.conversation}: {case.status}"
            if case.reason:
                line += f" ({case.reason})"
            if case.difference:
                d = case.difference
                line += f"\n  first difference at line {d.line}, column {d.column}:\n    jinja:  {d.expected!r}\n    ollama: {d.got!r}"
            lines.append(line)
        return "\n".join(lines)


def first_difference(expected: str, got: str, context: int = 24) -> Difference | None:
    if expected == got:
        return None
    index = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), min(len(expected), len(got)))
    line = expected.count("\n", 0, index) + 1
    column = index - (expected.rfind("\n", 0, index) + 1) + 1
    lo = max(0, index - context)
    return Difference(index=index, line=line, column=column, expected=expected[lo: index + context], got=got[lo: index + context])


def applicable(conversations: Sequence[Conversation], template_uses_tools: bool) -> list[Conversation]:
    return [c for c in conversations if c.tools is None or template_uses_tools]


def jinja_prompt(source: str, conv: Conversation, bos: str, eos: str) -> str:
    return render(source, conv.messages, add_generation_prompt=conv.add_generation_prompt, bos_token=bos, eos_token=eos, tools=conv.tools)


def _reference(source: str, conv: Conversation, sent: Conversation, *, bos: str, eos: str, drop_bos: bool, template_uses_tools: bool) -> str | FidelityCase:
    """The Jinja prompt for `sent` (leading BOS dropped if asked), or the reason `conv` cannot be compared."""
    if conv.tools is not None and not template_uses_tools:
        return FidelityCase(conversation=conv.name, status="not applicable", reason="the template has no tool support")
    try:
        prompt = jinja_prompt(source, sent, bos, eos)
    except TemplateRejected as exc:
        return FidelityCase(conversation=conv.name, status="not applicable", reason=f"the Jinja template rejects it: {exc}")
    except (TypeError, ValueError, LookupError, jinja2.TemplateError) as exc:
        # e.g. a template that concatenates tool-call arguments as a string cannot render dict arguments
        return FidelityCase(conversation=conv.name, status="not applicable", reason=f"the Jinja template cannot render it: {exc}")
    return prompt[len(bos):] if drop_bos and bos and prompt.startswith(bos) else prompt


def check_rendered(jinja_source: str, go_template: str, renderer: GoRenderer, *, bos: str, eos: str, bos_left_to_runtime: bool,
                   template_uses_tools: bool, conversations: Sequence[Conversation] = CONVERSATIONS, notes: Sequence[str] = ()) -> FidelityReport:
    """Compare Go-rendered and Jinja-rendered prompts, character for character."""
    cases = []
    for conv in conversations:
        # with the BOS left to the runtime, the Go prompt starts after it
        expected = _reference(jinja_source, conv, conv, bos=bos, eos=eos, drop_bos=bos_left_to_runtime, template_uses_tools=template_uses_tools)
        if isinstance(expected, FidelityCase):
            cases.append(expected)
            continue
        got = renderer(go_template, to_ollama_messages(conv.messages), conv.tools)
        diff = first_difference(expected, got)
        cases.append(FidelityCase(conversation=conv.name, status="equal" if diff is None else "different", difference=diff))
    return FidelityReport(method="go-render", cases=cases, notes=list(notes))


def check_live(chat_count: Callable[[Conversation], int], jinja_source: str, tokenize: Callable[[str, bool], list[int]], *, bos: str, eos: str,
               add_bos: bool, template_uses_tools: bool, system: str | None = None, conversations: Sequence[Conversation] = CONVERSATIONS) -> FidelityReport:
    """Compare each conversation's prompt_eval_count (from `chat_count`) with the Jinja prompt's token count.

    Only conversations that end in a generation prompt can be sent as a chat; a Modelfile SYSTEM
    is added the way Ollama adds it, when the conversation has no system message.
    """
    cases = []
    for conv in conversations:
        if not conv.add_generation_prompt:
            cases.append(FidelityCase(conversation=conv.name, status="not applicable", reason="a chat request always ends with a generation prompt"))
            continue
        sent = conv
        if system and conv.messages[0]["role"] != "system":
            sent = conv.model_copy(update={"messages": [{"role": "system", "content": system}, *conv.messages]})
        # one BOS is right, and the runtime adds it
        prompt = _reference(jinja_source, conv, sent, bos=bos, eos=eos, drop_bos=add_bos, template_uses_tools=template_uses_tools)
        if isinstance(prompt, FidelityCase):
            cases.append(prompt)
            continue
        expected = len(tokenize(prompt, add_bos))
        count = chat_count(conv)
        status: Literal["equal", "different"] = "equal" if count == expected else "different"
        reason = ""
        if count == expected + 1 and add_bos:
            reason = "one token more than expected: a doubled BOS"
        elif count < expected:
            reason = "fewer tokens than expected: the prompt was truncated or the template drops text"
        elif count > expected:
            reason = "more tokens than expected: the template adds text the Jinja template does not"
        cases.append(FidelityCase(conversation=conv.name, status=status, reason=reason, expected_tokens=expected, prompt_eval_count=count))
    return FidelityReport(method="prompt-eval-count", cases=cases)
