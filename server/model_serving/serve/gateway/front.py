"""The gateway's front: the public port, with llama.cpp's router behind it on a loopback port of its own.

A request whose `model` is a routed public name (routes.py) gets a backend by smooth weighted round-robin
(nginx's: each pick adds every backend's weight to its running score, takes the highest, and takes the total
off the winner's; over any run of `total` picks each backend gets exactly its weight, with no randomness and
the picks spread out, not in bursts), its `model` field rewritten to that backend's router id, and is
forwarded. Every other request, streams and GETs included, passes through byte for byte; an unknown name gets
llama.cpp's own 404. `/v1/models` and `/models` also list each routed public name that the router does not.

The table is read from its file at start and again on `POST /_model_serving/routes` (which answers the
generation now served); a forwarded request keeps the backend it was given, so a table switch loses none.
The front counts what it routed (requests, errors, in flight, TTFT from streams, e2e) per public name and
backend, served as JSON on `GET /_model_serving/counters?public=NAME`.

It runs inside the gateway process (worker.py), so it lives and dies with llama.cpp's router, and it binds
127.0.0.1 only. Towards the router every request gets a fresh connection (force_close): cpp-httplib drops idle
keep-alive connections, and reusing one would fail a request.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from model_serving.errors import ServingError
from model_serving.serve.embedded.front import HOP_BY_HOP, MODEL_LISTS
from model_serving.serve.gateway.preset import router_id
from model_serving.serve.gateway.routes import ADMIN_PREFIX, COUNTERS_PATH, RELOAD_PATH, FrontCounters, Percentiles, RouteTable, read_table

KEPT = 4096  # latencies kept per backend for its percentiles: the most recent ones
SESSION = web.AppKey("session", ClientSession)
CHILD_POLL_S = 0.5
SHUTDOWN_S = 2.0


class Tally:
    """What the front measured for one public name on one backend."""

    def __init__(self) -> None:
        self.requests = self.errors = self.in_flight = 0
        self.ttft: deque[float] = deque(maxlen=KEPT)
        self.e2e: deque[float] = deque(maxlen=KEPT)

    def view(self) -> FrontCounters:
        return FrontCounters(requests=self.requests, errors=self.errors, in_flight=self.in_flight, ttft=percentiles(self.ttft),
                             e2e=percentiles(self.e2e))


def percentiles(samples: deque[float]) -> Percentiles:
    """Nearest-rank p50 and p95 of `samples` (seconds)."""
    ordered = sorted(samples)
    if not ordered:
        return Percentiles()

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 6)

    return Percentiles(p50_s=rank(0.50), p95_s=rank(0.95), count=len(ordered))


class Routing:
    """The table the front serves, each route's smooth weighted round-robin state, and the tallies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = RouteTable()
        self.names: dict[str, str] = {}  # what a request's model field may say -> the public name
        self.scores: dict[str, dict[str, int]] = {}
        self.tallies: dict[str, dict[str, Tally]] = {}

    def reload(self) -> int:
        """Read the table file; picks start afresh on the new table (requests in flight keep their backend)."""
        self.table = read_table(self.path)
        self.names = {alias: public for public in self.table.routes for alias in (public, router_id(public))}
        self.scores = {public: {b.model: 0 for b in route.backends if b.weight > 0} for public, route in self.table.routes.items()}
        return self.table.generation

    def public_of(self, body: bytes) -> tuple[str, dict[str, Any]] | None:
        if not self.names:
            return None
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        model = obj.get("model") if isinstance(obj, dict) else None
        public = self.names.get(model) if isinstance(model, str) else None
        return (public, obj) if public is not None else None

    def pick(self, public: str) -> str:
        weights = {b.model: b.weight for b in self.table.routes[public].backends if b.weight > 0}
        scores = self.scores[public]
        for model, weight in weights.items():
            scores[model] += weight
        chosen = max(weights, key=lambda m: scores[m])  # the first of equals: the table's order breaks ties
        scores[chosen] -= sum(weights.values())
        return chosen

    def tally(self, public: str, backend: str) -> Tally:
        return self.tallies.setdefault(public, {}).setdefault(backend, Tally())


def _admin(routing: Routing, request: web.Request) -> web.Response:
    if request.method == "POST" and request.path == RELOAD_PATH:
        try:
            return web.json_response({"generation": routing.reload()})
        except ServingError as exc:  # the table it serves stays the one it had
            return web.json_response({"error": exc.cause, "generation": routing.table.generation}, status=500)
    if request.method == "GET" and request.path == COUNTERS_PATH:
        found = routing.tallies.get(request.query.get("public", ""), {})
        return web.json_response({"generation": routing.table.generation,
                                  "backends": {m: t.view().model_dump() for m, t in found.items()}})
    return web.json_response({"error": f"{request.method} {request.path} is not a route of the gateway's front"}, status=404)


def _listed(body: bytes, routing: Routing) -> bytes | None:
    """The router's model list with each routed public name it lacks (as its first backend's entry); None: unchanged."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        return None
    entries = {m.get("id"): m for m in data if isinstance(m, dict)}
    added = []
    for public, route in routing.table.routes.items():
        if public in entries or router_id(public) in entries:
            continue
        template = next((entries[router_id(b.model)] for b in route.backends if router_id(b.model) in entries), {"object": "model"})
        added.append({**template, "id": public})
    return json.dumps({**obj, "data": data + added}).encode() if added else None


def make_app(upstream: str, routing: Routing) -> web.Application:
    app = web.Application(client_max_size=64 << 20)

    async def session_ctx(app: web.Application) -> Any:
        app[SESSION] = ClientSession(upstream, connector=TCPConnector(force_close=True, limit=0), auto_decompress=False,
                                     timeout=ClientTimeout(total=None, sock_connect=10))
        yield
        await app[SESSION].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return _admin(routing, request)
        body = await request.read()
        found = routing.public_of(body) if body and request.method == "POST" else None
        if found is None:
            return await _passthrough(app[SESSION], request, body, routing)
        public, obj = found
        backend = routing.pick(public)
        return await _routed(app[SESSION], request, json.dumps({**obj, "model": router_id(backend)}).encode(), routing.tally(public, backend))

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _unavailable(exc: Exception) -> web.Response:
    return web.json_response({"error": {"message": f"llama.cpp's router behind the gateway did not answer ({type(exc).__name__}).",
                                        "type": "server_error", "code": "engine_unavailable"}}, status=502)


async def _passthrough(session: ClientSession, request: web.Request, body: bytes, routing: Routing) -> web.StreamResponse:
    try:
        if request.method == "GET" and request.path in MODEL_LISTS and routing.table.routes:
            async with session.get(request.rel_url, headers=_headers(request)) as up:
                raw = await up.read()
                listed = _listed(raw, routing) if up.status == 200 else None
                return web.Response(body=listed if listed is not None else raw, status=up.status, headers=_reply_headers(up, listed is None))
        return await _forward(session, request, body, None)
    except ClientError as exc:
        return _unavailable(exc)


async def _routed(session: ClientSession, request: web.Request, body: bytes, tally: Tally) -> web.StreamResponse:
    began = time.perf_counter()
    tally.requests += 1
    tally.in_flight += 1
    try:
        reply = await _forward(session, request, body, (tally, began))
        tally.errors += reply.status >= 400
        tally.e2e.append(time.perf_counter() - began)
        return reply
    except ClientError as exc:
        tally.errors += 1
        return _unavailable(exc)
    except (ConnectionError, asyncio.CancelledError):  # the client went away before its answer was complete
        tally.errors += 1
        raise
    finally:
        tally.in_flight -= 1


def _headers(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}


def _reply_headers(up: Any, keep_length: bool) -> dict[str, str]:
    return {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP and (keep_length or k.lower() != "content-length")}


async def _forward(session: ClientSession, request: web.Request, body: bytes, timing: tuple[Tally, float] | None) -> web.StreamResponse:
    async with session.request(request.method, request.rel_url, data=body or None, headers=_headers(request)) as up:
        reply = web.StreamResponse(status=up.status, reason=up.reason, headers=_reply_headers(up, True))
        await reply.prepare(request)
        stream = timing is not None and up.headers.get("Content-Type", "").startswith("text/event-stream")
        try:
            async for chunk in up.content.iter_any():  # tokens reach the client as llama.cpp sends them
                if stream and timing is not None:
                    timing[0].ttft.append(time.perf_counter() - timing[1])
                    stream = False
                await reply.write(chunk)
        except ClientError as exc:  # the router broke off an answer already begun: the client's connection ends short, as it did
            raise ConnectionResetError(f"llama.cpp's router broke off the answer ({type(exc).__name__})") from exc
        await reply.write_eof()
        return reply


async def serve(port: int, upstream: str, routes: Path, ready: Any, *, child: Any = None) -> None:
    """Serve on 127.0.0.1:`port` until SIGTERM or SIGINT, or until `child` (llama.cpp's router) exits; `ready()` once it listens."""
    routing = Routing(routes)
    try:
        routing.reload()
    except ServingError as exc:  # by name only until the table is set again: a damaged table must not keep the gateway down
        print(f"gateway front: {exc.cause} {exc.next_step}", file=sys.stderr, flush=True)
    # A stop gives requests under way SHUTDOWN_S, not aiohttp's minute: the router and its instances still stop within `terminate`'s grace
    runner = web.AppRunner(make_app(upstream, routing), handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_S)
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
    """A front without its router would answer 502 forever while the gateway's pid looks alive: it ends with the router."""
    while child.poll() is None:
        await asyncio.sleep(CHILD_POLL_S)
    stop.set()
