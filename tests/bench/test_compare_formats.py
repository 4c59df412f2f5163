"""bench compare's report with format rows: each row says its engine, format, hardware and quality (no engine needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from model_serving.bench.compare import CompareResult, EngineName, EngineRun, hardware, markdown, quality_cell
from model_serving.bench.schema import SweepPoint
from model_serving.requests import BenchCompareRequest


def _run(engine: EngineName, fmt: str, quality: dict | None, rps: float) -> EngineRun:
    point = SweepPoint(concurrency=4, request_throughput=rps, output_throughput=rps * 32, p95_e2el_ms=900.0, median_ttft_ms=120.0,
                       median_tpot_ms=20.0, completed=16)
    return EngineRun(engine=engine, format=fmt, hardware=hardware("llama.cpp"), served=f"/m/{fmt}", points=[point], quality=quality)


def test_each_row_names_engine_format_hardware_and_quality() -> None:
    runs = [_run("llama.cpp", "Q4_K_M", {"verdict": "ok", "ppl_ratio": 1.031, "ppl_ratio_interval": [1.02, 1.04]}, 3.0),
            _run("vllm", "bf16", {"verdict": "reference"}, 2.0),
            _run("vllm", "w8a8-int8", {"verdict": "degraded", "ppl_ratio": 1.07, "ppl_ratio_interval": None}, 2.5)]
    result = CompareResult(source="/m", quant="Q4_K_M", levels=[4], runs=runs, load_average=[0.0, 0.0, 0.0], summary="s")
    table = markdown(result)
    assert "compressed formats" in table.splitlines()[0]
    cpu = hardware("llama.cpp")
    assert cpu.endswith("cores") and f"| llama.cpp | Q4_K_M | {cpu} | ok x1.031 [1.020-1.040] | 4 | 3.00 |" in table
    assert f"| vllm | bf16 | {cpu} | reference | 4 |" in table
    assert f"| vllm | w8a8-int8 | {cpu} | degraded x1.070 | 4 | 2.50 |" in table
    assert quality_cell(None) == "-"


def test_formats_are_checked_by_the_request() -> None:
    assert BenchCompareRequest(source="m", formats=["awq", "w8a8-int8"]).formats == ["awq", "w8a8-int8"]
    with pytest.raises(ValidationError):
        BenchCompareRequest(source="m", formats=["int4"])
