"""The Python binding (llama-cpp-python) runs the same compiled llama.cpp as the tools.

The install puts llama-cpp-python's Python code in place without compiling (`CMAKE_ARGS=-DLLAMA_BUILD=OFF`),
then `bind` copies the build's shared libraries into the binding's `llama_cpp/lib`, where both of its
loaders look (`llama_cpp.llama_cpp` honours LLAMA_CPP_LIB_PATH, `llama_cpp._ggml` does not, so an
environment variable alone would load two copies of ggml). `verify` imports the binding in a fresh
interpreter and checks that it loaded those very files, without AMX kernels.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from model_serving.toolchain.lookup import NativeBuild
from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import LIBRARY_GLOB

VERIFY_TIMEOUT_S = 120.0
_PROBE = ("import json, llama_cpp, llama_cpp._ggml as g; "
          "print(json.dumps({'llama': llama_cpp.llama_cpp._lib._name, 'ggml': g.libggml._name, "
          "'info': llama_cpp.llama_print_system_info().decode()}))")


def lib_dir() -> Path:
    """llama_cpp/lib of the installed binding, found without importing it (its import loads the libraries)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise BuildFailed("llama-cpp-python is not installed in this environment.", "Run scripts/install.sh.")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def bind(build: NativeBuild, target: Path | None = None) -> list[str]:
    """Replace the binding's shared libraries with the build's; the names copied."""
    where = target or lib_dir()
    names = sorted(p.name for p in build.folder.glob(LIBRARY_GLOB))
    if not any(n.startswith("libllama.so") for n in names):
        raise BuildFailed(f"The llama.cpp build in {build.folder} has no libllama.so.", "Delete that folder and rerun scripts/install.sh.")
    where.mkdir(parents=True, exist_ok=True)
    for old in where.glob(LIBRARY_GLOB):  # a wheel's own copies: one llama.cpp in the process, not two
        old.unlink()
    for name in names:
        shutil.copy2(build.folder / name, where / name, follow_symlinks=False)
    return names


def verify(where: Path | None = None) -> dict[str, str]:
    """Import the binding in a fresh interpreter: it must load libllama and libggml from `where`, with no AMX kernels."""
    expected = (where or lib_dir()).resolve()
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildFailed(f"The llama-cpp-python binding could not be imported: {exc}.", "Rerun scripts/install.sh.") from exc
    if done.returncode != 0:
        raise BuildFailed(f"The llama-cpp-python binding does not load the compiled llama.cpp (exit {done.returncode}).",
                          "Rerun scripts/install.sh; it recompiles and binds the libraries.", detail=done.stderr.strip()[-1500:])
    loaded: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    strays = [k for k in ("llama", "ggml") if Path(loaded[k]).resolve().parent != expected]
    if strays:
        raise BuildFailed(f"The binding loaded {', '.join(loaded[k] for k in strays)}, not the build in {expected}.",
                          "Unset LLAMA_CPP_LIB_PATH, then rerun scripts/install.sh.")
    if "AMX_INT8 = 1" in loaded["info"]:
        raise BuildFailed("The binding's llama.cpp has AMX kernels, which VMs without AMX tile state kill with SIGILL.",
                          "Delete ~/.cache/model-serving/llama.cpp and rerun scripts/install.sh.")
    return loaded
