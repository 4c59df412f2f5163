"""A redeploy of an unchanged source reuses the version that serves it: no new version, no second engine.

A deploy without `replace` whose source bytes and serving settings (lifecycle/store.Serving) equal a recorded
version's, on the same engine, is that version again: its engine is probed and benched (the user asked for a verified,
measured model), and an engine that was stopped is started again from the version's own artifact. Anything changed, or
an engine that serves something else under the version's name now, keeps today's rule: a new version.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

from model_serving.checkpoint.export import checkpoint_files
from model_serving.checkpoint.rebuild import complete as checkpoint_complete
from model_serving.errors import PathNotAllowed, VerificationFailed
from model_serving.lifecycle import store
from model_serving.lifecycle.store import Serving, Version
from model_serving.requests import DeployRequest
from model_serving.settings import Settings
from model_serving.util.filehash import HashCache
from model_serving.util.paths import confine, tree_sha256

from .context import DeployContext, Engine, Source, VersionPlan, default_checkpoint

EngineState = Literal["running", "stopped", "taken"]


def serving(settings: Settings, request: DeployRequest, qtype: str | None, template_sha256: str | None,
            calibration_sha256: str | None) -> Serving:
    """The settings a version records beside its source (`calibration_sha256`: the importance matrix's text, or vLLM's)."""
    if calibration_sha256 is None and request.calibration is not None and request.format is not None:
        text = confine(request.calibration, settings.roots, what="calibration text")
        # not a file: matches no version, and the format's own check refuses it with its next step
        calibration_sha256 = HashCache(settings.state_dir).sha256(text) if text.is_file() else f"not a file: {text}"
    return Serving(quant=qtype, format=request.format, calibration_sha256=calibration_sha256, chat_template_sha256=template_sha256,
                   completions=request.completions, ctx_size=request.ctx_size, parallel=request.parallel)


def source_sha256(settings: Settings, source: Source, out_dir: Path | None) -> str | None:
    """The source's hash as a deploy records it (a GGUF's file hash, a checkpoint's tree hash), known before any step;
    None where only a step can tell (a Hub id, an adapter, a merge, the default model's checkpoint not built in `out_dir`)."""
    hashes = HashCache(settings.state_dir)
    if source.kind == "gguf":
        return hashes.sha256(source.path) if source.path is not None and source.path.is_file() else None
    if source.kind == "checkpoint" and source.path is not None and source.path.is_dir():
        folder = source.path
    elif source.kind == "default" and out_dir is not None and checkpoint_complete(default_checkpoint(out_dir, source)):
        folder = default_checkpoint(out_dir, source)
    else:
        return None
    return tree_sha256(folder, checkpoint_files(folder), hashes.sha256)


def find(settings: Settings, public: str, target: Engine, request: DeployRequest, source: Source, wanted: Serving) -> VersionPlan | None:
    """The version this deploy reuses (its engine answers, or is stopped and can start again), or None: a new version."""
    if request.replace:
        return None
    asked = confine(request.output, settings.roots, must_exist=False, what="output folder") if request.output else None
    book = store.load(settings, public)
    found = store.same_version(book, target, wanted, lambda v: source_sha256(settings, source, Path(v.out_dir or "")))
    if found is None or book is None or (asked is not None and asked != Path(found.out_dir or "")) or not _under_roots(settings, found):
        return None
    plan = VersionPlan(public=public, n=found.n, live=book.live == found.n, reuse=found)
    state = engine_state(settings, found, served_name(plan))
    return None if state == "taken" else dataclasses.replace(plan, restart=state == "stopped")


def _under_roots(settings: Settings, version: Version) -> bool:
    """A version built under another root (another checkout's deployments folder) is not this install's to restart."""
    try:
        confine(version.out_dir or "", settings.roots, must_exist=False, what="version folder")
    except PathNotAllowed:
        return False
    return True


def engine_state(settings: Settings, version: Version, answers_as: str) -> EngineState:
    """running: its engine answers under its name; stopped: nothing serves that name and its artifact is unchanged, so
    it can start again; taken: anything else (another artifact serves the name, or the artifact changed or is gone).
    `answers_as`: Ollama's public name when the version is live (a copy of its tag), which must be there too."""
    if version.target == "ollama":  # Ollama holds the tag; with the tag gone its blobs may be too
        from model_serving.serve.ollama.client import OllamaClient
        from model_serving.serve.ollama.names import canonical

        with OllamaClient(settings, timeout=10) as client:
            there = all(client.exists(canonical(n)) for n in {version.served_as, answers_as})
        return "running" if there else "taken"
    from model_serving.serve.processes import healthy
    from model_serving.serve.registry import list_models

    record = next((m for m in list_models(settings) if m.name == version.served_as and m.state == "running"), None)
    if record is not None:
        same = version.artifact is not None and Path(record.source).resolve() == Path(version.artifact).resolve()
        return "running" if same and healthy(record.base_url) else "taken"
    artifact = Path(version.artifact) if version.artifact else None
    if artifact is None or not artifact.exists():
        return "taken"
    if artifact.is_file() and version.artifact_sha256 and HashCache(settings.state_dir).sha256(artifact) != version.artifact_sha256:
        return "taken"
    return "stopped"


def sentence(version: VersionPlan) -> str:
    return f"already served as {version.public}@{version.n} (same source and settings): reused"


def served_name(version: VersionPlan) -> str:
    """The name the reused version answers to: its engine record, or on Ollama the public name when it is live."""
    assert version.reuse is not None
    return version.public if version.reuse.target == "ollama" and version.live else version.reuse.served_as


def prime(ctx: DeployContext) -> None:
    """A reused version's context: what it serves and was built from, as its record says (no step rebuilds them)."""
    reused = ctx.plan.version.reuse if ctx.plan.version else None
    if reused is None:
        return
    ctx.served = Path(reused.artifact) if reused.artifact else None
    ctx.served_sha256, ctx.source_sha256 = reused.artifact_sha256, reused.source_sha256
    ctx.result.quality = reused.quality  # measured when it was built: the quantization ran then


def reprobe(ctx: DeployContext) -> None:
    """The reused version's running engine, probed again: it must still answer (and stop); then the bench measures it."""
    from model_serving.serve.engines import engine
    from model_serving.serve.registry import get_model

    began = time.perf_counter()
    plan, settings = ctx.plan, ctx.settings
    probe = engine(plan.target).probe(settings, plan.name)
    if not probe.ok:
        raise VerificationFailed(f"{plan.name} is served but failed its probe: " + "; ".join(probe.problems) + ".",
                                 f"Deploy again with replace (--replace) to serve it anew, or stop it (`model-serving serve stop {plan.name}`).")
    if plan.target == "ollama":
        ctx.bench_base, ctx.bench_api, ctx.server_pid = settings.ollama_host, "ollama", None
        ctx.result.endpoint = f"{settings.ollama_host}/api/chat"
    else:
        model = get_model(settings, plan.name)
        ctx.bench_base, ctx.bench_api, ctx.server_pid = model.base_url, "openai", model.pid
        ctx.result.endpoint = f"{model.base_url}/v1/{'completions' if plan.completions else 'chat/completions'}"
        ctx.result.engine_build = model.engine_build
    ctx.result.answer, ctx.result.chat_features = probe.answer, probe.features()
    ctx.record("register", began, reused=True, summary={"reused": ctx.result.reused, "probe": probe.model_dump(mode="json")})

