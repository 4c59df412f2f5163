"""Two versions of one name served at once on the embedded engine, and the gateway moving the name between them.

Needs the natively built llama-server (the gateway is llama.cpp's router mode behind our front); skips, saying so, without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_versions import marker_model

from model_serving.deploy.pipeline import deploy
from model_serving.lifecycle.history import history
from model_serving.lifecycle.probe import MAX_TOKENS
from model_serving.lifecycle.switch import canary, promote, rollback
from model_serving.requests import DeployRequest
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.gateway.llama_router import stop_gateway
from model_serving.serve.probe_checks import PROBE_MESSAGES
from model_serving.serve.registry import load_gateway
from model_serving.settings import Settings


@pytest.fixture
def live(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    build = native.find(settings)
    if build.kind != "native":
        pytest.skip(f"the gateway needs the native llama-server: {build.describe}")
    monkeypatch.delenv("MODEL_SERVING_GATEWAY", raising=False)
    yield settings
    for model in list_models(settings):
        stop_model(settings, model.name)
    stop_gateway(settings)


def ask(base_url: str, model: str) -> str:
    body = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": MAX_TOKENS, "temperature": 0, "seed": 0, "cache_prompt": False}
    reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=180)
    reply.raise_for_status()
    return str(reply.json()["choices"][0]["message"]["content"])


@pytest.mark.slow
def test_two_versions_served_at_once_canary_promote_rollback(live: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    bare, template = marker_model(smollm2_gguf, tmp_path)
    small = {"name": "smol", "target": "embedded", "bench": False, "ctx_size": 512, "parallel": 1}
    one = deploy(live, DeployRequest(source=str(smollm2_gguf), **small))
    two = deploy(live, DeployRequest(source=str(bare), chat_template=str(template), **small))
    assert (one.name, one.version, one.live) == ("smol", 1, True) and (two.name, two.version, two.live) == ("smol@2", 2, False)
    served = {m.name: m for m in list_models(live) if m.state == "running"}
    assert set(served) == {"smol", "smol@2"}  # both at once, each on its own engine
    first, second = ask(served["smol"].base_url, "smol"), ask(served["smol@2"].base_url, "smol@2")
    assert first != second, "the two versions must answer differently for the switch to show"
    gateway = load_gateway(live)
    assert gateway is not None and gateway.state == "running"
    assert ask(gateway.base_url, "smol") == first  # no route yet: the name is version 1

    tried = canary(live, "smol@2", 50)
    assert tried.canary is not None and tried.route == [{"model": "smol", "weight": 50}, {"model": "smol@2", "weight": 50}]
    assert sorted(ask(gateway.base_url, "smol") for _ in range(4)) == sorted([first, first, second, second])  # exact shares

    promoted = promote(live, "smol@2")
    assert promoted.probe is not None and promoted.probe.same and promoted.canary is None
    assert [ask(gateway.base_url, "smol") for _ in range(2)] == [second, second]

    back = rollback(live, "smol")
    assert back.live == 1 and back.probe is not None and back.probe.same
    assert back.probe.public_answer == first  # through the public name, the old version's answer
    assert history(live, "smol").live == 1

    # replace with the gateway up: the new version is live at once through the route, and the old one keeps serving
    three = deploy(live, DeployRequest(source=str(bare), chat_template=str(template), replace=True, **small))
    assert (three.name, three.version, three.live) == ("smol@3", 3, True)
    assert {"smol", "smol@3"} <= {m.name for m in list_models(live) if m.state == "running"}
    assert ask(gateway.base_url, "smol") == second
    again = rollback(live, "smol")
    assert again.live == 1 and again.probe is not None and again.probe.same and ask(gateway.base_url, "smol") == first
