"""The MCP server: the same core functions as the CLI, as typed tools.

`create_server(settings)` builds the server (tests build their own). Tools come from tables of
`ToolSpec` rows (core, bench, ollama, cluster, jobs); every failure of a call is mapped in
`ServingServer.call_tool` (failures.py words it), so no input reaches the client as a traceback or an
"internal error".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, Tool

from model_serving import __version__
from model_serving.errors import InputError
from model_serving.failures import validated
from model_serving.jobs import JobInfo
from model_serving.mcp import bench, cluster, core, evals, ollama, skill, versions
from model_serving.mcp.errors import error_result, failure
from model_serving.mcp.runtime import READ_ONLY, AppState, ToolSpec, describe, follow, job_result, ok, run_tool, schema_name, writes
from model_serving.requests import RENAMED_UNTIL, JobCancelRequest, JobStatusRequest, Listing
from model_serving.settings import Settings

# Imported inside functions: the SDK's client side, only to list the tools (the server itself never needs it).

INSTRUCTIONS = (
    "Take a Hugging Face checkpoint to a served, verified, measured local model. Fastest: deploy_model (plan=true first "
    "to see the steps), then job_status(job_id, wait_s=30) until status is completed. Step by step: inspect_model -> export_gguf -> "
    "quantize_gguf -> register_model -> bench. Tools without an outputSchema are long: they return a job (JobInfo, as "
    "job_status does: taskId, status working/completed/failed/cancelled, result once completed); "
    "job_cancel stops one and removes its partial output. A flag without a default is false; names are lower case "
    "(a-z 0-9 . _ : -). Errors say the cause and the next step. A result's fields: resource "
    f"schema://model-serving/<outputSchema title>. Renamed, old names accepted until {RENAMED_UNTIL}: plan_only is plan, overwrite is "
    "replace, out_dir and output_dir are output."
)


class ServingServer(MCPServer):
    """MCPServer whose tools are rows of our tables (ToolSpec), served through its public `list_tools`/`call_tool`.

    `tools/list` publishes each row as an `mcp.types.Tool` whose input schema is the row's input model
    (runtime.describe); `tools/call` validates the arguments once, with that same model, and maps every
    failure in one place. Resources and prompts stay the SDK's own.
    """

    def __init__(self, state: AppState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.specs: dict[str, ToolSpec] = {}
        self._listed: list[Tool] = []

    def add_specs(self, specs: Sequence[ToolSpec]) -> None:
        for spec in specs:
            self.specs[spec.name] = spec
            self._listed.append(describe(spec))

    async def list_tools(self) -> list[Tool]:
        return list(self._listed)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        try:
            spec = self.specs.get(name)
            if spec is None:
                raise InputError(f"There is no tool named {name!r}.", "List the tools and call one of those.")
            request = validated(spec.request, arguments, name)  # strict: "8080" is not a port, a misspelt name is not ignored
            return await run_tool(self.state, spec, request, context)
        except MCPError:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place a call's failure becomes a result
            return error_result(failure(exc, name, self.state.log_file))


async def job_status(state: AppState, ctx: Context, req: JobStatusRequest) -> CallToolResult:
    """A job's status, and its result once done; wait_s long-polls. No job_id: recent jobs."""
    if req.job_id is None:
        jobs = [info.model_copy(update={"result": None}) for info in state.jobs.list()]
        listing = Listing[JobInfo].of(jobs)
        working = sum(1 for j in jobs if j.status == "working")
        return ok(listing, f"{listing.total} job(s), {working} working: " + ", ".join(f"{j.taskId} {j.kind} {j.status}" for j in listing.items[:10]))
    found = state.jobs.find(req.job_id)
    if isinstance(found, JobInfo):
        return job_result(found)
    return job_result(await follow(found, ctx, req.wait_s))


async def job_cancel(state: AppState, ctx: Context, req: JobCancelRequest) -> CallToolResult:
    """Cancel a working job; its partial output is removed."""
    info = await anyio.to_thread.run_sync(state.jobs.cancel, req.job_id)
    return ok(info, f"{info.kind} job {info.taskId} is {info.status}.")


JOB_TOOLS = [
    ToolSpec(job_status, "job_status", JobStatusRequest, (JobInfo, Listing[JobInfo]), READ_ONLY, direct=True),
    ToolSpec(job_cancel, "job_cancel", JobCancelRequest, JobInfo, writes(destructive=True), direct=True),
]


def add_result_schemas(mcp: ServingServer) -> None:
    """Each result model's full JSON schema as a resource, named like the tool's outputSchema title."""
    models: dict[str, Any] = {schema_name(JobInfo): JobInfo}
    for spec in mcp.specs.values():
        for model in spec.result if isinstance(spec.result, tuple) else (spec.result,):
            models[schema_name(model)] = model

    @mcp.resource("schema://model-serving/{name}", name="result-schema", title="Schema of a tool result",
                  description="JSON schema of a tool result; name it by the tool's outputSchema title.", mime_type="application/json")
    def result_schema(name: str) -> str:
        if name not in models:
            raise ResourceError(f"No result schema is named {name!r}; known: {', '.join(sorted(models))}.")
        return json.dumps(models[name].model_json_schema())


def create_server(settings: Settings | None = None) -> ServingServer:
    settings = settings or Settings.from_env()
    state = AppState.create(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[AppState]:
        try:
            yield state
        finally:
            await anyio.to_thread.run_sync(state.jobs.shutdown)

    mcp = ServingServer(state, name="model-serving", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan)
    mcp.add_specs(JOB_TOOLS)
    for tools in (core, bench, ollama, cluster, versions, evals):
        mcp.add_specs(tools.TOOLS)
    skill.register(mcp)
    add_result_schemas(mcp)
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
