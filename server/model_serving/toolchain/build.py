"""One compile of llama.cpp per install: the binding's shared libraries and the tools, from one patched tree.

The build is cached under `Settings.native_cache/<key>/` (recipe.cache_key), tools and libraries side by
side (each finds the others through `$ORIGIN`), with `build.json` naming the revision, the llama.cpp commit,
the CPU, the options and every patch applied. A build that fails leaves `<key>.failed.json` beside it
with the cause and the next step, which `status` and every engine start then show.

    python -m model_serving.toolchain build SDIST_OR_SOURCE_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_serving.settings import Settings
from model_serving.toolchain import lookup, patching, source
from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import (
    CMAKE_OPTIONS,
    LIBRARY_GLOB,
    TARGETS,
    TOOLS,
    Patch,
    compile_flags,
    cpu_flags,
    patches,
    revision,
    shown_flags,
)
from model_serving.util.paths import write_text_atomic

VERIFY_TIMEOUT_S = 30.0
NEXT_STEP = "Read the log named above, fix the cause (compiler, cmake, ninja, disk), then rerun scripts/install.sh."


def _run(argv: list[str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise BuildFailed(f"{Path(argv[0]).name} {argv[1]} exited with {done.returncode} (log: {log}).", NEXT_STEP, detail="\n".join(tail))


def _verify(server: Path) -> str:
    """Run the built server once: a CPU that traps its instructions fails here, not at the first serve."""
    try:
        done = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildFailed(f"the built llama-server could not be run: {exc}.", NEXT_STEP) from exc
    if done.returncode != 0:
        raise BuildFailed(f"the built llama-server does not run on this CPU (exit {done.returncode}).",
                          "Rerun scripts/install.sh on this machine; report the CPU flags if it fails again.",
                          detail=done.stderr.strip()[-300:])
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def compile_tree(tree: Path, build_dir: Path, log: Path, *, jobs: int | None = None, targets: tuple[str, ...] = TARGETS) -> Path:
    """Configure and build the targets with ninja; the folder holding the tools and libraries."""
    if not (shutil.which("cmake") and shutil.which("ninja")):
        raise BuildFailed("cmake and ninja are needed to compile llama.cpp.", "apt-get install cmake ninja-build, or pip install cmake ninja.")
    flags = compile_flags()
    _run(["cmake", "-S", str(tree), "-B", str(build_dir), "-G", "Ninja", *CMAKE_OPTIONS,
          f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"], log)
    _run(["cmake", "--build", str(build_dir), "--target", *targets, "-j", str(jobs or os.cpu_count() or 2)], log)
    return build_dir / "bin"


def install(bin_dir: Path, target: Path, meta: dict[str, Any]) -> None:
    """Copy the tools and libraries into the cache folder, verified and with their manifest, whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name in TOOLS:
            shutil.copy2(bin_dir / name, staged / name)
        libraries = sorted(p.name for p in bin_dir.glob(LIBRARY_GLOB))
        for name in libraries:
            shutil.copy2(bin_dir / name, staged / name, follow_symlinks=False)  # libllama.so -> libllama.so.0 -> ...
        meta = {**meta, "version": _verify(staged / "llama-server"), "libraries": libraries}
        (staged / lookup.MANIFEST).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)  # an earlier copy without a manifest
        os.replace(staged, target)  # lookup never sees half a build
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def manifest(sdist: Path, patch_set: list[Patch], seconds: float) -> dict[str, Any]:
    return {"revision": revision(), "llama_cpp_commit": source.commit(sdist) if sdist.is_file() else None,
            "cpu": shown_flags(), "cpu_flags": cpu_flags(), "cmake": [*CMAKE_OPTIONS, f"CFLAGS={compile_flags()}"], "targets": list(TARGETS),
            "patches": [p.record() for p in patch_set], "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "compile_seconds": round(seconds, 1)}


def build(settings: Settings, src: Path, *, jobs: int | None = None, stock: bool = False) -> Path:
    """The cached build for this recipe, compiled now when missing; BuildFailed (also recorded) says why it failed.

    `stock` compiles the same revision with no patches into its own cache folder, for benchmarks that measure what
    the patches change; nothing serves from it, so its failure is not recorded where `status` looks."""
    patch_set = [] if stock else patches()
    target = lookup.folder(settings, [] if stock else None)
    if isinstance(lookup.installed(settings, [] if stock else None), lookup.NativeBuild):
        return target
    try:
        _build(settings, src, target, patch_set, jobs=jobs)
    except BuildFailed as exc:
        if not stock:
            _record_failure(settings, exc)
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        failed = BuildFailed(f"the llama.cpp build stopped: {exc}.", NEXT_STEP)
        if not stock:
            _record_failure(settings, failed)
        raise failed from exc
    if not stock:
        lookup.failure_path(settings).unlink(missing_ok=True)
    return target


def _build(settings: Settings, src: Path, target: Path, patch_set: list[Patch], *, jobs: int | None) -> None:
    settings.native_cache.mkdir(parents=True, exist_ok=True)
    log = settings.native_cache / f"{target.name}.log"
    log.write_text("", encoding="utf-8")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=settings.native_cache) as tmp:
        work = Path(tmp)
        tree = source.unpack(src, work)
        patching.apply(tree, patch_set)
        bin_dir = compile_tree(tree, work / "build", log, jobs=jobs)
        install(bin_dir, target, manifest(src, patch_set, time.monotonic() - started))


def _record_failure(settings: Settings, exc: BuildFailed) -> None:
    """Leave the cause where `status` and every engine start look, so a failed compile is never silent."""
    record = {**exc.to_dict(), "at": datetime.now(UTC).isoformat(timespec="seconds"), "revision": revision()}
    try:
        settings.native_cache.mkdir(parents=True, exist_ok=True)
        write_text_atomic(lookup.failure_path(settings), json.dumps(record, indent=2))
    except OSError:
        pass  # the install still exits non-zero with the cause; only the later reminder is lost
