"""The model-name front on its own, against a real loopback HTTP server standing in for llama.cpp: what it rewrites, what it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientSession, web

from model_serving.serve.embedded.front import make_app
from model_serving.serve.processes import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp runs on asyncio only


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_the_model_field_picks_the_adapter_and_nothing_else_changes() -> None:
    seen: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"ok": True}, headers={"X-Engine": "llama.cpp"})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "base", "object": "model", "owned_by": "llamacpp"}]})

    engine = web.Application()
    engine.router.add_post("/v1/chat/completions", chat)
    engine.router.add_get("/v1/models", models)
    engine_runner, engine_url = await _serve(engine)
    front_runner, front_url = await _serve(make_app(engine_url, "base", ["support", "legal"]))
    try:
        async with ClientSession() as client:
            for body in ({"model": "legal", "lora": [{"id": 0, "scale": 1.0}], "messages": []}, {"model": "base"}, {"messages": []}):
                async with client.post(f"{front_url}/v1/chat/completions", json=body) as reply:
                    assert reply.status == 200 and reply.headers["X-Engine"] == "llama.cpp"
            async with client.post(f"{front_url}/v1/chat/completions", json={"model": "sales"}) as reply:
                assert reply.status == 404 and "served: base, support, legal" in (await reply.json())["error"]["message"]
            async with client.get(f"{front_url}/v1/models") as reply:
                assert [m["id"] for m in (await reply.json())["data"]] == ["base", "support", "legal"]
    finally:
        await front_runner.cleanup()
        await engine_runner.cleanup()
    none = [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]  # the base: every adapter at 0, whatever the engine holds at rest
    assert seen == [{"model": "legal", "lora": [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}], "messages": [], "cache_prompt": False},  # the client's own replaced
                    {"model": "base", "lora": none, "cache_prompt": False}, {"messages": [], "lora": none, "cache_prompt": False}]  # 'sales' never reached the engine


async def test_an_engine_that_is_gone_is_a_502_with_a_cause() -> None:
    front_runner, front_url = await _serve(make_app(f"http://127.0.0.1:{free_port()}", "base", ["support"]))
    try:
        async with ClientSession() as client, client.post(f"{front_url}/v1/chat/completions", json={"model": "support"}) as reply:
            assert reply.status == 502 and (await reply.json())["error"]["code"] == "engine_unavailable"
    finally:
        await front_runner.cleanup()
