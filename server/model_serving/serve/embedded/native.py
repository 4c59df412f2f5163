"""Which llama.cpp build an embedded engine start uses, and the argv it runs.

The build itself (compile, patches, cache, the tools handed to other floors) is model_serving.toolchain;
the names it used to have here are re-exported below so older imports keep working. `find` decides which
build a start uses and says why: the native build when the install compiled one, else the xllamacpp wheel,
with the reason (never built, or the install's compile failed and its cause). `MODEL_SERVING_ENGINE_BUILD=
native|xllamacpp` forces one.

    python -m model_serving.serve.embedded.native find
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from model_serving.errors import InputError
from model_serving.settings import Settings
from model_serving.toolchain import lookup
from model_serving.toolchain.lookup import tool
from model_serving.toolchain.recipe import TOOLS as TARGETS
from model_serving.toolchain.recipe import cache_key, cpu_flags
from model_serving.toolchain.recipe import revision as llama_cpp_revision
from model_serving.util.process import openmp_env

__all__ = ["TARGETS", "Build", "build_dir", "cache_key", "cpu_flags", "find", "llama_cpp_revision", "server_argv", "tool"]

build_dir = lookup.folder

# Beyond the worker's settings: the best of benchmarks/engine_capacity.py's grid on this 2-core machine.
TUNING: tuple[str, ...] = ()
BuildKind = Literal["native", "xllamacpp"]
env = openmp_env  # the native server's OpenMP settings: the same as every llama.cpp child's (util/process.py says why)


@dataclass(frozen=True)
class Build:
    """The engine build an engine start uses, and the one-line reason shown in the registry and in `status`."""

    kind: BuildKind
    server: Path | None
    describe: str


def _xllamacpp(reason: str) -> Build:
    try:
        wheel = f"xllamacpp {version('xllamacpp')}"
    except PackageNotFoundError:
        wheel = "xllamacpp (not installed)"
    return Build("xllamacpp", None, f"{wheel} ({reason})")


def _native_build(settings: Settings) -> Build | str:
    """The toolchain's build for this CPU and revision, or why there is none (a failed compile names its cause)."""
    found = lookup.installed(settings)
    return found if isinstance(found, str) else Build("native", found.server, found.describe())


def find(settings: Settings) -> Build:
    """The build an engine start uses: native when cached (or forced), else the xllamacpp wheel."""
    choice = settings.engine_build
    if choice not in ("auto", "native", "xllamacpp"):
        raise InputError(f"MODEL_SERVING_ENGINE_BUILD={choice!r} is not a build.", "Use auto, native or xllamacpp.")
    if choice == "xllamacpp":
        return _xllamacpp("chosen by MODEL_SERVING_ENGINE_BUILD")
    found = _native_build(settings)
    if isinstance(found, Build):
        return found
    if choice == "native":
        raise InputError(f"MODEL_SERVING_ENGINE_BUILD=native, but the {found}.", "Run scripts/install.sh, or unset MODEL_SERVING_ENGINE_BUILD.")
    return _xllamacpp(found)


def server_argv(build: Build, model: Path, *, alias: str, port: int, ctx_size: int, parallel: int, threads: int,
                tuning: tuple[str, ...] = TUNING) -> list[str]:
    """llama-server's argv with the xllamacpp worker's settings (loopback, alias, slots, continuous batching, metrics)."""
    assert build.server is not None
    return [str(build.server), "--model", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--threads", str(threads), "--threads-batch", str(threads),
            "--cont-batching", "--metrics", "--slots", "--jinja", "--no-webui", *tuning]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["find"]:
        print("usage: native.py find   (the build: python -m model_serving.toolchain)", file=sys.stderr)
        return 2
    found = find(Settings.from_env())
    print(found.describe)
    return 0 if found.kind == "native" else 1


if __name__ == "__main__":
    sys.exit(main())
