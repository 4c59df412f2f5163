"""Which llama.cpp build this install has, and the binaries it hands to the other floors.

`installed` is the one place that says whether the compiled build exists for this recipe and CPU, and
if not, why: never built, or the install's compile failed (its recorded cause). `tool` hands out
`llama-server`, `llama-quantize`, `llama-imatrix` and `llama-bench`; `record` is what every deploy and
bench result stores about the engine build.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_serving.settings import Settings
from model_serving.toolchain.recipe import TOOLS, Patch, cache_key, revision, shown_flags

MANIFEST = "build.json"
INSTALL_STEP = "Run scripts/install.sh: it compiles llama.cpp once for this CPU."
STOCK_STEP = "Run python -m model_serving.toolchain build-stock SDIST: it compiles the same revision without our patches."


@dataclass(frozen=True)
class NativeBuild:
    """A finished, verified build: its folder and its manifest (build.json)."""

    folder: Path
    manifest: dict[str, Any] = field(hash=False, compare=False)

    @property
    def server(self) -> Path:
        return self.folder / "llama-server"

    def patches(self) -> list[str]:
        return [p.get("name", "?") for p in self.manifest.get("patches", [])]

    def describe(self) -> str:
        """One line for status and the registry: 'native (llama.cpp COMMIT of REVISION, CPU; patches: ...)'."""
        commit = (self.manifest.get("llama_cpp_commit") or "")[:10] or _commit_from_version(self.manifest.get("version", ""))
        at = f"llama.cpp {commit} of" if commit else "llama.cpp of"
        applied = ", ".join(self.patches()) or "none"
        return f"native ({at} {self.manifest.get('revision', '?')}, {self.manifest.get('cpu', shown_flags())}; patches: {applied})"


def _commit_from_version(text: str) -> str:
    return text.rpartition("commit ")[2].rstrip(")") if "commit " in text else ""


def folder(settings: Settings, patch_set: list[Patch] | None = None) -> Path:
    """The cache folder of this recipe's build; `patch_set=[]` names the stock build (no patches) of the same revision."""
    return settings.native_cache / cache_key(patch_set=patch_set)


def failure_path(settings: Settings) -> Path:
    return settings.native_cache / f"{cache_key()}.failed.json"


def failure(settings: Settings) -> dict[str, Any] | None:
    """The install's recorded compile failure for this recipe (cause, next_step, at), or None."""
    try:
        record = json.loads(failure_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def installed(settings: Settings, patch_set: list[Patch] | None = None) -> NativeBuild | str:
    """The cached build for this recipe and CPU (`patch_set=[]`: the stock one), or why there is none and what to do."""
    where = folder(settings, patch_set)
    manifest = where / MANIFEST
    if not manifest.is_file() or not os.access(where / "llama-server", os.X_OK):
        failed = failure(settings) if patch_set is None else None
        if failed:
            return (f"native llama.cpp build failed at install ({failed.get('at', '?')}): {failed.get('cause', '?')} "
                    f"Next step: {failed.get('next_step') or INSTALL_STEP}")
        step = INSTALL_STEP if patch_set is None else STOCK_STEP
        return f"native build not found in {where}: {step}"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        return f"native build manifest {manifest} is unreadable: rerun scripts/install.sh"
    return NativeBuild(where, meta if isinstance(meta, dict) else {})


def tool(settings: Settings, name: str) -> Path | None:
    """One binary of the build (llama-server, llama-quantize, llama-imatrix, llama-bench), or None when there is none."""
    if name not in TOOLS:
        raise ValueError(f"{name} is not one of the built tools {TOOLS}")
    found = installed(settings)
    path = found.folder / name if isinstance(found, NativeBuild) else None
    return path if path is not None and os.access(path, os.X_OK) else None


def record(settings: Settings) -> dict[str, Any]:
    """What a result stores about the llama.cpp build: revision, commit and patches, or why there is none."""
    found = installed(settings)
    if isinstance(found, NativeBuild):
        meta = found.manifest
        return {"kind": "native", "revision": meta.get("revision"), "llama_cpp_commit": meta.get("llama_cpp_commit"),
                "cpu": meta.get("cpu"), "patches": meta.get("patches", []), "key": found.folder.name}
    return {"kind": "none", "revision": revision(), "key": cache_key(), "failure": found}
