"""The probe of a model served for completions only (no chat template): one plain /v1/completions request.

A base model has no end-of-turn to stop at, so the checks differ from the chat probe's: the text must not be
empty, the request must not fail, and generation must end at max_tokens (finish_reason 'length') or at an
end-of-sequence token ('stop'), never run past what was asked.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from model_serving.errors import ServingError
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.registry import ServedModel

COMPLETION_PROMPT = "The capital of France is"
COMPLETION_MAX_TOKENS = 16


def probe_completion(model: ServedModel, *, max_tokens: int = COMPLETION_MAX_TOKENS, timeout_s: float = 120.0) -> ProbeResult:
    """Ask `model` (llama.cpp or vLLM, both OpenAI /v1/completions) to continue a prompt; check the answer."""
    started = time.perf_counter()
    body = {"model": model.name, "prompt": COMPLETION_PROMPT, "max_tokens": max_tokens, "temperature": 0}
    try:
        with httpx.Client(base_url=model.base_url, timeout=timeout_s) as client:
            reply = client.post("/v1/completions", json=body)
    except httpx.HTTPError as exc:
        raise ServingError(f"The engine for {model.name} did not answer /v1/completions ({type(exc).__name__}).",
                           f"Check that it still runs (`model-serving serve list`); its log is {model.log_path}") from None
    problems: list[str] = []
    text, finish = "", None
    usage: dict[str, Any] = {}
    if reply.status_code != 200:
        problems.append(f"/v1/completions answered HTTP {reply.status_code}: {reply.text[:200]}")
    else:
        data = reply.json()
        choice, usage = (data.get("choices") or [{}])[0], data.get("usage") or {}
        text, finish = choice.get("text") or "", choice.get("finish_reason")
        if not text.strip():
            problems.append("the completion is empty")
        if finish not in ("length", "stop"):
            problems.append(f"the completion ended with finish_reason={finish!r}, not at max_tokens or an end-of-sequence token")
        if usage.get("completion_tokens", 0) > max_tokens:
            problems.append(f"the engine generated {usage['completion_tokens']} tokens, more than the {max_tokens} asked for")
    engine = "vllm" if model.engine == "vllm" else "embedded"
    return ProbeResult(engine=engine, model=model.name, ok=not problems, problems=problems, prompt=COMPLETION_PROMPT, answer=text[:500],
                       finish_reason=finish, prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
                       seconds=round(time.perf_counter() - started, 3))
