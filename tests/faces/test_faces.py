"""The CLI and the MCP server are thin faces over the same core: same results, same errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from model_serving.mcp.server import create_server
from model_serving.settings import Settings

pytestmark = pytest.mark.anyio


def cli(settings: Settings, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODEL_SERVING_HOME": str(settings.home), "OLLAMA_HOST": "http://127.0.0.1:9"}
    roots = [a for r in settings.roots for a in ("--root", str(r))]
    return subprocess.run([sys.executable, "-m", "model_serving", *roots, *args], capture_output=True, text=True, env=env, timeout=timeout)


# ------------------------------------------------------------------ CLI


def test_cli_inspect_json_matches_the_core_result(settings: Settings, tiny_gguf: Path) -> None:
    from model_serving.checkpoint.inspect import inspect_gguf

    out = cli(settings, "--json", "inspect", str(tiny_gguf))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(inspect_gguf(tiny_gguf).model_dump_json())


def test_cli_errors_name_the_cause_and_next_step_and_exit_non_zero(settings: Settings, tmp_path: Path) -> None:
    out = cli(settings, "inspect", "/etc/hostname")
    assert out.returncode == 2
    assert "outside the allowed roots" in out.stderr and "next step:" in out.stderr
    out = cli(settings, "--json", "export", str(tmp_path / "missing"))
    assert out.returncode == 2 and json.loads(out.stdout)["error"] == "InputError"
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 8)
    out = cli(settings, "quantize", str(bad), "Q9_Z")
    assert out.returncode != 0 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_cli_export_serve_and_stop_round_trip(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = cli(settings, "--json", "export", str(tiny_checkpoint), "-o", str(tmp_path / "t.gguf"))
    assert out.returncode == 0, out.stderr
    exported = json.loads(out.stdout)
    assert exported["verification"]["chat_template_kept"] is True
    assert "%]" in out.stderr  # progress lines go to stderr, JSON stays clean on stdout
    out = cli(settings, "--json", "serve", "start", str(tmp_path / "t.gguf"), "--name", "t1", "--ctx-size", "256", "--parallel", "1")
    assert out.returncode == 0, out.stderr
    try:
        listed = json.loads(cli(settings, "--json", "serve", "list").stdout)["items"]
        assert [m["name"] for m in listed] == ["t1"] and listed[0]["state"] == "running"
        status = cli(settings, "status")
        assert "t1" in status.stdout and "healthy" in status.stdout
    finally:
        assert cli(settings, "serve", "stop", "t1").returncode == 0
    assert json.loads(cli(settings, "--json", "serve", "list").stdout)["items"] == []


def test_cli_deploy_plan_does_nothing(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = cli(settings, "--json", "deploy", str(tiny_checkpoint), "--plan", "--output", str(tmp_path / "dep"))
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["planned_only"] is True
    assert [s["step"] for s in plan["plan"]] == ["export", "quantize", "register", "bench", "manifest"]
    assert not (tmp_path / "dep").exists()


# ------------------------------------------------------------------ MCP


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


async def call(client: Client, name: str, args: dict) -> dict:
    result = await client.call_tool(name, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content or {}


async def wait_job(client: Client, job_id: str, limit_s: float = 600) -> dict:
    with anyio.fail_after(limit_s):
        while True:
            result = await client.call_tool("job_status", {"job_id": job_id, "wait_s": 30})
            info = result.structured_content.get("job", result.structured_content)  # a failed job is an error result
            assert "status" in info, result.content[0].text  # an error of job_status itself, not of the job
            if info["status"] != "working":
                return info


async def test_mcp_tools_are_typed_and_annotated(settings: Settings, mode: str) -> None:
    async with Client(create_server(settings), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("inspect_model", "serve_start", "serve_stop", "serving_status", "job_status", "job_cancel"):
        assert name in tools, name
        assert tools[name].output_schema, f"{name} has no structured output"
    for name in ("export_gguf", "quantize_gguf", "register_model", "deploy_model"):  # long: a job, JobInfo as job_status says
        assert tools[name].output_schema is None, name
    assert "JobInfo" in tools["job_status"].output_schema["title"]
    assert tools["inspect_model"].annotations.read_only_hint is True
    assert tools["serve_stop"].annotations.destructive_hint is True
    assert not tools["export_gguf"].annotations.read_only_hint
    assert set(tools["export_gguf"].input_schema["properties"]["outtype"]["enum"]) == {"f16", "bf16", "q8_0", "f32", "auto"}


async def test_mcp_inspect_and_errors_match_the_core(settings: Settings, tiny_gguf: Path, mode: str) -> None:
    async with Client(create_server(settings), mode=mode) as client:
        info = await call(client, "inspect_model", {"path": str(tiny_gguf)})
        assert info["file_type"] == "F16" and info["eos_token"] == "<|im_end|>"
        refused = await client.call_tool("inspect_model", {"path": "/etc/passwd"})
        assert refused.is_error and "outside the allowed roots" in refused.content[0].text and "Next step" in refused.content[0].text
        bad_name = await client.call_tool("serve_start", {"gguf_path": str(tiny_gguf), "name": "Bad Name"})
        assert bad_name.is_error


async def test_mcp_export_runs_as_a_job_with_progress(settings: Settings, tiny_checkpoint: Path, tmp_path: Path, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(create_server(settings), mode=mode) as client:
        started = await client.call_tool("export_gguf", {"source": str(tiny_checkpoint), "output": str(tmp_path / "j.gguf")},
                                         progress_callback=on_progress)
        handle = started.structured_content
        assert handle["kind"] == "export_gguf" and len(handle["taskId"]) >= 16 and handle["pollIntervalMs"] > 0
        final = await wait_job(client, handle["taskId"])
    assert final["status"] == "completed", final["error"]
    assert final["result"]["output_path"] == str(tmp_path / "j.gguf") and (tmp_path / "j.gguf").exists()
    assert seen == sorted(seen)  # progress never goes backwards


async def test_mcp_job_cancel_kills_the_converter_and_keeps_nothing(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    async with Client(create_server(settings)) as client:
        handle = (await call(client, "export_gguf", {"source": str(tiny_checkpoint), "output": str(tmp_path / "c.gguf")}))
        if handle["status"] == "working":
            cancelled = await call(client, "job_cancel", {"job_id": handle["taskId"]})
            assert cancelled["status"] == "cancelled"
            assert "cancelled" in cancelled["error"]["cause"]
            assert not (tmp_path / "c.gguf").exists() and not list(tmp_path.glob(".c.gguf.*"))
        unknown = await client.call_tool("job_status", {"job_id": "no-such-job"})
        assert unknown.is_error and "No job has the id" in unknown.content[0].text


async def test_mcp_serve_start_list_stop(settings: Settings, tiny_gguf: Path) -> None:
    async with Client(create_server(settings)) as client:
        model = await call(client, "serve_start", {"gguf_path": str(tiny_gguf), "name": "m1", "ctx_size": 256, "parallel": 1})
        try:
            assert model["base_url"].startswith("http://127.0.0.1:")
            status = await call(client, "serving_status", {})
            assert [e["model"]["name"] for e in status["engine"]] == ["m1"]
            assert status["engine"][0]["healthy"] is True and status["ollama"]["reachable"] is False
        finally:
            await call(client, "serve_stop", {"name": "m1"})


async def test_mcp_over_stdio_lists_tools_and_inspects(settings: Settings, tiny_gguf: Path) -> None:
    env = {**os.environ, "MODEL_SERVING_HOME": str(settings.home), "OLLAMA_HOST": "http://127.0.0.1:9"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "model_serving.mcp.server", "--root", str(tiny_gguf.parent)], env=env)
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"deploy_model", "inspect_model", "job_status"} <= names
        info = await call(client, "inspect_model", {"path": str(tiny_gguf)})
        assert info["architecture"] == "llama"
