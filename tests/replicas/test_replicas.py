"""Replicas behind vllm-router: real llama.cpp engines, the real Rust router, the CLI in a child process and MCP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress
from model_serving.mcp.server import create_server
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.processes import alive
from model_serving.serve.replicas.vllm_router import router_installed, start_replicas
from model_serving.settings import Settings

pytestmark = pytest.mark.skipif(not router_installed(), reason="vllm-router is not installed (pip install 'model-serving[scale]')")


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a child that exits: what it started must outlive it."""
    env = {**os.environ, "MODEL_SERVING_HOME": str(settings.home), "OLLAMA_HOST": "http://127.0.0.1:9"}
    roots = [a for r in settings.roots for a in ("--root", str(r))]
    return subprocess.run([sys.executable, "-m", "model_serving", *roots, *args], capture_output=True, text=True, env=env, timeout=300)


def chat(base_url: str, name: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", timeout=120,
                      json={"model": name, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0})


def prompt_tokens(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("llamacpp:prompt_tokens_total"))


@pytest.fixture
def served(settings: Settings) -> Iterator[Settings]:
    yield settings
    for model in list_models(settings):  # nothing outlives a test, whatever it asserted
        stop_model(settings, model.name, grace_s=5)


def wait_for(check, what: str, limit_s: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"never saw {what} within {limit_s:.0f} s")


def bad_arch_copy(gguf: Path, target: Path) -> Path:
    """The same GGUF with its architecture renamed: the header reads fine, llama.cpp refuses to load it."""
    data = bytearray(gguf.read_bytes())
    at = data.index(b"general.architecture") + len(b"general.architecture")
    (length,) = struct.unpack_from("<Q", data, at + 4)
    data[at + 12:at + 12 + length] = b"x" * length
    target.write_bytes(bytes(data))
    return target


@pytest.mark.slow
def test_cli_two_replicas_answer_and_a_killed_one_is_dropped(served: Settings, smollm2_gguf: Path) -> None:
    out = cli(served, "--json", "serve", "start", str(smollm2_gguf), "--name", "rep", "--replicas", "2", "--ctx-size", "512", "--parallel", "2")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    assert model["router"] == "round_robin" and len(model["replicas"]) == 2
    router, replicas = model["base_url"], model["replicas"]
    assert alive(model["pid"]) and all(alive(r["pid"]) for r in replicas)  # the CLI has exited; they have not
    assert all(chat(router, "rep").status_code == 200 for _ in range(4))
    assert all(prompt_tokens(r["base_url"]) > 0 for r in replicas)  # round robin reached both

    os.kill(replicas[1]["pid"], signal.SIGKILL)
    assert [chat(router, "rep").status_code for _ in range(6)] == [200] * 6  # the router retries on the live one

    def dropped() -> dict | None:
        status = json.loads(cli(served, "--json", "status").stdout)
        entry = next(e for e in status["engine"] if e["model"]["name"] == "rep")
        return entry if not entry["replicas"][1]["routed"] else None

    entry = wait_for(dropped, "the router's health check drop replica 1")
    assert entry["healthy"] is True and entry["replicas"][0]["routed"] is True
    assert entry["replicas"][1]["state"] == "dead" and entry["replicas"][1]["healthy"] is False
    assert "NOT routed" in cli(served, "status").stdout

    bench = cli(served, "--json", "bench", "run", "rep", "-n", "4", "--max-tokens", "8")  # the name resolves to the router
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["config"]["base_url"] == router and result["summary"]["completed"] == 4

    assert cli(served, "serve", "stop", "rep").returncode == 0
    assert not alive(model["pid"]) and not alive(replicas[0]["pid"]) and list_models(served) == []


@pytest.mark.slow
@pytest.mark.anyio
async def test_mcp_serves_two_replicas_reports_them_and_stops_both(served: Settings, smollm2_gguf: Path) -> None:
    async with Client(create_server(served)) as client:
        started = await client.call_tool("serve_start", {"gguf_path": str(smollm2_gguf), "name": "rep", "replicas": 2, "policy": "round_robin",
                                                         "ctx_size": 512, "parallel": 2})
        assert not started.is_error, started.content[0].text
        model = started.structured_content
        assert "2 replicas behind vllm-router, round_robin" in started.content[0].text
        assert chat(model["base_url"], "rep").status_code == 200
        status = (await client.call_tool("serving_status", {})).structured_content
        [entry] = [e for e in status["engine"] if e["model"]["name"] == "rep"]
        assert entry["healthy"] and [(r["state"], r["routed"]) for r in entry["replicas"]] == [("running", True)] * 2
        assert status["total_engine_rss_bytes"] > sum(r["rss_bytes"] or 0 for r in model["replicas"]) > 0
        stopped = await client.call_tool("serve_stop", {"name": "rep"})
        assert not stopped.is_error
    assert not any(alive(p) for p in [model["pid"], *(r["pid"] for r in model["replicas"])])


def test_a_busy_router_port_is_refused_before_any_engine_starts(served: Settings, smollm2_gguf: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = cli(served, "serve", "start", str(smollm2_gguf), "--name", "rep", "--replicas", "2", "--port", str(port))
    assert out.returncode == 2 and f"Port {port} on 127.0.0.1 is already in use" in out.stderr and "next step" in out.stderr
    assert list_models(served) == []


@pytest.mark.slow
def test_a_replica_that_fails_shows_its_log_and_stops_the_others(served: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "swapped.gguf"
    shutil.copyfile(smollm2_gguf, gguf)
    broken = bad_arch_copy(smollm2_gguf, tmp_path / "broken.gguf")
    first: list[int] = []

    def swap_after_the_first(fraction: float, message: str) -> None:
        if message.startswith("rep is served at") and not first:  # replica 1 is up: replica 2 will read a GGUF llama.cpp refuses
            port = message.rsplit(":", 1)[1]
            first.extend(int(p.name) for p in Path("/proc").iterdir()
                         if p.name.isdigit() and alive(int(p.name)) and f"--port\0{port}\0" in _cmdline(p))
            os.replace(broken, gguf)

    with pytest.raises(ServingError) as failure:
        start_replicas(served, gguf, "rep", replicas=2, ctx_size=512, parallel=2, progress=Progress(swap_after_the_first))
    assert len(first) == 1 and "Replica 2 of 2 for rep failed to start" in failure.value.cause
    assert "Nothing of rep was left running" in failure.value.next_step
    assert "unknown model architecture" in failure.value.detail  # the replica's own log lines
    assert list_models(served) == [] and not alive(first[0])  # the first replica was stopped again


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_a_replica_that_cannot_load_fails_through_the_cli_with_its_log(served: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    broken = bad_arch_copy(smollm2_gguf, tmp_path / "broken.gguf")
    out = cli(served, "serve", "start", str(broken), "--name", "rep", "--replicas", "2", "--ctx-size", "512")
    assert out.returncode == 1 and "Replica 1 of 2 for rep failed to start" in out.stderr and "unknown model architecture" in out.stderr
    assert list_models(served) == []


def test_more_replicas_than_memory_holds_are_refused(served: Settings, smollm2_gguf: Path) -> None:
    from model_serving.checkpoint.inspect import inspect_gguf
    from model_serving.serve.processes import available_bytes

    need = inspect_gguf(smollm2_gguf, ctx_size=524288, parallel=64).memory.total_bytes * 8
    if need <= (available_bytes() or 0):
        pytest.skip("this machine has room for 8 replicas at the largest context")
    with pytest.raises(InputError, match="8 replicas need about") as refused:
        start_replicas(served, smollm2_gguf, "rep", replicas=8, ctx_size=524288, parallel=64)
    assert "--replicas" in refused.value.next_step or "--ctx-size" in refused.value.next_step
    assert list_models(served) == []


def test_a_missing_router_names_the_extra(served: Settings, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm_router", None)  # how Python spells "not installed" for one import
    with pytest.raises(InputError, match="vllm-router is not installed") as refused:
        start_replicas(served, smollm2_gguf, "rep", replicas=2)
    assert "model-serving[scale]" in refused.value.next_step


@pytest.mark.parametrize(("options", "message"), [
    ({"replicas": None, "policy": "cache_aware"}, "without --replicas"),
    ({"replicas": 2, "engine": "vllm"}, "embedded llama.cpp engine"),
    ({"replicas": 2, "lora": ["a=/x"]}, "without adapters"),
    ({"replicas": 2, "policy": "fastest"}, "Unknown router policy"),
])
def test_combinations_replicas_cannot_serve_are_refused(served: Settings, smollm2_gguf: Path, options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        start_replicas(served, smollm2_gguf, "rep", **options)


@pytest.mark.anyio
async def test_mcp_refuses_a_policy_without_replicas_with_a_next_step(served: Settings, smollm2_gguf: Path) -> None:
    async with Client(create_server(served)) as client:
        result = await client.call_tool("serve_start", {"gguf_path": str(smollm2_gguf), "name": "rep", "policy": "cache_aware"})
    assert result.is_error and "without --replicas" in result.content[0].text and "Next step:" in result.content[0].text
    assert list_models(served) == []
