"""Register a GGUF under a name on either engine and prove it chats: one function, one result shape.

Both faces (CLI `register`, MCP `register_model`) and deploy call `register`; it confines the
paths, picks the engine, and returns a `RegisterResult` whatever the target.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from model_serving.checkpoint.template_check import load as load_template
from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.requests import RegisterTarget
from model_serving.serve.embedded.engine import ServedModel, gguf_file, register_embedded
from model_serving.serve.gateway.llama_router import ensure_gateway
from model_serving.serve.ollama.plan import TemplateMode
from model_serving.serve.ollama.register import OllamaRegistration, register_gguf
from model_serving.serve.probe_checks import ProbeResult
from model_serving.settings import Settings
from model_serving.util.paths import confine


class RegisterResult(BaseModel):
    """A registered model: where it serves, what the engine holds, and the probe that proved it."""

    target: RegisterTarget
    name: str = Field(description="the name clients use (Ollama: with its tag)")
    endpoint: str = Field(description="where clients chat")
    served: ServedModel | None = Field(None, description="the embedded engine's process (target embedded)")
    ollama: OllamaRegistration | None = Field(None, description="what Ollama stored (target ollama)")
    probe: ProbeResult


def register(settings: Settings, gguf: str | Path, name: str, *, target: RegisterTarget = "embedded", source_dir: str | Path | None = None,
             ctx_size: int = 2048, parallel: int = 4, replace: bool = False, quantize: str | None = None, system: str | None = None,
             template: TemplateMode = "auto", adapter: str | Path | None = None, progress: Progress | None = None,
             chat_template: str | Path | None = None, completions: bool = False) -> RegisterResult:
    """Serve (embedded) or register (Ollama) `gguf` as `name`, then probe it; `parallel` is the embedded engine's slots only.

    `chat_template` (a Jinja file under the roots) replaces the model's template: llama.cpp gets the file, Ollama its
    conversion to a Go TEMPLATE. `completions` (embedded only) serves a model without a template for /v1/completions."""
    gguf_path = gguf_file(settings, gguf)
    source = confine(source_dir, settings.roots, what="checkpoint folder") if source_dir is not None else None
    if target == "embedded":
        given = [flag for flag, value in (("source_dir", source), ("quantize", quantize), ("system", system), ("adapter", adapter)) if value is not None]
        given += ["template"] if template != "auto" else []
        if given:
            raise InputError(f"{', '.join(given)} only apply to the Ollama target.",
                             "Leave them out for the embedded engine (quantize first with `model-serving quantize`), or use target ollama.")
        model, probe = register_embedded(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, replace=replace, progress=progress,
                                         chat_template=chat_template, completions=completions)
        ensure_gateway(settings)  # the one endpoint lists it too (serve/gateway)
        route = "completions" if completions else "chat/completions"
        return RegisterResult(target="embedded", name=model.name, endpoint=f"{model.base_url}/v1/{route}", served=model, probe=probe)
    if completions:
        raise InputError("Ollama serves a model for chat; completions only applies to the embedded engine.",
                         "Use target embedded with completions, or give the model a chat template (--chat-template FILE).")
    template_text = load_template(chat_template, settings.roots).text if chat_template is not None else None
    registration, probe = register_gguf(settings, gguf_path, name, source_dir=source, quantize=quantize, overwrite=replace, system=system,
                                        num_ctx=ctx_size, template=template, adapter=Path(adapter) if adapter is not None else None, progress=progress,
                                        chat_template=template_text)
    return RegisterResult(target="ollama", name=registration.name, endpoint=f"{registration.host}/api/chat", ollama=registration, probe=probe)
