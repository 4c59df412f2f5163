"""Engine comparison: one checkpoint on llama.cpp (a GGUF at a chosen quantization) and on vLLM, the same sweep on each.

The engines run one after the other (a small machine has no cores to spare for two), each swept with our bench over
the same seeded prompts at rising concurrency, with as many slots / sequences as the highest level. The report holds
TTFT, TPOT, e2e and req/s per level, the peak resident memory of each engine's process tree, and each knee. Whether the
numbers compare is the quiet rule's (`bench.quiet`): other processes under 0.2 cores before and during each engine's sweep.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from model_serving.bench import quiet
from model_serving.bench.plots import _pyplot, _save
from model_serving.bench.runner import run_sweep
from model_serving.bench.schema import BenchConfig, BenchResult, Knee, SweepPoint
from model_serving.checkpoint.export import export_gguf
from model_serving.jobs import Progress
from model_serving.quantize.quantizer import quantize_gguf
from model_serving.requests import BenchCompareRequest
from model_serving.serve.embedded import engine
from model_serving.serve.embedded.engine import stop_model
from model_serving.serve.vllm.engine import checked_checkpoint, serve_vllm
from model_serving.serve.vllm.env import require
from model_serving.settings import Settings
from model_serving.util.paths import atomic_output, confine

EngineName = Literal["llama.cpp", "vllm"]
N_REQUESTS, MAX_TOKENS = 16, 32  # per level: enough for a median and a p95 at 8 streams, short enough for 2 cores


class EngineRun(BaseModel):
    engine: EngineName
    served: str = Field(description="the GGUF (llama.cpp) or checkpoint folder (vLLM) served")
    points: list[SweepPoint]
    p95_ttft_ms: float | None = Field(None, description="at the best level")
    peak_rss_bytes: int | None = None
    knee: Knee | None = None
    start_s: float | None = None


class CompareResult(BaseModel):
    source: str
    quant: str
    levels: list[int]
    runs: list[EngineRun]
    load_before: list[float] = Field(default_factory=list, description="1, 5 and 15 minute load averages when it began (for the reader)")
    load_average: list[float] = Field(description="1, 5 and 15 minute load averages when the comparison ended (for the reader)")
    comparable: bool = Field(False, description=f"The quiet rule held: {quiet.RULE}")
    quiet: list[dict] = Field(default_factory=list, description="the quiet rule's samples before and during each engine's sweep")
    comparable_note: str = ""
    summary: str
    files: dict[str, str] = Field(default_factory=dict)


def _gguf(settings: Settings, source: Path, quant: str, out: Path, progress: Progress) -> Path:
    """The checkpoint as a GGUF at `quant`, through the usual export and quantize (each reuses an identical earlier output)."""
    f16 = Path(export_gguf(settings, str(source), str(out / f"{source.name}-F16.gguf"), overwrite=True, progress=progress.span(0, 0.6)).output_path)
    if quant.upper() == "F16":
        return f16
    done = quantize_gguf(settings, f16, out / f"{source.name}-{quant.upper()}.gguf", quant, overwrite=True, verify=False, progress=progress.span(0.6, 1))
    return Path(done.output_path)


def _sweep(base_url: str, name: str, pid: int, req: BenchCompareRequest, out: Path | None, progress: Progress,
           watches: list[dict]) -> BenchResult:
    config = BenchConfig(base_url=base_url, model=name, n_requests=N_REQUESTS, max_tokens=MAX_TOKENS, server_pid=pid,
                         label=f"compare-{name}", output_dir=out)
    with quiet.QuietWatch(f"{name} sweep", [pid]) as watch:
        measured = run_sweep(config, req.levels, progress)
    watches.append(watch.as_dict())
    return measured


def _run(engine: EngineName, served: str, measured: BenchResult, start_s: float) -> EngineRun:
    return EngineRun(engine=engine, served=served, points=measured.sweep, p95_ttft_ms=measured.summary.p95_ttft_ms,
                     peak_rss_bytes=measured.server.memory_bytes, knee=measured.knee, start_s=round(start_s, 1))


_T = TypeVar("_T")


def _timed(fn: Callable[[], _T]) -> tuple[_T, float]:
    began = time.perf_counter()
    return fn(), time.perf_counter() - began


def _llama_cpp(settings: Settings, source: Path, req: BenchCompareRequest, work: Path, out: Path | None, progress: Progress,
               watches: list[dict]) -> EngineRun:
    gguf = _gguf(settings, source, req.quant, work, progress.span(0, 0.3))
    slots = max(req.levels)
    served, start_s = _timed(lambda: engine.start_model(settings, gguf, "compare-llamacpp", ctx_size=max(2048, 512 * slots), parallel=slots,
                                                        replace=True, progress=progress.span(0.3, 0.35)))
    try:
        measured = _sweep(served.base_url, served.name, served.pid, req, out and out / "llama.cpp", progress.span(0.35, 1), watches)
    finally:
        engine.stop_model(settings, "compare-llamacpp")
    return _run("llama.cpp", str(gguf), measured, start_s)


def _vllm(settings: Settings, source: Path, req: BenchCompareRequest, out: Path | None, progress: Progress, watches: list[dict]) -> EngineRun:
    (served, _), start_s = _timed(lambda: serve_vllm(settings, source, "compare-vllm", ctx_size=2048, parallel=max(req.levels), replace=True,
                                                     progress=progress.span(0, 0.3)))
    try:
        measured = _sweep(served.base_url, served.name, served.pid, req, out and out / "vllm", progress.span(0.3, 1), watches)
    finally:
        stop_model(settings, "compare-vllm")
    return _run("vllm", str(source), measured, start_s)


def run_compare(settings: Settings, req: BenchCompareRequest, progress: Progress | None = None) -> CompareResult:
    """Serve `req.source` on each engine in turn and sweep it; vLLM's install is checked first, before any long work."""
    progress = progress or Progress()
    load_before = [round(x, 2) for x in os.getloadavg()]
    source = checked_checkpoint(settings, req.source)
    require(settings)
    out = confine(req.output, settings.roots, must_exist=False, what="output directory") if req.output else None
    work = (out or settings.state_dir / "compare") / "gguf"
    work.mkdir(parents=True, exist_ok=True)
    watches: list[dict] = []
    runs = [_llama_cpp(settings, source, req, work, out, progress.span(0, 0.5), watches),
            _vllm(settings, source, req, out, progress.span(0.5, 0.98), watches)]
    load_after = [round(x, 2) for x in os.getloadavg()]
    result = CompareResult(source=str(source), quant=req.quant.upper(), levels=sorted(set(req.levels)), runs=runs, load_before=load_before,
                           load_average=load_after, quiet=watches, **quiet.verdict(watches), summary=_summary(runs))
    if out is not None:
        result.files = _write(result, out)
    progress.update(1.0, result.summary)
    return result


def _best(run: EngineRun) -> SweepPoint:
    return max(run.points, key=lambda p: p.request_throughput)


def _summary(runs: list[EngineRun]) -> str:
    parts = []
    for run in runs:
        best = _best(run)
        knee = f"knee at {run.knee.concurrency}" if run.knee and run.knee.concurrency else "no knee"
        rss = f"{run.peak_rss_bytes / 2**30:.2f} GiB" if run.peak_rss_bytes else "RSS unknown"
        parts.append(f"{run.engine}: best {best.request_throughput:.2f} req/s at concurrency {best.concurrency}, {knee}, {rss}")
    return "; ".join(parts) + "."


def markdown(result: CompareResult) -> str:
    def f(v: float | None, spec: str = ".0f") -> str:
        return "-" if v is None else format(v, spec)

    lines = [f"# llama.cpp ({result.quant} GGUF) vs vLLM (HF checkpoint)", "", f"Source: {result.source}. "
             f"{'Comparable' if result.comparable else 'Not comparable'}: {result.comparable_note}.", "",
             "| Engine | Concurrency | req/s | output tok/s | TTFT median ms | TPOT median ms | E2E p95 ms | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for run in result.runs:
        rss = f(run.peak_rss_bytes / 2**20) if run.peak_rss_bytes else "-"
        for p in run.points:
            lines.append(f"| {run.engine} | {p.concurrency} | {p.request_throughput:.2f} | {p.output_throughput:.1f} | {f(p.median_ttft_ms)} | "
                         f"{f(p.median_tpot_ms, '.1f')} | {f(p.p95_e2el_ms)} | {rss} |")
    lines += ["", *(f"- {run.engine} knee: {run.knee.explanation if run.knee else 'not found'} (start-up {run.start_s} s)" for run in result.runs)]
    return "\n".join(lines) + "\n"


def _figure(plt: Any, result: CompareResult) -> Any:  # matplotlib's pyplot and Figure: the library ships no type information
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for run in result.runs:
        xs = [p.concurrency for p in run.points]
        axes[0].plot(xs, [p.request_throughput for p in run.points], marker="o", label=run.engine)
        axes[1].plot(xs, [p.median_ttft_ms for p in run.points], marker="o", label=run.engine)
        axes[2].plot(xs, [p.p95_e2el_ms for p in run.points], marker="o", label=run.engine)
    for ax, title in zip(axes, ("req/s", "TTFT median (ms)", "E2E p95 (ms)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("concurrency")
        ax.set_xscale("log", base=2)
        ax.legend()
    fig.tight_layout()
    return fig


def _write(result: CompareResult, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "compare.json"), "markdown": str(out / "compare.md")}
    plt = _pyplot()
    if plt is not None:
        files["png"] = _save(plt, _figure(plt, result), out / "compare.png")
    result.files = files
    with atomic_output(out / "compare.md", overwrite=True) as tmp:
        tmp.write_text(markdown(result), encoding="utf-8")
    with atomic_output(out / "compare.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(result.model_dump(mode="json"), indent=2), encoding="utf-8")
    return files
