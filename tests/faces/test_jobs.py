"""Jobs an agent cannot misread: tasks names and states, a long poll that returns at the end, results that
outlive the server, and a job whose server died reading as failed with that cause."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from scripted_server import spawned

from model_serving.mcp.server import create_server
from model_serving.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    with spawned(ttft_ms=50, tpot_ms=10, tokens=20) as base:  # about 0.25 s a request: a bench of 20 outlasts the inline wait
        yield base


async def test_job_status_long_polls_with_progress_and_carries_the_result(slow_url: str, settings: Settings) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(create_server(settings)) as client:
        started = await client.call_tool("bench", {"model": "scripted", "endpoint": slow_url, "n_requests": 20})
        job = started.structured_content
        assert not started.is_error and job["status"] == "working" and job["pollIntervalMs"] > 0, started.content
        assert set(job) >= {"taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt", "pollIntervalMs"}
        assert "job_status" in started.content[0].text  # the summary says what to call next
        for _ in range(20):
            polled = await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30}, progress_callback=on_progress)
            job = polled.structured_content
            if job["status"] != "working":
                break
        assert job["status"] == "completed", polled.content
        assert job["result"]["summary"]["completed"] == 20
        assert "20 completed" in polled.content[0].text and "{" not in polled.content[0].text
        assert seen, "no progress notification while job_status waited"
        listing = (await client.call_tool("job_status", {})).structured_content
        assert [j["taskId"] for j in listing["items"]] == [job["taskId"]] and listing["items"][0]["result"] is None


async def test_a_finished_job_survives_a_server_restart(slow_url: str, settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        job = (await client.call_tool("bench", {"model": "scripted", "endpoint": slow_url, "n_requests": 2})).structured_content
        while job["status"] == "working":
            job = (await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})).structured_content
    async with Client(create_server(settings)) as client:
        again = await client.call_tool("job_status", {"job_id": job["taskId"]})
    assert not again.is_error and again.structured_content["status"] == "completed"
    assert again.structured_content["result"] == job["result"]


HOLDER = """
import sys, threading
from pathlib import Path
from model_serving.jobs import JobManager

jobs = JobManager(Path(sys.argv[1]))
job = jobs.submit("export_gguf", lambda progress: threading.Event().wait())
print(job.id, flush=True)
threading.Event().wait()
"""


async def test_a_job_whose_server_was_killed_reads_as_failed_with_that_cause(settings: Settings) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(settings.state_dir)], stdout=subprocess.PIPE, text=True)
    try:
        job_id = holder.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert job_id
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("job_status", {"job_id": job_id})
        listing = (await client.call_tool("job_status", {})).structured_content
        cancel = await client.call_tool("job_cancel", {"job_id": job_id})
    text: str = result.content[0].text
    assert result.is_error and "server stopped while this job was running" in text and "Next step:" in text
    job: dict[str, Any] = result.structured_content["job"]
    assert job["status"] == "failed" and job["taskId"] == job_id
    assert [(j["taskId"], j["status"]) for j in listing["items"]] == [(job_id, "failed")]
    assert not cancel.is_error and cancel.structured_content["status"] == "failed"  # nothing left to stop
