"""The model-name front for LoRA adapters on one llama.cpp server: the OpenAI `model` field picks the adapter.

llama.cpp's server loads every adapter at start (scale 0) and applies the ones a request names in its
`lora` field, but it does not map model names to adapters (ggml-org/llama.cpp#11031 is open). This
front does only that: a JSON body whose `model` is an adapter's name gets `lora` with that adapter at
scale 1 and every other at 0; the base's name (or no `model`) gets every adapter at 0; an unknown name is a 404, not a silent base
answer. Everything else, streams included, passes through byte for byte.

This llama.cpp build reuses a slot's cached prompt whatever LoRA set computed it: a base request that
followed an adapter's got an answer from neither (tests/lora/test_lora_serve.py catches it). Every request
through the front therefore sets `cache_prompt: false`: the prompt is evaluated afresh, a cost the
adapter A/B (bench quant-ab --adapter) shows in TTFT. It runs inside the engine
worker, so it lives and dies with the llama.cpp server it fronts, and it binds 127.0.0.1 only.

Towards llama.cpp every request gets a fresh connection (force_close): its server drops idle
keep-alive connections, and a client reusing one sees ServerDisconnected. Clients may keep theirs.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer", "host"})
MODEL_LISTS = ("/v1/models", "/models")
SESSION = web.AppKey("session", ClientSession)
CHILD_POLL_S = 0.5


def rewrite(body: bytes, base: str, adapters: list[str]) -> tuple[bytes, str | None]:
    """The body to send on, and the unknown model name when there is one (the front answers 404 then)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, None  # not JSON: llama.cpp gives its own 400
    if not isinstance(obj, dict):
        return body, None
    name = obj.get("model", base)
    if name != base and name not in adapters:
        return body, str(name)
    # Every adapter's scale, the base's request too: a native llama-server started with `--lora` holds them at 1 when a
    # request names none (the worker starts it with `--lora-scaled PATH:0`, which a path with ':' or ',' cannot carry).
    obj["lora"] = [{"id": i, "scale": 1.0 if adapter == name else 0.0} for i, adapter in enumerate(adapters)]
    obj["cache_prompt"] = False  # a slot's cached prompt may have been computed under another adapter
    return json.dumps(obj).encode(), None


def listed(upstream: dict[str, Any], base: str, adapters: list[str]) -> dict[str, Any]:
    """llama.cpp's model list with one entry per adapter beside the base's (same shape, own id)."""
    out = dict(upstream)
    data = [m for m in upstream.get("data", []) if isinstance(m, dict)]
    template = data[0] if data else {"object": "model", "owned_by": "llamacpp"}
    out["data"] = data + [{**template, "id": name, "aliases": [name], "parent": base} for name in adapters]
    models = [m for m in upstream.get("models", []) if isinstance(m, dict)]
    if models:
        out["models"] = models + [{**models[0], "name": name, "model": name} for name in adapters]
    return out


def _not_found(name: str, base: str, adapters: list[str]) -> web.Response:
    served = ", ".join([base, *adapters])
    return web.json_response({"error": {"message": f"The model {name!r} is not served here (served: {served}).",
                                         "type": "invalid_request_error", "code": "model_not_found"}}, status=404)


def make_app(upstream: str, base: str, adapters: list[str]) -> web.Application:
    app = web.Application(client_max_size=64 << 20)

    async def session_ctx(app: web.Application) -> Any:
        app[SESSION] = ClientSession(upstream, connector=TCPConnector(force_close=True), auto_decompress=False,
                                       timeout=ClientTimeout(total=None, sock_connect=10))
        yield
        await app[SESSION].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await forward(request)
        except ClientError as exc:  # llama.cpp behind us is gone or broke the connection before answering
            return web.json_response({"error": {"message": f"The llama.cpp server behind {base} did not answer ({type(exc).__name__}).",
                                                "type": "server_error", "code": "engine_unavailable"}}, status=502)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "GET" and request.path in MODEL_LISTS:
            async with app[SESSION].get(request.path) as up:
                return web.json_response(listed(await up.json(content_type=None), base, adapters), status=up.status)
        if body and request.method == "POST":
            body, unknown = rewrite(body, base, adapters)
            if unknown is not None:
                return _not_found(unknown, base, adapters)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
        async with app[SESSION].request(request.method, request.rel_url, data=body or None, headers=headers) as up:
            reply = web.StreamResponse(status=up.status, reason=up.reason,
                                       headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP})
            await reply.prepare(request)
            async for chunk in up.content.iter_any():  # tokens reach the client as llama.cpp sends them
                await reply.write(chunk)
            await reply.write_eof()
            return reply

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(port: int, upstream: str, base: str, adapters: list[str], ready: Any, *, child: Any = None) -> None:
    """Serve on 127.0.0.1:`port` until SIGTERM or SIGINT, or until `child` (a Popen: the llama.cpp server we front) exits;
    `ready()` is called once it listens."""
    runner = web.AppRunner(make_app(upstream, base, adapters), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_watch(child, stop)) if child is not None else None
    ready()
    await stop.wait()
    if watch is not None:
        watch.cancel()
    await runner.cleanup()


async def _watch(child: Any, stop: asyncio.Event) -> None:
    """A front without its engine would answer 502 forever while its pid looks served: it ends with the engine."""
    while child.poll() is None:
        await asyncio.sleep(CHILD_POLL_S)
    stop.set()
