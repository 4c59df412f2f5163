"""Adapter A/B: the merged GGUF against the base GGUF with the adapter served on it, speed beside agreement.

Both are served in turn on the embedded engine with the same settings and benchmarked with the
same seeded prompts (bench/runner.py); the base+adapter side is asked by the adapter's model name,
through the front that picks the adapter per request (serve/embedded/front.py). Agreement: greedy
answers to the fixed quality prompts (quantize/quality.py's set), asked of both served models; the
merge is exact up to rounding, so they should agree on most. The result has quant-ab's shape.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from model_serving.bench.quant_ab import QuantABResult, VariantResult, write
from model_serving.bench.runner import run_benchmark
from model_serving.bench.schema import SLO, BenchConfig
from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.quantize.quality import default_prompts
from model_serving.serve.embedded import engine
from model_serving.settings import Settings
from model_serving.util.paths import confine

GREEDY_TOKENS = 24
ADAPTER_NAME = "ab-adapter"


def _greedy(base_url: str, model: str, prompts: list[str], progress: Progress) -> list[str]:
    answers = []
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for i, prompt in enumerate(prompts):
            progress.update(i / len(prompts), f"greedy answer {i + 1}/{len(prompts)}")
            reply = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": prompt}],
                                                               "max_tokens": GREEDY_TOKENS, "temperature": 0})
            reply.raise_for_status()
            answers.append(reply.json()["choices"][0]["message"].get("content") or "")
    return answers


def _prefix_share(a: str, b: str) -> float:
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return n / max(len(a), len(b), 1)


def _measure(settings: Settings, variant: VariantResult, gguf: Path, lora: list[str] | None, model: str | None, prompts: list[str],
             config: dict, progress: Progress) -> list[str]:
    """Serve one side, benchmark it and ask it the greedy prompts; fill in its speed, return its answers."""
    served = engine.start_model(settings, gguf, "ab-side", parallel=config.pop("parallel"), replace=True, lora=lora, progress=progress.span(0.0, 0.2))
    try:
        out = config.pop("output_dir")
        bench = BenchConfig(base_url=served.base_url, model=model or served.name, server_pid=served.pid, label=f"ab-{variant.label}",
                            output_dir=(out / variant.label) if out else None, **config)
        result = run_benchmark(bench, progress.span(0.2, 0.8))
        answers = _greedy(served.base_url, model or served.name, prompts, progress.span(0.8, 1.0))
    finally:
        engine.stop_model(settings, "ab-side")
    variant.record_speed(result)
    return answers


def _choose(merged: VariantResult, served: VariantResult, floor: float) -> tuple[str | None, str]:
    served.meets_quality = (served.agreement_rate or 0.0) >= floor
    rps = f"{merged.request_throughput or 0:.2f} vs {served.request_throughput or 0:.2f} req/s"
    why = (f"greedy agreement {served.agreement_rate:.0%} (floor {floor:.0%}); {rps}; memory {merged.size_bytes / 1e6:.0f} MB per merged model "
           f"vs {served.size_bytes / 1e6:.0f} MB for the base and this adapter, each further adapter adding only its own file.")
    if not served.meets_quality:
        return merged.label, "The adapter served on the base does not agree with the merge: serve the merged GGUF. " + why
    if not merged.meets_speed and not served.meets_speed:
        return None, "Neither side passes the latency targets. " + why
    faster = merged if (merged.request_throughput or 0) >= (served.request_throughput or 0) else served
    best = faster if faster.meets_speed else (served if faster is merged else merged)
    return best.label, (f"{best.label} is the faster one that passes the latency targets; choose base+adapter anyway when one base "
                        "serves several adapters. " + why)


def run_adapter_ab(settings: Settings, merged: str | Path, base: str | Path, adapter: str | Path, *, n_requests: int = 8,
                   concurrency: int = 1, max_tokens: int = 16, targets: SLO | None = None, quality_floor: float = 0.5,
                   parallel: int = 2, output_dir: str | Path | None = None, progress: Progress | None = None) -> QuantABResult:
    progress = progress or Progress()
    merged_path, base_path = (confine(p, settings.roots, what="GGUF path") for p in (merged, base))
    adapter_path = confine(adapter, settings.roots, what="adapter file")
    if merged_path == base_path:
        raise InputError("The adapter A/B needs the merged GGUF and the base GGUF, two files.", "Pass the merged GGUF first, then the base GGUF.")
    out = confine(output_dir, settings.roots, must_exist=False, what="output directory") if output_dir else None
    targets = targets or SLO()
    config = {"n_requests": n_requests, "concurrency": concurrency, "max_tokens": max_tokens, "targets": targets}
    prompts = [p.prompt for p in default_prompts()]
    ref = VariantResult(label="merged", path=str(merged_path), size_bytes=merged_path.stat().st_size, reference=True,
                        agreement_rate=1.0, mean_common_prefix=1.0, quality_verdict="reference", meets_quality=True)
    served = VariantResult(label="base+adapter", path=f"{base_path} + {adapter_path}",
                           size_bytes=base_path.stat().st_size + adapter_path.stat().st_size)
    want = _measure(settings, ref, merged_path, None, None, prompts, {**config, "parallel": parallel, "output_dir": out}, progress.span(0.0, 0.5))
    got = _measure(settings, served, base_path, [f"{ADAPTER_NAME}={adapter_path}"], ADAPTER_NAME, prompts,
                   {**config, "parallel": parallel, "output_dir": out}, progress.span(0.5, 1.0))
    served.agreement_rate = sum(a == b for a, b in zip(want, got, strict=True)) / len(prompts)
    served.mean_common_prefix = round(sum(_prefix_share(a, b) for a, b in zip(want, got, strict=True)) / len(prompts), 4)
    recommended, explanation = _choose(ref, served, quality_floor)
    served.quality_verdict = "agrees" if served.meets_quality else "differs"
    result = QuantABResult(kind="adapter", variants=[ref, served], reference=ref.label, recommended=recommended, explanation=explanation,
                           quality_floor=quality_floor, max_ppl_ratio=1.0, targets=targets)
    if out is not None:
        result.files = write(result, out)
    progress.update(1.0, explanation)
    return result
