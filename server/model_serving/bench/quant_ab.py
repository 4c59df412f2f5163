"""Quantization A/B: the same prompts against several quantizations of one model, speed beside quality.

Speed: each GGUF is served in turn on the embedded engine with the same settings and benchmarked
with the same seeded prompts. Quality: greedy-answer agreement with the highest-precision variant
(the largest file) and perplexity on a fixed text, both from `model_serving.quantize.quality`, which runs
llama-cpp-python in a child process. The recommendation is the smallest file whose latency
verdicts PASS and whose quality stays above the floor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.bench.runner import run_benchmark
from model_serving.bench.schema import SLO, BenchConfig, BenchResult, VerdictState
from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.quantize import quality
from model_serving.serve.embedded import engine
from model_serving.settings import Settings
from model_serving.util.paths import atomic_output, confine

_SPEED_TARGETS = ("ttft_ms", "e2e_ms")


class VariantResult(BaseModel):
    label: str
    path: str
    size_bytes: int
    reference: bool = False
    median_ttft_ms: float | None = None
    p95_ttft_ms: float | None = None
    p95_e2el_ms: float | None = None
    decode_tok_s: float | None = None
    request_throughput: float | None = None
    speed_verdicts: dict[str, VerdictState] = Field(default_factory=dict)
    meets_speed: bool = False
    agreement_rate: float | None = Field(default=None, description="Share of prompts whose greedy answer equals the reference's")
    mean_common_prefix: float | None = None
    perplexity: float | None = None
    ppl_ratio: float | None = None
    quality_verdict: str | None = None
    meets_quality: bool = False
    bench_files: dict[str, str] = Field(default_factory=dict)

    def record_speed(self, result: BenchResult) -> None:
        """This variant's side of the table from its bench run, judged on the speed targets only."""
        s = result.summary
        self.median_ttft_ms, self.p95_ttft_ms, self.p95_e2el_ms = s.median_ttft_ms, s.p95_ttft_ms, s.p95_e2el_ms
        self.decode_tok_s, self.request_throughput = result.metrics["decode_tok_s"].median, s.request_throughput
        self.speed_verdicts = {v.target: v.state for v in result.verdicts}
        self.meets_speed = all(self.speed_verdicts.get(t, "PASS") == "PASS" for t in _SPEED_TARGETS)
        self.bench_files = result.files


class QuantABResult(BaseModel):
    kind: Literal["quant", "adapter"] = Field(default="quant", description="adapter: merged vs base+adapter (bench/adapter_ab.py)")
    variants: list[VariantResult]
    reference: str
    recommended: str | None
    explanation: str
    quality_floor: float
    max_ppl_ratio: float
    targets: SLO
    files: dict[str, str] = Field(default_factory=dict)


def _label(path: Path) -> str:
    return path.stem


def choose(variants: list[VariantResult], quality_floor: float, max_ppl_ratio: float) -> tuple[VariantResult | None, str]:
    """Mark which variants meet the quality floor; pick the smallest that also passes the latency targets."""
    for v in variants:
        if not v.reference:
            v.meets_quality = (v.agreement_rate is not None and v.agreement_rate >= quality_floor
                               and v.ppl_ratio is not None and v.ppl_ratio <= max_ppl_ratio)
    fitting = [v for v in variants if v.meets_speed and v.meets_quality]
    best = min(fitting, key=lambda v: v.size_bytes) if fitting else None
    if best:
        return best, (f"{best.label} ({best.size_bytes / 1e6:.0f} MB) is the smallest variant whose latency targets pass "
                      f"and whose greedy agreement ({best.agreement_rate:.0%}) and perplexity ratio ({best.ppl_ratio:.3f}) stay within "
                      f"the floor ({quality_floor:.0%}, <= {max_ppl_ratio:.2f}).")
    slow = [v.label for v in variants if not v.meets_speed]
    poor = [v.label for v in variants if not v.meets_quality]
    return None, ("No variant meets both: " + (f"latency targets not passed by {', '.join(slow)}" if slow else "")
                  + ("; " if slow and poor else "") + (f"quality below the floor for {', '.join(poor)}" if poor else "") + ".")


def run_quant_ab(settings: Settings, ggufs: Sequence[str | Path], *, n_requests: int = 8, concurrency: int = 1, max_tokens: int = 16,
                 targets: SLO | None = None, quality_floor: float = 0.5, max_ppl_ratio: float = 1.10, parallel: int = 2,
                 output_dir: str | Path | None = None, progress: Progress | None = None) -> QuantABResult:
    progress = progress or Progress()
    paths = [confine(p, settings.roots, what="GGUF path") for p in ggufs]
    if len(set(paths)) < 2:
        raise InputError("A quantization A/B needs at least two different GGUF files.", "Pass two or more quantizations of one model.")
    out = confine(output_dir, settings.roots, must_exist=False, what="output directory") if output_dir else None
    targets = targets or SLO()
    # The largest file carries the most bits per weight: the reference every other variant is held to.
    ordered = sorted(paths, key=lambda p: p.stat().st_size, reverse=True)
    reference = ordered[0]
    variants: list[VariantResult] = []
    steps = len(ordered) * 2
    for i, path in enumerate(ordered):
        variant = VariantResult(label=_label(path), path=str(path), size_bytes=path.stat().st_size, reference=path == reference)
        span = progress.span((2 * i) / steps, (2 * i + 1) / steps)
        name = f"ab-{i}"
        served = engine.start_model(settings, path, name, parallel=parallel, replace=True, progress=span.span(0.0, 0.3))
        try:
            config = BenchConfig(base_url=served.base_url, model=name, n_requests=n_requests, concurrency=concurrency,
                                 max_tokens=max_tokens, server_pid=served.pid, targets=targets, label=f"ab-{variant.label}",
                                 output_dir=(out / variant.label) if out else None)
            speed = run_benchmark(config, span.span(0.3, 1.0))
        finally:
            engine.stop_model(settings, name)
        variant.record_speed(speed)
        q_span = progress.span((2 * i + 1) / steps, (2 * i + 2) / steps)
        if path == reference:
            variant.agreement_rate, variant.mean_common_prefix, variant.ppl_ratio = 1.0, 1.0, 1.0
            variant.quality_verdict, variant.meets_quality = "reference", True
        else:
            report = quality.compare_quality(settings, reference, path, progress=q_span)
            variant.agreement_rate, variant.mean_common_prefix = report.agreement_rate, report.mean_common_prefix
            variant.perplexity, variant.ppl_ratio = report.candidate.perplexity, report.ppl_ratio
            variant.quality_verdict = report.verdict
            if variants and variants[0].perplexity is None:
                variants[0].perplexity = report.reference.perplexity
        variants.append(variant)
    best, explanation = choose(variants, quality_floor, max_ppl_ratio)
    result = QuantABResult(variants=variants, reference=_label(reference), recommended=best.label if best else None, explanation=explanation,
                           quality_floor=quality_floor, max_ppl_ratio=max_ppl_ratio, targets=targets)
    if out is not None:
        result.files = write(result, out)
    progress.update(1.0, explanation)
    return result


def markdown(result: QuantABResult) -> str:
    def f(v: float | None, spec: str = ".1f") -> str:
        return "-" if v is None else format(v, spec)

    title = "Adapter A/B: merged vs base+adapter" if result.kind == "adapter" else "Quantization A/B"
    lines = [f"# {title}", "", f"Reference: {result.reference}. Recommended: **{result.recommended or 'none'}**. {result.explanation}", "",
             "| Variant | MB | TTFT p95 ms | E2E p95 ms | decode tok/s | req/s | speed | agreement | ppl ratio | quality |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for v in result.variants:
        speed = ", ".join(f"{k} {s}" for k, s in v.speed_verdicts.items() if k in _SPEED_TARGETS)
        lines.append(f"| {v.label}{' (ref)' if v.reference else ''} | {v.size_bytes / 1e6:.0f} | {f(v.p95_ttft_ms)} | {f(v.p95_e2el_ms)} | "
                     f"{f(v.decode_tok_s)} | {f(v.request_throughput, '.2f')} | {speed} | {f(v.agreement_rate, '.0%')} | "
                     f"{f(v.ppl_ratio, '.3f')} | {v.quality_verdict or '-'} |")
    return "\n".join(lines) + "\n"


def write(result: QuantABResult, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.kind}_ab"
    files = {"json": str(out / f"{stem}.json"), "markdown": str(out / f"{stem}.md")}
    result.files = files
    with atomic_output(out / f"{stem}.md", overwrite=True) as tmp:
        tmp.write_text(markdown(result), encoding="utf-8")
    with atomic_output(out / f"{stem}.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(result.model_dump(mode="json"), indent=2), encoding="utf-8")
    return files
