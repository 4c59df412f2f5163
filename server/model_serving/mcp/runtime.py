"""What every tool shares: the server state, annotations, tools built from input models, and jobs.

A tool is a row of a table (`ToolSpec`): the core call, the verb's input model from `limits`, the
result model and a one-line summary. `add_tools` turns each row into an SDK tool whose parameters are
the model's fields, so the published schema carries the model's bounds and nothing else.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from model_serving.errors import ServingError
from model_serving.jobs import Job, JobInfo, JobManager, Progress
from model_serving.requests import Request, validated
from model_serving.mcp.errors import error_result, failure, log_to
from model_serving.settings import Settings

WAIT_S = 2.0  # a long step that finishes this fast answers inline; otherwise its job handle comes back
MAX_WAIT_S = 30.0

# Hints left out take the spec's defaults: readOnly false, openWorld true (export, pull and deploy may reach the Hub or a
# registry); destructive and idempotent mean nothing for a read-only tool.
READ_ONLY = ToolAnnotations(read_only_hint=True)


def writes(*, destructive: bool = False, idempotent: bool = True) -> ToolAnnotations:
    # idempotentHint defaults to false in the MCP spec: only a true one is worth its characters in tools/list
    return ToolAnnotations(destructive_hint=destructive, idempotent_hint=True if idempotent else None)


@dataclass
class AppState:
    settings: Settings
    jobs: JobManager
    log_file: Path | None = None

    @classmethod
    def create(cls, settings: Settings) -> AppState:
        log_file = log_to(settings.state_dir)
        jobs = JobManager(settings.state_dir, describe=lambda exc: failure(exc, "the job", log_file).to_dict())
        return cls(settings, jobs, log_file)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: `fn(settings, request)`, or `fn(settings, request, progress)` when `long` (it runs as a job)."""

    fn: Callable[..., Any]
    name: str
    request: type[Request]
    result: Any  # a BaseModel subclass, or a tuple of them for a union
    annotations: ToolAnnotations
    summary: Callable[[Any], str] = lambda result: "Done."
    long: bool = False
    direct: bool = False  # `async fn(state, ctx, request) -> CallToolResult`: the job tools


def ok(result: BaseModel, text: str) -> CallToolResult:
    """Structured content once, and a short text that says what happened (not the JSON again)."""
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json", by_alias=True))


def job_result(info: JobInfo) -> CallToolResult:
    if info.status in ("failed", "cancelled"):
        error = info.error or {}
        err = ServingError(f"Job {info.taskId} ({info.kind}) {info.status}: {error.get('cause', '')}", error.get("next_step", ""),
                           detail=error.get("detail", ""))
        return error_result(err, {"error": error.get("error", "ServingError"), "job": info.model_dump(mode="json")})
    if info.status == "completed":
        text = f"{info.kind} completed: {info.statusMessage}"
    else:
        text = (f"{info.kind} is working ({info.progress:.0%}: {info.statusMessage or 'started'}). "
                f"Next: job_status(job_id={info.taskId!r}, wait_s=30).")
    return ok(info, text)


async def follow(job: Job, ctx: Context | None, wait_s: float) -> JobInfo:
    """Wait up to `wait_s` for the job, sending progress notifications while the call is open."""
    deadline = anyio.current_time() + min(wait_s, MAX_WAIT_S)
    last = -1.0
    while not job.done.is_set() and anyio.current_time() < deadline:
        with anyio.move_on_after(min(0.25, max(deadline - anyio.current_time(), 0))):
            await anyio.to_thread.run_sync(job.done.wait, 0.25)
        if ctx is not None and job.progress.fraction > last:
            last = job.progress.fraction
            with contextlib.suppress(Exception):  # a client that left must not fail the job
                await ctx.report_progress(last, 1.0, job.progress.message or job.kind)
    return job.info()


def _parameters(model: type[Request]) -> list[inspect.Parameter]:
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    for name, field in model.model_fields.items():
        annotation = Annotated[(field.annotation, *field.metadata, Field(description=field.description))]
        default = inspect.Parameter.empty if field.is_required() else field.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default))
    return params


def _call(state: AppState, spec: ToolSpec) -> Callable[..., Any]:
    async def tool(ctx: Context, **values: Any) -> CallToolResult:
        request = validated(spec.request, values, spec.name)
        if spec.direct:
            return await spec.fn(state, ctx, request)
        if not spec.long:
            result = await anyio.to_thread.run_sync(lambda: spec.fn(state.settings, request))
            return ok(result, spec.summary(result))

        def work(progress: Progress) -> BaseModel:
            result = spec.fn(state.settings, request, progress)
            progress.message = spec.summary(result)  # a finished job's statusMessage is its summary
            return result

        return job_result(await follow(state.jobs.submit(spec.name, work), ctx, WAIT_S))

    params = _parameters(spec.request)
    tool.__signature__ = inspect.Signature(params, return_annotation=CallToolResult)  # type: ignore[attr-defined]
    tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": CallToolResult}
    tool.__name__ = spec.name
    return tool


def result_schema(result: Any) -> dict[str, Any]:
    """The result's name only: its fields are in the resource schema://model-serving/<name>, not in every tools/list."""
    models = result if isinstance(result, tuple) else (result,)
    return {"type": "object", "title": " | ".join(schema_name(m) for m in models)}


def schema_name(model: type[BaseModel]) -> str:
    return model.__name__.replace("[", "-").replace("]", "").replace(".", "-")


# Published input schemas keep what an agent needs to call right (types, ranges, choices, defaults, required); the
# input model still enforces the rest (lengths, patterns, no leading '-') and names the rule when one is broken.
_LEFT_OUT = {"title", "maxLength", "minLength"}


def trim(schema: dict[str, Any]) -> dict[str, Any]:
    """The SDK's input schema, shorter: no titles, `anyOf [X, null]` folded into X, no null or false defaults (the server
    instructions say a flag without a default is false)."""
    props = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k not in _LEFT_OUT and not (k == "default" and v in (None, False))}
        arms = prop.pop("anyOf", None)
        if arms:
            real = [a for a in arms if a.get("type") != "null"]
            prop = {**real[0], **prop} if len(real) == 1 else {"anyOf": real, **prop}
        prop.pop("pattern", None)
        if "enum" in prop:
            prop.pop("type", None)
        if isinstance(prop.get("items"), dict):
            prop["items"] = {k: v for k, v in prop["items"].items() if k not in _LEFT_OUT and k != "pattern"}
        props[name] = {k: v for k, v in prop.items() if k not in _LEFT_OUT}
    return {"type": "object", "properties": props, **({"required": schema["required"]} if schema.get("required") else {})}


def add_tools(mcp: Any, state: AppState, specs: Sequence[ToolSpec]) -> None:
    for spec in specs:
        description = inspect.cleandoc(spec.fn.__doc__ or spec.name)
        mcp.add_tool(_call(state, spec), name=spec.name, description=description, annotations=spec.annotations)
        tool = mcp._tool_manager.get_tool(spec.name)  # the SDK derived these from the model; publish them shorter
        tool.parameters = trim(tool.parameters)
        # a long tool returns a job, whose schema job_status publishes once (JobInfo): not repeated in a dozen tools
        tool.fn_metadata.output_schema = None if spec.long else result_schema(spec.result)
        mcp.specs[spec.name] = spec
