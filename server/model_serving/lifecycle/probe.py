"""The probe after a switch: the public name must answer as the version it now points at does (greedy, one question).

Greedy answers are compared exactly, so both must be computed alike: a prompt served partly from an engine's prompt
cache runs its prefix in other batch shapes, and a near tie can then flip a token. llama-server is asked with
`cache_prompt` off; Ollama has no such option, so each name is unloaded before it is asked (the public name and the
version's tag share one runner once they point at the same blobs, which a switch loads anew anyway).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field

from model_serving.serve.probe_checks import PROBE_MESSAGES
from model_serving.settings import Settings

from . import store
from .resolve import base_url

MAX_TOKENS = 48
TIMEOUT_S = 120.0  # the gateway may load the version's instance on this first request


class ProbeComparison(BaseModel):
    question: str
    public_answer: str = Field(description="The answer through the public name, where clients ask")
    version_answer: str = Field(description="The answer of the version itself (its own engine, or its Ollama tag)")
    same: bool


def _openai(url: str, model: str) -> str:
    body: dict[str, Any] = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": MAX_TOKENS, "temperature": 0, "seed": 0,
                            "cache_prompt": False}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT_S)
    reply.raise_for_status()
    return str(reply.json()["choices"][0]["message"].get("content") or "")


def _ollama(settings: Settings, model: str) -> str:
    from model_serving.serve.ollama.client import OllamaClient

    with OllamaClient(settings) as client:
        client.unload(model)
        return client.chat(model, PROBE_MESSAGES, options={"temperature": 0, "seed": 0, "num_predict": MAX_TOKENS}).content


def compare(settings: Settings, name: str, version: store.Version, endpoint: str) -> ProbeComparison:
    """Ask the public name (at `endpoint`, where clients ask) and the version itself the deploy's probe question, greedily."""
    if version.target == "ollama":
        public, direct = _ollama(settings, name), _ollama(settings, version.served_as)
    else:
        own = base_url(settings, version)
        assert own is not None  # the switch checked that it is served
        public, direct = _openai(endpoint.removesuffix("/v1/chat/completions"), name), _openai(own, version.served_as)
    return ProbeComparison(question=str(PROBE_MESSAGES[0]["content"]), public_answer=public, version_answer=direct, same=public == direct)
