"""The MCP server: the same core functions as the CLI, as typed tools.

Layout follows the reference servers: `create_server(settings)` builds the server (tests build their
own), tools are thin wrappers over core functions, and anticipated failures become tool errors in one
place (`reported`). Long steps run as jobs: the tool waits a few seconds, then returns a handle.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from model_serving import __version__
from model_serving.config import Settings
from model_serving.errors import ServingError
from model_serving.jobs import JobInfo, JobManager, Progress

log = logging.getLogger("model_serving.mcp")
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


def tool_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with reported():
            return await fn(*args, **kwargs)

    return wrapper


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


def create_server(settings: Settings | None = None) -> MCPServer:
    settings = settings or Settings.from_env()
    state = AppState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[AppState]:
        try:
            yield state
        finally:
            await anyio.to_thread.run_sync(state.jobs.shutdown)

    mcp = MCPServer(
        "model-serving",
        version=__version__,
        instructions=(
            "Take a Hugging Face checkpoint to a served, verified, measured local model. "
            "Start with deploy (or inspect -> export -> quantize -> register -> bench). Long steps return a job_id: "
            "poll job_status until state is succeeded or failed; job_cancel stops one and removes its partial output."
        ),
        lifespan=lifespan,
    )

    @mcp.tool(name="job_status", title="Status of a long-running job", annotations=READ_ONLY)
    async def job_status(job_id: str | None = None) -> list[JobInfo]:
        """Progress, message and (when finished) the result or error of one job, or of all jobs when no id is given."""
        with reported():
            if job_id:
                return [state.jobs.get(job_id).info()]
            return state.jobs.list()

    @mcp.tool(name="job_cancel", title="Cancel a job", annotations=writes(destructive=False, idempotent=True))
    async def job_cancel(job_id: str) -> JobInfo:
        """Cancel a running job: its child processes are killed and its partial output removed."""
        with reported():
            return await anyio.to_thread.run_sync(state.jobs.cancel, job_id)

    from model_serving import mcp_core

    mcp_core.register_tools(mcp, state)
    # --- capability tool modules (one line each) ---
    __import__("model_serving.skill.mcp_tools", fromlist=["register_tools"]).register_tools(mcp, state)
    __import__("model_serving.bench.mcp_tools", fromlist=["register_tools"]).register_tools(mcp, state)
    __import__("model_serving.ollama.mcp_tools", fromlist=["register_tools"]).register_tools(mcp, state)
    return mcp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="model-serving-mcp", description="MCP server for model-serving (stdio by default).")
    parser.add_argument("--root", action="append", help="Allowed root for file paths (repeatable; default: current directory).")
    parser.add_argument("--home", help="State and cache directory.")
    parser.add_argument("--ollama-host", help="Ollama base URL (default: OLLAMA_HOST or http://127.0.0.1:11434).")
    parser.add_argument("--http", action="store_true", help="Serve streamable HTTP on 127.0.0.1 instead of stdio.")
    parser.add_argument("--port", type=int, default=8765, help="Port for --http (always bound to 127.0.0.1).")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env(roots=args.root, home=args.home, ollama_host=args.ollama_host)
    server = create_server(settings)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    else:
        server.run()


if __name__ == "__main__":
    main()
