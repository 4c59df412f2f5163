"""A replica's output tokens/s for the plan's cost line: measured from a bench result of that format, or estimated.

The estimate is a decode bound from memory bandwidth: each decode step reads the weights on a GPU once and the KV
cache of every running sequence, so a step takes (weights per GPU + KV read per GPU) / (bandwidth x efficiency) and
yields one token per sequence. Fewer bytes per weight is what makes a format faster here; prefill is not counted.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from model_serving.cluster.cost import per_million, read_throughput
from model_serving.cluster.gpus import GpuSpec
from model_serving.cluster.sizing import Sizing
from model_serving.errors import InputError

BANDWIDTH_EFFICIENCY = 0.6  # share of the datasheet bandwidth a decode step reaches (an assumption)
CONTEXT_FILL = 0.5  # running sequences are on average half their max_model_len long


class ReplicaThroughput(BaseModel):
    format: str
    output_tok_s: float
    concurrency: int
    label: str  # "measured, on <machine>" or "estimated"
    rule: str  # how it was measured or estimated
    gpus_per_replica: int
    gpu_hourly_usd: float | None = None
    usd_per_m_output: float | None = None


def estimate(sizing: Sizing, gpu: GpuSpec, fmt: str) -> ReplicaThroughput | None:
    if not gpu.bandwidth_gbs:
        return None
    seqs = sizing.target_concurrency
    kv = int(seqs * sizing.max_model_len * CONTEXT_FILL) * sizing.kv_bytes_per_token_per_gpu
    step = (sizing.weights_bytes_per_gpu + kv) / (gpu.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
    rule = (f"decode bound: {seqs} sequences per step / ((weights {sizing.weights_bytes_per_gpu / 2**30:.1f} GiB + KV "
            f"{kv / 2**30:.1f} GiB at {CONTEXT_FILL:.0%} of max_model_len, per GPU) / ({gpu.bandwidth_gbs:g} GB/s x "
            f"{BANDWIDTH_EFFICIENCY})); prefill not counted")
    return ReplicaThroughput(format=fmt, output_tok_s=round(seqs / step, 1), concurrency=seqs, label="estimated", rule=rule,
                             gpus_per_replica=sizing.tensor_parallel_size)


def measured(path: Path, fmt: str, gpu: GpuSpec, gpus: int) -> ReplicaThroughput:
    """Our bench JSON or vLLM's `bench serve` JSON; a `format` or `machine`/`hardware` field in it is honoured."""
    tp = read_throughput(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    ours = data.get("model_serving") if isinstance(data.get("model_serving"), dict) else {}
    said = data.get("format") or ours.get("format")
    if isinstance(said, str) and said.lower() != fmt:
        raise InputError(f"{path.name} measured format {said}; the plan serves {fmt}.",
                         f"Give a bench result of {fmt} (bench the {fmt} checkpoint on vLLM), or leave --bench out for an estimate.")
    machine = next((m for m in (data.get("machine"), data.get("hardware"), ours.get("machine")) if isinstance(m, str) and m), None)
    where = machine or f"{gpu.name} (as given: the file names no machine)"
    return ReplicaThroughput(format=fmt, output_tok_s=round(tp.output_tok_s, 1), concurrency=tp.concurrency or 0,
                             label=f"measured, on {where}", rule=f"{path.name}: {tp.source}", gpus_per_replica=gpus)


def priced(t: ReplicaThroughput, gpu_hourly: float | None) -> ReplicaThroughput:
    if gpu_hourly is None or t.output_tok_s <= 0:
        return t
    return t.model_copy(update={"gpu_hourly_usd": gpu_hourly,
                                "usd_per_m_output": round(per_million(gpu_hourly * t.gpus_per_replica, t.output_tok_s), 4)})
