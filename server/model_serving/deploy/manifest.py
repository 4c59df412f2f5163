"""The manifest written beside the artifacts: what was deployed, from what, with which tools, and how it measured."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from model_serving.toolchain import record
from model_serving.util.paths import sha256_file, write_text_atomic

from . import merge_step
from .context import DeployContext

_TOOLS = ["model-serving", "llama-cpp-python", "gguf", "transformers", "torch", "mcp", "huggingface_hub"]


def tool_versions() -> dict[str, str]:
    found = {}
    for name in _TOOLS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def _artifact(path: Path | None, sha256: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    return {"path": str(path), "sha256": sha256 or (sha256_file(path) if path.is_file() else "")}


def write_manifest(ctx: DeployContext) -> Path:
    """Write `<name>.deploy.json` atomically: a reader never sees half a manifest."""
    plan, result = ctx.plan, ctx.result
    recipe = merge_step.recipe(ctx)
    merged = None
    if plan.source.kind == "gguf":
        source = _artifact(plan.source.path, ctx.source_sha256)
    elif recipe is not None:  # the config file's own hash; the merged checkpoint's tree hash is the export's input
        source = {"path": plan.source.label, "sha256": recipe["config_sha256"]}
        merged = {"path": str(plan.checkpoint), "sha256": ctx.source_sha256 or ""}
    else:  # a checkpoint's tree hash, as the export recorded it
        source = {"path": plan.source.label, "sha256": ctx.source_sha256 or ""}
    artifacts: dict[str, Any] = {
        "source": source,
        "merged": merged,
        "f16": _artifact(ctx.f16, ctx.f16_sha256),
        "served": source if ctx.served == plan.source.path else _artifact(ctx.served, ctx.served_sha256),
    }
    payload = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "name": plan.name, "target": plan.target, "source": plan.source.label,
        "artifacts": {k: v for k, v in artifacts.items() if v is not None},
        **({"base_model_relation": "merge", "merge_recipe": recipe} if recipe else {}),
        "settings": ctx.request.model_dump(mode="json"),
        "tool_versions": tool_versions(),
        "llama_cpp_build": record(ctx.settings),  # revision, commit and patches of the compiled llama.cpp, or why there is none
        "result": result.model_dump(mode="json", exclude={"manifest_path"}),
    }
    if plan.version is not None and plan.version.reuse is not None:
        payload = _keep_build(plan.manifest_path, payload)
    write_text_atomic(plan.manifest_path, json.dumps(payload, indent=2))  # a partial of its own: two writers never share one
    return plan.manifest_path


def _keep_build(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """A reused version's manifest (deploy/reuse.py) keeps what its build recorded, the artifacts and the steps that made
    them, beside this run's probe and bench."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        built = [s for s in earlier["result"]["steps"] if s["step"] not in {r["step"] for r in payload["result"]["steps"]}]
        artifacts = dict(earlier["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        return payload  # no readable earlier manifest: this run's own is all there is
    return {**payload, "artifacts": artifacts, "result": {**payload["result"], "steps": built + payload["result"]["steps"]}}
