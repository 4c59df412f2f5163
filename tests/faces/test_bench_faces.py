"""The bench through its two faces: `model-serving bench ...` and the `bench` MCP tool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from cli_runner import cli_in_process as _cli
from mcp import Client
from scripted_server import spawned

from model_serving.mcp.server import create_server
from model_serving.settings import Settings


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with spawned(ttft_ms=20, tpot_ms=2, tokens=8) as base:
        yield base


def test_cli_bench_run_writes_reports_and_prints_verdicts(url: str, tmp_path: Path, settings: Settings,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--json", "--root", str(tmp_path), "bench", "run", "scripted", "--endpoint", url,
                        "-n", "6", "-c", "2", "--ttft-ms", "1000", "--out", str(tmp_path / "report"))
    assert code == 0
    result = json.loads(out)
    assert result["summary"]["completed"] == 6 and result["incomplete"] is False
    assert {v["target"]: v["state"] for v in result["verdicts"]}["ttft_ms"] == "PASS"
    assert Path(result["files"]["markdown"]).is_file() and Path(result["files"]["markdown"]).parent == tmp_path / "report"
    code, out, _ = _cli(capsys, "--root", str(tmp_path), "bench", "run", "scripted", "--endpoint", url, "-n", "3")
    assert code == 0 and "TTFT ms" in out and "ttft_ms" in out


def test_cli_sweep_finds_levels_and_plots(url: str, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--json", "--root", str(tmp_path), "bench", "sweep", "scripted", "--endpoint", url,
                        "-n", "8", "--levels", "1,2,4", "--out", str(tmp_path))
    assert code == 0
    result = json.loads(out)
    assert [p["concurrency"] for p in result["sweep"]] == [1, 2, 4]
    assert result["knee"]["cause"] in ("none", "parallel_slots", "compute")
    assert Path(result["files"]["sweep_png"]).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (["-c", "0"], "concurrency"),
    (["--rate", "-1"], "'--rate'"),
])
def test_cli_bad_load_settings_exit_with_cause(url: str, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str],
                                                args: list[str], message: str) -> None:
    code, _, err = _cli(capsys, "--root", str(tmp_path), "bench", "run", "scripted", "--endpoint", url, *args)
    assert code == 2 and message in err and "next step:" in err


def test_cli_refuses_remote_endpoints_and_outside_paths(tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "--root", str(tmp_path), "bench", "run", "m", "--endpoint", "http://example.com:8080")
    assert code == 2 and "neither configured nor a loopback" in err
    code, _, err = _cli(capsys, "--root", str(tmp_path), "bench", "run", "m", "--endpoint", "http://127.0.0.1:9", "--out", "/etc/bench")
    assert code == 2 and "outside the allowed roots" in err
    code, _, err = _cli(capsys, "--root", str(tmp_path), "bench", "run", "not-served")
    assert code == 2 and "no running model named 'not-served'" in err


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_bench_returns_summary_verdicts_and_files(url: str, settings: Settings, tmp_path: Path, mode: str) -> None:
    async with Client(create_server(settings), mode=mode) as client:
        result = await client.call_tool("bench", {"model": "scripted", "endpoint": url, "n_requests": 5, "concurrency": 2,
                                                  "output": str(tmp_path / "mcp")})
        assert not result.is_error, result.content
        job = result.structured_content
        while job["status"] == "working":
            job = (await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})).structured_content
        assert job["status"] == "completed", job
        bench = job["result"]
        assert bench["summary"]["completed"] == 5
        assert {v["target"] for v in bench["verdicts"]} >= {"ttft_ms", "e2e_ms", "request_throughput"}
        assert Path(bench["files"]["json"]).is_file()
        assert "records" not in bench  # per-request data lives in the JSONL file, not in the tool result


def test_cli_takes_the_workload_and_prints_failures_first(url: str, tmp_path: Path, settings: Settings,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--json", "--root", str(tmp_path), "bench", "run", "scripted", "--endpoint", url, "-n", "4",
                        "--profile", "chat", "--input-tokens", "64", "--output-tokens", "8")
    assert code == 0
    workload = json.loads(out)["workload"]
    assert (workload["profile"], workload["prompts"], workload["output_tokens"], workload["ignore_eos"]) == ("chat", "unique", 8, True)
    with spawned(ttft_ms=5, tpot_ms=1, tokens=6, fail_every=2, fail_modes="500") as failing:
        code, out, _ = _cli(capsys, "--root", str(tmp_path), "bench", "run", "scripted", "--endpoint", failing, "-n", "6", "--warmup", "0")
    assert code == 0
    assert out.splitlines()[0] == "FAILED: 3 of 6 requests (http 3)"
    plain = click.unstyle(out)
    judged = plain.split("error_rate")[1].split("memory_gb")[0]  # ttft, e2e, throughput and capacity lines follow error_rate
    assert "FAIL error_rate" in plain and "PASS" not in judged and judged.count("FAIL") >= 4


@pytest.mark.anyio
async def test_mcp_bench_names_failures_first_and_takes_the_profile(settings: Settings) -> None:
    with spawned(ttft_ms=5, tpot_ms=1, tokens=6, fail_every=3, fail_modes="drop") as failing:
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("bench", {"model": "scripted", "endpoint": failing, "n_requests": 6, "warmup": 0,
                                                      "profile": "fixed"})
            job = result.structured_content
            while job["status"] == "working":
                job = (await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})).structured_content
    assert job["status"] == "completed", job
    bench = job["result"]
    assert bench["workload"]["prompts"] == "repeated" and bench["verdicts"][0]["target"] == "error_rate"
    assert bench["summary"]["errors_by_cause"] == {"reset": 2}
    assert any(f["code"] == "repeated_prompts" for f in bench["findings"])


@pytest.mark.anyio
async def test_mcp_bench_rejects_bad_input(url: str, settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        zero = await client.call_tool("bench", {"model": "scripted", "endpoint": url, "concurrency": 0})
        assert zero.is_error
        remote = await client.call_tool("bench", {"model": "m", "endpoint": "http://10.1.2.3:80"})
        assert remote.is_error and "loopback" in remote.content[0].text
        outside = await client.call_tool("bench", {"model": "scripted", "endpoint": url, "prompts_file": "/etc/passwd"})
        assert outside.is_error and "outside the allowed roots" in outside.content[0].text
        both = await client.call_tool("bench", {"model": "scripted", "endpoint": url, "rate": 2.0, "levels": [1, 2]})
        assert both.is_error and "takes no rate" in both.content[0].text and "Next step" in both.content[0].text


def test_cli_roofline_reports_the_ceiling(smollm2_gguf: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--json", "--root", str(smollm2_gguf.parent), "bench", "roofline", str(smollm2_gguf),
                        "--bandwidth-gbs", "10", "--tok-s", "20", "--context", "100")
    assert code == 0
    result = json.loads(out)
    bytes_per_token = result["weight_bytes_per_token"] + 100 * result["kv_bytes_per_context_token"]
    assert result["ceiling_tok_s"] == pytest.approx(10e9 / bytes_per_token)
    assert result["bandwidth_source"] == "given" and result["flag"] == "far_below"
