"""Which engine answers for a version reference (`NAME`, `NAME@N`, `NAME@live`), under which served model name.

A reference goes through the version store (`lifecycle.resolve`): it maps `NAME`, `NAME@live` and `NAME@N` to what the
version is served as (an engine record, or an Ollama tag). A plain name the store does not know (started with `serve
start`, never deployed) resolves through the registry alone. The engine's own record (serve/registry) gives the URL,
the engine kind, what it serves (the GGUF, for perplexity) and its settings (context, slots), so the report can say
whether both versions run with the same ones.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.lifecycle.resolve import resolve as resolve_version
from model_serving.serve.registry import ServedModel, list_models
from model_serving.settings import Settings


class EvalTarget(BaseModel):
    """One version as the eval reaches it."""

    ref: str = Field(description="What was asked for: NAME, NAME@N or NAME@live")
    served_as: str = Field(description="The model name requests carry")
    version: int | None = Field(default=None, description="The version number, when the version store knows it")
    base_url: str
    engine: str
    source: str | None = Field(default=None, description="What the engine serves: the GGUF (llama.cpp) or checkpoint folder (vLLM)")
    ctx_size: int | None = None
    parallel: int | None = None
    completions_only: bool = False
    pid: int | None = None
    engine_build: str | None = None


def _record(settings: Settings, served_as: str) -> ServedModel | None:
    return next((m for m in list_models(settings) if m.name == served_as), None)


def resolve_target(settings: Settings, ref: str) -> EvalTarget:
    """The running engine behind `ref`; refused, with the next step, when it is not served now."""
    version, base_url, engine, served_as = None, None, None, ref
    try:
        found = resolve_version(settings, ref)
    except InputError:
        if "@" in ref or _record(settings, ref) is None:
            raise
        found = None  # a name served without a version record (serve start): its engine record is the version
    if found is not None:
        served_as, version, base_url, engine = found.served_as, found.n, found.base_url, found.target
    record = _record(settings, served_as)
    if record is None and base_url is None:
        raise InputError(f"{ref!r} is not served now (no engine serves {served_as!r}).",
                         "Start it (model-serving serve start, or deploy it), then run the eval again; `model-serving serve list` shows what is served.")
    if record is not None and record.state != "running":
        raise InputError(f"The engine serving {served_as!r} is not running (its process is gone).",
                         f"Start it again (model-serving serve start ... --name {served_as} --replace), then run the eval again.")
    if record is None:
        return EvalTarget(ref=ref, served_as=served_as, version=version, base_url=str(base_url), engine=str(engine or "unknown"))
    return EvalTarget(ref=ref, served_as=served_as, version=version, base_url=record.base_url, engine=record.engine, source=record.source,
                      ctx_size=record.ctx_size, parallel=record.parallel, completions_only=record.completions_only, pid=record.pid,
                      engine_build=record.engine_build)


def settings_differ(a: EvalTarget, b: EvalTarget) -> list[str]:
    """The engine settings the two versions do not share: a difference there is part of what the eval measures."""
    notes = []
    for field, label in (("engine", "engine"), ("ctx_size", "context"), ("parallel", "slots"), ("engine_build", "llama.cpp build")):
        if getattr(a, field) != getattr(b, field):
            notes.append(f"{label}: {getattr(a, field)} vs {getattr(b, field)}")
    return notes
