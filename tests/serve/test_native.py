"""Which llama.cpp build an engine start picks and why, and the real native build serving (the build itself: tests/toolchain)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.errors import InputError, ServingError
from model_serving.mcp.server import create_server
from model_serving.serve import processes
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import list_models, start_model, stop_model
from model_serving.serve.status import serving_status
from model_serving.settings import Settings
from model_serving.util.process import busy_cores


def test_without_a_build_find_says_why_and_status_names_the_install(settings: Settings, tmp_path: Path) -> None:
    empty = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    found = native.find(empty)
    assert found.kind == "none" and found.server is None
    assert found.describe.startswith(f"none: native build not found in {tmp_path / 'cache'}") and "scripts/install.sh" in found.describe
    assert serving_status(empty).engine_build == found.describe


@pytest.mark.anyio
async def test_without_a_build_a_start_is_refused_on_both_faces(settings: Settings, smollm2_gguf: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODEL_SERVING_ROOTS", os.pathsep.join(str(r) for r in settings.roots))  # the CLI's roots: the GGUF's folder
    empty = Settings.from_env()
    with pytest.raises(ServingError, match="natively built llama-server") as refused:
        start_model(empty, smollm2_gguf, "nobuild", ctx_size=512, parallel=1)
    assert "native build not found" in refused.value.cause and "scripts/install.sh" in refused.value.next_step
    code, _, err = cli_in_process(capsys, "serve", "start", str(smollm2_gguf), "--name", "nobuild")
    assert code != 0 and "natively built llama-server" in err and "scripts/install.sh" in err
    async with Client(create_server(empty)) as client:
        result = await client.call_tool("serve_start", {"gguf_path": str(smollm2_gguf), "name": "nobuild", "ctx_size": 512, "parallel": 1})
    assert result.is_error and "scripts/install.sh" in result.content[0].text
    assert list_models(empty) == []


@pytest.mark.parametrize("old", ["wheel", "fast"])
def test_an_old_engine_build_setting_is_refused_and_says_what_to_do(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                                    old: str) -> None:
    monkeypatch.setenv("MODEL_SERVING_ENGINE_BUILD", old)
    with pytest.raises(InputError, match="no longer a setting") as refused:
        Settings.from_env()
    assert "Unset MODEL_SERVING_ENGINE_BUILD" in refused.value.next_step
    code, _, err = cli_in_process(capsys, "serve", "list")
    assert code != 0 and "no longer a setting" in err and "Unset MODEL_SERVING_ENGINE_BUILD" in err
    for kept in ("auto", "native", ""):  # the values that meant "the native build" still mean it
        monkeypatch.setenv("MODEL_SERVING_ENGINE_BUILD", kept)
        Settings.from_env()


needs_native = pytest.mark.skipif(native.find(Settings()).kind != "native",
                                  reason="no native llama.cpp build for this CPU (scripts/install.sh compiles it)")


@needs_native
def test_the_native_build_serves_on_loopback_and_the_record_says_so(settings: Settings, smollm2_gguf: Path) -> None:
    served = start_model(settings, smollm2_gguf, "native-smol", ctx_size=1024, parallel=2)
    try:
        assert served.engine_build and served.engine_build.startswith("native (llama.cpp ") and native.llama_cpp_revision() in served.engine_build
        argv = Path(f"/proc/{served.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[0].endswith(b"/llama-server") and argv[argv.index(b"--host") + 1] == b"127.0.0.1"
        assert processes.alive(served.pid)
        reply = httpx.post(f"{served.base_url}/v1/chat/completions", timeout=120,
                           json={"model": "native-smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        assert reply.status_code == 200 and reply.json()["model"] == "native-smol"
        status = serving_status(settings)
        assert status.engine_build == served.engine_build
        assert [e.model.engine_build for e in status.engine if e.healthy] == [served.engine_build]
    finally:
        stop_model(settings, served.name)
    assert not processes.alive(served.pid)


def test_busy_cores_sees_other_work_and_openmp_keeps_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        assert busy_cores() > (os.cpu_count() or 1) / 2
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert native.env() == {"GOMP_SPINCOUNT": "1000"}  # a brief spin, then sleep: no engine spins away a shared core
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert native.env() == {"OMP_WAIT_POLICY": "PASSIVE"}  # the user's choice stands alone
    monkeypatch.setenv("GOMP_SPINCOUNT", "20000")
    assert native.env() == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "20000"}


def _pin_to_one_core(pid: int) -> None:
    """Every thread of `pid` onto one core after it started: its OpenMP team was sized for more, as when another
    process holds the other cores. The team's threads then take turns on that core at each barrier."""
    core = min(os.sched_getaffinity(0))
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {core})


@needs_native
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for a 2-thread engine")
def test_an_engine_whose_cores_are_taken_keeps_answering(settings: Settings, smollm2_gguf: Path) -> None:
    """The soak's stalls: with OpenMP's default spin at each barrier, a 2-thread engine left one core answered nothing
    for minutes (every stream at once); with the brief spin (util/process.openmp_env) each answer takes seconds. The
    limit is the soak's own rule for a failed request, far above a healthy answer even on a crowded machine."""
    served = start_model(settings, smollm2_gguf, "pinned-smol", ctx_size=1024, parallel=4, threads=2)
    try:
        environ = Path(f"/proc/{served.pid}/environ").read_bytes().split(b"\0")
        assert all(f"{name}={value}".encode() in environ for name, value in native.env().items())
        _pin_to_one_core(served.pid)

        def ask(i: int) -> httpx.Response:
            return httpx.post(f"{served.base_url}/v1/chat/completions", timeout=60.0,
                              json={"model": served.name, "messages": [{"role": "user", "content": f"Count to {i + 3}."}],
                                    "max_tokens": 8, "ignore_eos": True})

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda i: _outcome(ask, i), range(4)))
        assert outcomes == ["ok"] * 4, outcomes
    finally:
        stop_model(settings, served.name)


def _outcome(ask: Callable[[int], httpx.Response], i: int) -> str:
    try:
        reply = ask(i)
    except httpx.TimeoutException:
        return "no answer within the 60 s request limit"
    return "ok" if reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 8 else f"HTTP {reply.status_code}"
