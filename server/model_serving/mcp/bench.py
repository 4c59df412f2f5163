"""Bench MCP tools: run or sweep, quantization A/B and engine compare: the verbs of `model-serving bench`, one row each.

`bench roofline` has no tool: every bench result of a served GGUF carries its roofline already.
"""

from __future__ import annotations

from model_serving import verbs
from model_serving.bench.compare import CompareResult
from model_serving.bench.models import BenchResult
from model_serving.bench.quant_ab import QuantABResult
from model_serving.mcp.runtime import ToolSpec, writes
from model_serving.requests import BenchCompareRequest, BenchRequest, QuantABRequest


def bench_summary(r: BenchResult) -> str:
    from model_serving.bench.capacity import capacity_text
    from model_serving.bench.report import failure_lines, headline, workload_text

    s = r.summary
    verdicts = ", ".join(f"{v.target} {v.state}" for v in r.verdicts)
    capacity = f"; capacity: {capacity_text(r.capacity)}" if r.capacity else ""
    return ("; ".join(failure_lines(r)) + f". Workload {workload_text(r.workload)}; {headline(r)}{capacity}. "
            f"{s.completed} completed, {s.failed} failed; p95 TTFT {s.p95_ttft_ms or 0:.0f} ms, p95 E2E {s.p95_e2el_ms or 0:.0f} ms, "
            f"{s.request_throughput:.2f} req/s; {verdicts}" + (" [INCOMPLETE]" if r.incomplete else "") + (f"; knee: {r.knee.explanation}" if r.knee else ""))


TOOLS = [
    ToolSpec(verbs.bench, "bench", BenchRequest, BenchResult, writes(idempotent=False), bench_summary, long=True),
    ToolSpec(verbs.bench_quant_ab, "bench_quant_ab", QuantABRequest, QuantABResult, writes(idempotent=False),
             lambda r: f"recommended {r.recommended or 'none'}: {r.explanation}", long=True),
    ToolSpec(verbs.bench_compare, "bench_compare", BenchCompareRequest, CompareResult, writes(idempotent=False), lambda r: r.summary, long=True),
]

