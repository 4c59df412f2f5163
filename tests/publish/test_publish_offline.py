"""Publish without the Hub (HF_HUB_OFFLINE=1, or an HF_ENDPOINT nothing answers), on both faces.

A plan still works and says what it could not check; a real publish stops with a cause and a next step,
never a traceback or a "bug" message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import huggingface_hub.constants as hf_constants
import pytest
from cli_runner import cli_in_process
from hub_double import HubDouble
from mcp import Client

from model_serving.mcp.server import create_server
from model_serving.settings import Settings

REPO = "tester/smol-gguf"


@pytest.fixture(params=["offline", "unreachable"])
def no_hub(request: pytest.FixtureRequest, hub: HubDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    """The words the cause must hold: the Hub switched off, or an endpoint that refuses connections."""
    if request.param == "offline":
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets when the library loads
        return "HF_HUB_OFFLINE"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    return "http://127.0.0.1:1 could not be reached"


def roots(settings: Settings) -> list[str]:
    return [arg for root in settings.roots for arg in ("--root", str(root))]


def test_cli_plans_offline_and_refuses_to_publish(settings: Settings, no_hub: str, hub: HubDouble, deploy_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_in_process(capsys, "--json", *roots(settings), "publish", str(deploy_dir), "--repo", REPO, "--plan")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["planned_only"] and not plan["remote_checked"] and {f["action"] for f in plan["files"]} == {"unknown"}
    assert any("not checked against the Hub" in w and no_hub in w for w in plan["warnings"]), plan["warnings"]
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in plan["card"]
    code, out, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", REPO)
    assert code == 1 and no_hub in err and "next step:" in err, err
    assert "Traceback" not in out + err and "bug" not in err
    assert hub.requests == []


async def _finished(client: Client, first: Any) -> Any:
    result = first
    with anyio.fail_after(120):
        while not result.is_error and result.structured_content.get("status") == "working":
            result = await client.call_tool("job_status", {"job_id": result.structured_content["taskId"], "wait_s": 5})
    return result


@pytest.mark.anyio
async def test_mcp_plans_offline_and_refuses_to_publish(settings: Settings, no_hub: str, hub: HubDouble, deploy_dir: Path) -> None:
    async with Client(create_server(settings)) as client:
        planned = await _finished(client, await client.call_tool("publish_model", {"source": str(deploy_dir), "repo": REPO, "plan": True}))
        assert not planned.is_error, planned.content[0].text
        plan = planned.structured_content["result"]
        assert not plan["remote_checked"] and any(no_hub in w for w in plan["warnings"])
        refused = await _finished(client, await client.call_tool("publish_model", {"source": str(deploy_dir), "repo": REPO}))
    assert refused.is_error and no_hub in refused.content[0].text and "Next step:" in refused.content[0].text
    assert "bug in model-serving" not in refused.content[0].text and "Traceback" not in refused.content[0].text
    assert hub.requests == []
