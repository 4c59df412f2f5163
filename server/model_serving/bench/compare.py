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
from model_serving.quantize.compress import plan_compress
from model_serving.quantize.quantizer import quantize_gguf
from model_serving.requests import BenchCompareRequest
from model_serving.serve.embedded import engine
from model_serving.serve.embedded.engine import stop_model
from model_serving.serve.registry import ServedModel
from model_serving.serve.vllm.compress_gate import compress_and_gate
from model_serving.serve.vllm.engine import checked_checkpoint, serve_vllm, start_vllm
from model_serving.serve.vllm.env import require
from model_serving.serve.vllm.formats import check_servable_format
from model_serving.settings import Settings
from model_serving.util.paths import atomic_output, confine

EngineName = Literal["llama.cpp", "vllm"]
N_REQUESTS, MAX_TOKENS = 16, 32  # per level: enough for a median and a p95 at 8 streams, short enough for 2 cores


class EngineRun(BaseModel):
    engine: EngineName
    format: str = Field("", description="the GGUF type (llama.cpp), bf16 (the checkpoint itself) or the compressed format (vLLM)")
    hardware: str = Field("", description="where it ran: the CPU model and cores, or the GPU")
    served: str = Field(description="the GGUF (llama.cpp) or checkpoint folder (vLLM) served")
    size_bytes: int | None = Field(None, description="the served file's or checkpoint's weights")
    quality: dict[str, Any] | None = Field(None, description="verdict, ppl_ratio and interval, agreement against the 16-bit source")
    make_s: float | None = Field(None, description="seconds to make the served file (export and quantize, or compress); 0 when reused")
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


def _gguf(settings: Settings, source: Path, quant: str, out: Path, progress: Progress,
          verify: bool) -> tuple[Path, dict[str, Any] | None, float]:
    """The checkpoint as a GGUF at `quant` through the usual export and quantize (each reuses an identical earlier output),
    its quality against the F16 when `verify`, and the seconds the two took."""
    exported = export_gguf(settings, str(source), str(out / f"{source.name}-F16.gguf"), overwrite=True, progress=progress.span(0, 0.6))
    f16, export_s = Path(exported.output_path), 0.0 if exported.skipped else exported.seconds
    if quant.upper() == "F16":
        return f16, None, export_s
    done = quantize_gguf(settings, f16, out / f"{source.name}-{quant.upper()}.gguf", quant, overwrite=True, verify=verify, progress=progress.span(0.6, 1))
    return Path(done.output_path), _quality(done.quality) if done.quality else None, export_s + (0.0 if done.skipped else done.quantize_s)


def _sweep(base_url: str, name: str, pid: int, req: BenchCompareRequest, out: Path | None, progress: Progress,
           watches: list[dict]) -> BenchResult:
    config = BenchConfig(base_url=base_url, model=name, n_requests=N_REQUESTS, max_tokens=MAX_TOKENS, server_pid=pid,
                         label=f"compare-{name}", output_dir=out)
    with quiet.QuietWatch(f"{name} sweep", [pid]) as watch:
        measured = run_sweep(config, req.levels, progress)
    watches.append(watch.as_dict())
    return measured


def _run(engine: EngineName, fmt: str, served: str, measured: BenchResult, start_s: float) -> EngineRun:
    path = Path(served)
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.glob("*.safetensors"))
    return EngineRun(engine=engine, format=fmt, hardware=hardware(engine), served=served, size_bytes=size, points=measured.sweep,
                     p95_ttft_ms=measured.summary.p95_ttft_ms, peak_rss_bytes=measured.server.memory_bytes, knee=measured.knee,
                     start_s=round(start_s, 1))


def hardware(engine: EngineName) -> str:
    """The CPU model and the cores this process may use (vLLM's CUDA build: its GPU)."""
    if engine == "vllm":
        from model_serving.serve.vllm.env import gpu_present

        if gpu_present():
            return "GPU (vLLM CUDA build)"
    name = "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def _quality(report: Any) -> dict[str, Any]:
    """The row's quality: the gate's verdict and figures (a QualityReport, or its JSON)."""
    data = report if isinstance(report, dict) else report.model_dump(mode="json")
    return {k: data.get(k) for k in ("verdict", "ppl_ratio", "ppl_ratio_interval", "early_agreement_rate", "agreement_rate", "reference_label")}


_T = TypeVar("_T")


def _timed(fn: Callable[[], _T]) -> tuple[_T, float]:
    began = time.perf_counter()
    return fn(), time.perf_counter() - began


def _llama_cpp(settings: Settings, source: Path, req: BenchCompareRequest, work: Path, out: Path | None, progress: Progress,
               watches: list[dict], quant: str) -> EngineRun:
    gguf, measured_quality, make_s = _gguf(settings, source, quant, work, progress.span(0, 0.3), verify=bool(req.formats))
    slots = max(req.levels)
    served, start_s = _timed(lambda: engine.start_model(settings, gguf, "compare-llamacpp", ctx_size=max(2048, 512 * slots), parallel=slots,
                                                        replace=True, progress=progress.span(0.3, 0.35)))
    try:
        measured = _sweep(served.base_url, served.name, served.pid, req, out and out / f"llama.cpp-{quant.upper()}", progress.span(0.35, 1), watches)
    finally:
        engine.stop_model(settings, "compare-llamacpp")
    run = _run("llama.cpp", quant.upper(), str(gguf), measured, start_s)
    return run.model_copy(update={"quality": measured_quality, "make_s": round(make_s, 1)})


def _vllm(settings: Settings, source: Path, req: BenchCompareRequest, out: Path | None, progress: Progress, watches: list[dict],
          fmt: str = "bf16", probe: bool = True) -> EngineRun:
    """The checkpoint on vLLM, probed first (a random-weight benchmark model never stops by itself: `probe` False) and swept."""
    def start() -> ServedModel:
        if probe:
            return serve_vllm(settings, source, "compare-vllm", ctx_size=2048, parallel=max(req.levels), replace=True, progress=progress.span(0, 0.3))[0]
        return start_vllm(settings, source, "compare-vllm", ctx_size=2048, parallel=max(req.levels), replace=True, progress=progress.span(0, 0.3))

    served, start_s = _timed(start)
    try:
        measured = _sweep(served.base_url, served.name, served.pid, req, out and out / f"vllm-{fmt}", progress.span(0.3, 1), watches)
    finally:
        stop_model(settings, "compare-vllm")
    return _run("vllm", fmt, str(source), measured, start_s)


def _formats(settings: Settings, source: Path, req: BenchCompareRequest, work: Path, out: Path | None, progress: Progress,
             watches: list[dict], probe: bool) -> list[EngineRun]:
    """Each compressed format made (or reused), judged on vLLM against the checkpoint, then swept like the bf16 row."""
    runs = []
    formats = list(dict.fromkeys(req.formats or []))
    for i, fmt in enumerate(formats):
        step = progress.span(i / len(formats), (i + 1) / len(formats))
        made = compress_and_gate(settings, str(source), str(work / f"{source.name}-{fmt}"), fmt, overwrite=True, progress=step.span(0, 0.5))
        run = _vllm(settings, Path(made.output_path), req, out, step.span(0.5, 1), watches, fmt=fmt, probe=probe)
        runs.append(run.model_copy(update={"quality": _quality(made.quality) if made.quality else {"verdict": made.verdict},
                                           "make_s": 0.0 if made.skipped else made.compress_s}))
    return runs


def run_compare(settings: Settings, req: BenchCompareRequest, progress: Progress | None = None,
                extra_quants: tuple[str, ...] = (), probe: bool = True) -> CompareResult:
    """Serve `req.source` on each engine in turn and sweep it; vLLM's install is checked first, before any long work.

    `extra_quants` adds llama.cpp rows at more GGUF types (benchmarks/formats.py: Q4_K_M and Q8_0); `probe` False serves
    vLLM without its chat probe (a random-weight benchmark model, which never stops by itself)."""
    progress = progress or Progress()
    load_before = [round(x, 2) for x in os.getloadavg()]
    source = checked_checkpoint(settings, req.source)
    require(settings)
    for fmt in req.formats or []:  # refused before any long work: the compression's own checks, FP8 where vLLM cannot serve it
        check_servable_format(settings, fmt)
        plan_compress(settings, source, None, fmt)
    out = confine(req.output, settings.roots, must_exist=False, what="output directory") if req.output else None
    work = (out or settings.state_dir / "compare") / "gguf"
    work.mkdir(parents=True, exist_ok=True)
    watches: list[dict] = []
    quants = list(dict.fromkeys([req.quant, *extra_quants]))
    split = (0.5 if not req.formats else 0.2) / len(quants)
    runs = [_llama_cpp(settings, source, req, work, out, progress.span(i * split, (i + 1) * split), watches, quant) for i, quant in enumerate(quants)]
    end = len(quants) * split
    runs.append(_vllm(settings, source, req, out, progress.span(end, end + split if req.formats else 0.98), watches, probe=probe))
    if req.formats:
        runs[-1].quality = {"verdict": "reference", "reference_label": "the 16-bit checkpoint itself"}
        runs += _formats(settings, source, req, work, out, progress.span(end + split, 0.98), watches, probe)
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
        parts.append(f"{run.engine} {run.format}: best {best.request_throughput:.2f} req/s at concurrency {best.concurrency}, {knee}, {rss}")
    return "; ".join(parts) + "."


def markdown(result: CompareResult) -> str:
    def f(v: float | None, spec: str = ".0f") -> str:
        return "-" if v is None else format(v, spec)

    lines = [f"# llama.cpp ({result.quant} GGUF) vs vLLM (HF checkpoint" + (", compressed formats)" if len(result.runs) > 2 else ")"), "",
             f"Source: {result.source}. {'Comparable' if result.comparable else 'Not comparable'}: {result.comparable_note}.", "",
             "| Engine | Format | Hardware | Quality | Concurrency | req/s | output tok/s | TTFT median ms | TPOT median ms | E2E p95 ms | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in result.runs:
        rss = f(run.peak_rss_bytes / 2**20) if run.peak_rss_bytes else "-"
        for p in run.points:
            lines.append(f"| {run.engine} | {run.format} | {run.hardware} | {quality_cell(run.quality)} | {p.concurrency} | {p.request_throughput:.2f} | "
                         f"{p.output_throughput:.1f} | {f(p.median_ttft_ms)} | {f(p.median_tpot_ms, '.1f')} | {f(p.p95_e2el_ms)} | {rss} |")
    lines += ["", *(f"- {run.engine} {run.format} knee: {run.knee.explanation if run.knee else 'not found'} (start-up {run.start_s} s)"
                    for run in result.runs)]
    return "\n".join(lines) + "\n"


def quality_cell(quality: dict[str, Any] | None) -> str:
    """verdict xRATIO [LOW-HIGH], or - when not measured."""
    if not quality:
        return "-"
    ratio, interval = quality.get("ppl_ratio"), quality.get("ppl_ratio_interval")
    text = str(quality.get("verdict", "-"))
    if ratio is not None:
        text += f" x{ratio:.3f}" + (f" [{interval[0]:.3f}-{interval[1]:.3f}]" if interval else "")
    return text


def _figure(plt: Any, result: CompareResult) -> Any:  # matplotlib's pyplot and Figure: the library ships no type information
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for run in result.runs:
        xs = [p.concurrency for p in run.points]
        label = f"{run.engine} {run.format}"
        axes[0].plot(xs, [p.request_throughput for p in run.points], marker="o", label=label)
        axes[1].plot(xs, [p.median_ttft_ms for p in run.points], marker="o", label=label)
        axes[2].plot(xs, [p.p95_e2el_ms for p in run.points], marker="o", label=label)
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
