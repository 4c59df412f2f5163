"""The llama.cpp toolchain: one patched, pinned llama.cpp compiled once per install for the binding and the tools.

Floors: below it only errors, settings and util; serve/, quantize/ and above ask it for binaries.

- recipe: the pin, the CMake options, the patch files (patches/*.patch) and the cache key;
- patching: applies the patch files with `patch`, all or none;
- source: fetches the pinned sdist (sha256-checked) and unpacks its llama.cpp;
- build: compiles once, caches the tools and shared libraries with build.json, records a failure;
- binding: puts the shared libraries where llama-cpp-python loads them, and checks that it does;
- lookup: which build exists (or why not), the tools it hands out, what results record.

    python -m model_serving.toolchain install SDIST   # build (or reuse) and bind; exit 1 with cause and next step
"""

from model_serving.toolchain.lookup import NativeBuild, installed, record, tool

__all__ = ["NativeBuild", "installed", "record", "tool"]
