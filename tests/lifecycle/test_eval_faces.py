"""`eval` refusals on both faces, before any version is asked: a bad EVALS line, a bad reference, an unserved name."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from mcp import Client

from model_serving.mcp.server import create_server
from model_serving.settings import Settings


def roots(settings: Settings) -> list[str]:
    return [a for r in settings.roots for a in ("--root", str(r))]


def test_the_cli_refuses_a_bad_line_with_its_number(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evals = tmp_path / "evals.jsonl"
    evals.write_text(json.dumps({"prompt": "2+2?", "contains": "4"}) + "\n" + json.dumps({"prompt": "2+2?", "answer": "4"}) + "\n")
    code, out, err = cli_in_process(capsys, "--json", *roots(settings), "eval", "cand", "--against", "live", "--set", str(evals))
    assert code != 0
    said = json.loads(out)
    assert said["cause"].startswith("evals.jsonl line 2: ") and "answer" in said["cause"] and said["next_step"]


def test_a_name_that_is_not_served_is_refused_with_the_next_step(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_in_process(capsys, "--json", *roots(settings), "eval", "cand", "--against", "live")
    assert code != 0
    said = json.loads(out)
    assert "'cand'" in said["cause"] and said["next_step"]


def test_mcp_refuses_a_bad_version_reference_naming_the_rule(settings: Settings) -> None:
    async def call() -> object:
        async with Client(create_server(settings)) as client:
            return await client.call_tool("eval_versions", {"name": "cand@latest", "against": "cand@live"})

    result = anyio.run(call)
    assert result.is_error  # type: ignore[attr-defined]
    text = result.content[0].text  # type: ignore[attr-defined]
    assert "name must be NAME, NAME@N (a version), NAME@live or NAME@previous" in text


def test_a_bench_that_cannot_run_is_a_measure_not_taken() -> None:
    from model_serving.jobs import Progress
    from model_serving.lifecycle.eval_targets import EvalTarget
    from model_serving.lifecycle.evals import bench_both
    from model_serving.requests import EvalRequest

    gone = EvalTarget(ref="a", served_as="a", base_url="http://127.0.0.1:9", engine="embedded")  # nothing listens on the discard port
    benches, lost = bench_both(gone, gone, EvalRequest(name="a", against="a", bench_requests=2), Progress())
    assert benches == [None, None] and lost is not None
    assert lost.verdict == "not measured" and lost.family == "bench" and "127.0.0.1:9" in lost.note
