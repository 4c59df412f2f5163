"""The install's entry to the toolchain (scripts/install.sh calls it; every failure exits 1 with cause and next step).

    python -m model_serving.toolchain fetch DIR              # the pinned sdist in DIR (downloaded once, sha256-checked)
    python -m model_serving.toolchain check SDIST_OR_SOURCE  # every patch applies to that source (nothing is changed)
    python -m model_serving.toolchain build SDIST_OR_SOURCE  # compile once into the cache (reused when there)
    python -m model_serving.toolchain build-stock SDIST      # the same revision without our patches, its own cache folder
    python -m model_serving.toolchain install SDIST          # build, then bind the binding to the build's libraries
    python -m model_serving.toolchain find                   # the build this install has, or why none (exit 1)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from model_serving.settings import Settings
from model_serving.toolchain import binding, build, lookup, patching, source
from model_serving.toolchain.patching import BuildFailed
from model_serving.toolchain.recipe import patches


class Usage(Exception):
    """The command line names no command."""


USAGE = "usage: python -m model_serving.toolchain fetch DIR | check SOURCE | build SOURCE | build-stock SOURCE | install SDIST | find"


def _check(src: Path) -> str:
    patch_set = patches()
    with tempfile.TemporaryDirectory(prefix="llama.cpp-check.") as tmp:
        names = sorted({name for patch in patch_set for name in patching.touched(patch)})
        tree = src if src.is_dir() else source.extract(source.verified(src), names, Path(tmp))
        patching.check(tree, patch_set)
    return f"all {len(patch_set)} patches apply to {src}: " + ", ".join(p.name for p in patch_set)


def _install(settings: Settings, src: Path) -> str:
    build.build(settings, src)
    found = lookup.installed(settings)
    if not isinstance(found, lookup.NativeBuild):
        raise BuildFailed(f"The build finished but is not found: {found}", "Rerun scripts/install.sh.")
    binding.bind(found)
    loaded = binding.verify()
    return f"{found.describe()}\nllama-cpp-python loads {Path(loaded['llama']).parent}"


def run(args: list[str], settings: Settings) -> str:
    """The command's output; BuildFailed when it fails."""
    command, operand = (args + [""])[:2]
    if command == "find" and len(args) == 1:
        found = lookup.installed(settings)
        if isinstance(found, str):
            raise BuildFailed(found)
        return found.describe()
    if command == "record" and len(args) == 1:
        return json.dumps(lookup.record(settings), indent=2)
    if len(args) != 2:
        raise Usage(USAGE)
    if command == "fetch":
        return str(source.fetch(Path(operand)))
    if command == "check":
        return _check(Path(operand))
    if command == "build":
        return str(build.build(settings, Path(operand)))
    if command == "build-stock":
        return str(build.build(settings, Path(operand), stock=True))
    if command == "install":
        return _install(settings, Path(operand))
    raise Usage(USAGE)


def main(argv: list[str] | None = None) -> int:
    try:
        print(run(sys.argv[1:] if argv is None else argv, Settings.from_env()))
    except Usage as exc:
        print(exc, file=sys.stderr)
        return 2
    except BuildFailed as exc:
        print(f"llama.cpp toolchain: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
