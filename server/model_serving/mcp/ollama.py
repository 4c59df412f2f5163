"""MCP tools `ollama_*`: the same management functions as `model-serving ollama ...`.

The server address comes from the server's settings (OLLAMA_HOST / --ollama-host), never from a
tool argument, and file paths go through `confine` against the configured roots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from model_serving.jobs import JobInfo
from model_serving.mcp.runtime import READ_ONLY, AppState, reported, run_as_job, run_blocking, writes
from model_serving.serve.ollama import manage
from model_serving.serve.ollama.client import ModelEntry, ShowInfo
from model_serving.serve.ollama.probe import ProbeResult, probe_model
from model_serving.util.paths import confine

ModelName = Annotated[str, Field(min_length=1, max_length=300, description="Ollama model name, e.g. my-model or my-model:v1")]


def register_tools(mcp: Any, state: AppState) -> None:
    settings = state.settings

    @mcp.tool(name="ollama_version", title="Ollama server version and missing features", annotations=READ_ONLY)
    async def ollama_version() -> manage.ServerStatus:
        """Whether the Ollama server at OLLAMA_HOST answers, its version, and which features model-serving uses that it lacks.
        An unreachable server is reported in the result (up=false, with how to start it), not as an error."""
        return await run_blocking(lambda: manage.server_status(settings))

    @mcp.tool(name="ollama_list", title="List Ollama models", annotations=READ_ONLY)
    async def ollama_list() -> list[ModelEntry]:
        """Models on the Ollama server: name, size on disk, family, parameter size, quantization, modified time."""
        return await run_blocking(lambda: manage.list_models(settings))

    @mcp.tool(name="ollama_show", title="Show what Ollama stored for a model", annotations=READ_ONLY)
    async def ollama_show(name: ModelName) -> ShowInfo:
        """Template, parameters (stop tokens, num_ctx, ...), system message, details, GGUF metadata and capabilities of one model."""
        return await run_blocking(lambda: manage.show_model(settings, name))

    @mcp.tool(name="ollama_ps", title="Models loaded in Ollama", annotations=READ_ONLY)
    async def ollama_ps() -> list[manage.RunningInfo]:
        """Loaded models with memory size, GPU/CPU split, allocated context and when they unload."""
        return await run_blocking(lambda: manage.running_models(settings))

    @mcp.tool(name="ollama_copy", title="Copy an Ollama model under a new name", annotations=writes(destructive=False, idempotent=True))
    async def ollama_copy(
        source: ModelName, destination: ModelName,
        overwrite: Annotated[bool, Field(strict=True, description="Replace an existing destination")] = False,
    ) -> manage.ActionResult:
        """Copy (tag) a model, e.g. my-model -> my-model:v1. Refuses to replace an existing name unless overwrite is true."""
        return await run_blocking(lambda: manage.copy_model(settings, source, destination, overwrite=overwrite))

    @mcp.tool(name="ollama_delete", title="Delete an Ollama model", annotations=writes(destructive=True, idempotent=True))
    async def ollama_delete(name: ModelName) -> manage.ActionResult:
        """Delete a model from the Ollama server. This cannot be undone; copy it first to keep a version."""
        return await run_blocking(lambda: manage.delete_model(settings, name))

    @mcp.tool(name="ollama_unload", title="Unload an Ollama model from memory", annotations=writes(destructive=False, idempotent=True))
    async def ollama_unload(name: ModelName) -> manage.ActionResult:
        """Unload a model now (keep_alive 0); it loads again on its next request."""
        return await run_blocking(lambda: manage.unload_model(settings, name))

    @mcp.tool(name="ollama_pull", title="Pull a model into Ollama", annotations=writes(destructive=False, idempotent=True))
    async def ollama_pull(
        name: ModelName, ctx: Context,
        wait_s: Annotated[float, Field(ge=0, le=600, description="Seconds to wait before returning a job handle")] = 20.0,
    ) -> JobInfo:
        """Pull a model from the server's registry. Returns a job; poll job_status until it succeeds or fails."""
        return await run_as_job(state, ctx, "ollama_pull", lambda progress: manage.pull_model(settings, name, progress), wait_s)

    @mcp.tool(name="ollama_probe", title="Probe an Ollama model", annotations=READ_ONLY)
    async def ollama_probe(
        name: ModelName,
        num_predict: Annotated[int, Field(ge=1, le=4096, strict=True, description="Token budget for the answer")] = 256,
    ) -> ProbeResult:
        """One chat request after unloading the model: passes when the answer ends with done_reason 'stop' (the model stops by itself)."""
        return await run_blocking(lambda: probe_model(settings, name, num_predict=num_predict))

    @mcp.tool(name="ollama_modelfile", title="Generate the Modelfile for a GGUF", annotations=READ_ONLY)
    async def ollama_modelfile(
        gguf_path: Annotated[str, Field(description="GGUF file inside the allowed roots")],
        source_dir: Annotated[str | None, Field(description="The checkpoint folder the GGUF came from (chat template, generation_config.json)")] = None,
        system: Annotated[str | None, Field(max_length=20_000, description="Default system message")] = None,
        num_ctx: Annotated[int | None, Field(ge=1, strict=True, description="Context length; default: trained context, capped by free memory")] = None,
    ) -> manage.ModelfileResult:
        """The Modelfile registration would use: FROM, a Go TEMPLATE converted from the chat template, a stop for every
        end-of-turn token, num_ctx and sampling defaults, with notes on anything the conversion approximates."""
        with reported():
            gguf = confine(gguf_path, settings.roots, what="GGUF file")
            source = confine(source_dir, settings.roots, what="checkpoint folder") if source_dir else None
        return await run_blocking(lambda: manage.generate_modelfile(settings, gguf, source_dir=source, system=system, num_ctx=num_ctx))

    @mcp.tool(name="ollama_check_modelfile", title="Validate a Modelfile", annotations=READ_ONLY)
    async def ollama_check_modelfile(path: Annotated[str, Field(description="Modelfile inside the allowed roots")]) -> manage.ModelfileCheck:
        """Check a Modelfile for unknown instructions, bad parameter names or value types and unclosed quotes, with line numbers."""
        with reported():
            modelfile = confine(path, settings.roots, what="Modelfile")
        return await run_blocking(lambda: manage.check_modelfile(settings, Path(modelfile)))
