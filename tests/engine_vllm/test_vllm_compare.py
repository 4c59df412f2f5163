"""bench compare through MCP: SmolLM2 on llama.cpp (Q8_0 GGUF by our export and quantize) then on vLLM, one JSON/Markdown/PNG report."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from mcp import Client
from vllm_helpers import call

from model_serving.mcp.server import create_server
from model_serving.serve.embedded.engine import list_models
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


def test_mcp_bench_compare_writes_one_report_for_both_engines(vllm_python: str, smollm2_checkpoint: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env(roots=[str(tmp_path), str(smollm2_checkpoint.parent)], home=str(tmp_path / "home"),
                                 ollama_host="http://127.0.0.1:9")
    out = tmp_path / "compare"

    async def run() -> dict:
        async with Client(create_server(settings)) as client:
            return await call(client, "bench_compare", {"source": str(smollm2_checkpoint), "quant": "Q8_0", "levels": [1, 2],
                                                        "output_dir": str(out)})

    result = anyio.run(run)
    assert [r["engine"] for r in result["runs"]] == ["llama.cpp", "vllm"]
    for run in result["runs"]:
        assert [p["concurrency"] for p in run["points"]] == [1, 2]
        assert all(p["completed"] >= 16 and p["request_throughput"] > 0 and p["median_ttft_ms"] > 0 for p in run["points"])
        assert run["peak_rss_bytes"] > 50 << 20 and "knee" in run
    assert result["runs"][0]["served"].endswith("-Q8_0.gguf") and result["runs"][1]["served"] == str(smollm2_checkpoint)
    assert len(result["load_average"]) == 3
    assert json.loads(Path(result["files"]["json"]).read_text())["runs"][1]["engine"] == "vllm"
    table = Path(result["files"]["markdown"]).read_text()
    assert "| llama.cpp | Q8_0 | " in table and "| vllm | bf16 | " in table
    assert all(r["hardware"].endswith("cores") or r["hardware"].startswith("GPU") for r in result["runs"])
    assert Path(result["files"]["png"]).read_bytes()[:4] == b"\x89PNG"
    assert [m for m in list_models(settings) if m.state == "running"] == []  # both engines stopped again
    code, _, err = cli_in_process(capsys, "--home", str(settings.home), "--root", str(tmp_path), "bench", "compare", str(tmp_path / "nothing"))
    assert code == 2 and "next step:" in err
