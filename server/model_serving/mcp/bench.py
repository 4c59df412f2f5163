"""Bench MCP tools: run or sweep, quantization A/B and engine compare: the verbs of `model-serving bench`, one row each.

`bench roofline` has no tool: every bench result of a served GGUF carries its roofline already.
"""

from __future__ import annotations

from model_serving import verbs
from model_serving.bench.compare import CompareResult
from model_serving.bench.quant_ab import QuantABResult
from model_serving.bench.schema import BenchResult
from model_serving.mcp.runtime import ToolSpec, writes
from model_serving.requests import BenchCompareRequest, BenchRequest, QuantABRequest

TOOLS = [
    ToolSpec(verbs.bench, "bench", BenchRequest, BenchResult, writes(idempotent=False), long=True),
    ToolSpec(verbs.bench_quant_ab, "bench_quant_ab", QuantABRequest, QuantABResult, writes(idempotent=False), long=True),
    ToolSpec(verbs.bench_compare, "bench_compare", BenchCompareRequest, CompareResult, writes(idempotent=False), long=True),
]
