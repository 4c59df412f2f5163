"""A deploy from a mergekit config: the merge is one resumable step, like the LoRA merge.

The merged folder `<out_dir>/<name>-merged` is an Artifact with its `.merge.json` (config, inputs' tree sha256s,
mergekit's version, the output's tree sha256): the plan and the step ask the one reuse rule
(checkpoint/mergekit_merge.recorded_merge), so a planned reuse is what the deploy does. With quality checks on, the merge
is measured against each input on the built-in quality set; that measurement is kept in the same sidecar, so a reused
merge is not measured again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from model_serving.checkpoint.merge_check import disk_room
from model_serving.checkpoint.mergekit_env import require
from model_serving.checkpoint.mergekit_merge import MergeSpec, expected_record, merge_artifact, recorded_merge, run_merge
from model_serving.jobs import Progress
from model_serving.settings import Settings
from model_serving.util.paths import sha256_file

from .context import DeployContext, DeployPlan, PlannedStep

RECIPE_KEYS = ("method", "config_file", "config_sha256", "config", "inputs", "mergekit_version")


def _spec(plan: DeployPlan) -> tuple[MergeSpec, Path]:
    spec, out = plan.source.merge, plan.checkpoint
    assert spec is not None and out is not None
    return spec, out


def planned(settings: Settings, plan: DeployPlan) -> PlannedStep:
    """The merge step, reused when the merged folder records this very merge; refused now (no mergekit, no disk)."""
    spec, out = _spec(plan)
    env = require(settings)  # refused before any work: the step needs mergekit to run, and its version to reuse
    reused = merge_artifact(out).present() and recorded_merge(settings, out, expected_record(settings, spec, env)) is not None
    if not reused:
        disk_room(out, list(spec.inputs))
    names = ", ".join(i.path.name for i in spec.inputs)
    return PlannedStep(step="merge", action="reuse" if reused else "run",
                       detail=f"mergekit {spec.method} of {names} ({plan.source.path}), mergekit {env.version}: {out}")


def run(ctx: DeployContext, progress: Progress) -> None:
    began = time.perf_counter()
    spec, out = _spec(ctx.plan)
    done = run_merge(ctx.settings, spec, out, overwrite=True, progress=progress.span(0.0, 0.4))
    config_file = ctx.plan.source.path
    assert config_file is not None
    summary: dict[str, Any] = {"kind": "mergekit", "method": done.method, "config_file": str(config_file),
                               "config_sha256": sha256_file(config_file), "config": done.config,
                               "inputs": [i.model_dump() for i in done.inputs], "mergekit_version": done.mergekit_version,
                               "dtype": done.dtype}
    if ctx.request.verify_quality:
        summary["quality"] = _quality(ctx.settings, spec, out, progress.span(0.4, 1.0))
    ctx.record("merge", began, reused=done.skipped, output=out, input_sha256=summary["config_sha256"], summary=summary)


def _quality(settings: Settings, spec: MergeSpec, out: Path, progress: Progress) -> list[dict[str, Any]] | str:
    """The merge against each input (kept in the sidecar), or why it could not be measured: the merge stands either way."""
    from model_serving.checkpoint.merge_quality import measure_against_inputs
    from model_serving.errors import ServingError

    art = merge_artifact(out)
    record = art.read() or {}
    kept = record.get("quality")
    if isinstance(kept, list):
        return kept
    try:
        measured = [q.model_dump() for q in measure_against_inputs(settings, out, [i.path for i in spec.inputs], progress)]
    except ServingError as exc:
        return f"not measured: {exc.cause}"
    art.record({**record, "quality": measured})
    return measured


def recipe(ctx: DeployContext) -> dict[str, Any] | None:
    """What the manifest records of a mergekit merge: the config (as run and as given), the inputs' hashes, mergekit."""
    step = next((s for s in ctx.result.steps if s.step == "merge" and s.summary.get("kind") == "mergekit"), None)
    return {k: step.summary.get(k) for k in RECIPE_KEYS} if step else None
