"""Ask one version one eval case, greedily: temperature 0, a fixed seed, the same request for both versions.

Requests go to the engine's OpenAI-compatible API under the version's served model name. A request that fails (an HTTP
error, a prompt too long for the version's context) is an answer that fails its check, and the report counts it, so
one broken version is a result, not a crash of the whole eval.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from model_serving.lifecycle.eval_targets import EvalTarget
from model_serving.lifecycle.evalset import EvalCase

REQUEST_TIMEOUT_S = 120.0


class Asked(BaseModel):
    text: str = ""
    finish_reason: str | None = None
    error: str | None = None


def _body(target: EvalTarget, case: EvalCase, *, max_tokens: int, seed: int) -> tuple[str, dict[str, Any]]:
    common: dict[str, Any] = {"model": target.served_as, "temperature": 0.0, "top_k": 1, "seed": seed, "max_tokens": max_tokens, "stream": False}
    if target.completions_only:
        return "/v1/completions", {**common, "prompt": case.prompt or ""}
    return "/v1/chat/completions", {**common, "messages": case.chat()}


def _text(route: str, payload: dict[str, Any]) -> tuple[str, str | None]:
    choice = (payload.get("choices") or [{}])[0]
    if route == "/v1/completions":
        return str(choice.get("text") or ""), choice.get("finish_reason")
    return str((choice.get("message") or {}).get("content") or ""), choice.get("finish_reason")


def ask(client: httpx.Client, target: EvalTarget, case: EvalCase, *, max_tokens: int, seed: int) -> Asked:
    """One greedy answer, or the reason there is none."""
    if target.completions_only and case.messages is not None:
        return Asked(error=f"{target.served_as} is served for completions only; a messages case cannot be asked")
    route, body = _body(target, case, max_tokens=case.max_tokens or max_tokens, seed=seed)
    try:
        response = client.post(target.base_url.rstrip("/") + route, json=body, timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Asked(error=f"{type(exc).__name__}: {str(exc)[:200]}")
    if response.status_code != 200:
        return Asked(error=f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        text, finish = _text(route, response.json())
    except ValueError:
        return Asked(error="the answer was not JSON")
    return Asked(text=text.strip(), finish_reason=finish)
