"""Publish through the CLI and the MCP server, and the loop closed: deploy hf.co/USER/REPO:QUANT from the Hub double."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest
from cli_runner import cli_in_process
from hub_double import TOKEN, HubDouble
from mcp import Client

from model_serving.deploy.pipeline import deploy
from model_serving.limits import DeployRequest
from model_serving.mcp.server import create_server
from model_serving.serve.embedded.engine import stop_model
from model_serving.settings import Settings

REPO = "tester/smol-gguf"


def roots(settings: Settings) -> list[str]:
    return [arg for root in settings.roots for arg in ("--root", str(root))]


def test_cli_plan_then_publish(settings: Settings, hub: HubDouble, deploy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", REPO, "--plan")
    assert code == 0, err
    assert "add    smol-gguf-Q4_1.gguf" in out and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in out
    assert REPO not in hub.repos
    code, out, err = cli_in_process(capsys, "--json", *roots(settings), "publish", str(deploy_dir), "--repo", REPO)
    assert code == 0, err
    result = json.loads(out)
    assert result["commit_url"].startswith(f"{hub.url}/{REPO}/commit/") and len(result["verified"]) == 3
    assert TOKEN not in out + err


def test_cli_bad_input_exits_with_a_cause(settings: Settings, hub: HubDouble, deploy_dir: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", "not-a-repo-id")
    assert code == 2 and "Hub repo id" in err
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", REPO)
    assert code == 2 and "No Hugging Face token" in err and "next step: Set HF_TOKEN" in err
    assert hub.requests == []


@pytest.mark.anyio
async def test_mcp_publish_job_then_refusals(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    async with Client(create_server(settings)) as client:
        job = (await client.call_tool("publish_model", {"source": str(deploy_dir), "repo": REPO})).structured_content
        with anyio.fail_after(300):
            while True:
                status = await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})
                info = status.structured_content.get("job", status.structured_content)
                if info["status"] != "working":
                    break
        assert info["status"] == "completed", status.content[0].text
        assert "Published tester/smol-gguf@main" in status.content[0].text
        bad = await client.call_tool("publish_model", {"source": str(deploy_dir), "repo": "a/b/c"})
        assert bad.is_error and "Hub repo id" in bad.content[0].text
    assert set(hub.tree(REPO)) >= {"smol-gguf-Q4_1.gguf", "README.md", "params", "template"}


@pytest.mark.slow
@pytest.mark.parametrize(("source", "quant"), [(f"hf.co/{REPO}:Q4_1", "Q8_0"), (REPO, "Q4_1")])  # the tag, or quant, picks the file
def test_publish_then_pull_and_deploy_on_the_embedded_engine(settings: Settings, hub: HubDouble, deploy_dir: Path,
                                                             smollm2_sha256: str, tmp_path: Path, source: str, quant: str) -> None:
    from model_serving.limits import PublishRequest, validated
    from model_serving.publish.push import publish

    publish(settings, validated(PublishRequest, {"source": str(deploy_dir), "repo": REPO}))
    before = len(hub.requests)
    request = DeployRequest(source=source, name="pulled", quant=quant, target="embedded", out_dir=str(tmp_path / "pulled"),
                            bench=False, verify_quality=False)
    result = deploy(settings, request)
    try:
        downloads = [p for m, p in hub.requests[before:] if m == "GET" and "/resolve/" in p]
        assert downloads == [f"/{REPO}/resolve/main/smol-gguf-Q4_1.gguf"]  # just that file
        manifest = json.loads(Path(result.manifest_path or "").read_text(encoding="utf-8"))
        assert manifest["artifacts"]["source"]["sha256"] == smollm2_sha256 and manifest["source"] == f"hf.co/{REPO}:Q4_1"
        reply = httpx.post(f"{result.endpoint}", timeout=120,
                           json={"model": "pulled", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                                 "max_tokens": 16, "temperature": 0})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].strip()
        assert result.answer and result.answer.strip()  # the deploy's own probe: it answers and stops
    finally:
        stop_model(settings, "pulled")
