"""Adapters on the natively built llama-server: the worker runs the name front and llama-server as its child.

One pid per served model (the worker's) stays true: the native server dies with the worker, even on SIGKILL, and
the worker ends when the native server dies. Without the native build nothing is served, and the refusal says why.
Real llama.cpp, real GGUF LoRAs (peft, then llama.cpp's converter).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from model_serving.errors import ServingError
from model_serving.requests import ServeStartRequest
from model_serving.serve import processes
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.settings import Settings
from model_serving.verbs import serve_start

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]
GONE_TIMEOUT_S = 30.0


def answer(base_url: str, model: str) -> str:
    reply = httpx.post(f"{base_url}/v1/chat/completions", timeout=120,
                       json={"model": model, "messages": QUESTION, "max_tokens": 12, "temperature": 0})
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not processes.alive(pid)


@pytest.fixture
def native_build(settings: Settings) -> native.Build:
    build = native.find(settings)
    if build.kind != "native":
        pytest.skip(f"needs the natively built llama-server: {build.describe}")
    return build


def _start(settings: Settings, tiny_gguf: Path, tiny_lora_ggufs: tuple[Path, Path]):  # noqa: ANN202 - a ServedModel
    a, b = tiny_lora_ggufs
    return serve_start(settings, ServeStartRequest(gguf_path=str(tiny_gguf), name="base", ctx_size=512, parallel=2,
                                                   lora=[f"tuned-a={a}", f"tuned-b={b}"]))


def test_adapters_on_the_native_build_answer_by_name_and_die_with_the_worker(settings: Settings, native_build: native.Build, tiny_gguf: Path,
                                                                          tiny_lora_ggufs: tuple[Path, Path]) -> None:
    model = _start(settings, tiny_gguf, tiny_lora_ggufs)
    try:
        assert model.engine_build.startswith("native") and "LoRA front" in model.engine_build
        assert "model_serving.serve.embedded.worker" in cmdline(model.pid)
        [engine] = [c for c in children(model.pid) if str(native_build.server) in cmdline(c)]  # llama-server, our worker's child
        assert all(a.differs_from_base for a in model.adapters)
        listed = httpx.get(f"{model.base_url}/v1/models", timeout=30).json()
        assert [m["id"] for m in listed["data"]] == ["base", "tuned-a", "tuned-b"]
        first = answer(model.base_url, "base")
        answers = {name: answer(model.base_url, name) for name in ("tuned-a", "tuned-b")}
        assert len({first, *answers.values()}) == 3, answers
        assert answer(model.base_url, "base") == first  # after an adapter: cache_prompt false, so no other adapter's cached prompt
        plain = serve_start(settings, ServeStartRequest(gguf_path=str(tiny_gguf), name="plain", ctx_size=512, parallel=2))
        try:  # the base's name applies no adapter at all (llama-server's `--lora` alone would hold each at scale 1)
            assert answer(plain.base_url, "plain") == first
        finally:
            stop_model(settings, "plain")
        os.kill(model.pid, signal.SIGKILL)  # no SIGTERM handler runs: only the parent-death signal ends llama-server
        assert wait_gone(model.pid) and wait_gone(engine)
    finally:
        stop_model(settings, "base")
    assert list_models(settings) == []


def test_the_worker_ends_when_its_native_server_dies(settings: Settings, native_build: native.Build, tiny_gguf: Path,
                                                     tiny_lora_ggufs: tuple[Path, Path]) -> None:
    model = _start(settings, tiny_gguf, tiny_lora_ggufs)
    try:
        [engine] = [c for c in children(model.pid) if str(native_build.server) in cmdline(c)]
        os.kill(engine, signal.SIGKILL)
        assert wait_gone(model.pid)  # a front without its engine would look served and answer 502
        [record] = list_models(settings)
        assert record.state == "dead"
    finally:
        stop_model(settings, "base")


def test_serve_stop_ends_the_worker_and_its_native_server(settings: Settings, native_build: native.Build, tiny_gguf: Path,
                                                          tiny_lora_ggufs: tuple[Path, Path]) -> None:
    model = _start(settings, tiny_gguf, tiny_lora_ggufs)
    [engine] = [c for c in children(model.pid) if str(native_build.server) in cmdline(c)]
    stop_model(settings, "base")
    assert wait_gone(model.pid) and wait_gone(engine) and list_models(settings) == []


def test_without_the_native_build_a_start_is_refused_and_names_the_install(settings: Settings, tiny_gguf: Path,
                                                                           tiny_lora_ggufs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "no-build"))  # a cache the install never filled
    empty = Settings.from_env(roots=[str(r) for r in settings.roots], home=str(settings.home))
    with pytest.raises(ServingError, match="natively built llama-server") as refused:
        _start(empty, tiny_gguf, tiny_lora_ggufs)
    assert "native build not found" in refused.value.cause
    assert "scripts/install.sh" in refused.value.next_step and list_models(empty) == []
