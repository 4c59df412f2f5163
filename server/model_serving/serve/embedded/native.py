"""Which llama.cpp build an embedded engine start uses, and the argv it runs.

The build itself (compile, patches, cache, the tools handed to other floors) is model_serving.toolchain;
the names it used to have here are re-exported below so older imports keep working. `find` returns the native
build the install compiled, or says why there is none (never built, or the install's compile failed and its cause)
and what to do: an engine start then refuses, and `status` shows the reason.

    python -m model_serving.serve.embedded.native find
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from model_serving.errors import ServingError
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
# Jinja templates, with a thinking model's reasoning handed back in `reasoning_content` apart from the answer (tool calls
# are parsed from the template's own format by --jinja); for a template without <think> the format changes nothing.
CHAT = ("--jinja", "--reasoning-format", "deepseek")
BuildKind = Literal["native", "none"]
env = openmp_env  # the native server's OpenMP settings: the same as every llama.cpp child's (util/process.py says why)


@dataclass(frozen=True)
class Build:
    """The engine build an engine start uses (kind "none": there is none, `describe` says why and what to do),
    shown in the registry and in `status`."""

    kind: BuildKind
    server: Path | None
    describe: str


def find(settings: Settings) -> Build:
    """The toolchain's build for this CPU and revision, or why there is none (a failed compile names its cause)."""
    found = lookup.installed(settings)
    if isinstance(found, str):
        return Build("none", None, f"none: {found}")
    return Build("native", found.server, found.describe())


def server_argv(build: Build, model: Path, *, alias: str, port: int, ctx_size: int, parallel: int, threads: int,
                tuning: tuple[str, ...] = TUNING, chat_template: Path | None = None) -> list[str]:
    """llama-server's argv with the serving settings (loopback, alias, slots, continuous batching, metrics);
    `chat_template` (a Jinja file) replaces the GGUF's own template."""
    assert build.server is not None
    template = ["--chat-template-file", str(chat_template)] if chat_template is not None else []
    return [str(build.server), "--model", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--threads", str(threads), "--threads-batch", str(threads),
            "--cont-batching", "--metrics", "--slots", *CHAT, *template, "--no-webui", *tuning]


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


def require(settings: Settings, needs: str = "The embedded engine runs the natively built llama-server") -> Build:
    """The natively built llama.cpp (server and tools); without it nothing is served, and the error says how to build it."""
    build = find(settings)
    if build.kind != "native" or build.server is None:
        raise ServingError(f"{needs}, and this install has {build.describe}.",
                           "Rerun scripts/install.sh: it compiles llama.cpp and says why when the compile fails.")
    return build
