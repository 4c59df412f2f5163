"""How the probe asks vLLM: its /tokenize renders the chat with the checkpoint's template and shows the tokens.

vLLM 0.32's /tokenize takes `messages` and returns the prompt tokens it would evaluate; /detokenize turns them back
into the rendered text. Both are compared with the checkpoint's own chat template rendered here (as transformers
does) and tokenized by transformers in our environment: the text must be equal, and so must the token ids.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jinja2

from model_serving.checkpoint.inspect import chat_template, read_json
from model_serving.errors import ServingError
from model_serving.serve import probe_checks as probe
from model_serving.serve.chat_features import ChatFeatures, chat_features, split_reasoning
from model_serving.serve.completion_probe import probe_completion
from model_serving.serve.registry import ServedModel, get_model
from model_serving.settings import Settings
from model_serving.util.chat_template import TemplateRejected, render

PROBE_TIMEOUT_S = 180.0  # one short answer from vLLM on a busy CPU
MAX_TOKENIZER_BYTES = 64 << 20


def _post(client: httpx.Client, model: ServedModel, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = client.post(path, json=body)
    except httpx.HTTPError as exc:
        raise ServingError(f"vLLM for {model.name} did not answer {path} ({type(exc).__name__}).",
                           f"Check that it still runs (`model-serving serve list`); its log is {model.log_path}") from None
    if reply.status_code != 200:
        raise ServingError(f"vLLM for {model.name} answered HTTP {reply.status_code} to {path}.", f"Read its log at {model.log_path}",
                           detail=reply.text[:500])
    data: dict[str, Any] = reply.json()
    return data


def _special(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else value or ""


def _vocab(folder: Path) -> set[str]:
    """The tokenizer's single tokens that could be tags: its added tokens, and the BPE vocabulary's entries with a '<'."""
    path = folder / "tokenizer.json"
    if not path.is_file() or path.stat().st_size > MAX_TOKENIZER_BYTES:
        return set()
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        return set()
    vocab = (data.get("model") or {}).get("vocab") if isinstance(data, dict) else None
    tags = {t for t in vocab if t.startswith("<")} if isinstance(vocab, dict) else set()
    return tags | {t.get("content", "") for t in data.get("added_tokens") or [] if isinstance(t, dict)}


def checkpoint_features(folder: Path, given: str | Path | None = None) -> ChatFeatures:
    """The chat features of the template vLLM serves (the `given` file, else the checkpoint's), with the tokenizer
    deciding whether vLLM's reasoning parser can see the tags."""
    if given is not None:
        template: str | None = Path(given).read_text(encoding="utf-8")
    else:
        template, _ = chat_template(folder)
    return chat_features(template, _vocab(folder))


def reference_prompt(folder: Path, messages: list[dict[str, Any]], given: str | None = None) -> tuple[str | None, list[int] | None, list[str]]:
    """The checkpoint's template (or the `given` file vLLM was started with) rendered here, its token ids by transformers'
    tokenizer, and any problem doing so."""
    from transformers import AutoTokenizer

    tok_cfg = read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    template = Path(given).read_text(encoding="utf-8") if given else chat_template(folder, tok_cfg)[0]
    if not template:
        return None, None, ["the checkpoint has no chat template"]
    bos, eos = _special(tok_cfg.get("bos_token")), _special(tok_cfg.get("eos_token"))
    try:
        text = render(template, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)
    except (TemplateRejected, jinja2.TemplateError) as exc:
        return None, None, [f"the chat template could not be rendered here: {exc}"]
    ids = AutoTokenizer.from_pretrained(str(folder)).encode(text, add_special_tokens=False)
    return text, list(ids), []


def _reply(message: dict[str, Any], choice: dict[str, Any], usage: dict[str, Any], features: ChatFeatures) -> probe.Reply:
    answer, reasoning = message.get("content") or "", message.get("reasoning") or message.get("reasoning_content") or ""
    if features.reasoning and not features.reasoning_parser:
        reasoning, answer = split_reasoning(answer)  # vLLM left the block in the text; the answer is what follows it
    return probe.Reply(answer=answer, finish_reason=choice.get("finish_reason"), prompt_tokens=usage.get("prompt_tokens", 0),
                       completion_tokens=usage.get("completion_tokens", 0), reasoning=reasoning)


def _tool_check(client: httpx.Client, model: ServedModel, features: ChatFeatures) -> dict[str, Any]:
    """With the family's parser, vLLM must hand back a parsed call; without one, the result says tools are not supported.

    tool_choice "auto", so that the family's parser reads the model's own output (probe_checks says why)."""
    if not features.tool_parser:
        return {}
    body = _post(client, model, "/v1/chat/completions", {"model": model.name, **probe.VLLM_TOOL_REQUEST, "max_tokens": probe.REASONING_MAX_TOKENS})
    tools, call = probe.tool_call_check(body["choices"][0]["message"])
    return {"tools": tools, "tool_call": call}


def probe_vllm(settings: Settings, name: str, *, max_tokens: int = 96, messages: list[dict[str, Any]] | None = None,
               timeout_s: float = PROBE_TIMEOUT_S) -> probe.ProbeResult:
    """The served prompt equals the checkpoint's template (text and tokens); the model answers and stops."""
    model = get_model(settings, name)
    if model.state != "running" or model.engine != "vllm":
        raise ServingError(f"{name} is not a running vLLM model.", "Start it: model-serving serve start CHECKPOINT --engine vllm --name NAME")
    if model.completions_only:
        return probe_completion(model, timeout_s=timeout_s)
    messages = messages or probe.PROBE_MESSAGES
    started = time.perf_counter()
    features = checkpoint_features(Path(model.source), model.chat_template_file)
    max_tokens = max(max_tokens, probe.REASONING_MAX_TOKENS) if features.reasoning else max_tokens
    ours, our_ids, problems = reference_prompt(Path(model.source), messages, model.chat_template_file)
    with httpx.Client(base_url=model.base_url, timeout=timeout_s) as client:
        served = _post(client, model, "/tokenize", {"model": name, "messages": messages, "add_generation_prompt": True})
        ids = served.get("tokens") or []
        rendered = _post(client, model, "/detokenize", {"model": name, "tokens": ids}).get("prompt")
        body = _post(client, model, "/v1/chat/completions", {"model": name, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
        tools = (probe.tools_not_checked() or _tool_check(client, model, features)) if features.tools else {}
    # The ids are what the model reads; the text is vLLM's decoding of them, which a SentencePiece tokenizer need not
    # give back byte for byte, so it only names how the ids differ
    matches = None if ours is None else ids == our_ids
    if matches is False:
        whose = "the given chat template file" if model.chat_template_file else "the checkpoint's own chat template"
        problems.append(f"vLLM renders the chat differently from {whose}"
                        + ("" if rendered == ours else " (the text differs)") + ("" if ids == our_ids else " (the token ids differ)"))
    choice = body["choices"][0]
    reply = _reply(choice["message"], choice, body.get("usage") or {}, features)
    return probe.result("vllm", name, reply, expected_prompt_tokens=len(our_ids) if our_ids is not None else None, max_tokens=max_tokens,
                        messages=messages, seconds=time.perf_counter() - started, extra_problems=problems, template_matches=matches,
                        rendered_prompt=rendered, reasoning_expected=features.reasoning, unsupported=features.unsupported("vllm"), **tools)
