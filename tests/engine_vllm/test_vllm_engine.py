"""vLLM (CPU build) serving SmolLM2 from its HF checkpoint, through both faces: probed, benchmarked, a LoRA by name, stopped.

One vLLM server serves the whole module (conftest.vllm_world, started through MCP serve_start); the last test stops
it through the CLI. Start-up takes 35 s on a quiet 2-core machine and minutes on a busy one, hence the slow mark.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import httpx
import pytest
from cli_runner import cli_in_process
from mcp import Client
from vllm_helpers import ADAPTER, SERVED, World, call

from model_serving.mcp.server import create_server
from model_serving.serve import processes
from model_serving.serve.vllm.vllm_probe import probe_vllm

pytestmark = pytest.mark.slow


def test_serve_start_records_a_vllm_model_with_its_adapter(vllm_world: World) -> None:
    served = vllm_world.served
    assert served["engine"] == "vllm" and served["name"] == SERVED and served["state"] == "running"
    assert served["source"] == str(vllm_world.checkpoint)
    assert [a["name"] for a in served["adapters"]] == [ADAPTER]
    assert served["base_url"].startswith("http://127.0.0.1:")
    assert processes.alive(served["pid"]) and served["rss_bytes"] > 500 << 20  # vLLM's server and engine core together
    models = httpx.get(f"{served['base_url']}/v1/models", timeout=30).json()
    assert {m["id"] for m in models["data"]} == {SERVED, ADAPTER}


def test_probe_sees_the_checkpoints_own_template(vllm_world: World) -> None:
    probe = probe_vllm(vllm_world.settings, SERVED)
    assert probe.ok, probe.problems
    assert probe.engine == "vllm" and probe.template_matches is True
    assert probe.rendered_prompt and probe.rendered_prompt.startswith("<|im_start|>") and probe.rendered_prompt.endswith("<|im_start|>assistant\n")
    assert probe.prompt_tokens == probe.expected_prompt_tokens and probe.finish_reason == "stop"
    assert "paris" in probe.answer.lower()


def test_the_adapter_answers_under_its_own_name(vllm_world: World) -> None:
    base_url = vllm_world.served["base_url"]

    def answer(model: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 24, "temperature": 0}
        reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=180)
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["message"]["content"]

    base, adapted = answer(SERVED), answer(ADAPTER)
    assert base.strip() and adapted.strip()
    assert adapted != base  # the LoRA's random weights change the greedy answer; the same request to the base does not


def test_cli_lists_status_and_benchmarks_it(vllm_world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_in_process(capsys, *vllm_world.cli("--json", "serve", "list"))
    assert code == 0, err
    listed = {m["name"]: m for m in json.loads(out)["items"]}
    assert listed[SERVED]["engine"] == "vllm" and listed[SERVED]["state"] == "running"
    code, out, err = cli_in_process(capsys, *vllm_world.cli("--json", "status"))
    assert code == 0, err
    status = json.loads(out)
    entry = next(e for e in status["engine"] if e["model"]["name"] == SERVED)
    assert entry["healthy"] is True and entry["slots_total"] == 4
    assert status["vllm"]["installed"] is True and status["vllm"]["python"] == os.environ["MODEL_SERVING_VLLM_PYTHON"]
    code, out, err = cli_in_process(capsys, *vllm_world.cli("--json", "bench", "run", SERVED, "-n", "6", "-c", "2", "--max-tokens", "16"))
    assert code == 0, err
    result = json.loads(out)
    assert result["summary"]["completed"] == 6 and result["summary"]["failed"] == 0
    assert result["server"]["kind"] == "vllm" and result["server"]["memory_bytes"] > 500 << 20


def test_mcp_status_and_bench_see_it(vllm_world: World) -> None:
    async def run() -> tuple[dict, dict]:
        async with Client(create_server(vllm_world.settings)) as client:
            status = await call(client, "serving_status", {})
            job = await call(client, "bench", {"model": ADAPTER, "endpoint": vllm_world.served["base_url"], "n_requests": 4,
                                               "concurrency": 2, "max_tokens": 8})
            return status, job

    status, bench = anyio.run(run)
    assert any(e["model"]["name"] == SERVED and e["model"]["engine"] == "vllm" and e["healthy"] for e in status["engine"])
    assert status["vllm"]["version"].startswith("0.32")
    assert bench["summary"]["completed"] == 4, bench


def test_zz_cli_serve_stop_ends_every_vllm_process(vllm_world: World, capsys: pytest.CaptureFixture[str]) -> None:
    pid = vllm_world.served["pid"]
    assert len(_running_in_group(pid)) >= 2  # the launcher, vLLM's server (and its engine core)
    code, out, err = cli_in_process(capsys, *vllm_world.cli("serve", "stop", SERVED))
    assert code == 0, err
    assert not processes.alive(pid)
    for _ in range(100):  # SIGKILL is delivered asynchronously; what is left must go, not merely be asked to
        if not _running_in_group(pid):
            break
        time.sleep(0.1)
    assert _running_in_group(pid) == []
    code, out, _ = cli_in_process(capsys, *vllm_world.cli("--json", "serve", "list"))
    assert SERVED not in {m["name"] for m in json.loads(out)["items"]}


def _running_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: a killed child stays a zombie until its parent reaps it."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(proc.name))
    return found
