"""Weighted routes on the gateway (serve/gateway/routes.py and front.py): exact shares, a lossless switch, per-backend counters.

The live tests run the real llama.cpp router behind our front, with SmolLM2 and the tiny GGUF as two backends;
they skip, saying so, where the native build is absent. The table, its checks and the picks need no build.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cli_runner import cli_in_process

from model_serving.errors import InputError, ServingError
from model_serving.requests import ServeStartRequest
from model_serving.serve import processes, registry
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.gateway.front import Routing
from model_serving.serve.gateway.llama_router import gateway_status, start_gateway, stop_gateway
from model_serving.serve.gateway.routes import Backend, Route, clear_route, load_routes, route_counters, routes_path, set_route
from model_serving.settings import Settings
from model_serving.verbs import serve_start

TIMEOUT_S = 300.0


def route(public: str, *pairs: tuple[str, int]) -> Route:
    return Route(public=public, backends=[Backend(model=m, weight=w) for m, w in pairs])


def picks(settings: Settings, r: Route, n: int) -> list[str]:
    set_route(settings, r)
    routing = Routing(routes_path(settings))
    routing.reload()
    return [routing.pick(r.public) for _ in range(n)]


def test_smooth_weighted_round_robin_gives_exact_shares_spread_out(settings: Settings) -> None:
    canary = picks(settings, route("smol", ("smol", 90), ("smol@2", 10)), 1000)
    assert Counter(canary) == {"smol": 900, "smol@2": 100}
    at = [i for i, m in enumerate(canary) if m == "smol@2"]
    assert {b - a for a, b in zip(at, at[1:], strict=False)} == {10}  # one in ten, never two in a row
    three = picks(settings, route("m", ("a", 50), ("b", 30), ("c", 20), ("off", 0)), 100)
    assert Counter(three) == {"a": 50, "b": 30, "c": 20}
    assert Counter(picks(settings, route("m", ("a", 1), ("b", 3)), 8)) == {"a": 2, "b": 6}  # weights need not sum to 100


@pytest.mark.parametrize(("pairs", "rule"), [((("a", 101),), "less than or equal to 100"), ((("a", 50), ("a", 50)), "twice"),
                                             ((("a", 0),), "weight above 0"), ((("-a", 10),), "not a served model name")])
def test_a_bad_route_names_the_rule(pairs: tuple[tuple[str, int], ...], rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        route("pub", *pairs)


def test_the_table_without_a_gateway_is_the_file_and_its_generation(settings: Settings) -> None:
    set_route(settings, route("smol", ("smol", 90), ("smol@2", 10)))
    set_route(settings, route("other", ("other@3", 100)))
    table = load_routes(settings)
    assert table.generation == 2 and set(table.routes) == {"smol", "other"}
    clear_route(settings, "other")
    clear_route(settings, "never-routed")  # nothing to clear: the generation stays
    assert load_routes(settings).generation == 3 and set(load_routes(settings).routes) == {"smol"}
    counters = route_counters(settings, "smol")
    assert counters.generation == -1 and [(b.model, b.share, b.front.requests, b.engine) for b in counters.backends] == \
        [("smol", 0.9, 0, None), ("smol@2", 0.1, 0, None)]
    with pytest.raises(InputError, match="No route for 'other'"):
        route_counters(settings, "other")
    routes_path(settings).write_text("{not json")
    with pytest.raises(ServingError, match="cannot be read") as refused:
        set_route(settings, route("smol", ("smol", 100)))
    assert "delete the file" in refused.value.next_step


@pytest.fixture
def two(settings: Settings, monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path, smollm2_gguf: Path) -> Iterator[tuple[Settings, str]]:
    """The tiny GGUF as `tiny` and SmolLM2 as `smol` behind a running gateway; nothing of ours left running after."""
    build = native.find(settings)
    if build.kind != "native":
        pytest.skip(f"the gateway needs the native llama-server: {build.describe}")
    monkeypatch.setenv("MODEL_SERVING_GATEWAY", "off")
    try:
        for gguf, name in ((tiny_gguf, "tiny"), (smollm2_gguf, "smol")):
            serve_start(settings, ServeStartRequest(gguf_path=str(gguf), name=name, ctx_size=256, parallel=2))
        gateway = start_gateway(settings, port=processes.free_port())
        assert gateway.base_url is not None
        yield settings, gateway.base_url
    finally:
        for model in list_models(settings):
            stop_model(settings, model.name)
        stop_gateway(settings)


def ask(client: httpx.Client, url: str, model: str) -> str:
    answer = client.post(f"{url}/v1/chat/completions", timeout=TIMEOUT_S,
                         json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model"])


@pytest.mark.slow
def test_a_ten_percent_route_sends_100_of_1000_requests_and_counts_each_backend(two: tuple[Settings, str],
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    settings, url = two
    engine_url = registry.load_gateway(settings).engine_url
    with httpx.Client() as client:
        for method, path, body in (("POST", "/tokenize", {"model": "tiny", "content": "Hello there"}), ("GET", "/props?model=tiny", None)):
            direct, fronted = (client.request(method, f"{base}{path}", json=body, timeout=TIMEOUT_S) for base in (engine_url, url))
            assert fronted.status_code == direct.status_code == 200 and fronted.content == direct.content  # passed through byte for byte
        set_route(settings, route("tiny", ("tiny", 90), ("smol", 10)))  # the public name is the live model's own
        assert [m["id"] for m in client.get(f"{url}/v1/models").json()["data"]].count("tiny") == 1
        with ThreadPoolExecutor(4) as pool:
            answered = Counter(pool.map(lambda _: ask(client, url, "tiny"), range(1000)))
        assert ask(client, url, "smol") == "smol"  # a backend's own name is not routed: it goes by name
        set_route(settings, route("assistant", ("smol", 100)))  # a public name no model has
        assert [m["id"] for m in client.get(f"{url}/v1/models").json()["data"]].count("assistant") == 1
        assert ask(client, url, "assistant") == "smol"
        clear_route(settings, "assistant")
        unknown = client.post(f"{url}/v1/chat/completions", json={"model": "assistant", "messages": [{"role": "user", "content": "Hi"}]})
        direct = client.post(f"{engine_url}/v1/chat/completions", json={"model": "assistant", "messages": [{"role": "user", "content": "Hi"}]})
        assert unknown.status_code == direct.status_code >= 400 and unknown.content == direct.content  # llama.cpp's own answer to an unknown name
        assert "assistant" not in [m["id"] for m in client.get(f"{url}/v1/models").json()["data"]]
    assert answered == {"tiny": 900, "smol": 100}  # the router answers with the backend's name
    counters = {b.model: b for b in route_counters(settings, "tiny").backends}
    assert {m: (b.front.requests, b.front.errors, b.front.in_flight, b.front.e2e.count) for m, b in counters.items()} == \
        {"tiny": (900, 0, 0, 900), "smol": (100, 0, 0, 100)}
    assert counters["smol"].front.e2e.p50_s <= counters["smol"].front.e2e.p95_s
    engine = {m: b.engine for m, b in counters.items()}
    assert engine["tiny"].state == engine["smol"].state == "loaded"
    # one token per answer: each instance's own counter holds exactly the requests it was sent (smol: +2, by name and as 'assistant')
    assert engine["tiny"].values["llamacpp:tokens_predicted_total"] == 900 and engine["smol"].values["llamacpp:tokens_predicted_total"] == 102
    assert [r.public for r in gateway_status(settings).routes] == ["tiny"]
    code, out, _ = cli_in_process(capsys, *[a for root in settings.roots for a in ("--root", str(root))], "status")
    assert code == 0 and "route tiny: tiny 90 (90%; 900 req, 0 err" in out and "smol 10 (10%; 100 req, 0 err" in out


def stream(client: httpx.Client, url: str, model: str) -> tuple[str, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 8, "stream": True}
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=TIMEOUT_S) as answer:
        assert answer.status_code == 200
        raw = answer.read()
    served = next(line for line in raw.split(b"\n") if line.startswith(b"data: {")).split(b'"model":"')[1].split(b'"')[0]
    return served.decode(), raw


@pytest.mark.slow
def test_a_table_switch_under_streaming_load_loses_no_request(two: tuple[Settings, str]) -> None:
    settings, url = two
    tables = [route("tiny", ("tiny", 100)), route("tiny", ("tiny", 90), ("smol", 10)), route("tiny", ("smol", 100)),
              route("tiny", ("tiny", 50), ("smol", 50)), route("tiny", ("tiny", 100))]
    set_route(settings, tables[0])
    done: list[tuple[str, bytes]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                done.append(stream(client, url, "tiny"))

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load) for _ in range(4)]
        try:
            for table in tables[1:]:
                deadline = time.monotonic() + TIMEOUT_S
                while sum(b.front.in_flight for b in route_counters(settings, "tiny").backends) == 0:  # switch while streams are under way
                    assert time.monotonic() < deadline and not any(w.done() for w in workers), "no stream was in flight"
                    stop.wait(0.01)
                set_route(settings, table)
                before = len(done)
                while len(done) < before + 8 and not any(w.done() for w in workers):
                    stop.wait(0.05)
        finally:
            stop.set()
        for w in workers:
            w.result()  # a failed stream fails its worker
    assert all(raw.rstrip().endswith(b"data: [DONE]") and b'"finish_reason":"' in raw for _, raw in done)  # every stream complete
    counters = route_counters(settings, "tiny")
    assert counters.generation == load_routes(settings).generation
    assert sum(b.front.requests for b in counters.backends) == len(done) and not any(b.front.errors or b.front.in_flight for b in counters.backends)
    assert {m: n for m, n in Counter(m for m, _ in done).items()} == {b.model: b.front.requests for b in counters.backends if b.front.requests}
    assert all(b.front.ttft.count == b.front.requests for b in counters.backends)
    clear_route(settings, "tiny")
    assert load_routes(settings).routes == {} and route_counters(settings, "tiny").generation == load_routes(settings).generation


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def gone(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, not yet reaped by its parent
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_the_front_and_the_router_live_and_die_together(two: tuple[Settings, str]) -> None:
    settings, url = two
    front = registry.load_gateway(settings).pid
    [router] = children(front)
    os.kill(router, signal.SIGKILL)
    assert gone(front)  # a front without its router would answer 502 forever: it ends with it
    assert not gateway_status(settings).running
    restarted = start_gateway(settings)
    with httpx.Client() as client:
        assert ask(client, restarted.base_url or "", "tiny") == "tiny"  # loads tiny's instance
    [router] = children(restarted.pid or 0)
    [instance] = children(router)
    os.kill(restarted.pid or 0, signal.SIGKILL)
    assert gone(router) and gone(instance)  # the router is armed with the parent-death signal; its instances follow it
