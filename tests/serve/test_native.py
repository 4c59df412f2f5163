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

from model_serving.errors import InputError
from model_serving.serve import processes
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import start_model, stop_model
from model_serving.serve.status import serving_status
from model_serving.settings import Settings
from model_serving.util.process import busy_cores


def test_without_a_build_the_wheel_serves_and_says_why(settings: Settings, tmp_path: Path) -> None:
    empty = dataclasses.replace(settings, native_cache=tmp_path / "cache", engine_build="auto")
    found = native.find(empty)
    assert found.kind == "xllamacpp" and found.server is None
    assert found.describe.startswith("xllamacpp ") and f"native build not found in {tmp_path / 'cache'}" in found.describe
    assert native.find(dataclasses.replace(empty, engine_build="xllamacpp")).describe.endswith("(chosen by MODEL_SERVING_ENGINE_BUILD)")
    with pytest.raises(InputError, match="MODEL_SERVING_ENGINE_BUILD=native, but the native build not found"):
        native.find(dataclasses.replace(empty, engine_build="native"))
    with pytest.raises(InputError, match="is not a build"):
        native.find(dataclasses.replace(empty, engine_build="fast"))


needs_native = pytest.mark.skipif(native.find(Settings(engine_build="auto")).kind != "native",
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
