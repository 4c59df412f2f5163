"""The version flow through MCP alone: two deploys of one name, history, promote, rollback (the Ollama double)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from test_versions import marker_model

from model_serving.mcp.server import create_server
from model_serving.settings import Settings


async def finished(client: Client, started: Any) -> dict[str, Any]:
    job = started.structured_content
    while job.get("status") == "working":
        job = (await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})).structured_content
    assert job["status"] == "completed", job
    return job["result"]


@pytest.mark.slow
def test_deploy_as_version_then_promote_and_rollback_over_mcp(ollama_settings: Settings, ollama_double, smollm2_gguf: Path, tmp_path: Path) -> None:
    bare, template = marker_model(smollm2_gguf, tmp_path)

    async def flow() -> dict[str, Any]:
        async with Client(create_server(ollama_settings)) as client:
            base = {"name": "smol", "target": "ollama", "bench": False}
            one = await finished(client, await client.call_tool("deploy_model", {"source": str(smollm2_gguf), **base}))
            two = await finished(client, await client.call_tool("deploy_model", {"source": str(bare), "chat_template": str(template), **base}))
            calls = {"one": one, "two": two}
            for action, name in (("history", "smol"), ("promote", "smol@2"), ("rollback", "smol")):
                result = await client.call_tool("model_versions", {"action": action, "name": name})
                assert not result.is_error, result.content[0].text
                calls[action] = result.structured_content
            refused = await client.call_tool("model_versions", {"action": "canary", "name": "smol@2", "share": 10})
            assert refused.is_error and "promote" in refused.content[0].text
            stray = await client.call_tool("model_versions", {"action": "history", "name": "smol", "share": 10})
            assert stray.is_error and "share" in stray.content[0].text
            return calls

    calls = anyio.run(flow)
    assert (calls["one"]["version"], calls["two"]["version"], calls["two"]["live"]) == (1, 2, False)
    assert [v["n"] for v in calls["history"]["versions"]] == [1, 2] and calls["history"]["live"] == 1
    assert calls["promote"]["live"] == 2 and calls["promote"]["probe"]["same"]
    rolled = calls["rollback"]
    assert rolled["live"] == 1 and rolled["probe"]["same"] and rolled["probe"]["public_answer"] != calls["promote"]["probe"]["public_answer"]
