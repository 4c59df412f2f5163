"""What one llama.cpp build is made of: the pinned source, the patches, the CMake options, this CPU.

The source is the llama.cpp vendored by the pinned llama-cpp-python release, so the Python binding, the
converter, the quantizer and the server are one revision. Everything that changes the compiled code is in
the cache key, so a rerun of the install reuses a finished build and another CPU (a copied home) or another
patch set never runs code compiled for something else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

LLAMA_CPP_PYTHON_PIN = "0.3.36"
# sha256 of llama_cpp_python-<pin>.tar.gz on PyPI; a new pin needs a new hash (and the patches rechecked).
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_PIN}.tar.gz"

TOOLS = ("llama-server", "llama-bench", "llama-imatrix", "llama-quantize")
# Only what is served or called: the tools pull in llama, ggml, llama-common and mtmd (the server's), nothing else.
TARGETS = TOOLS
# The shared libraries the binding loads (llama_cpp.llama_cpp: llama; llama_cpp._ggml: ggml) and the tools link.
LIBRARY_GLOB = "lib*.so*"
# cpp-httplib closes a kept-alive connection after 100 requests, or after 5 s idle: the 5 s equals httpx's
# (the openai client's) pool expiry and is below aiohttp's 15 s, so a client could send on a connection the
# server was closing at that moment and lose the request. Idle connections now stay 30 s (longer than
# either client keeps them; each holds an HTTP thread) and the request count per connection is unbounded.
KEEPALIVE_DEFINES = ("-DCPPHTTPLIB_KEEPALIVE_MAX_COUNT=1000000", "-DCPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND=30")
# VMs that advertise AMX but do not grant the tile state kill its kernels (used for Q4_0/Q4_1/Q8_0) with SIGILL.
NO_AMX = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DGGML_CCACHE=OFF",
    # Shared libraries, so the binding loads the very code the tools run; each finds the others beside it.
    "-DBUILD_SHARED_LIBS=ON", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN",
)
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")  # the ones that pick llama.cpp's kernels


@dataclass(frozen=True)
class Patch:
    """One unified diff against llama.cpp's source root, applied with `patch -p1`."""

    name: str
    path: Path
    sha256: str

    def record(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def patches(folder: Path | None = None) -> list[Patch]:
    """The patches shipped with the package (or those in `folder`), in the order their names sort."""
    where = folder or Path(str(files("model_serving.toolchain") / "patches"))
    found = sorted(where.glob("*.patch"))
    return [Patch(p.name, p, hashlib.sha256(p.read_bytes()).hexdigest()) for p in found]


def compile_flags() -> str:
    return " ".join(NO_AMX + KEEPALIVE_DEFINES)


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def shown_flags() -> str:
    present = set(cpu_flags())
    return " ".join(f for f in SHOWN_FLAGS if f in present) or "no AVX2"


def revision() -> str:
    """The llama.cpp revision: the one vendored by the pinned llama-cpp-python sdist the build compiles (the binding is bound to it)."""
    return f"llama-cpp-python-{LLAMA_CPP_PYTHON_PIN}"


def cache_key(revision_: str | None = None, flags: list[str] | None = None, patch_set: list[Patch] | None = None) -> str:
    applied = [p.record() for p in (patch_set if patch_set is not None else patches())]
    recipe = json.dumps([flags if flags is not None else cpu_flags(), CMAKE_OPTIONS, NO_AMX, KEEPALIVE_DEFINES, TARGETS, applied])
    return f"{revision_ or revision()}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
