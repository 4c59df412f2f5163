"""Every tool, every parameter, bad values through a real MCP client: each answer is an error result that
names the cause and a next step, never a traceback or an "internal error".

Bad values come from the verb's input model (wrong type, out of range, not a choice, empty) plus the
two an agent is tricked into most (a path escaping with ../, a flag-like value starting with '-').
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from model_serving.mcp.server import create_server
from model_serving.requests import flat_schema
from model_serving.settings import Settings

pytestmark = pytest.mark.anyio

PATHS = {"path", "source", "output", "input_path", "gguf_path", "source_dir", "prompts_file", "gguf", "output_dir", "out_dir", "directory", "bench", "checkpoint", "calibration"}
FILLERS = {"name": "m", "model": "m", "qtype": "Q4_K_M", "job_id": "nosuchjob", "source": "m", "destination": "m2",
           "ggufs": ["missing-a.gguf", "missing-b.gguf"], "gpu_hourly": 2.0}
WRONG_TYPE = {"string": 12345, "integer": "8080", "number": "fast", "boolean": "yes", "array": "a,b"}


def filler(name: str, prop: dict[str, Any], tool: str) -> Any:
    if tool.startswith("ollama_") and name in ("source", "destination"):
        return FILLERS[name]
    if name in PATHS:
        return "missing.gguf"
    return FILLERS.get(name, "x")


def bad_values(name: str, prop: dict[str, Any]) -> list[tuple[str, Any]]:
    """(what is wrong, value) pairs the input model refuses or the core must refuse."""
    kind = prop.get("type")
    bad: list[tuple[str, Any]] = [("wrong type", WRONG_TYPE.get(kind or "string", 12345))]
    if "enum" in prop:
        bad.append(("not a choice", "nonsense"))
    if "minimum" in prop:
        bad.append(("below range", prop["minimum"] - 1))
    if "exclusiveMinimum" in prop:
        bad.append(("below range", prop["exclusiveMinimum"]))
    if "maximum" in prop:
        bad.append(("above range", prop["maximum"] + 1))
    if kind == "string" and prop.get("minLength"):
        bad.append(("empty", ""))
    if kind == "string" and prop.get("pattern"):
        bad.append(("flag-like", "-rf"))
    if name in PATHS:
        bad += [("path escape", "../../../../etc/passwd"), ("flag-like", "--outfile=/etc/x")]
    if kind == "array":
        bad += [("empty", []), ("flag-like items", ["-rf", "--x"])]
    return bad


def assert_helpful_error(result: Any, where: str) -> None:
    assert result.is_error, f"{where}: accepted"
    text = result.content[0].text
    assert "Next step:" in text and len(text.split("Next step:")[0].strip()) > 10, f"{where}: {text}"
    for leak in ("Traceback", 'File "', "Internal error", "Error executing tool", "pydantic", "errors.pydantic.dev"):
        assert leak not in text, f"{where}: {leak!r} in {text}"


def tool_cases() -> list[str]:
    from model_serving.mcp import bench, cluster, core, ollama, server

    return sorted(spec.name for table in (core.TOOLS, bench.TOOLS, ollama.TOOLS, cluster.TOOLS, server.JOB_TOOLS) for spec in table)


@pytest.mark.parametrize("tool", tool_cases())
async def test_every_bad_value_gets_a_cause_and_a_next_step(tool: str, settings: Settings) -> None:
    server = create_server(settings)
    schema = flat_schema(server.specs[tool].request)
    base = {name: filler(name, prop, tool) for name, prop in schema.items() if prop["required"]}
    async with Client(server) as client:
        for name, prop in schema.items():
            for what, value in bad_values(name, prop):
                result = await client.call_tool(tool, {**base, name: value})
                assert_helpful_error(result, f"{tool}.{name} {what} {value!r}")
                if what in ("wrong type", "below range", "above range", "not a choice"):
                    assert name in result.content[0].text, f"{tool}.{name} {what}: the error does not name the field"
        unknown = await client.call_tool(tool, {**base, "no_such_parameter": 1})
        assert_helpful_error(unknown, f"{tool} unknown parameter")
        assert "no_such_parameter" in unknown.content[0].text


async def test_an_unexpected_failure_points_to_the_server_log(settings: Settings) -> None:
    from model_serving.mcp.runtime import READ_ONLY, AppState, ToolSpec
    from model_serving.mcp.server import ServingServer
    from model_serving.requests import NoInput

    def broken(*_: Any) -> Any:
        raise KeyError("a bug in a verb")

    state = AppState.create(settings)
    server = ServingServer(state, name="model-serving")
    server.add_specs([ToolSpec(broken, "broken", NoInput, NoInput, READ_ONLY)])
    async with Client(server) as client:
        result = await client.call_tool("broken", {})
    assert_helpful_error(result, "broken tool")
    log = settings.state_dir / "mcp-server.log"
    assert str(log) in result.content[0].text and "KeyError" in result.content[0].text
    assert "Traceback" in log.read_text(encoding="utf-8") and "a bug in a verb" in log.read_text(encoding="utf-8")
