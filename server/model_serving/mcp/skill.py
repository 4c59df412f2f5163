"""The skill over MCP: SKILL.md and its references as `skill://model-serving/...` resources, and a
`deploy_model` prompt that starts the workflow. Resources complement installing the skill; clients that
show resources to the model get the same guidance without a local copy.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.resources import FileResource
from mcp.shared.path_security import PathEscapeError, safe_join
from pydantic import Field

from model_serving.errors import ServingError
from model_serving.requests import TargetChoice
from model_serving.skill import SKILL_NAME, skill_dir

log = logging.getLogger("model_serving.skill")

_MIME = {".md": "text/markdown", ".json": "application/json", ".yaml": "application/yaml"}


PROMPT_TARGETS = {"auto": "Ollama if one answers, else the embedded llama.cpp engine", "ollama": "Ollama", "embedded": "the embedded llama.cpp engine",
                  "vllm": "vLLM serving the HF checkpoint itself (no GGUF; engines install vllm first)"}


def deploy_prompt_text(model_path: str, target: str, hardware: str, goal: str) -> str:
    return (
        f"Deploy the model at {model_path} for {target}.\n"
        f"Hardware: {hardware or 'not stated - find out (GPU and VRAM, or CPU cores and RAM) before choosing a quantization'}.\n"
        f"Goal: {goal or 'interactive chat: first token under 200 ms, whole reply under 500 ms'}.\n\n"
        f"Follow the model-serving skill (resource skill://{SKILL_NAME}/SKILL.md): call inspect_model first and "
        "check the memory estimate against the hardware; choose the quantization from the skill's decision tables "
        "(skill://model-serving/references/quantization.md and memory-and-cost.md). Then call deploy_model with plan "
        "set to see the steps, and again without it; poll job_status with wait_s 30 until the job is completed. "
        "Step by step instead: export_gguf, quantize_gguf, register_model, then bench at the expected concurrency. "
        "Report first-token time, total latency and requests per second against the goal, with the settings you chose and why. "
        "Ask before replacing a model that already has this name (replace)."
    )


def versions_prompt_text(name: str, source: str) -> str:
    """The lifecycle workflow with each decision's rule (skill: SKILL.md 'Releasing a new version', references/lifecycle.md)."""
    new = source or "the new checkpoint (a fine-tune, or a merge from merge_adapter with a method)"
    return (
        f"Release {new} as a new version of the served model {name}, following the model-serving skill "
        f"(skill://{SKILL_NAME}/references/lifecycle.md).\n"
        f"1. deploy_model with name {name} and without replace, then job_status (wait_s 30) until completed: the result must say "
        f"version N, not live ({name}@N is served beside the live version).\n"
        f"2. eval_versions with name {name}@N, against {name}@live and set the user's EVALS.jsonl (ask for it), then job_status until "
        "completed. Rule: promote false (worse on quality, or on the bench) -> stop and do not promote; true (quality better or not "
        "distinguishable, bench not worse) -> go on.\n"
        f"3. Embedded engine: model_versions action canary, name {name}@N, share 10; watch serving_metrics for a few hundred requests. "
        "Rule: an error rate or p95 latency above the live version's or the target -> canary share 0 and stop; else go on. "
        "Ollama has no canary: go to 4 and say so.\n"
        f"4. model_versions action promote, name {name}@N: probe.same must be true.\n"
        f"5. If users report a regression: model_versions action rollback, name {name}; probe.same must be true again. "
        f"Later, model_versions action prune with plan, then without, keeps the live version and the previous one.\n"
        "Report each decision with the figures behind it."
    )


def register(mcp: Any) -> None:
    """The skill's files as resources and the deploy prompt."""
    try:
        root = skill_dir()
    except ServingError as exc:  # an installed package without the skill folder still serves its tools
        log.warning("skill resources not registered: %s", exc.cause)
        root = None

    if root is not None:
        mcp.add_resource(FileResource(
            uri=f"skill://{SKILL_NAME}/SKILL.md", name=f"{SKILL_NAME}-skill", title="model-serving skill",
            description="When to use which format, quantization and engine; tuning and troubleshooting.",
            path=root / "SKILL.md", mime_type="text/markdown",
        ))
        references = root / "references"

        @mcp.resource(f"skill://{SKILL_NAME}/references/{{name}}", name="skill-reference", title="model-serving skill reference",
                      description="A reference file of the model-serving skill, e.g. quantization.md or memory-and-cost.md.", mime_type="text/markdown")
        def skill_reference(name: str) -> str:
            try:
                path = safe_join(references, name)
            except PathEscapeError:
                raise ResourceError(f"{name} is not a file of the skill's references.") from None
            if not path.is_file():
                available = ", ".join(sorted(p.name for p in references.iterdir() if p.is_file()))
                raise ResourceError(f"No reference named {name}; available: {available}.")
            return path.read_text(encoding="utf-8")

        for file in sorted(references.glob("*")):
            if file.is_file() and not file.name.startswith("."):
                mcp.add_resource(FileResource(
                    uri=f"skill://{SKILL_NAME}/references/{file.name}", name=f"{SKILL_NAME}-{file.stem}",
                    path=file, mime_type=_MIME.get(file.suffix, "text/plain"),
                ))

    @mcp.prompt(name="deploy_model", title="Deploy a model with the model-serving workflow")
    def deploy(
        model_path: Annotated[str, Field(description="Hugging Face checkpoint folder or repo id, or a GGUF file")],
        target: Annotated[TargetChoice, Field(description="Where to serve it")] = "auto",
        hardware: Annotated[str, Field(description="e.g. 'RTX 4070 12 GB' or '8-core CPU, 32 GB RAM'")] = "",
        goal: Annotated[str, Field(description="Latency or throughput goal")] = "",
    ) -> str:
        """Walk through inspect_model -> deploy_model (or export, quantize, register, bench) with the skill's decisions."""
        return deploy_prompt_text(model_path, PROMPT_TARGETS[target], hardware, goal)

    @mcp.prompt(name="model_versions", title="Release a new version: deploy beside, eval against live, canary, promote or roll back")
    def versions(
        name: Annotated[str, Field(description="The served name whose new version this is")],
        source: Annotated[str, Field(description="The new checkpoint, GGUF or merge output")] = "",
    ) -> str:
        """Merge -> deploy as version -> eval against live -> canary -> promote/rollback, each decision with its rule."""
        return versions_prompt_text(name, source)
