"""How the probe asks the embedded engine: llama.cpp's own server renders, tokenizes and answers.

The server shows the prompt it builds (/apply-template), so besides the shared checks this probe
also compares that text with the GGUF's Jinja template rendered here, and counts the expected
prompt tokens with the server's own tokenizer (/tokenize).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jinja2

from model_serving.checkpoint.inspect import GGUFInfo, inspect_gguf
from model_serving.errors import ServingError
from model_serving.serve import probe_checks as probe
from model_serving.serve.chat_features import chat_features
from model_serving.serve.completion_probe import probe_completion
from model_serving.serve.registry import ServedModel, get_model
from model_serving.settings import Settings
from model_serving.util.chat_template import TemplateRejected

PROBE_TIMEOUT_S = 120.0  # one short answer on a loaded CPU


def _post(client: httpx.Client, model: ServedModel, path: str, body: dict[str, Any]) -> httpx.Response:
    try:
        return client.post(path, json=body)
    except httpx.TimeoutException:
        raise ServingError(f"The served model {model.name} did not answer {path} in time.", f"Read the engine log at {model.log_path}") from None
    except httpx.TransportError as exc:
        raise ServingError(f"The connection to the engine for {model.name} broke during {path} ({type(exc).__name__}).",
                           f"Check that it still runs (`model-serving serve list`); its log is {model.log_path}") from None


def _template_evidence(client: httpx.Client, model: ServedModel, info: GGUFInfo, messages: list[dict[str, Any]]) -> tuple[str | None, bool | None, int | None, list[str]]:
    """The server's rendered prompt, whether it equals the Jinja rendering (of the template file the engine was given,
    else the GGUF's own), the expected prompt tokens, and problems."""
    rendered = _post(client, model, "/apply-template", {"messages": messages}).json().get("prompt")
    template = _given_template(model) or info.chat_template
    if not template or rendered is None:
        return rendered, None, None, []
    bos, eos, add_bos = info.bos_token or "", info.eos_token or "", bool(info.add_bos_token)
    try:
        ours = probe.jinja_prompt(template, messages, bos=bos, eos=eos, add_bos=add_bos)
    except (TemplateRejected, jinja2.TemplateError) as exc:
        return rendered, None, None, [f"the chat template could not be rendered here: {exc}"]
    theirs = rendered[len(bos):] if add_bos and bos and rendered.startswith(bos) else rendered
    whose = "the given chat template file" if model.chat_template_file else "the GGUF's own chat template"
    problems = [] if ours == theirs else [f"the server formats the chat differently from {whose}"]

    def tokenize(text: str, special: bool) -> list[int]:
        tokens: list[int] = _post(client, model, "/tokenize", {"content": text, "add_special": special, "parse_special": True}).json().get("tokens", [])
        return tokens

    return rendered, ours == theirs, len(tokenize(ours, add_bos)), problems


def _given_template(model: ServedModel) -> str | None:
    """The text of the template file the engine was started with (None: it uses the GGUF's)."""
    if not model.chat_template_file:
        return None
    try:
        return Path(model.chat_template_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ServingError(f"The chat template file {model.chat_template_file} that {model.name} was started with cannot be read.",
                           "Restore the file, or restart the model with another --chat-template.") from None


def _chat(client: httpx.Client, model: ServedModel, body: dict[str, Any]) -> dict[str, Any]:
    reply = _post(client, model, "/v1/chat/completions", {"model": model.name, **body})
    if reply.status_code != 200:
        raise ServingError(f"The served model {model.name} answered HTTP {reply.status_code} to a chat request.",
                           f"Read the engine log at {model.log_path}", detail=reply.text[:500])
    answer: dict[str, Any] = reply.json()
    return answer


def _ask(client: httpx.Client, model: ServedModel, messages: list[dict[str, Any]], max_tokens: int) -> probe.Reply:
    body = _chat(client, model, {"messages": messages, "max_tokens": max_tokens, "temperature": 0})
    choice, usage = body["choices"][0], body.get("usage", {})
    timings = body.get("timings") or {}
    decode = timings.get("predicted_ms")
    return probe.Reply(answer=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason"),
                       prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
                       decode_seconds=decode / 1000 if decode else None, stop_tokens=model.stop_tokens,
                       reasoning=choice["message"].get("reasoning_content") or "")


def _tool_check(client: httpx.Client, model: ServedModel) -> dict[str, Any]:
    """llama.cpp with --jinja parses calls in the template's own format and holds `required` to its grammar."""
    body = _chat(client, model, {**probe.TOOL_REQUEST, "max_tokens": probe.REASONING_MAX_TOKENS})
    tools, call = probe.tool_call_check(body["choices"][0]["message"])
    return {"tools": tools, "tool_call": call}


def probe_model(settings: Settings, name: str, *, max_tokens: int = 96, messages: list[dict[str, Any]] | None = None,
                timeout_s: float = PROBE_TIMEOUT_S) -> probe.ProbeResult:
    """Ask one question; the model must answer, stop on its own, and see the prompt its template defines."""
    return probe_served(get_model(settings, name), max_tokens=max_tokens, messages=messages, timeout_s=timeout_s)


def probe_served(model: ServedModel, *, max_tokens: int = 96, messages: list[dict[str, Any]] | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> probe.ProbeResult:
    """`probe_model` on a record in hand (a replica's, say): its base_url is the llama.cpp server asked."""
    name = model.name
    if model.state != "running":
        raise ServingError(f"The engine process for {name} is not running.", f"Register it again: model-serving register {model.source} --name {name}")
    if model.completions_only:
        return probe_completion(model, timeout_s=timeout_s)
    messages = messages or probe.PROBE_MESSAGES
    info = inspect_gguf(Path(model.source))
    features = chat_features(_given_template(model) or info.chat_template)
    max_tokens = max(max_tokens, probe.REASONING_MAX_TOKENS) if features.reasoning else max_tokens
    started = time.perf_counter()
    with httpx.Client(base_url=model.base_url, timeout=timeout_s) as client:
        rendered, matches, expected, problems = _template_evidence(client, model, info, messages)
        reply = _ask(client, model, messages, max_tokens)
        tools = (probe.tools_not_checked() or _tool_check(client, model)) if features.tools else {}
    return probe.result("embedded", name, reply, expected_prompt_tokens=expected, max_tokens=max_tokens, messages=messages,
                        seconds=time.perf_counter() - started, extra_problems=problems, template_matches=matches, rendered_prompt=rendered,
                        reasoning_expected=features.reasoning, **tools)
