"""The probe every engine shares: a served model must answer, stop by itself, and see its whole prompt.

How each engine asks is its own `*_probe.py` (embedded/llamacpp_probe, vllm/vllm_probe, ollama/ollama_probe).

Each engine supplies only how to ask (send the messages, hand back a `Reply`) and how to count
tokens; the checks and the result are the same for both. The prompt-token check compares the
engine's own count with the token count of the prompt the model's Jinja template builds: fewer
means truncation, one more a doubled BOS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from model_serving.requests import DeployTarget
from model_serving.util.chat_template import render

PROBE_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
REASONING_MAX_TOKENS = 512  # a reasoning model thinks before it answers: the probe leaves it room to finish both
# The tool the probe offers, with an enum that pins the arguments. llama.cpp gets tool_choice "required": it holds the
# model to a grammar of the template's own call format (for the formats its autoparser recognises) and parses that.
# vLLM gets "auto" (VLLM_TOOL_REQUEST): for "required" most of its parsers are bypassed (the model is held to a bare
# JSON array, parsed as JSON), which would pass whatever the family's parser can read. A model that was never taught
# to call tools may answer in text, and the check fails: a model a user serves for tools must make the call.
# MODEL_SERVING_PROBE_TOOLS=0 leaves the check out (the result says so).
PROBE_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris"]}}, "required": ["city"]}}}
TOOL_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
TOOL_REQUEST: dict[str, Any] = {"messages": TOOL_MESSAGES, "tools": [PROBE_TOOL], "tool_choice": "required", "temperature": 0}
VLLM_TOOL_REQUEST: dict[str, Any] = {**TOOL_REQUEST, "tool_choice": "auto"}
Tokenize = Callable[[str, bool], list[int]]
PROBE_TOOLS_ENV = "MODEL_SERVING_PROBE_TOOLS"


def tools_not_checked() -> dict[str, Any] | None:
    """The probe result's `tools` when the configuration leaves the tool-call check out, else None."""
    if os.environ.get(PROBE_TOOLS_ENV, "1").strip() == "0":
        return {"tools": f"not checked ({PROBE_TOOLS_ENV}=0)"}
    return None


class ProbeResult(BaseModel):
    """Evidence that a served model chats as its template says: it answers, stops, and sees every prompt token."""

    engine: DeployTarget
    model: str
    ok: bool
    problems: list[str] = Field(default_factory=list)
    prompt: str = Field(description="the question asked")
    answer: str = Field(description="the model's answer (first 500 characters)")
    finish_reason: str | None = Field(description="'stop' when the model ended its turn itself")
    prompt_tokens: int = Field(description="prompt tokens the engine evaluated")
    expected_prompt_tokens: int | None = Field(None, description="token count of the Jinja-built prompt, when known")
    truncated: bool | None = None
    double_bos: bool | None = None
    completion_tokens: int = 0
    tokens_per_second: float | None = None
    template_matches: bool | None = Field(None, description="the engine's rendered prompt equals the Jinja template's (when the engine shows it)")
    rendered_prompt: str | None = None
    capabilities: list[str] = Field(default_factory=list, description="what the engine lists for the model (Ollama)")
    tools_expected: bool | None = None
    reasoning_expected: bool | None = Field(None, description="the chat template thinks in <think> blocks")
    reasoning_chars: int | None = Field(None, description="characters of reasoning the engine separated from the answer")
    tools: str | None = Field(None, description="the tool-call check: 'passed' or what failed; None when not asked")
    tool_call: dict[str, Any] | None = Field(None, description="the parsed tool call: name and arguments")
    unsupported: list[str] = Field(default_factory=list, description="what this engine cannot do for this template (reasoning, tools)")
    seconds: float = 0.0

    def features(self) -> list[str]:
        """One line per chat feature the template has: what the probe proved, or what the engine cannot do."""
        lines = [f"reasoning: separated from the answer ({self.reasoning_chars or 0} characters)"] \
            if self.reasoning_expected and not any(u.startswith("reasoning") for u in self.unsupported) else []
        return lines + ([f"tools: {self.tools}"] if self.tools else []) + self.unsupported


@dataclass
class Reply:
    """What one engine answered to the probe chat."""

    answer: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int = 0
    decode_seconds: float | None = None
    stop_tokens: list[str] = field(default_factory=list)
    reasoning: str = ""  # what the engine handed back apart from the answer (reasoning_content, reasoning, thinking)


def jinja_prompt(jinja: str, messages: list[dict[str, Any]], *, bos: str, eos: str, add_bos: bool, system: str | None = None) -> str:
    """The prompt the runtime should evaluate: the Jinja rendering, its leading BOS left to the runtime when it adds one."""
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    prompt = render(jinja, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)
    if add_bos and bos and prompt.startswith(bos):
        prompt = prompt[len(bos):]  # the runtime's own BOS replaces the template's
    return prompt


def expected_tokens(jinja: str, messages: list[dict[str, Any]], tokenize: Tokenize, *, bos: str, eos: str, add_bos: bool,
                    system: str | None = None) -> int:
    """Tokens the runtime should evaluate for a chat: one BOS at most, the Jinja prompt, nothing else."""
    return len(tokenize(jinja_prompt(jinja, messages, bos=bos, eos=eos, add_bos=add_bos, system=system), add_bos))


def reasoning_problems(reply: Reply) -> list[str]:
    """A reasoning model's reply: the engine kept the reasoning apart, and an answer is left once it is removed."""
    problems = []
    if "<think>" in reply.answer or "</think>" in reply.answer:
        problems.append("the reasoning came back inside the answer text: the engine did not separate it "
                        "(llama.cpp: --jinja with --reasoning-format deepseek; vLLM: --reasoning-parser; Ollama: think)")
    elif not reply.answer.strip() and reply.reasoning:
        problems.append(f"the answer is empty once the reasoning ({len(reply.reasoning)} characters) is removed: "
                        "the model spent its tokens thinking or never closed </think>")
    return problems


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    """The few JSON Schema rules the probe's own tool uses: type, enum, properties and required."""
    kinds: dict[str, type | tuple[type, ...]] = {"object": dict, "string": str, "array": list, "boolean": bool, "number": (int, float),
                                                 "integer": int}
    if "type" in schema and not isinstance(value, kinds.get(schema["type"], object)):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return all(k in value for k in schema.get("required", [])) and all(_matches(v, props[k]) for k, v in value.items() if k in props)
    return True


def tool_call_check(message: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """('passed', the call) when the reply carries a parsed call of the probe's tool with arguments its schema accepts."""
    calls = message.get("tool_calls") or []
    if not calls:
        text = (message.get("content") or "")[:120]
        return f"failed: the reply carries no tool_calls (the text was {text!r}): the call came back as text or not at all", None
    function = calls[0].get("function") or {}
    wanted = PROBE_TOOL["function"]
    if function.get("name") != wanted["name"]:
        return f"failed: the call names {function.get('name')!r}, not {wanted['name']!r}", None
    arguments = function.get("arguments")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return f"failed: the call's arguments are not valid JSON ({str(arguments)[:120]!r})", None
    if not _matches(parsed, wanted["parameters"]):
        return f"failed: the call's arguments {parsed!r} do not match the tool's schema", None
    return "passed", {"name": wanted["name"], "arguments": parsed}


def check(reply: Reply, *, expected_prompt_tokens: int | None, max_tokens: int) -> tuple[list[str], bool | None, bool | None]:
    """The shared checks; returns the problems, and whether the prompt was truncated or got a second BOS."""
    problems: list[str] = []
    if not reply.answer.strip() and not reply.reasoning:
        problems.append("the model returned an empty answer")
    if reply.finish_reason != "stop":
        problems.append(f"the model did not stop by itself within {max_tokens} tokens (finish_reason={reply.finish_reason!r}): "
                        "check the EOS/EOT tokens and the chat template")
    problems += [f"the stop token {stop!r} leaked into the answer text" for stop in reply.stop_tokens if stop and stop in reply.answer]
    if expected_prompt_tokens is None:
        return problems, None, None
    truncated = reply.prompt_tokens < expected_prompt_tokens
    double_bos = reply.prompt_tokens == expected_prompt_tokens + 1
    if truncated:
        problems.append(f"the engine evaluated {reply.prompt_tokens} prompt tokens but the prompt has {expected_prompt_tokens}: "
                        "it was truncated or the template drops text")
    elif reply.prompt_tokens != expected_prompt_tokens:
        why = "a doubled BOS token" if double_bos else "the template adds text"
        problems.append(f"the engine evaluated {reply.prompt_tokens} prompt tokens, expected {expected_prompt_tokens} ({why})")
    return problems, truncated, double_bos


def result(engine: DeployTarget, model: str, reply: Reply, *, expected_prompt_tokens: int | None, max_tokens: int,
           messages: list[dict[str, Any]], seconds: float, extra_problems: list[str] | None = None, **details: Any) -> ProbeResult:
    """Run the shared checks on an engine's reply and build the one result shape."""
    problems, truncated, double_bos = check(reply, expected_prompt_tokens=expected_prompt_tokens, max_tokens=max_tokens)
    problems += extra_problems or []
    if details.get("reasoning_expected") or reply.reasoning:
        problems += reasoning_problems(reply)
        details.setdefault("reasoning_chars", len(reply.reasoning))
    if str(details.get("tools") or "").startswith("failed"):
        problems.append(f"tool call {details['tools']}")
    tps = reply.completion_tokens / reply.decode_seconds if reply.decode_seconds else None
    return ProbeResult(
        engine=engine, model=model, ok=not problems, problems=problems, prompt=messages[-1]["content"], answer=reply.answer[:500],
        finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens, expected_prompt_tokens=expected_prompt_tokens,
        truncated=truncated, double_bos=double_bos, completion_tokens=reply.completion_tokens,
        tokens_per_second=round(tps, 2) if tps else None, seconds=round(seconds, 3), **details,
    )
