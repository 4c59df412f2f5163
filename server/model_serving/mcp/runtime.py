"""What every tool shares: the server state, annotations, tools declared from input models, and jobs.

A tool is a row of a table (`ToolSpec`): the core call, the verb's input model from `requests`, the
result model and hints. `describe` publishes the row as an MCP `Tool` whose input schema is the input
model's JSON schema; `run_tool` runs a call the server validated once, with that model, and answers
with the structured result beside its headline (results.py renders it once for both faces).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel

from model_serving.errors import ServingError
from model_serving.jobs import Job, JobInfo, JobManager, Progress
from model_serving.mcp.errors import error_result, failure, log_to
from model_serving.requests import Request
from model_serving.results import headline
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
    long: bool = False
    direct: bool = False  # `async fn(state, ctx, request) -> CallToolResult`: the job tools


def ok(result: BaseModel, text: str, notes: Sequence[str] = ()) -> CallToolResult:
    """Structured content once, and a short text that says what happened (not the JSON again), then any deprecation."""
    text += "".join(f" Note: {note}." for note in notes)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json", by_alias=True))


def job_result(info: JobInfo, notes: Sequence[str] = ()) -> CallToolResult:
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
    return ok(info, text, notes)


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


async def run_tool(state: AppState, spec: ToolSpec, request: Request, ctx: Context | None) -> CallToolResult:
    """One validated call: inline for a quick verb, as a job for a long one (its handle comes back after WAIT_S)."""
    if spec.direct:
        direct: CallToolResult = await spec.fn(state, ctx, request)
        return direct
    notes = request.deprecations()
    if not spec.long:
        result = await anyio.to_thread.run_sync(lambda: spec.fn(state.settings, request))
        return ok(result, headline(result), notes)

    def work(progress: Progress) -> BaseModel:
        result: BaseModel = spec.fn(state.settings, request, progress)
        progress.message = headline(result)  # a finished job's statusMessage is its summary
        return result

    return job_result(await follow(state.jobs.submit(spec.name, work), ctx, WAIT_S), notes)


def result_schema(result: Any) -> dict[str, Any]:
    """The result's name only: its fields are in the resource schema://model-serving/<name>, not in every tools/list."""
    models = result if isinstance(result, tuple) else (result,)
    return {"type": "object", "title": " | ".join(schema_name(m) for m in models)}


def schema_name(model: type[BaseModel]) -> str:
    return model.__name__.replace("[", "-").replace("]", "").replace(".", "-")


# Titles repeat the property names; everything else an input model enforces (types, lengths, patterns, item counts)
# is published, so the schema an agent reads is the one every call is validated with.
_UNPUBLISHED = {"title"}


def _published(prop: dict[str, Any]) -> dict[str, Any]:
    prop = {k: v for k, v in prop.items() if k not in _UNPUBLISHED and not (k == "default" and v in (None, False))}
    arms = prop.pop("anyOf", None)
    if arms:
        real = [a for a in arms if a.get("type") != "null"]
        prop = {**real[0], **prop} if len(real) == 1 else {"anyOf": real, **prop}
    if "enum" in prop:
        prop.pop("type", None)
    if isinstance(prop.get("items"), dict):
        prop["items"] = _published(prop["items"])
    return {k: v for k, v in prop.items() if k not in _UNPUBLISHED}


def input_schema(model: type[Request]) -> dict[str, Any]:
    """The tool's input schema: the JSON schema of the input model that validates every call.

    Written shorter where the meaning stays: no titles, `anyOf [X, null]` as X (null means "the default"), no null or
    false defaults (the server instructions say a flag without a default is false).
    An old spelling (`Request.renamed`) is accepted but not listed: the server instructions name them once.
    """
    schema = model.model_json_schema()
    props = {name: _published(prop) for name, prop in schema.get("properties", {}).items()}
    return {"type": "object", "properties": props, **({"required": schema["required"]} if schema.get("required") else {})}


def describe(spec: ToolSpec) -> Tool:
    """The tool as tools/list publishes it."""
    return Tool(name=spec.name, description=inspect.cleandoc(spec.fn.__doc__ or spec.name), input_schema=input_schema(spec.request),
                output_schema=None if spec.long else result_schema(spec.result),  # a long tool returns a job: JobInfo, published once
                annotations=spec.annotations)
