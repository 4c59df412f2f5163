"""Compress a Hugging Face checkpoint into a vLLM format (AWQ, GPTQ, INT8 W8A8, FP8) with llm-compressor's one-shot recipes.

Every refusal comes first (quantize/formats.py: a GGUF, an architecture the recipe lacks, an already-quantized
checkpoint, too little memory), before llm-compressor is even looked for. The run is compress_worker.py in
llm-compressor's own venv, a child in its own process group that dies with us and that a cancel kills; it writes into
a partial folder that takes the output's name only once it holds a config.json naming the scheme and its weights. The
sidecar `<output>.compress.json` records the input's tree sha256, the recipe, the calibration text's sha256 and the
tool versions, so the same request reuses the output instead of compressing again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress, run_process
from model_serving.quantize import formats
from model_serving.quantize.compressor_env import CompressorEnvironment, require
from model_serving.quantize.imatrix import BUILT_IN
from model_serving.settings import Settings
from model_serving.util import child
from model_serving.util.artifact import Artifact
from model_serving.util.filehash import HashCache
from model_serving.util.paths import confine, partial_path, remove_partials, tree_sha256

WORKER = Path(__file__).with_name("compress_worker.py")
SAMPLES = 16  # calibration windows: the built-in text gives fewer, a user's text up to this many
SEQ_LEN = 256
MAX_CALIBRATION_BYTES = 4 << 20
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": None, "VIRTUAL_ENV": None,
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}


class CompressResult(BaseModel):
    """One compressed checkpoint: what it was made from, how, its size, and (when measured) its quality on vLLM."""

    input_path: str
    output_path: str
    format: str = Field(description="awq, gptq, w8a8-int8 or fp8")
    scheme: str = Field(description="The compressed-tensors scheme, e.g. W4A16, W8A8, FP8_DYNAMIC")
    recipe: str
    bits: int
    group_size: int | None = Field(description="Weights per scale for the W4A16 formats; None per channel")
    architecture: str
    calibration: str | None = Field(description="built-in, the user's file, or None (FP8 needs none)")
    calibration_sha256: str | None = None
    input_sha256: str = Field(description="sha256 over the input folder's file names and bytes")
    output_sha256: str = ""
    input_size_bytes: int
    output_size_bytes: int = 0
    size_ratio: float = 0.0
    versions: dict[str, str] = Field(default_factory=dict, description="llmcompressor, compressed-tensors, torch, transformers")
    vllm_cpu: bool = Field(description="vLLM's x86 CPU backend serves this format (FP8 needs a GPU)")
    compress_s: float = 0.0
    wall_s: float = 0.0
    skipped: bool = Field(False, description="An identical earlier output was reused")
    verdict: str = Field("unverified", description="ok, degraded, broken (measured on vLLM against the source), or unverified")
    quality: Any = Field(None, description="The quality report on vLLM (QualityReport), when measured")
    summary: str = ""


def _calibration(settings: Settings, fmt: formats.FormatSpec, calibration: str | Path | None) -> tuple[Path | None, str | None, str | None]:
    """(text path, label, sha256) of the calibration text; a format without calibration refuses a text it would not read."""
    if not fmt.calibrated:
        if calibration is not None:
            raise InputError(f"{fmt.name} needs no calibration, so a calibration text changes nothing.", "Leave --calibration out.")
        return None, None, None
    if calibration is None:
        path, label = BUILT_IN, "built-in"
    else:
        path = confine(calibration, settings.roots, what="calibration text")
        if not path.is_file() or path.stat().st_size > MAX_CALIBRATION_BYTES:
            raise InputError(f"The calibration text {path} is not a file of at most {MAX_CALIBRATION_BYTES >> 20} MiB.",
                             "Pass a UTF-8 text file, or leave --calibration out for the built-in one.")
        label = str(path)
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"The calibration text {path.name} is not UTF-8 text.", "Pass a UTF-8 text file.") from None
    return path, label, hashlib.sha256(data).hexdigest()


def default_output(source: Path, fmt: str) -> Path:
    return source.with_name(f"{source.name}-{fmt}")


def artifact(output: Path) -> Artifact:
    return Artifact(output, suffix=".compress.json", output_key=None, marker="config.json")


class _Plan(BaseModel):
    source: Path
    output: Path
    fmt: str
    arch: str
    group: int | None
    bits: int
    calibration: Path | None
    calibration_label: str | None
    calibration_sha: str | None


def plan_compress(settings: Settings, source: str | Path, output: str | Path | None, fmt_name: str, *,
                  calibration: str | Path | None = None, bits: int | None = None, group_size: int | None = None) -> _Plan:
    """Every refusal, before any work: the format, the input (GGUF, architecture, already quantized), calibration, memory."""
    fmt = formats.spec(fmt_name)
    folder = confine(source, settings.roots, what="checkpoint folder")
    config = formats.read_config(folder)
    arch = formats.check_source(fmt, config)
    group = None if fmt.bits != 4 or group_size == 0 else (group_size or formats.group_size(config))  # 0: one scale per channel
    text, label, sha = _calibration(settings, fmt, calibration)
    out = confine(output or default_output(folder, fmt.name), settings.roots, must_exist=False, what="output folder")
    if out == folder:
        raise InputError("The output folder is the input folder.", "Pass another -o.")
    formats.check_memory(folder)
    return _Plan(source=folder, output=out, fmt=fmt.name, arch=arch, group=group, bits=bits or fmt.bits, calibration=text,
                 calibration_label=label, calibration_sha=sha)


def _expected(plan: _Plan, input_sha: str, env: CompressorEnvironment) -> dict[str, Any]:
    return {"format": plan.fmt, "bits": plan.bits, "group_size": plan.group, "input_sha256": input_sha,
            "calibration_sha256": plan.calibration_sha, "llmcompressor": env.version}


def _reused(settings: Settings, plan: _Plan, expected: dict[str, Any]) -> CompressResult | None:
    art = artifact(plan.output)
    record = art.recorded(expected)
    if record is None or record.get("output_sha256") != tree_sha256(plan.output, file_sha=HashCache(settings.state_dir).sha256):
        return None
    try:
        return CompressResult.model_validate({**record.get("result", {}), "skipped": True})
    except ValueError:
        return None


def run_worker(env: CompressorEnvironment, spec: dict[str, Any], out: Path, progress: Progress) -> dict[str, Any]:
    """compress_worker.py into a partial beside `out`, renamed to `out` only once it wrote a compressed checkpoint."""
    remove_partials(out.parent, out.name)
    tmp = partial_path(out, folder=True)
    said: list[child.Message] = []

    def seen(line: str) -> None:
        message = child.parse(line)
        if message.kind == "progress":
            progress.update(float(message.get("fraction", 0.0)), f"llm-compressor: {message.get('message', '')}")
        elif message.kind in ("result", "error"):
            said.append(message)

    assert env.python is not None
    try:
        code, tail = run_process([env.python, "-P", str(WORKER), json.dumps({**spec, "output": str(tmp)})], progress, env=OFFLINE, on_line=seen)
        if said and said[-1].kind == "error":
            raise ServingError(said[-1].get("cause", "llm-compressor failed"), said[-1].get("next_step", ""), detail=_tail(tail))
        if code != 0 or not said or not _compressed(tmp):
            raise ServingError(f"llm-compressor exited with code {code} without a compressed checkpoint; nothing was written to {out}.",
                               "Read its output below; too little memory is the usual cause of a kill.", detail=_tail(tail))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return said[-1].fields
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _tail(text: str) -> str:
    return "\n".join([x for x in text.splitlines() if x.strip() and "%|" not in x][-15:])


def _compressed(folder: Path) -> bool:
    """The worker's folder holds weights and a config naming a compressed-tensors quantization."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    return isinstance(quant, dict) and quant.get("quant_method") == "compressed-tensors" and any(folder.glob("*.safetensors"))


def compress_checkpoint(settings: Settings, source: str | Path, output: str | Path | None, fmt_name: str, *,
                        calibration: str | Path | None = None, overwrite: bool = False, progress: Progress | None = None,
                        bits: int | None = None, group_size: int | None = None, calibrate: bool = True) -> CompressResult:
    """Make `fmt_name` from the checkpoint (or reuse an identical earlier output); the quality gate is the caller's.

    `bits`, `group_size` (0: per channel) and `calibrate=False` override the format's recipe (round-to-nearest weights
    at those bits and group): no face offers them; they exist to show the gate refusing a recipe that breaks the model."""
    progress = progress or Progress()
    began = time.monotonic()
    plan = plan_compress(settings, source, output, fmt_name, calibration=calibration, bits=bits, group_size=group_size)
    fmt = formats.SPECS[plan.fmt]  # type: ignore[index]
    env = require(settings)
    progress.update(0.01, f"hashing {plan.source.name}")
    hashes = HashCache(settings.state_dir)
    input_sha = tree_sha256(plan.source, file_sha=hashes.sha256)
    custom = bits is not None or group_size is not None or not calibrate
    expected = {**_expected(plan, input_sha, env), "recipe": "rtn" if custom else plan.fmt}
    if (reused := _reused(settings, plan, expected)) is not None:
        progress.update(1.0, f"reusing {plan.output.name}: the same input, recipe, calibration and llm-compressor")
        return reused.model_copy(update={"wall_s": round(time.monotonic() - began, 3)})
    if plan.output.exists() and not overwrite:
        raise InputError(f"{plan.output} already exists and was not made by this request.", "Pass --replace to replace it, or choose another -o.")
    artifact(plan.output).sidecar.unlink(missing_ok=True)  # never a sidecar beside an output it does not describe
    spec = {"source": str(plan.source), "format": "rtn" if custom else plan.fmt, "bits": plan.bits, "group_size": plan.group,
            "calibration": str(plan.calibration) if plan.calibration and calibrate else None, "samples": SAMPLES, "seq_len": SEQ_LEN,
            "threads": formats.threads()}
    progress.update(0.03, f"llm-compressor {plan.fmt} on {plan.source.name} (CPU)")
    done = run_worker(env, spec, plan.output, progress.span(0.03, 0.97))
    out_size = formats.checkpoint_bytes(plan.output)
    in_size = formats.checkpoint_bytes(plan.source)
    result = CompressResult(
        input_path=str(plan.source), output_path=str(plan.output), format=plan.fmt, scheme=fmt.scheme if not custom else f"W{plan.bits}A16 (round to nearest)",
        recipe=fmt.recipe if not custom else f"round-to-nearest int{plan.bits} weights, group {plan.group or 'per channel'}, no calibration",
        bits=plan.bits, group_size=plan.group, architecture=plan.arch, calibration=plan.calibration_label if calibrate else None,
        calibration_sha256=plan.calibration_sha, input_sha256=input_sha, output_sha256=tree_sha256(plan.output, file_sha=hashes.sha256),
        input_size_bytes=in_size, output_size_bytes=out_size, size_ratio=round(out_size / in_size, 4) if in_size else 0.0,
        versions=done.get("versions", {}), vllm_cpu=fmt.vllm_cpu, compress_s=float(done.get("compress_s", 0.0)),
        wall_s=round(time.monotonic() - began, 3))
    result.summary = summary(result)
    artifact(plan.output).record({**expected, "output_sha256": result.output_sha256, "result": result.model_dump(mode="json", exclude={"skipped"})})
    progress.update(1.0, result.summary)
    return result


def summary(r: CompressResult) -> str:
    text = (f"{Path(r.input_path).name} -> {Path(r.output_path).name} ({r.format}: {r.scheme}"
            + (f", group {r.group_size}" if r.group_size else "") + f"; {r.output_size_bytes / 2**20:.1f} MiB, x{r.size_ratio:.2f} of the input)")
    if r.quality is not None:
        text += f"; quality on vLLM {r.verdict}"
    return text + ("" if r.vllm_cpu else "; served on a GPU only (vLLM's CPU backend has no FP8)")
