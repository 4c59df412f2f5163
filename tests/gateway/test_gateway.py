"""The gateway: one base URL for every registered model, on llama.cpp's own router mode (serve/gateway).

The live tests run the natively built llama-server (scripts/install.sh compiles it) and skip, saying so,
where it is absent; the refusals and the preset need no build.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.mcp.server import create_server
from model_serving.requests import NameRequest, ServeStartRequest
from model_serving.serve import processes, registry
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.gateway import preset
from model_serving.serve.gateway.llama_router import estimate, gateway_status, start_gateway, stop_gateway
from model_serving.serve.registry import Replica, ServedAdapter, ServedModel
from model_serving.settings import Settings
from model_serving.verbs import serve_start, serve_stop

CHAT_TIMEOUT_S = 300.0  # the first request loads the model in a new instance, on a busy 2-core machine


@pytest.fixture
def live(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings with the native build, and nothing of ours left running after the test."""
    build = native.find(settings)
    if build.kind != "native":
        pytest.skip(f"the gateway needs the native llama-server: {build.describe}")
    monkeypatch.delenv("MODEL_SERVING_GATEWAY", raising=False)
    yield settings
    for model in list_models(settings):
        stop_model(settings, model.name)
    stop_gateway(settings)


def cli(capsys: pytest.CaptureFixture[str], settings: Settings, *args: str) -> tuple[int, str, str]:
    return cli_in_process(capsys, *[a for root in settings.roots for a in ("--root", str(root))], *args)


def chat(base_url: str, model: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", timeout=CHAT_TIMEOUT_S,
                      json={"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})


def states(base_url: str) -> dict[str, str]:
    return {m["id"]: m["status"]["value"] for m in httpx.get(f"{base_url}/models", timeout=10).json()["data"]}


def wait_state(base_url: str, model: str, wanted: set[str], timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (state := states(base_url).get(model)) not in wanted:
        assert time.monotonic() < deadline, f"{model} stayed {state}, not {wanted}"
        time.sleep(0.5)
    return state


@pytest.mark.slow
@pytest.mark.anyio
async def test_one_base_url_answers_both_models_by_name_through_mcp(live: Settings, smollm2_gguf: Path) -> None:
    async with Client(create_server(live)) as client:
        for name in ("smol-a", "smol-b"):  # each serve start adds its model to the gateway, starting it on demand
            served = await client.call_tool("serve_start", {"gguf_path": str(smollm2_gguf), "name": name, "ctx_size": 512, "parallel": 1})
            assert not served.is_error, served.content[0].text
        status = (await client.call_tool("serving_status", {})).structured_content["gateway"]
        assert status["running"] and {m["name"]: m["state"] for m in status["models"]} == {"smol-a": "unloaded", "smol-b": "unloaded"}
        url = status["base_url"]
        listed = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert {m["id"] for m in listed} == {"smol-a", "smol-b"}  # listed before either is loaded
        for name in ("smol-a", "smol-b"):
            answer = chat(url, name)
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"], answer.text
            assert answer.json()["model"] == name
        assert set(states(url).values()) == {"loaded"}
        assert chat(url, "nosuch").status_code >= 400  # a name no preset section has
        shown = (await client.call_tool("serve_gateway", {"action": "status"})).structured_content
        assert shown["base_url"] == url and {m["state"] for m in shown["models"]} == {"loaded"}
        await client.call_tool("serve_stop", {"name": "smol-a"})
        assert set(states(url)) == {"smol-b"}  # the preset was rewritten and reloaded
        pid = registry.load_gateway(live).pid
        await client.call_tool("serve_stop", {"name": "smol-b"})
    assert not processes.alive(pid) and not gateway_status(live).running  # no model left: the gateway went with the last one


@pytest.mark.slow
def test_lru_and_keep_alive_through_the_cli(live: Settings, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVING_GATEWAY", "off")  # per-model engines only, then the gateway by hand
    for name in ("smol-a", "smol-b"):
        code, _, err = cli(capsys, live, "serve", "start", str(smollm2_gguf), "--name", name, "--ctx-size", "512", "--parallel", "1")
        assert code == 0, err
    assert registry.load_gateway(live) is None
    port = processes.free_port()
    code, out, err = cli(capsys, live, "serve", "gateway", "start", "--port", str(port), "--keep-alive", "4", "--memory-budget-gb", "0.01")
    assert code == 0, err
    url = f"http://127.0.0.1:{port}"
    assert f"{url}/v1" in out and "1 loaded at once" in out  # a budget below one model still loads one
    assert chat(url, "smol-a").status_code == 200
    assert chat(url, "smol-b").status_code == 200
    assert states(url)["smol-b"] == "loaded"
    wait_state(url, "smol-a", {"unloaded"}, timeout_s=30)  # models-max 1: the least recently used one made room
    slept = wait_state(url, "smol-b", {"sleeping", "unloaded"})  # idle past the keep-alive
    code, out, _ = cli(capsys, live, "--json", "serve", "gateway", "status")
    assert code == 0 and f'"state": "{slept}"' in out
    pid = registry.load_gateway(live).pid
    code, out, _ = cli(capsys, live, "serve", "gateway", "stop")
    assert code == 0 and "not running" in out and not processes.alive(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=5)
    monkeypatch.delenv("MODEL_SERVING_GATEWAY")
    cli(capsys, live, "serve", "stop", "smol-a")
    assert registry.load_gateway(live).on_demand is False  # stopped by hand: serve start leaves it off until `serve gateway start`


@pytest.fixture(scope="session")
def tiny_adapter_gguf(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """A GGUF LoRA of the tiny base (peft, then llama.cpp's convert_lora_to_gguf.py)."""
    from lora_fixtures import tiny_lora_adapter

    from model_serving.checkpoint.lora_gguf import export_lora_gguf

    out = artifacts / "gateway-lora-f16.gguf"
    if not out.exists():
        folder = tiny_lora_adapter(artifacts / "gateway-lora", tiny_checkpoint, seed=7)
        export_lora_gguf(Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home")), str(folder), str(tiny_checkpoint), str(out))
    return out


@pytest.mark.slow
@pytest.mark.anyio
async def test_an_adapter_is_a_model_of_its_own_on_the_gateway(live: Settings, tiny_gguf: Path, tiny_adapter_gguf: Path) -> None:
    async with Client(create_server(live)) as client:
        served = await client.call_tool("serve_start", {"gguf_path": str(tiny_gguf), "name": "tiny", "ctx_size": 256, "parallel": 1,
                                                        "lora": [f"tuned={tiny_adapter_gguf}"]})
        assert not served.is_error, served.content[0].text
        gateway = (await client.call_tool("serve_gateway", {})).structured_content
    assert {(m["name"], m["adapter_of"]) for m in gateway["models"]} == {("tiny", None), ("tuned", "tiny")}
    answer = chat(gateway["base_url"], "tuned")
    assert answer.status_code == 200 and answer.json()["model"] == "tuned", answer.text
    [entry] = [m for m in httpx.get(f"{gateway['base_url']}/models", timeout=10).json()["data"] if m["id"] == "tuned"]
    args = entry["status"]["args"]
    assert entry["status"]["value"] == "loaded" and args[args.index("--lora") + 1] == str(tiny_adapter_gguf)  # the base with the adapter applied
    assert args[args.index("--model") + 1] == str(tiny_gguf) and states(gateway["base_url"])["tiny"] == "unloaded"


def test_a_port_in_use_is_refused(live: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli_in_process(capsys, "serve", "gateway", "start", "--port", str(port))
    assert code != 0 and f"Port {port}" in err and "--port" in err
    assert not gateway_status(live).running


@pytest.mark.anyio
async def test_without_the_native_build_the_gateway_is_refused(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "no-build"))  # a cache the install never filled
    code, _, err = cli_in_process(capsys, "serve", "gateway", "start")
    assert code != 0 and "router mode" in err and "scripts/install.sh" in err
    async with Client(create_server(Settings.from_env(roots=[str(r) for r in settings.roots], home=str(settings.home)))) as client:
        refused = await client.call_tool("serve_gateway", {"action": "start"})
    assert refused.is_error and "scripts/install.sh" in refused.content[0].text
    assert registry.load_gateway(settings) is None


@pytest.mark.anyio
@pytest.mark.parametrize(("args", "rule"), [({"action": "start", "port": 80}, "1024 to 65535"), ({"action": "start", "keep_alive": 0}, "1 to 86400"),
                                            ({"action": "status", "port": 9000}, "only apply to starting")])
async def test_bad_gateway_values_name_the_rule(settings: Settings, args: dict[str, object], rule: str) -> None:
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("serve_gateway", args)
    assert result.is_error and rule in result.content[0].text


def _record(name: str, gguf: str, started: str, adapters: list[ServedAdapter] | None = None) -> ServedModel:
    return ServedModel(name=name, gguf_path=gguf, base_url="http://127.0.0.1:1", port=1, pid=1, ctx_size=1024, parallel=2, threads=3,
                       started_at=started, log_path="/x.log", adapters=adapters or [])


def test_router_ids_follow_llama_cpps_tag_rule() -> None:
    assert [preset.router_id(n) for n in ("smol", "smol:q8_0", "smol:v1-q4_k_m", "a:b:latest")] == ["smol", "smol:Q8_0", "smol:Q4_K_M", "a:b:LATEST"]


def test_the_preset_has_a_section_per_model_and_adapter(settings: Settings) -> None:
    for model in [_record("base", "/m/base.gguf", "2026-01-01T00:00:00", [ServedAdapter(name="tuned", gguf_path="/m/tuned.gguf"),
                                                                          ServedAdapter(name="other", gguf_path="/m/o.gguf")]),
                  _record("other", "/m/other.gguf", "2026-01-02T00:00:00"), _record("semi", "/m/a;b.gguf", "2026-01-03T00:00:00")]:
        registry.save(settings, model)
    items, skipped = preset.write(settings, keep_alive_s=42)
    assert [(e.name, e.adapter_of) for e in items] == [("base", None), ("tuned", "base"), ("other", "base")]
    assert any(s.startswith("other:") for s in skipped) and any(s.startswith("semi:") for s in skipped)
    text = registry.gateway_path(settings, ".ini").read_text()
    assert "sleep-idle-seconds = 42" in text and "load-on-startup = false" in text
    assert "[tuned]\nmodel = /m/base.gguf\nlora = /m/tuned.gguf\nc = 1024\nparallel = 2\nthreads = 3" in text
    assert [m.name for m in list_models(settings)] == ["base", "other", "semi"]  # the gateway's files are no model's record


def test_replicas_stay_on_their_router_and_the_status_says_why(settings: Settings) -> None:
    replicas = [Replica(base_url=f"http://127.0.0.1:{p}", port=p, pid=1, log_path="/r.log") for p in (2, 3)]
    registry.save(settings, _record("single", "/m/s.gguf", "2026-01-01T00:00:00"))
    registry.save(settings, _record("scaled", "/m/s.gguf", "2026-01-02T00:00:00").model_copy(update={"router": "round_robin", "replicas": replicas}))
    items, skipped = preset.write(settings, keep_alive_s=42)
    assert [e.name for e in items] == ["single"] and "[scaled]" not in registry.gateway_path(settings, ".ini").read_text()
    [why] = gateway_status(settings).skipped
    assert why.startswith("scaled: 2 replicas behind vllm-router") and "http://127.0.0.1:1/v1" in why and "router mode" in why


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


@pytest.mark.slow
def test_a_stopped_model_leaves_the_preset_the_router_and_the_count(live: Settings, tiny_gguf: Path, smollm2_gguf: Path) -> None:
    for gguf, name in ((tiny_gguf, "tiny"), (smollm2_gguf, "smol")):
        serve_start(live, ServeStartRequest(gguf_path=str(gguf), name=name, ctx_size=256, parallel=1))
    items, _ = preset.entries(list_models(live))
    sizes = {e.name: estimate(e) for e in items}
    assert sizes["smol"] > 2 * sizes["tiny"]
    budget = 1.5 * sizes["smol"]  # one smol at once, several of the tiny one
    gateway = start_gateway(live, port=processes.free_port(), memory_budget_gb=budget / 2**30)
    assert gateway.models_max == 1 and {m.name for m in gateway.models} == {"tiny", "smol"}
    serve_stop(live, NameRequest(name="smol"))
    after = gateway_status(live)
    assert after.running and [m.name for m in after.models] == ["tiny"] and set(states(after.base_url)) == {"tiny"}
    assert after.models_max == int(budget) // sizes["tiny"] and after.largest_model_bytes == sizes["tiny"]  # resized as on a start
    assert "[smol]" not in Path(after.preset_path).read_text() and after.note.startswith("0 of 1 registered loaded")
    assert chat(after.base_url, "smol").status_code >= 400 and chat(after.base_url, "tiny").status_code == 200
    assert gateway_status(live).note.startswith("1 of 1 registered loaded")
    [router] = children(after.pid)  # the gateway's pid is our front; llama.cpp's router is its child, the instances the router's
    [instance] = children(router)
    policy = [v for v in Path(f"/proc/{instance}/environ").read_bytes().split(b"\0") if v.startswith(b"OMP_WAIT_POLICY=")]
    assert policy == ([f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}".encode()] if os.environ.get("OMP_WAIT_POLICY") else [])


@pytest.mark.slow
def test_replicas_are_named_in_the_gateway_status_and_answer_on_their_router(live: Settings, tiny_gguf: Path) -> None:
    pytest.importorskip("vllm_router", reason="replicas need vllm-router (the scale extra)")
    serve_start(live, ServeStartRequest(gguf_path=str(tiny_gguf), name="tiny", ctx_size=256, parallel=1))  # starts the gateway
    scaled = serve_start(live, ServeStartRequest(gguf_path=str(tiny_gguf), name="scaled", ctx_size=256, parallel=1, replicas=2))
    status = gateway_status(live)
    assert status.running and [m.name for m in status.models] == ["tiny"]
    assert [s for s in status.skipped if s.startswith("scaled: 2 replicas behind vllm-router")] and scaled.base_url in status.skipped[0]
    assert {m["id"] for m in httpx.get(f"{status.base_url}/v1/models", timeout=10).json()["data"]} == {"tiny"}
    assert chat(scaled.base_url, "scaled").status_code == 200  # on its own URL, as the status says
