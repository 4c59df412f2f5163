"""`quantize --format`: make a vLLM format with llm-compressor, then judge it against its source on vLLM.

The compression's refusals come first, then (when the gate will run) whether vLLM is installed, so nothing long runs
before a refusal. A format this machine's vLLM cannot serve (FP8 without an FP8 GPU) is made and left unmeasured, and the
result says so.
"""

from __future__ import annotations

from pathlib import Path

from model_serving.jobs import Progress
from model_serving.quantize import formats
from model_serving.quantize.compress import CompressResult, compress_checkpoint, plan_compress, summary
from model_serving.serve.vllm import env as vllm_env
from model_serving.serve.vllm.format_quality import measure_on_vllm
from model_serving.serve.vllm.formats import fp8_refusal, gpu_capability
from model_serving.settings import Settings


def compress_and_gate(settings: Settings, source: str, output: str | None, fmt: str, *, calibration: str | None = None,
                      overwrite: bool = False, verify: bool = True, progress: Progress | None = None) -> CompressResult:
    """`quantize --format`: make the format, then judge it against its source on vLLM (when this machine's vLLM serves it)."""
    progress = progress or Progress()
    plan = plan_compress(settings, source, output, fmt, calibration=calibration)  # every refusal before the vLLM check
    servable = formats.SPECS[plan.fmt].vllm_cpu or fp8_refusal(vllm_env.find(settings).build, gpu_capability()) is None  # type: ignore[index]
    if verify and servable:
        vllm_env.require(settings)  # the gate serves both on vLLM: refused now, not after the compression
    result = compress_checkpoint(settings, source, output, fmt, calibration=calibration, overwrite=overwrite,
                                 progress=progress.span(0.0, 0.6 if verify and servable else 1.0))
    if not verify or not servable:
        return result.model_copy(update={"summary": result.summary + ("" if servable else "; not measured: this machine's vLLM cannot serve it")})
    report = measure_on_vllm(settings, Path(result.input_path), Path(result.output_path), progress.span(0.6, 1.0))
    done = result.model_copy(update={"quality": report.model_dump(mode="json"), "verdict": report.verdict})
    done.summary = summary(done) + f": {report.summary}"
    progress.update(1.0, done.summary)
    return done
