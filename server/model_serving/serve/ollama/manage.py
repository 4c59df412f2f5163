"""Manage models on an Ollama server: list, show, running, copy, delete, unload, pull, version.

Each function opens a client for `settings.ollama_host`, validates names before sending them, and
returns a pydantic result the CLI prints and the MCP tools return.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress
from model_serving.serve.ollama import names, versions
from model_serving.serve.ollama.client import START_HINT, ModelEntry, OllamaClient, RunningModel, ShowInfo, parse_time
from model_serving.serve.ollama.modelfile import ModelfileError, parse
from model_serving.serve.ollama.plan import TemplateChoice, build_modelfile
from model_serving.settings import Settings
from model_serving.util.paths import confine


class RunningInfo(BaseModel):
    name: str
    size: int = Field(description="bytes in memory")
    size_vram: int = Field(description="bytes in GPU memory")
    context_length: int | None = None
    expires_at: str = ""

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property (pydantic's documented workaround)
    @property
    def processor(self) -> str:
        return RunningModel(name=self.name, size=self.size, size_vram=self.size_vram).processor

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property (pydantic's documented workaround)
    @property
    def expires_in_s(self) -> float | None:
        when = parse_time(self.expires_at)
        return round((when - datetime.now(UTC)).total_seconds(), 1) if when else None


STATUS_TIMEOUT_S = 5.0  # a status answer must come quickly even when the server hangs


class ServerStatus(BaseModel):
    """The Ollama server: whether it answers, its version and what it lacks; with details, its models."""

    host: str
    reachable: bool
    version: str = ""
    missing_features: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list, description="model names (with details)")
    running: list[RunningInfo] = Field(default_factory=list, description="loaded models (with details)")
    error: str = Field("", description="why it is not reachable")
    next_step: str = ""


class ActionResult(BaseModel):
    action: Literal["copy", "delete", "unload", "pull"]
    model: str
    detail: str = ""


class ModelfileResult(BaseModel):
    modelfile: str
    template: TemplateChoice


class ModelfileCheck(BaseModel):
    path: str
    valid: bool
    problems: list[str] = Field(default_factory=list)
    instructions: dict[str, int] = Field(default_factory=dict, description="how many of each instruction")


def server_status(settings: Settings, *, details: bool = False, timeout_s: float = STATUS_TIMEOUT_S) -> ServerStatus:
    """Whether Ollama answers, its version and what it lacks; unreachable is data here, not an error."""
    with OllamaClient(settings, timeout=timeout_s, connect_timeout=timeout_s) as client:
        try:
            version = client.version()
            models = [m.name for m in client.list()] if details else []
            running = _running(client) if details else []
        except ServingError as exc:
            return ServerStatus(host=client.host, reachable=False, error=exc.cause, next_step=exc.next_step or START_HINT)
    missing = versions.missing_features(version)
    warnings = [f"Ollama {version} predates {feature} (needs {versions.shown(feature)})" for feature in missing]
    return ServerStatus(host=client.host, reachable=True, version=version, missing_features=missing, warnings=warnings, models=models,
                        running=running, next_step="Upgrade Ollama to use every feature." if missing else "")


def _running(client: OllamaClient) -> list[RunningInfo]:
    return [RunningInfo(name=m.name, size=m.size, size_vram=m.size_vram, context_length=m.context_length, expires_at=m.expires_at) for m in client.ps()]


def list_models(settings: Settings) -> list[ModelEntry]:
    with OllamaClient(settings) as client:
        return client.list()


def show_model(settings: Settings, name: str) -> ShowInfo:
    names.canonical(name)
    with OllamaClient(settings) as client:
        return client.show(name)


def running_models(settings: Settings) -> list[RunningInfo]:
    with OllamaClient(settings) as client:
        return _running(client)


def copy_model(settings: Settings, source: str, destination: str, *, overwrite: bool = False) -> ActionResult:
    names.canonical(source)
    target = names.canonical(destination)
    with OllamaClient(settings) as client:
        if not overwrite and client.exists(target):
            raise InputError(f"Ollama already has a model named {target}.", "Choose another name, or pass replace (--replace).")
        client.copy(source, target)
    return ActionResult(action="copy", model=target, detail=f"copied from {source}")


def delete_model(settings: Settings, name: str) -> ActionResult:
    target = names.canonical(name)
    with OllamaClient(settings) as client:
        client.delete(target)
    return ActionResult(action="delete", model=target)


def unload_model(settings: Settings, name: str) -> ActionResult:
    target = names.canonical(name)
    with OllamaClient(settings) as client:
        result = client.unload(target)
    return ActionResult(action="unload", model=target, detail=result.done_reason or "unloaded")


def pull_model(settings: Settings, name: str, progress: Progress | None = None) -> ActionResult:
    target = names.canonical(name)
    progress = progress or Progress()

    def on_status(obj: dict) -> None:
        total, done = obj.get("total"), obj.get("completed")
        progress.update(done / total if total and done else None, str(obj.get("status", "")))

    with OllamaClient(settings) as client:
        client.pull(target, on_status)
    progress.update(1.0, "pulled")
    return ActionResult(action="pull", model=target)


def generate_modelfile(settings: Settings, gguf: Path, *, source_dir: Path | None = None, system: str | None = None, num_ctx: int | None = None) -> ModelfileResult:
    """The Modelfile (with our Go TEMPLATE) registration would send, for review or `ollama create -f`."""
    plan = build_modelfile(settings, gguf, source_dir=source_dir, system=system, num_ctx=num_ctx, template="go")
    return ModelfileResult(modelfile=plan.modelfile.render(), template=plan.choice)


def check_modelfile(settings: Settings, path: Path) -> ModelfileCheck:
    """Validate a user's Modelfile: unknown instructions, bad parameter names or types, unclosed quotes."""
    path = confine(path, settings.roots, what="Modelfile")
    try:
        mf = parse(path.read_text(encoding="utf-8"))
    except ModelfileError as exc:
        return ModelfileCheck(path=str(path), valid=False, problems=[f"line {n}: {m}" for n, m in exc.problems])
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a UTF-8 text file.", "Pass the Modelfile itself.") from None
    counts = {"FROM": 1, "PARAMETER": len(mf.parameters), "MESSAGE": len(mf.messages), "LICENSE": len(mf.license)}
    for key, value in (("TEMPLATE", mf.template), ("SYSTEM", mf.system), ("ADAPTER", mf.adapter), ("REQUIRES", mf.requires)):
        if value is not None:
            counts[key] = 1
    return ModelfileCheck(path=str(path), valid=True, instructions={k: v for k, v in counts.items() if v})
