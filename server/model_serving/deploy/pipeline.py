"""A deploy: plan -> (prepare) -> export -> quantize -> register + probe -> bench -> manifest.

The plan checks everything it can before any long work and writes nothing; the steps then run in
order over one DeployContext, each reusing an identical earlier output, and the manifest written
beside the artifacts records hashes, tool versions, settings and every result.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from model_serving.jobs import Progress
from model_serving.requests import DeployRequest
from model_serving.settings import Settings

from . import reuse
from .claim import deploy_claim
from .context import DeployContext, DeployPlan, DeployResult, Source
from .manifest import tool_versions, write_manifest
from .plan import make_plan
from .steps import STEPS
from .versioning import record_finished

# Imported inside functions: bench.plots (the bench floor loads numpy), only for the bench step's plots.


def deploy(settings: Settings, request: DeployRequest, progress: Progress | None = None) -> DeployResult:
    """Deploy `request.source` (default: SmolLM2-135M) end to end, or only plan it (`request.plan`).

    A deploy holds its name's claim (deploy/claim.py) from the moment the plan knows the name to the
    manifest: a second deploy of the same name meanwhile is refused, naming this one.
    """
    progress = progress or Progress()
    started = time.perf_counter()
    with contextlib.ExitStack() as held:

        def claim(name: str, source: Source) -> None:
            held.enter_context(deploy_claim(settings, name, source.label))

        plan = make_plan(settings, request, claim=None if request.plan else claim)
        result = DeployResult(name=plan.name, target=plan.target, target_reason=plan.target_reason, plan=plan.steps,
                              version=plan.version.n if plan.version else None, live=plan.version.live if plan.version else None,
                              reused=reuse.sentence(plan.version) if plan.version and plan.version.reuse else None)
        if request.plan:
            result.planned_only = True
            return result
        _run_steps(settings, request, plan, result, progress, started)
    progress.update(1.0, f"{plan.name} deployed")
    return result


def _run_steps(settings: Settings, request: DeployRequest, plan: DeployPlan, result: DeployResult, progress: Progress,
               started: float) -> None:
    """Run the planned steps in order over one context, then write the manifest; a failure leaves no empty folder."""
    created = _make_folder(plan.out_dir)
    ctx = DeployContext(settings=settings, request=request, plan=plan, result=result,
                        served=plan.source.path if plan.source.kind == "gguf" else None)  # quantize replaces it when it runs
    reuse.prime(ctx)  # an unchanged redeploy: the version's own artifact and results, nothing rebuilt
    preload: threading.Thread | None = None
    try:
        begin = 0.0
        for name, step, end in STEPS:
            if name == "register" and plan.action("bench") != "skip":
                preload = _preload_plots()
            if name == "bench" and preload is not None:
                preload.join()  # never beside the bench's timed requests: an import holds the client's interpreter
            if plan.action(name) != "skip":
                step(ctx, progress.span(begin, end))
            begin = end
        result.total_seconds = round(time.perf_counter() - started, 3)
        result.manifest_path = str(write_manifest(ctx))
        record_finished(ctx, Path(result.manifest_path))
    except BaseException:
        _remove_empty(created)
        raise


def _preload_plots() -> threading.Thread:
    """Import the plotting library beside the engine start, where this process mostly waits, not after the bench."""
    from model_serving.bench.plots import preload

    thread = threading.Thread(target=preload, name="preload-plots", daemon=True)
    thread.start()
    return thread


def _make_folder(folder: Path) -> list[Path]:
    """Create `folder` and return the folders that did not exist, deepest first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(created: list[Path]) -> None:
    """A failed deploy leaves no empty folders behind; anything a step kept (a reusable output) stays."""
    for folder in created:
        with contextlib.suppress(OSError):
            folder.rmdir()


__all__ = ["DeployRequest", "DeployResult", "deploy", "tool_versions"]
