"""`model-serving ollama ...` and the `ollama_*` MCP tools, against the Ollama test double."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cli_runner import cli_in_process as _cli
from mcp import Client
from ollama_double import OllamaDouble

from model_serving.mcp.server import create_server
from model_serving.serve.ollama.client import OllamaClient
from model_serving.settings import Settings


def _with_model(settings: Settings, gguf: Path, name: str = "smol") -> None:
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    with OllamaClient(settings) as client:
        client.push_blob(gguf, digest)
        client.create({"model": name, "files": {gguf.name: digest}, "parameters": {"num_ctx": 512}})


def test_cli_verbs(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--ollama-host", ollama_double.url, "--root", str(tmp_path), "--root", str(smollm2_gguf.parent)]
    code, out, _ = _cli(capsys, *base, "ollama", "version")
    assert code == 0 and f"Ollama 0.33.0 at {ollama_double.url}" in out
    _with_model(ollama_settings, smollm2_gguf)
    code, out, _ = _cli(capsys, "--json", *base, "ollama", "list")
    assert code == 0 and [m["name"] for m in json.loads(out)["items"]] == ["smol:latest"]
    code, out, _ = _cli(capsys, *base, "ollama", "show", "smol")
    assert code == 0 and "llama" in out and "num_ctx" in out and "<|im_start|>" in out
    code, out, _ = _cli(capsys, *base, "ollama", "cp", "smol", "smol:v1")
    assert code == 0 and "smol:v1" in out
    code, out, _ = _cli(capsys, *base, "ollama", "rm", "--yes", "smol:v1")
    assert code == 0 and "deleted smol:v1" in out
    code, out, _ = _cli(capsys, *base, "ollama", "ps")
    assert code == 0 and "No models loaded." in out
    code, out, _ = _cli(capsys, *base, "ollama", "unload", "smol")
    assert code == 0 and "unloaded smol:latest" in out
    code, _, err = _cli(capsys, *base, "ollama", "show", "missing")
    assert code == 2 and "model 'missing:latest' not found" in err and "next step:" in err
    code, _, err = _cli(capsys, *base, "ollama", "cp", "smol", "bad name")
    assert code == 2 and "destination must be an Ollama name" in err and "next step:" in err


def test_cli_modelfile_generate_and_check(settings: Settings, smollm2_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--root", str(tmp_path), "--root", str(smollm2_gguf.parent)]
    code, out, _ = _cli(capsys, *base, "ollama", "modelfile", str(smollm2_gguf), "--num-ctx", "2048", "--system", "Be brief.")
    assert code == 0
    assert out.startswith(f"FROM {smollm2_gguf}") and 'TEMPLATE """{{ $messages := $.Messages }}' in out
    assert 'PARAMETER stop "<|im_end|>"' in out and "PARAMETER num_ctx 2048" in out and 'SYSTEM """Be brief."""' in out
    written = tmp_path / "Modelfile"
    written.write_text(out)
    code, out, _ = _cli(capsys, *base, "ollama", "check-modelfile", str(written))
    assert code == 0 and "valid" in out
    written.write_text("FROM x\nPARAMETER num_ctx many\n")
    code, out, _ = _cli(capsys, *base, "ollama", "check-modelfile", str(written))
    assert code == 2 and "line 2: parameter num_ctx takes an integer" in out


def test_cli_when_ollama_is_not_running(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "--root", str(tmp_path), "ollama", "list")
    assert code == 1 and "not reachable" in err and "ollama serve" in err
    code, out, _ = _cli(capsys, "--json", "--root", str(tmp_path), "ollama", "version")
    assert code == 0 and json.loads(out)["reachable"] is False


@pytest.mark.anyio
async def test_mcp_tools(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path, tmp_path: Path) -> None:
    _with_model(ollama_settings, smollm2_gguf)
    async with Client(create_server(ollama_settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        expected = {"ollama_show", "ollama_manage", "ollama_probe", "ollama_modelfile", "ollama_check_modelfile"}
        assert expected <= set(tools)
        assert not {"ollama_version", "ollama_list", "ollama_ps"} & set(tools), "serving_status returns these"
        assert tools["ollama_manage"].annotations.destructive_hint is True
        assert tools["ollama_show"].annotations.read_only_hint is True
        assert tools["ollama_show"].output_schema is not None
        status = (await client.call_tool("serving_status", {})).structured_content["ollama"]
        assert status["reachable"] and status["version"] == "0.33.0"
        assert status["models"] == ["smol:latest"]
        missing = await client.call_tool("ollama_show", {"name": "nope"})
        assert missing.is_error and "not found" in missing.content[0].text
        copied = await client.call_tool("ollama_manage", {"action": "copy", "name": "smol", "destination": "smol:v1"})
        assert not copied.is_error and copied.structured_content["result"]["model"] == "smol:v1"  # a quick job answers inline
        lacking = await client.call_tool("ollama_manage", {"action": "copy", "name": "smol"})
        assert lacking.is_error and "destination" in lacking.content[0].text
        stray = await client.call_tool("ollama_manage", {"action": "unload", "name": "smol", "destination": "x"})
        assert stray.is_error and "belong to copy" in stray.content[0].text
        deleted = await client.call_tool("ollama_manage", {"action": "delete", "name": "smol:v1"})
        assert not deleted.is_error and deleted.structured_content["result"]["action"] == "delete"
        outside = await client.call_tool("ollama_modelfile", {"gguf_path": "/etc/passwd"})
        assert outside.is_error and "outside the allowed roots" in outside.content[0].text
        generated = await client.call_tool("ollama_modelfile", {"gguf_path": str(smollm2_gguf), "num_ctx": 1024})
        assert not generated.is_error and "PARAMETER num_ctx 1024" in generated.structured_content["modelfile"]
        pulled = await client.call_tool("ollama_manage", {"action": "pull", "name": "unknown-model"})
        while not pulled.is_error and pulled.structured_content["status"] == "working":
            pulled = await client.call_tool("job_status", {"job_id": pulled.structured_content["taskId"], "wait_s": 30})
        assert pulled.is_error and "file does not exist" in pulled.content[0].text and "Next step" in pulled.content[0].text
