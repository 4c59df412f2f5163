"""The vLLM engine's refusals, each with its cause and next step, on both faces; all but the failed start need no vLLM."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from lora_fixtures import adapter_files
from mcp import Client

from model_serving.mcp.server import create_server
from model_serving.serve.embedded.engine import list_models
from model_serving.settings import Settings


def _cli(capsys: pytest.CaptureFixture[str], settings: Settings, *args: str) -> tuple[int, str, str]:
    roots = [a for root in settings.roots for a in ("--root", str(root))]
    return cli_in_process(capsys, "--home", str(settings.home), *roots, *args)


async def _tool_error(settings: Settings, name: str, args: dict) -> str:
    async with Client(create_server(settings)) as client:
        result = await client.call_tool(name, args)
    assert result.is_error
    return result.content[0].text


def test_a_gguf_is_refused_with_the_two_ways_that_work(settings: Settings, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, settings, "serve", "start", str(smollm2_gguf), "--engine", "vllm", "--name", "g")
    assert code == 2 and "is a GGUF file" in err and "checkpoint folder" in err and "--engine embedded" in err
    text = anyio.run(_tool_error, settings, "serve_start", {"gguf_path": str(smollm2_gguf), "name": "g", "engine": "vllm"})
    assert "is a GGUF file" in text and "--engine embedded" in text
    text = anyio.run(_tool_error, settings, "bench_compare", {"source": str(smollm2_gguf)})
    assert "is a GGUF file" in text  # refused before any export or start


def test_vllm_not_installed_names_the_install_command(settings: Settings, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_SERVING_VLLM_PYTHON", sys.executable)  # our own environment: it has no vllm
    code, _, err = _cli(capsys, settings, "serve", "start", str(tiny_checkpoint), "--engine", "vllm", "--name", "n")
    assert code == 2 and "vLLM is not installed" in err and "model-serving engines install vllm" in err
    text = anyio.run(_tool_error, settings, "serve_start", {"gguf_path": str(tiny_checkpoint), "name": "n", "engine": "vllm"})
    assert "model-serving engines install vllm" in text
    code, out, _ = _cli(capsys, settings, "--json", "--ollama-host", "http://127.0.0.1:9", "status")
    status = json.loads(out)["vllm"]
    assert code == 0 and status["installed"] is False and "engines install vllm" in status["next_step"]


def test_a_lora_of_another_base_is_refused(settings: Settings, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    narrow = adapter_files(tmp_path / "narrow", str(tiny_checkpoint), hidden=32)  # q_proj shapes of a 32-wide model; the base is 64 wide
    code, _, err = _cli(capsys, settings, "serve", "start", str(tiny_checkpoint), "--engine", "vllm", "--name", "b", "--lora", f"narrow={narrow}")
    assert code == 2 and "LoRA narrow does not fit the served model" in err and "q_proj" in err and "next step:" in err
    code, _, err = _cli(capsys, settings, "serve", "start", str(tiny_checkpoint), "--engine", "vllm", "--name", "b", "--lora", "narrow")
    assert code == 2 and "is not NAME=DIR" in err
    assert list_models(settings) == []


@pytest.mark.slow
def test_a_failed_start_shows_the_last_lines_of_its_log(vllm_python: str, settings: Settings, tiny_checkpoint: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"], config["model_type"] = ["NoSuchForCausalLM"], "nosuch"
    (broken / "config.json").write_text(json.dumps(config))
    code, _, err = _cli(capsys, settings, "serve", "start", str(broken), "--engine", "vllm", "--name", "broken", "--ctx-size", "256")
    assert code == 1 and "vLLM for broken exited during start-up" in err and "Read the last lines of its log below" in err
    assert "nosuch" in err.lower()  # the log's own words, not just ours
    assert [m for m in list_models(settings) if m.state == "running"] == []
