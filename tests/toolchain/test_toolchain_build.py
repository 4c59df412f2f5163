"""The one llama.cpp build: its manifest, its libraries in the binding, a failed compile, and the install's real build."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from model_serving.errors import ServingError
from model_serving.serve.embedded import native
from model_serving.serve.embedded.engine import require_native
from model_serving.settings import Settings
from model_serving.toolchain import __main__ as cli
from model_serving.toolchain import binding, build, lookup
from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import TOOLS, patches


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_bin(folder: Path, server_body: str = 'echo "version: 1 (test)"') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOOLS:
        _script(folder, name, server_body if name == "llama-server" else "exit 0")
    (folder / "libllama.so.0.5.0").write_bytes(b"llama")
    (folder / "libllama.so.0").symlink_to("libllama.so.0.5.0")
    (folder / "libllama.so").symlink_to("libllama.so.0")
    (folder / "libggml.so").write_bytes(b"ggml")
    return folder


def _cached(settings: Settings, tmp_path: Path) -> Settings:
    cache = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    meta = build.manifest(tmp_path / "no-sdist", patches(), 1.0)
    build.install(_fake_bin(tmp_path / "bin"), lookup.folder(cache), meta)
    return cache


def test_the_manifest_lists_every_patch_and_the_build_is_handed_out(settings: Settings, tmp_path: Path) -> None:
    cache = _cached(settings, tmp_path)
    found = lookup.installed(cache)
    assert isinstance(found, lookup.NativeBuild)
    manifest = json.loads((lookup.folder(cache) / "build.json").read_text())
    assert manifest["patches"] == [{"name": p.name, "sha256": p.sha256} for p in patches()]
    assert manifest["libraries"] == ["libggml.so", "libllama.so", "libllama.so.0", "libllama.so.0.5.0"]
    assert manifest["version"] == "version: 1 (test)" and manifest["revision"].startswith("llama-cpp-python-")
    assert os.readlink(lookup.folder(cache) / "libllama.so") == "libllama.so.0"  # the library's links survive the copy
    assert lookup.tool(cache, "llama-imatrix") == lookup.folder(cache) / "llama-imatrix"
    with pytest.raises(ValueError, match="not one of the built tools"):
        lookup.tool(cache, "llama-cli")
    # the engine start and status see the same build, its patches named
    engine = native.find(cache)
    assert engine.kind == "native" and engine.server == lookup.folder(cache) / "llama-server"
    assert engine.describe.startswith("native (llama.cpp of llama-cpp-python-") and "0001-server-keep-connection-after-stream.patch" in engine.describe
    assert lookup.record(cache)["patches"] == manifest["patches"] and lookup.record(cache)["kind"] == "native"


def test_a_build_that_traps_on_this_cpu_is_never_cached(settings: Settings, tmp_path: Path) -> None:
    cache = dataclasses.replace(settings, native_cache=tmp_path / "cache")
    with pytest.raises(BuildFailed, match="does not run on this CPU"):
        build.install(_fake_bin(tmp_path / "bin", "kill -ILL $$"), lookup.folder(cache), {})  # what AMX kernels do on a VM that traps them
    assert list((tmp_path / "cache").iterdir()) == []  # no half-copied folder either
    assert native.find(cache).kind == "none"  # an engine start refuses: nothing half-built is served


def test_a_failed_compile_exits_1_and_every_later_look_says_why(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()  # no CMakeLists.txt: cmake's configure step fails (the patches' files are missing first)
    assert cli.main(["build", str(tmp_path / "src")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llama.cpp toolchain: ") and "Next step:" in err
    cache = Settings.from_env()
    assert not lookup.folder(cache).exists()
    assert cli.main(["find"]) == 1 and "native llama.cpp build failed at install" in capsys.readouterr().err
    engine = native.find(cache)
    assert engine.kind == "none" and engine.server is None and "native llama.cpp build failed at install" in engine.describe
    with pytest.raises(ServingError, match="native llama.cpp build failed at install") as refused:
        require_native(cache)  # every engine start asks this first: the refusal carries the compile's cause
    assert "scripts/install.sh" in refused.value.next_step


def test_bind_replaces_the_binding_libraries_with_the_build(settings: Settings, tmp_path: Path) -> None:
    cache = _cached(settings, tmp_path)
    found = lookup.installed(cache)
    assert isinstance(found, lookup.NativeBuild)
    lib = tmp_path / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    (lib / "libllama.so").write_bytes(b"a wheel's own copy")
    (lib / "libggml-cpu.so").write_bytes(b"a wheel's own copy")
    assert binding.bind(found, lib) == ["libggml.so", "libllama.so", "libllama.so.0", "libllama.so.0.5.0"]
    assert sorted(p.name for p in lib.iterdir()) == ["libggml.so", "libllama.so", "libllama.so.0", "libllama.so.0.5.0"]
    assert (lib / "libllama.so").resolve().read_bytes() == b"llama"


needs_build = pytest.mark.skipif(not isinstance(lookup.installed(Settings()), lookup.NativeBuild),
                                 reason="no llama.cpp build for this CPU yet (scripts/install.sh compiles it)")


@pytest.mark.slow
def test_the_pinned_sdist_patched_compiles_once_for_binding_and_tools(pinned_sdist: Path, tmp_path: Path) -> None:
    """The install's own build: reused when the install made it (then its manifest must list the patches), else compiled here."""
    cache = Settings()
    if not isinstance(lookup.installed(cache), lookup.NativeBuild):
        cache = dataclasses.replace(cache, native_cache=tmp_path / "cache")
        build.build(cache, pinned_sdist)
    found = lookup.installed(cache)
    assert isinstance(found, lookup.NativeBuild)
    assert found.manifest["patches"] == [p.record() for p in patches()]
    assert found.manifest["llama_cpp_commit"] and found.manifest["targets"] == list(TOOLS)
    assert {"libllama.so", "libggml.so", "libggml-cpu.so", "libmtmd.so"} <= set(found.manifest["libraries"])
    for name in TOOLS:
        assert os.access(found.folder / name, os.X_OK)


@needs_build
@pytest.mark.slow
def test_the_binding_runs_the_build_libraries() -> None:
    found = lookup.installed(Settings())
    assert isinstance(found, lookup.NativeBuild)
    loaded = binding.verify()  # a fresh interpreter imports llama_cpp: libllama and libggml from the binding's lib dir
    for name in ("llama", "ggml"):
        ours = found.folder / Path(loaded[name]).name
        assert Path(loaded[name]).resolve().read_bytes() == ours.resolve().read_bytes()  # byte for byte the tools' libraries


def test_a_stock_build_has_its_own_folder_and_its_failure_never_reaches_status(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_NATIVE_CACHE", str(tmp_path / "cache"))
    cache = Settings.from_env()
    assert lookup.folder(cache, []) != lookup.folder(cache)  # no patches: another cache key, never served by mistake
    assert "build-stock" in str(lookup.installed(cache, []))
    (tmp_path / "src").mkdir()  # cmake's configure fails, as above
    assert cli.main(["build-stock", str(tmp_path / "src")]) == 1
    assert "llama.cpp toolchain: " in capsys.readouterr().err
    assert not lookup.failure_path(cache).exists()  # the product's build is not the one that failed
    assert "native build not found" in str(lookup.installed(cache))
    build.install(_fake_bin(tmp_path / "bin"), lookup.folder(cache, []), build.manifest(tmp_path / "no-sdist", [], 1.0))
    stock = lookup.installed(cache, [])
    assert isinstance(stock, lookup.NativeBuild) and stock.patches() == []
    assert isinstance(lookup.installed(cache), str)  # the stock build is never handed out as the engine
    assert build.build(cache, tmp_path / "src", stock=True) == stock.folder  # cached: no second compile
