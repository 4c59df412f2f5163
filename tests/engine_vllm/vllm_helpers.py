"""What the vLLM tests share: the served names, the world the session fixture builds, and MCP calls that may become jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from model_serving.settings import Settings

SERVED = "smollm2-vllm"
ADAPTER = "smollm2-vllm-lora"


@dataclass
class World:
    settings: Settings
    root: Path
    checkpoint: Path
    adapter: Path
    served: dict[str, Any]

    def cli(self, *args: str) -> list[str]:
        """Global CLI options that reach this world's state and roots."""
        return ["--home", str(self.settings.home), "--root", str(self.root), "--root", str(self.checkpoint.parent),
                "--ollama-host", "http://127.0.0.1:9", *args]


async def call(client: Client, name: str, args: dict[str, Any], *, limit_s: float = 1200) -> dict[str, Any]:
    """A tool's result; a long tool's job is waited for (its result, or the failed job's error content)."""
    result = await client.call_tool(name, args)
    assert not result.is_error, result.content[0].text
    content = result.structured_content or {}
    if not ("taskId" in content and "status" in content):
        return content
    with anyio.fail_after(limit_s):
        while content.get("status") == "working":
            reply = await client.call_tool("job_status", {"job_id": content["taskId"], "wait_s": 30})
            content = reply.structured_content.get("job", reply.structured_content)
    assert content["status"] == "completed", content.get("error")
    return content["result"]
