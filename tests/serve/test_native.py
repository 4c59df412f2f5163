"""The native llama.cpp build: which build an engine start picks and why, a build that cannot run, and the real one."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from model_serving.errors import InputError
from model_serving.serve.embedded import native, registry
from model_serving.serve.embedded.engine import start_model, stop_model
from model_serving.serve.status import serving_status
from model_serving.settings import Settings
from model_serving.util.process import busy_cores


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_build(folder: Path, server_body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in native.TARGETS:
        _script(folder, name, server_body if name == "llama-server" else "exit 0")
    return folder


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


def test_a_build_that_traps_on_this_cpu_is_never_cached(settings: Settings, tmp_path: Path) -> None:
    cache = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    built = _fake_build(tmp_path / "bin", "kill -ILL $$")  # what AMX kernels do on a VM that traps them
    with pytest.raises(RuntimeError, match="does not run on this CPU"):
        native.install(built, native.build_dir(cache))
    assert not native.build_dir(cache).exists() and list((tmp_path / "cache").iterdir()) == []  # no half-copied folder either
    assert native.find(cache).kind == "xllamacpp"


def test_a_verified_build_is_found_with_its_revision_and_cpu(settings: Settings, tmp_path: Path) -> None:
    cache = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    native.install(_fake_build(tmp_path / "bin", 'echo "version: 1 (test)"'), native.build_dir(cache))
    found = native.find(cache)
    assert found.kind == "native" and found.server == native.build_dir(cache) / "llama-server"
    assert found.describe.startswith(f"native (llama.cpp of {native.llama_cpp_revision()}, ")
    assert native.tool(cache, "llama-imatrix") == native.build_dir(cache) / "llama-imatrix"
    # The key is the revision and this CPU's flags: another CPU (or revision) looks in another folder.
    assert native.cache_key(flags=["sse2"]) != native.cache_key() != native.cache_key(revision="llama-cpp-python-0.0.1")


def test_a_failed_compile_reports_why_and_leaves_the_wheel_in_charge(settings: Settings, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()  # no CMakeLists.txt: cmake's configure step fails
    assert native.main(["build", str(tmp_path / "src")]) == 1
    err = capsys.readouterr().err
    assert "native llama.cpp build failed, the xllamacpp wheel stays the engine" in err and "cmake" in err
    assert not native.build_dir(Settings.from_env()).exists()
    assert native.main(["find"]) == 1 and "native build not found" in capsys.readouterr().out


def test_the_stream_patch_keeps_the_connection_after_done(tmp_path: Path) -> None:
    path, old, new = native.STREAM_PATCH
    file = tmp_path / path
    file.parent.mkdir(parents=True)
    file.write_text(f"before\n{old}\nafter\n", encoding="utf-8")
    assert native.patch_stream_close(tmp_path) and native.patch_stream_close(tmp_path)  # applied once, then recognised
    assert file.read_text(encoding="utf-8") == f"before\n{new}\nafter\n"
    file.write_text("other code\n", encoding="utf-8")
    assert native.patch_stream_close(tmp_path) is False and file.read_text(encoding="utf-8") == "other code\n"


def test_the_small_batch_patch_applies_both_halves_or_neither(tmp_path: Path) -> None:
    (path, old1, new1), (_, old2, new2) = native.SMALL_BATCH_PATCHES
    file = tmp_path / path
    file.parent.mkdir(parents=True)
    file.write_text(f"a\n{old1}\nb\n{old2}\nc\n", encoding="utf-8")
    assert native.patch_small_batch(tmp_path) and native.patch_small_batch(tmp_path)
    assert file.read_text(encoding="utf-8") == f"a\n{new1}\nb\n{new2}\nc\n" and native.SMALL_BATCH in new1
    half = f"a\n{old1}\nb\nother code\n"  # a revision whose second call site changed: the first half is undone
    file.write_text(half, encoding="utf-8")
    assert native.patch_small_batch(tmp_path) is False and file.read_text(encoding="utf-8") == half
    assert native.cache_key(flags=["avx2"]) != native.cache_key(flags=["avx2", "avx512f"])


needs_native = pytest.mark.skipif(native.find(Settings(engine_build="auto")).kind != "native",
                                  reason="no native llama.cpp build for this CPU (scripts/install.sh compiles it)")


@needs_native
def test_the_native_build_serves_on_loopback_and_the_record_says_so(settings: Settings, smollm2_gguf: Path) -> None:
    served = start_model(settings, smollm2_gguf, "native-smol", ctx_size=1024, parallel=2)
    try:
        assert served.engine_build and served.engine_build.startswith("native (llama.cpp ") and native.llama_cpp_revision() in served.engine_build
        argv = Path(f"/proc/{served.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[0].endswith(b"/llama-server") and argv[argv.index(b"--host") + 1] == b"127.0.0.1"
        assert registry.alive(served.pid)
        reply = httpx.post(f"{served.base_url}/v1/chat/completions", timeout=120,
                           json={"model": "native-smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        assert reply.status_code == 200 and reply.json()["model"] == "native-smol"
        status = serving_status(settings)
        assert status.engine_build == served.engine_build
        assert [e.model.engine_build for e in status.engine if e.healthy] == [served.engine_build]
    finally:
        stop_model(settings, served.name)
    assert not registry.alive(served.pid)


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
    assert native.env() == {}  # OpenMP's own brief spin, then sleep: no engine spins while idle
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert native.env() == {"OMP_WAIT_POLICY": "PASSIVE"}
