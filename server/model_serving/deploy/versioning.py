"""A deploy makes a version of its name (lifecycle/store.py): which one, served where, and recorded when.

The first deploy of a name is version 1, served under the plain name as before. A deploy of a name that is already
served becomes version N+1, served beside the live one (embedded and vLLM: the record `NAME@N`; Ollama: the tag
`NAME:vN`) and not live until `promote`; with `replace` it goes live at once (embedded with a running gateway: served
beside and routed to, the old version serving on for a rollback; without the gateway it replaces the engine under the
plain name; Ollama: the public name becomes a copy of its tag, the old tags keep their blobs). A name served with
no version recorded (started by `serve start`, or deployed before versions) is recorded as version 1 first.
"""

from __future__ import annotations

from pathlib import Path

from model_serving.errors import InputError
from model_serving.lifecycle import store
from model_serving.lifecycle.store import Version
from model_serving.settings import Settings

from .context import DeployContext, Engine, VersionPlan


def served_on(settings: Settings, name: str, target: Engine) -> str | None:
    """Where a model of this name is served or registered now ("served by ... at URL"), or None."""
    if target in ("embedded", "vllm"):
        from model_serving.serve.embedded.engine import list_models

        running = [m for m in list_models(settings) if m.name == name and m.state == "running"]
        return f"served by the embedded engine at {running[0].base_url}" if running else None
    from model_serving.serve.ollama import names
    from model_serving.serve.ollama.client import OllamaClient

    with OllamaClient(settings, timeout=10) as client:
        return f"registered with Ollama at {client.host}" if client.exists(names.canonical(name)) else None


def plan_version(settings: Settings, name: str, target: Engine, replace: bool) -> tuple[VersionPlan, str | None]:
    """The version this deploy makes, and where the name is served now (None: nowhere)."""
    book = store.load(settings, name)
    versions = book.versions if book is not None else []
    kept = [v for v in versions if v.state != "pruned"]
    if kept and kept[-1].target != target:
        raise InputError(f"{name}'s versions are served on {kept[-1].target}; a version on {target} could neither share their traffic "
                         "nor take their place.", f"Deploy with target {kept[-1].target}, or under another name (--name).")
    taken = served_on(settings, name, target)
    if not versions and taken is None:
        return VersionPlan(public=name, n=1, live=True), None
    n = book.next_n() if book is not None and versions else 2
    routed = replace and taken is not None and target == "embedded" and _gateway_running(settings)
    return VersionPlan(public=name, n=n, live=replace or taken is None, adopt=taken if not versions else None, routed=routed), taken


def _gateway_running(settings: Settings) -> bool:
    from model_serving.serve.registry import load_gateway

    record = load_gateway(settings)
    return record is not None and record.state == "running"


def served_name(version: VersionPlan, target: Engine) -> str:
    """What the engine serves this version as: the plain name when it takes the name's place, else NAME@N (Ollama: a tag)."""
    if target == "ollama":
        return version.public if version.n == 1 else store.served_as(version.public, version.n, "ollama")
    return version.public if version.live and not version.routed else f"{version.public}@{version.n}"


def default_folder(root: Path, version: VersionPlan) -> Path:
    return root / "deployments" / (version.public if version.n == 1 else f"{version.public}@{version.n}")


def adopt(settings: Settings, ctx_target: Engine, version: VersionPlan) -> None:
    """Record the model served under the name with no versions as version 1 (Ollama: its blobs kept under tag NAME:v1)."""
    if version.adopt is None or store.load(settings, version.public) is not None:
        return
    source, artifact = "served before versions were recorded", None
    tag = store.served_as(version.public, 1, ctx_target)
    if ctx_target == "ollama":
        from model_serving.serve.ollama.client import OllamaClient

        with OllamaClient(settings) as client:
            client.copy(version.public, tag)
    else:
        from model_serving.serve.registry import get_model

        artifact = source = get_model(settings, version.public).source
    store.record_deploy(settings, version.public, Version(n=1, served_as=tag, target=ctx_target, source=source, artifact=artifact,
                                                          created_at=store.now()), live=True)


def record_served(ctx: DeployContext) -> None:
    """Right after register: the version exists (even if a later step fails); Ollama: version 1 gets its tag, a live one the name."""
    plan, version = ctx.plan, ctx.plan.version
    if version is None:
        return
    served_as = store.served_as(version.public, version.n, "ollama") if plan.target == "ollama" else plan.name
    if plan.target == "ollama":
        from model_serving.serve.ollama.client import OllamaClient

        with OllamaClient(ctx.settings) as client:
            if version.n == 1:
                client.copy(version.public, served_as)  # the version keeps its blobs when the name is re-pointed
            elif version.live:
                client.copy(served_as, version.public)
    if version.routed:  # the gateway's route takes the name to it; the old version keeps serving, for rollback
        from model_serving.lifecycle.switch import route_alone

        route_alone(ctx.settings, version.public, served_as)
    elif version.live and plan.target != "ollama":
        _stop_replaced(ctx.settings, version)
    store.record_deploy(ctx.settings, version.public, _version(ctx, served_as), live=version.live)
    ctx.result.version, ctx.result.live = version.n, version.live
    if not version.live:
        ctx.result.next_steps = next_steps(version.public, version.n, plan.target)


def record_reused(ctx: DeployContext) -> None:
    """An unchanged redeploy (deploy/reuse.py): its version is serving again; the result names it, and its next steps
    when it is not live."""
    version = ctx.plan.version
    assert version is not None
    with store.update(ctx.settings, version.public) as book:
        book.get(version.n).state = "serving"
        live = book.live == version.n
    ctx.result.version, ctx.result.live = version.n, live
    if not live:
        ctx.result.next_steps = next_steps(version.public, version.n, ctx.plan.target)


def _stop_replaced(settings: Settings, version: VersionPlan) -> None:
    """The versions that served under the plain name before this one replaced their engine are stopped now."""
    with store.update(settings, version.public) as book:
        for v in book.versions:
            if v.n != version.n and v.served_as == version.public and v.state == "serving":
                v.state = "stopped"


def _version(ctx: DeployContext, served_as: str) -> Version:
    plan = ctx.plan
    artifact = ctx.served or plan.checkpoint
    if plan.source.kind == "gguf" and plan.source.path is not None and ctx.source_sha256 is None:  # served as it is: no step hashed it
        from model_serving.util.filehash import HashCache

        ctx.source_sha256 = HashCache(ctx.settings.state_dir).sha256(plan.source.path)
        ctx.served_sha256 = ctx.served_sha256 or (ctx.source_sha256 if ctx.served == plan.source.path else None)
    if plan.source.kind == "checkpoint" and ctx.source_sha256 is None:  # vLLM serves the folder itself: no export hashed it
        from .reuse import source_sha256

        ctx.source_sha256 = source_sha256(ctx.settings, plan.source, None)
    return Version(n=plan.version.n if plan.version else 1, served_as=served_as, target=plan.target, source=plan.source.label,
                   source_sha256=ctx.source_sha256, quant=plan.qtype or plan.source.file_type, artifact=str(artifact) if artifact else None,
                   artifact_sha256=ctx.served_sha256, out_dir=str(plan.out_dir), created_at=store.now(), answer=ctx.result.answer,
                   quality=ctx.result.quality, serving=plan.serving)


def record_finished(ctx: DeployContext, manifest: Path) -> None:
    """After the manifest: the version's manifest, quality and bench summary."""
    version = ctx.plan.version
    if version is None:
        return
    bench = next((s.summary for s in ctx.result.steps if s.step == "bench"), None)
    summary = None
    if bench:
        summary = {"capacity": bench.get("capacity"), "verdicts": {v.get("target"): v.get("state") for v in ctx.result.verdicts},
                   "concurrency": bench.get("concurrency")}
    with store.update(ctx.settings, version.public) as book:
        found = book.get(version.n)
        # a reused version rerun without a bench keeps the bench it had
        found.manifest, found.quality, found.bench = str(manifest), ctx.result.quality or found.quality, summary or found.bench
        found.source_sha256 = found.source_sha256 or ctx.source_sha256


def next_steps(name: str, n: int, target: Engine) -> list[str]:
    """What to do with a version served beside the live one."""
    steps = [f"compare it with the live version on your evals: model-serving eval {name}@{n} --against {name}@live --set EVALS.jsonl"]
    if target == "embedded":
        steps.append(f"send it a share of the traffic: model-serving canary {name}@{n} --share 10")
    return steps + [f"make it live: model-serving promote {name}@{n} (undo: model-serving rollback {name})"]
