"""deploy --target vllm: the plan serves the checkpoint itself (no GGUF export, no quantize) and refuses what vLLM cannot serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from mcp import Client
from vllm_helpers import call

from model_serving.mcp.server import create_server
from model_serving.settings import Settings


def _cli(capsys: pytest.CaptureFixture[str], settings: Settings, *args: str) -> tuple[int, str, str]:
    roots = [a for root in settings.roots for a in ("--root", str(root))]
    return cli_in_process(capsys, "--home", str(settings.home), *roots, *args)


def test_plan_for_vllm_skips_export_and_quantize(vllm_python: str, settings: Settings, tiny_checkpoint: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, settings, "--json", "deploy", str(tiny_checkpoint), "--target", "vllm", "--name", "tiny", "--plan-only")
    assert code == 0, err
    result = json.loads(out)
    assert result["target"] == "vllm" and vllm_python in result["target_reason"]
    actions = {s["step"]: s["action"] for s in result["plan"]}
    assert actions == {"export": "skip", "quantize": "skip", "register": "run", "bench": "run", "manifest": "run"}
    assert "on vLLM" in next(s["detail"] for s in result["plan"] if s["step"] == "register")

    async def plan() -> dict:
        async with Client(create_server(settings)) as client:
            return await call(client, "deploy_model", {"source": str(tiny_checkpoint), "target": "vllm", "name": "tiny", "plan_only": True})

    assert [s["step"] for s in anyio.run(plan)["plan"]] == [s["step"] for s in result["plan"]]


def test_plan_for_vllm_refuses_a_gguf_and_a_missing_install(vllm_python: str, settings: Settings, smollm2_gguf: Path, tiny_checkpoint: Path,
                                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, settings, "deploy", str(smollm2_gguf), "--target", "vllm", "--plan-only")
    assert code == 2 and "is a GGUF; the vLLM target serves Hugging Face checkpoints" in err and "target embedded" in err
    monkeypatch.setenv("MODEL_SERVING_VLLM_PYTHON", sys.executable)
    code, _, err = _cli(capsys, settings, "deploy", str(tiny_checkpoint), "--target", "vllm", "--plan-only")
    assert code == 2 and "model-serving engines install vllm" in err
