"""What every tool module shares: the server state, annotations, error mapping and jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from model_serving.errors import ServingError
from model_serving.jobs import JobInfo, JobManager, Progress
from model_serving.settings import Settings

T = TypeVar("T")

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def writes(*, destructive: bool = False, idempotent: bool = True) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False)


@dataclass
class AppState:
    settings: Settings
    jobs: JobManager = field(default_factory=JobManager)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn anticipated failures into tool errors the model can act on; bugs stay opaque."""
    try:
        yield
    except ServingError as exc:
        raise ToolError(str(exc)) from exc


async def run_blocking(fn: Callable[[], T]) -> T:
    """Run a short synchronous core call on a worker thread, mapping its failures."""
    with reported():
        return await anyio.to_thread.run_sync(fn)


async def run_as_job(state: AppState, ctx: Context | None, kind: str, fn: Callable[[Progress], BaseModel], wait_s: float) -> JobInfo:
    """Start `fn` as a job; stream progress for up to `wait_s` seconds, then hand back the job handle.

    If the client gives up on the call the job keeps running: `job_status` finds it by id.
    """
    job = state.jobs.submit(kind, fn)
    deadline = anyio.current_time() + wait_s
    last = -1.0
    while not job.done.is_set() and anyio.current_time() < deadline:
        await anyio.sleep(0.25)
        if ctx is not None and job.progress.fraction > last:
            last = job.progress.fraction
            with contextlib.suppress(Exception):
                await ctx.report_progress(last, 1.0, job.progress.message or kind)
    return job.info()
