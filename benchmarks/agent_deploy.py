"""An agent deploys and benchmarks the default model through the real MCP server over stdio, in few tool calls.

The agent knows only what `tools/list` says: it picks the deploy tool and the job-status tool from
the list, calls the deploy with its defaults (SmolLM2-135M, target auto, the deploy's own bench at
the engine's slot count), then long-polls the job with the largest wait the schema allows until the
job finishes. Past the call budget (6) it keeps polling (up to 20 calls), so a slow run reports how
many calls it needed; `within_budget` says whether it deployed in the budget. The server runs as `model-serving-mcp --root <tmp>`
with its state in that folder and OLLAMA_HOST on the discard port (so `auto` picks the embedded
engine) unless --ollama-host is given.

Each call's name, arguments and duration are recorded; a call that blocked longer than 5 s beyond
the wait it asked for is flagged. Nothing is asserted: the machine is shared.

    python benchmarks/agent_deploy.py [--max-calls 6] [--out benchmarks/results/agent_deploy.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, deploy_workload, write_report  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

BLOCK_LIMIT_S = 5.0  # no call may block longer than this beyond the wait it asked for
HARD_CAP = 20  # past the budget the agent keeps polling, so the report says how many calls it would have needed


def server_params(root: Path, ollama_host: str) -> StdioServerParameters:
    command = shutil.which("model-serving-mcp") or str(Path(sys.executable).with_name("model-serving-mcp"))
    env = {**os.environ, "MODEL_SERVING_HOME": str(root / "home"), "OLLAMA_HOST": ollama_host}
    env.pop("HF_TOKEN", None)
    return StdioServerParameters(command=command, args=["--root", str(root)], env=env, cwd=str(root))


def pick(tools: dict[str, Any], *, starts: str, needs: str | None = None) -> Any:
    """The one listed tool whose name starts with `starts` (and that takes `needs`)."""
    found = [t for name, t in tools.items() if name.startswith(starts) and (needs is None or needs in t.input_schema.get("properties", {}))]
    if len(found) != 1:
        raise SystemExit(f"the tool list has {len(found)} tools starting with {starts!r}; the agent cannot choose")
    return found[0]


class Agent:
    def __init__(self, client: Client) -> None:
        self.client, self.calls = client, []
        self.progress_notes, self.wait = 0, 0.0

    async def call(self, name: str, arguments: dict[str, Any], wait_s: float = 0.0) -> tuple[bool, dict[str, Any], str]:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            self.progress_notes += 1

        began = time.perf_counter()
        result = await self.client.call_tool(name, arguments, read_timeout_seconds=wait_s + 120, progress_callback=on_progress)
        seconds = time.perf_counter() - began
        text = " ".join(getattr(c, "text", "") for c in result.content)
        self.calls.append({"name": name, "arguments": arguments, "seconds": round(seconds, 3), "asked_wait_s": wait_s,
                           "blocked_too_long": seconds > wait_s + BLOCK_LIMIT_S, "is_error": bool(result.is_error), "text": text[:300]})
        return bool(result.is_error), result.structured_content or {}, text

    async def deploy(self, tools: dict[str, Any]) -> dict[str, Any]:
        deploy = pick(tools, starts="deploy")
        poll = pick(tools, starts="job_status", needs="wait_s")
        self.wait = float(poll.input_schema["properties"]["wait_s"].get("maximum", 30))
        failed, job, text = await self.call(deploy.name, {})
        while not failed and job.get("status") == "working" and len(self.calls) < HARD_CAP:
            failed, job, text = await self.call(poll.name, {"job_id": job["taskId"], "wait_s": self.wait}, self.wait)
        return {"failed": failed, "status": job.get("status"), "job": job, "last_text": text}


def outcome(done: dict[str, Any]) -> dict[str, Any]:
    result = (done["job"] or {}).get("result") or {}
    steps = {s["step"]: s for s in result.get("steps", [])}
    bench = steps.get("bench", {}).get("summary", {})
    return {
        "deployed": done["status"] == "completed" and not done["failed"],
        "status": done["status"], "last_text": done["last_text"][:500],
        "name": result.get("name"), "target": result.get("target"), "target_reason": result.get("target_reason"),
        "answer": result.get("answer"), "deploy_total_s": result.get("total_seconds"),
        "steps_s": {name: s.get("seconds") for name, s in steps.items()},
        "bench_concurrency": bench.get("concurrency"), "bench_requests": bench.get("n_requests"),
        "request_throughput": (bench.get("summary") or {}).get("request_throughput"),
        "quality": result.get("quality"),
        "verdicts": [{k: v.get(k) for k in ("target", "state", "statistic", "measured", "threshold")} for v in result.get("verdicts", [])],
    }


async def run(root: Path, budget: int, ollama_host: str) -> dict[str, Any]:
    began = time.perf_counter()
    async with Client(server_params(root, ollama_host)) as client:
        listed = await client.list_tools()
        tools = {t.name: t for t in listed.tools}
        agent = Agent(client)
        done = await agent.deploy(tools)
    wall = time.perf_counter() - began
    return {"tools_list_chars": len(listed.model_dump_json(by_alias=True, exclude_none=True)), "tool_count": len(tools),
            "calls": len(agent.calls), "call_budget": budget, "within_budget": outcome(done)["deployed"] and len(agent.calls) <= budget,
            "poll_wait_s": agent.wait, "calls_to_finish": len(agent.calls) if done["status"] != "working" else None,
            "any_call_blocked_too_long": any(c["blocked_too_long"] for c in agent.calls), "progress_notifications": agent.progress_notes,
            "wall_s": round(wall, 3), "call_log": agent.calls, **outcome(done)}


def stop_engines(root: Path) -> None:
    """Cleanup, not part of the agent's calls: the embedded engine outlives the server that started it."""
    from model_serving.serve.embedded.engine import list_models, stop_model
    from model_serving.settings import Settings

    settings = Settings.from_env(roots=[str(root)], home=str(root / "home"))
    for model in list_models(settings):
        stop_model(settings, model.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-calls", type=int, default=6)
    parser.add_argument("--ollama-host", default="http://127.0.0.1:9", help="default: the discard port, so auto picks the embedded engine")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "agent_deploy.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-deploy-") as tmp:
        root = Path(tmp).resolve()
        try:
            with LoadWatch("agent deploy (server, engine and their children included)") as watch:
                report = asyncio.run(run(root, args.max_calls, args.ollama_host))
        finally:
            stop_engines(root)
    report = write_report(args.out, {"benchmark": "agent_deploy", **report}, [watch], echo=False,
                          model="SmolLM2-135M-Instruct (the default deploy), its quantization as the deploy picked it",
                          workload=deploy_workload("one deploy_model call and job_status polls; the deploy's own bench sweep"))
    print(json.dumps({k: v for k, v in report.items() if k != "call_log"}, indent=2))


if __name__ == "__main__":
    main()
