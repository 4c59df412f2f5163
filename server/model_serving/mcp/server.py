"""The MCP server: the same core functions as the CLI, as typed tools.

Layout follows the reference servers: `create_server(settings)` builds the server (tests build their
own), tools are thin wrappers over core functions, and anticipated failures become tool errors in one
place (`reported`). Long steps run as jobs: the tool waits a few seconds, then returns a handle.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

import anyio
from mcp.server.mcpserver import MCPServer

from model_serving import __version__
from model_serving.jobs import JobInfo
from model_serving.mcp import bench, core, ollama, skill
from model_serving.mcp.runtime import READ_ONLY, AppState, reported, writes
from model_serving.settings import Settings


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

    for tools in (core, skill, bench, ollama):
        tools.register_tools(mcp, state)
    return mcp


async def server_tool_names(settings: Settings) -> set[str]:
    """Tool names of the live server, listed through a real MCP client session."""
    from mcp import Client

    async with Client(create_server(settings), raise_exceptions=True) as client:
        result = await client.list_tools()
    return {tool.name for tool in result.tools}


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
