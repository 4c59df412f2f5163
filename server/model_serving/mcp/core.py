"""Core MCP tools: inspect, export, quantize, serve, register, status, deploy.

Each is a thin wrapper: validate the typed input, call the same core function the CLI calls, return
its pydantic result. Long steps return a JobInfo handle after a short wait (see run_as_job).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from model_serving.checkpoint.inspect import CheckpointInfo, GGUFInfo
from model_serving.jobs import JobInfo
from model_serving.mcp.runtime import READ_ONLY, AppState, reported, run_as_job, run_blocking, writes
from model_serving.serve.embedded.engine import ProbeResult, ServedModel
from model_serving.serve.status import ServingStatus

WAIT_S = 5.0  # answer inline when a step finishes this fast; otherwise hand back a job id

PathArg = Annotated[str, Field(description="A path under the server's allowed roots", min_length=1, max_length=4096)]
CtxSize = Annotated[int, Field(ge=64, le=1 << 20, strict=True, description="Context length in tokens")]
Parallel = Annotated[int, Field(ge=1, le=64, strict=True, description="Parallel sequences (server slots)")]
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._:-]{0,63}$", description="Model name clients use")]


class RegisterResult(BaseModel):
    target: Literal["embedded", "ollama"]
    model: ServedModel | None = None
    probe: ProbeResult | None = None
    ollama: dict[str, Any] | None = None


def register_tools(mcp: MCPServer, state: AppState) -> None:
    settings = state.settings

    @mcp.tool(name="inspect_model", title="Inspect a checkpoint or GGUF", annotations=READ_ONLY)
    async def inspect_model(path: PathArg, ctx_size: CtxSize | None = None, parallel: Parallel = 1) -> CheckpointInfo | GGUFInfo:
        """Architecture, parameters, dtype/file type, tokenizer, chat template, stop tokens, LoRA/quantization detection,
        and a memory estimate (weights + KV cache) for a Hugging Face checkpoint folder or a .gguf file."""
        from model_serving.checkpoint.inspect import inspect_path

        return await run_blocking(lambda: inspect_path(settings, path, ctx_size=ctx_size, parallel=parallel))

    @mcp.tool(name="export_gguf", title="Export a checkpoint to GGUF", annotations=writes(destructive=False, idempotent=True))
    async def export_gguf(source: Annotated[str, Field(description="Checkpoint folder under the allowed roots, or a Hugging Face repo id")],
                          ctx: Context, output: PathArg | None = None,
                          outtype: Literal["f16", "bf16", "q8_0", "f32", "auto"] = "f16", overwrite: bool = False) -> JobInfo:
        """Convert with llama.cpp's own converter after a preflight; verifies vocabulary, chat template and EOS in the result.
        Returns a job: poll job_status until it succeeds. An identical earlier export is reused."""
        from model_serving.checkpoint.export import export_gguf as run_export

        return await run_as_job(state, ctx, "export", lambda p: run_export(settings, source, output, outtype=outtype, overwrite=overwrite, progress=p), WAIT_S)

    @mcp.tool(name="quantize_gguf", title="Quantize a GGUF", annotations=writes(destructive=False, idempotent=True))
    async def quantize_gguf(input_path: PathArg, qtype: Annotated[str, Field(description="Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ... (case-insensitive)", max_length=16)],
                            ctx: Context, output: PathArg | None = None, allow_requantize: bool = False, overwrite: bool = False,
                            verify: bool = True) -> JobInfo:
        """Quantize with llama.cpp's llama_model_quantize; with verify, compares greedy answers and perplexity with the input
        and reports a quality verdict. Returns a job: poll job_status."""
        from model_serving.quantize.quantizer import quantize_gguf as run_quantize

        return await run_as_job(state, ctx, "quantize", lambda p: run_quantize(settings, Path(input_path), Path(output) if output else None, qtype,
                                                                               allow_requantize=allow_requantize, overwrite=overwrite, verify=verify, progress=p), WAIT_S)

    @mcp.tool(name="serve_start", title="Serve a GGUF on the embedded engine", annotations=writes(destructive=False, idempotent=False))
    async def serve_start(gguf_path: PathArg, name: ModelName, ctx_size: CtxSize = 2048, parallel: Parallel = 4,
                          port: Annotated[int, Field(ge=1024, le=65535, strict=True)] | None = None, replace: bool = False) -> ServedModel:
        """Start llama.cpp's server for one GGUF on 127.0.0.1 (continuous batching, parallel slots)."""
        from model_serving.serve.embedded.engine import start_model

        return await run_blocking(lambda: start_model(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, port=port, replace=replace))

    @mcp.tool(name="serve_stop", title="Stop a served model", annotations=writes(destructive=True, idempotent=True))
    async def serve_stop(name: ModelName) -> ServedModel:
        """Stop an embedded-engine model and free its memory."""
        from model_serving.serve.embedded.engine import stop_model

        return await run_blocking(lambda: stop_model(settings, name))

    @mcp.tool(name="serve_list", title="List served models", annotations=READ_ONLY)
    async def serve_list() -> list[ServedModel]:
        """Models served by the embedded engine, with address, state and memory."""
        from model_serving.serve.embedded.engine import list_models

        return await run_blocking(lambda: list_models(settings))

    @mcp.tool(name="register_model", title="Register a GGUF and probe it", annotations=writes(destructive=False, idempotent=False))
    async def register_model(gguf_path: PathArg, name: ModelName, target: Literal["embedded", "ollama"] = "embedded",
                             source_dir: PathArg | None = None, ctx_size: CtxSize = 2048, parallel: Parallel = 4,
                             replace: bool = False) -> RegisterResult:
        """Make a GGUF servable under a name (embedded llama.cpp server, or Ollama at the configured host), then prove it:
        one chat must answer and stop, with the prompt formatted by the model's own template."""

        def work() -> RegisterResult:
            if target == "embedded":
                from model_serving.serve.embedded.engine import register_embedded

                model, probe = register_embedded(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, replace=replace)
                return RegisterResult(target="embedded", model=model, probe=probe)
            from model_serving.serve.ollama.register import register_gguf
            from model_serving.util.paths import confine

            src = confine(source_dir, settings.roots) if source_dir else None
            registration = register_gguf(settings, confine(gguf_path, settings.roots), name, source_dir=src, overwrite=replace, num_ctx=ctx_size)
            return RegisterResult(target="ollama", ollama=registration.model_dump(mode="json"))

        return await run_blocking(work)

    @mcp.tool(name="serving_status", title="Serving status", annotations=READ_ONLY)
    async def serving_status() -> ServingStatus:
        """Embedded engine processes (health, slots, memory) and the configured Ollama server (version, models, running)."""
        from model_serving.serve.status import serving_status as status

        return await run_blocking(lambda: status(settings))

    @mcp.tool(name="deploy_model", title="Deploy end to end", annotations=writes(destructive=False, idempotent=True))
    async def deploy_model(ctx: Context, source: Annotated[str | None, Field(description="Checkpoint folder, .gguf file or Hub repo id; omit for the default SmolLM2-135M")] = None,
                           name: ModelName | None = None, quant: Annotated[str, Field(max_length=16)] = "Q8_0",
                           target: Literal["auto", "embedded", "ollama"] = "auto", out_dir: PathArg | None = None,
                           bench: bool = True, bench_requests: Annotated[int, Field(ge=1, le=1000, strict=True)] = 8,
                           verify_quality: bool = True, plan_only: bool = False, allow_broken: bool = False) -> JobInfo:
        """plan -> export -> quantize -> register -> probe -> bench, resumable, writing a manifest beside the artifacts.
        plan_only returns the plan without doing anything. Returns a job: poll job_status for progress and the result."""
        from model_serving.deploy.pipeline import deploy

        with reported():
            return await run_as_job(state, ctx, "deploy", lambda p: deploy(settings, source, name=name, quant=quant, target=target, out_dir=out_dir,
                                                                           bench=bench, bench_requests=bench_requests, verify_quality=verify_quality,
                                                                           plan_only=plan_only, allow_broken=allow_broken, progress=p), WAIT_S)
