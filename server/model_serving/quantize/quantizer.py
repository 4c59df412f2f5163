"""Quantize a GGUF with llama.cpp's own `llama_model_quantize`, then verify the result against its source.

The quantizer runs in a child process, so cancelling kills it and a crash in llama.cpp cannot take
the caller down: the native build's `llama-quantize` itself when the caller passes it (the bare tool,
no interpreter), else `quantize_worker` calling the binding. It writes to a temporary file that is
renamed into place only when it finished and parses as the requested file type. A sidecar `<output>.json` records the
input hash and type (and the importance matrix's calibration), so asking again for the same output returns the recorded result.
The IQ and low-bit K types of `IMATRIX_REQUIRED` get an importance matrix first (quantize/imatrix.py).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.errors import Cancelled, InputError, ServingError, VerificationFailed
from model_serving.gguf.filetypes import FILE_TYPES, IMATRIX_REQUIRED, is_quantized
from model_serving.gguf.header import GGUFHeader, read_header
from model_serving.jobs import Progress, run_process
from model_serving.quantize import worker as quantize_worker
from model_serving.quantize.imatrix import ImatrixSpec, ImatrixUse, ensure_imatrix, imatrix_spec
from model_serving.quantize.quality import QualityGrade, QualityReport, compare_quality
from model_serving.settings import Settings
from model_serving.util import child
from model_serving.util.artifact import Artifact
from model_serving.util.filehash import BackgroundHash, HashCache
from model_serving.util.paths import confine
from model_serving.util.process import native_argv, python_argv


@dataclass(frozen=True)
class QuantType:
    name: str
    ftype: int  # enum llama_ftype value (llama.h), also what general.file_type stores
    needs_imatrix: bool = False


# Every file type of gguf/filetypes.py. The worker checks each against the installed binding, so a
# type this llama.cpp lacks fails with a clear message, not a crash.
# needs_imatrix: llama.cpp aborts without an importance matrix for these; quantize/imatrix.py computes one.
QUANT_TYPES: dict[str, QuantType] = {name: QuantType(name, ftype, name in IMATRIX_REQUIRED) for ftype, name in sorted(FILE_TYPES.items())}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "FP16": "F16", "FP32": "F32"}


def resolve_qtype(name: str) -> QuantType:
    """Case-insensitive file type name -> QuantType, refusing unknown names (imatrix_spec checks what a matrix needs)."""
    key = name.strip().upper().replace("-", "_")
    key = ALIASES.get(key, key)
    qtype = QUANT_TYPES.get(key)
    if qtype is None:
        raise InputError(f"Unknown quantization type {name!r}.", f"Use one of: {', '.join(QUANT_TYPES)}.")
    return qtype


# ---------------------------------------------------------------- quantize

QuantizeGrade = Literal[QualityGrade, "unverified"]  # the quality grade, or unverified when verify was off


class QuantizeResult(BaseModel):
    """One quantization: sizes, bits per weight, hashes, timing and (when verified) the quality report."""

    input_path: str
    output_path: str
    qtype: str = Field(description="Requested llama.cpp file type, e.g. Q4_K_M")
    ftype: int = Field(description="Its enum llama_ftype value, as stored in general.file_type")
    input_file_type: str = Field(description="The input's file type (general.file_type, or the tensor mix when missing)")
    requantized: bool = Field(description="True when the input was already quantized (allow_requantize)")
    parameter_count: int
    input_size_bytes: int
    output_size_bytes: int
    size_ratio: float = Field(description="output / input size")
    input_bits_per_weight: float
    bits_per_weight: float = Field(description="output file bytes * 8 / parameter count")
    tensor_types: dict[str, int] = Field(description="Tensor types in the output: K-quants fall back to other types where a row does not fit their block")
    threads: int = Field(description="Threads given to llama_model_quantize (0 = all cores)")
    quantizer: str = Field(default="worker", description="llama-quantize (the native build's binary) or worker (llama_model_quantize in our child)")
    quantize_s: float = Field(description="Wall time of the quantizer process")
    wall_s: float = Field(description="Wall time of the whole call, hashing and verification included")
    input_sha256: str
    output_sha256: str
    sidecar_path: str
    llama_cpp_version: str
    skipped: bool = Field(default=False, description="True when a matching earlier output was reused")
    imatrix: ImatrixUse | None = Field(default=None, description="The importance matrix passed to llama-quantize, if any")
    verdict: QuantizeGrade = Field(description="The quality verdict, or 'unverified' when verify was off")
    quality: QualityReport | None = None
    summary: str = ""


def default_output(input_path: Path, qtype: str) -> Path:
    """`<stem>-<QTYPE>.gguf` beside the input, without an existing precision/type suffix."""
    stem = input_path.stem
    known = "|".join(sorted((re.escape(n) for n in [*QUANT_TYPES, *ALIASES]), key=len, reverse=True))
    stem = re.sub(rf"[-_.]({known})$", "", stem, flags=re.IGNORECASE) or stem
    return input_path.with_name(f"{stem}-{qtype}.gguf")


def _llama_cpp_version() -> str:
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "unknown"


def quant_artifact(output: Path) -> Artifact:
    """A quantized GGUF and its sidecar `<output>.json` (a QuantizeResult recording the input hash and output hash)."""
    return Artifact(output, ".json", "output_sha256")


def _sidecar(output: Path) -> Path:
    return quant_artifact(output).sidecar


def recorded_quant(output: Path, input_sha: str, qtype: str, matrix: ImatrixSpec | None, hashes: HashCache) -> QuantizeResult | None:
    """The recorded result when the sidecar records this input, type and calibration and the output is unchanged.

    The one reuse rule: quantize_gguf and the deploy plan both ask it.
    """
    expected = {"input_sha256": input_sha, "qtype": qtype,
                # made with another calibration, or with(out) a matrix: another output
                "imatrix": lambda used: used is None if matrix is None else _same_matrix(matrix, used)}
    record = quant_artifact(output).recorded(expected, hashes)
    try:
        return QuantizeResult.model_validate(record) if record is not None else None
    except ValueError:
        return None  # a sidecar of another shape (an older version): quantize again


def _same_matrix(matrix: ImatrixSpec, used: object) -> bool:
    try:
        return matrix.matches(ImatrixUse.model_validate(used))
    except ValueError:
        return False


def _write_sidecar(result: QuantizeResult) -> None:
    quant_artifact(Path(result.output_path)).record(json.dumps(result.model_dump(mode="json", exclude={"skipped"}), indent=2) + "\n")


def _summary(result: QuantizeResult) -> str:
    text = (f"{Path(result.input_path).name} ({result.input_file_type}, {result.input_size_bytes / 2**20:.1f} MiB) -> "
            f"{Path(result.output_path).name} ({result.qtype}, {result.output_size_bytes / 2**20:.1f} MiB, "
            f"{result.bits_per_weight:.2f} bits/weight)")
    if result.imatrix is not None:
        text += f" with an importance matrix ({result.imatrix.calibration} calibration, {result.imatrix.chunks} chunks)"
    if result.quality is not None:
        text += f"; quality {result.quality.verdict}: {result.quality.summary}"
    return text


@dataclass(frozen=True)
class _Plan:
    """One quantization, checked: what to read, what to write, and how."""

    source: Path
    target: Path
    qtype: QuantType
    header: GGUFHeader
    input_type: str
    requantized: bool
    threads: int
    allow_requantize: bool
    overwrite: bool
    verify: bool
    quantizer: Path | None = None
    matrix: ImatrixSpec | None = None

    @property
    def what(self) -> str:
        return f"Quantizing {self.source.name} to {self.qtype.name}"


def quantize_gguf(
    settings: Settings,
    input_path: Path,
    output_path: Path | None,
    qtype: str,
    *,
    allow_requantize: bool = False,
    overwrite: bool = False,
    verify: bool = True,
    threads: int | None = None,
    quantizer: Path | None = None,
    imatrix_tool: Path | None = None,
    calibration: str | Path | None = None,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantize `input_path` to `qtype`, verify it against the input when `verify`, and report.

    `quantizer` is the native build's `llama-quantize` (toolchain `tool`, passed in by
    the callers above this floor); without it, or without setpriv to tie it to us, our worker runs.
    `imatrix_tool` is the build's `llama-imatrix`: the types of IMATRIX_REQUIRED, and any K/IQ type
    given a `calibration` text, get an importance matrix (cached per input and calibration) first.

    The output takes its final name only once it is written, parses as the requested type and (with
    `verify`) has been measured: a cancel or failure in any phase leaves neither it nor its sidecar.
    """
    started = time.perf_counter()
    progress = progress or Progress()
    plan = _plan(settings, input_path, output_path, qtype, allow_requantize=allow_requantize, overwrite=overwrite, verify=verify, threads=threads,
                 quantizer=quantizer, imatrix_tool=imatrix_tool, calibration=calibration)
    progress.update(0.0, plan.what)
    hashes = HashCache(settings.state_dir)
    input_hash = BackgroundHash(plan.source, cache=hashes, cancel=progress.cancel_event)  # overlaps the quantizer
    try:
        recorded = _recorded(plan, input_hash, hashes)
        if recorded is not None:
            return _resume(settings, recorded, plan, progress, started)
        result = _quantize_and_verify(settings, plan, input_hash, hashes, progress, started)
    except Cancelled as exc:
        raise Cancelled(plan.what, kept=exc.kept) from None
    finally:
        input_hash.stop()
    progress.complete(result.summary)
    return result


def _plan(settings: Settings, input_path: Path, output_path: Path | None, qtype: str, *, allow_requantize: bool,
          overwrite: bool, verify: bool, threads: int | None, quantizer: Path | None = None, imatrix_tool: Path | None = None,
          calibration: str | Path | None = None) -> _Plan:
    source, target, target_type = _resolve_paths(settings, input_path, output_path, qtype)
    matrix = imatrix_spec(settings, target_type.name, calibration, quantizer=quantizer, imatrix_tool=imatrix_tool)  # before reading the input
    if threads is not None and not 0 <= threads <= 1024:
        raise InputError(f"threads={threads} is out of range.", "Pass 1 to 1024 threads, 0 for all cores, or leave it out.")
    header, input_type, requantized = _check_input(source, allow_requantize)
    return _Plan(source, target, target_type, header, input_type, requantized, threads if threads is not None else 0,
                 allow_requantize, overwrite, verify, quantizer, matrix)


def _recorded(plan: _Plan, input_hash: BackgroundHash, hashes: HashCache) -> QuantizeResult | None:
    """An identical earlier result, reused even when overwriting is allowed; an unrelated file is refused unless overwriting."""
    if not plan.target.exists():
        return None
    recorded = recorded_quant(plan.target, input_hash.result(), plan.qtype.name, plan.matrix, hashes)
    if recorded is None and not plan.overwrite:
        raise InputError(f"{plan.target} already exists and was not made from this input as {plan.qtype.name}.",
                         "Pass replace (--replace) to replace it, or choose another output path.")
    return recorded


def _quantize_and_verify(settings: Settings, plan: _Plan, input_hash: BackgroundHash, hashes: HashCache,
                         progress: Progress, started: float) -> QuantizeResult:
    """Quantize into a partial, check and measure it there, record it, and only then give it the final name.

    The sidecar goes first: killed between the two, a record without its output is what remains
    (the next run or `clean` removes it), never an output without its record.
    """
    split = 0.6 if plan.verify else 0.95
    begin = 0.25 if plan.matrix else 0.0
    matrix = None if plan.matrix is None else ensure_imatrix(settings, plan.matrix, plan.source, input_hash.result(), threads=plan.threads,
                                                             progress=progress.span(0.0, begin))
    with quant_artifact(plan.target).written(overwrite=plan.overwrite) as tmp:
        quantize_s = _run_quantizer(plan, tmp, progress.span(begin, split), matrix)
        output_hash = BackgroundHash(tmp, cancel=progress.cancel_event)  # beside the type check and quality evaluation, which only read it
        try:
            out_header = _check_output(plan, tmp)
            result = _result(plan, out_header, tmp.stat().st_size, quantize_s, input_hash.result(), "")
            result.imatrix = matrix
            result.summary = _summary(result)
            progress.update(split, f"Wrote {plan.target.name}" + ("; verifying it against the input" if plan.verify else ""))
            if plan.verify:
                report = compare_quality(settings, plan.source, tmp, progress=progress.span(split, 1.0), candidate_name=plan.target.name)
                result.quality = _at_final_path(report, tmp, plan.target)
                result.verdict = result.quality.verdict
                result.summary = _summary(result)
            result.output_sha256 = output_hash.result()
        finally:
            output_hash.stop()
        progress.check()  # the last moment a cancel removes the output; after the rename it is complete
        result.wall_s = round(time.perf_counter() - started, 3)
        _write_sidecar(result)
    hashes.put(plan.target, result.output_sha256)  # a rename keeps size, mtime and inode
    return result


def _result(plan: _Plan, out_header: GGUFHeader, out_size: int, quantize_s: float, input_sha: str, output_sha: str) -> QuantizeResult:
    header, target = plan.header, plan.target
    params = header.parameter_count or out_header.parameter_count
    result = QuantizeResult(
        input_path=str(plan.source), output_path=str(target), qtype=plan.qtype.name, ftype=plan.qtype.ftype,
        input_file_type=plan.input_type, requantized=plan.requantized, parameter_count=params,
        input_size_bytes=header.size_bytes, output_size_bytes=out_size, size_ratio=round(out_size / header.size_bytes, 4),
        input_bits_per_weight=round(header.size_bytes * 8 / params, 3) if params else 0.0,
        bits_per_weight=round(out_size * 8 / params, 3) if params else 0.0,
        tensor_types=out_header.tensor_types, threads=plan.threads, quantize_s=round(quantize_s, 3), wall_s=0.0,
        input_sha256=input_sha, output_sha256=output_sha, sidecar_path=str(_sidecar(target)),
        llama_cpp_version=_llama_cpp_version(), verdict="unverified", quantizer=_quantizer_name(plan),
    )
    result.summary = _summary(result)
    return result


def _at_final_path(report: QualityReport, tmp: Path, target: Path) -> QualityReport:
    """The report measured the partial; it describes the file under its final name."""
    report.candidate.path = str(target)
    for ranked in report.ranking:
        if ranked.path == str(tmp):
            ranked.path = str(target)
    return report


def _resolve_paths(settings: Settings, input_path: Path, output_path: Path | None, qtype: str) -> tuple[Path, Path, QuantType]:
    source = confine(input_path, settings.roots, what="input GGUF")
    if not source.is_file():
        raise InputError(f"{source} is not a file.", "Pass the path of a .gguf file.")
    target_type = resolve_qtype(qtype)
    target = confine(output_path or default_output(source, target_type.name), settings.roots, must_exist=False, what="output path")
    if target == source:
        raise InputError("The output path is the input file itself.", "Choose another output path; the source is never overwritten.")
    if target.is_dir():
        raise InputError(f"The output path {target} is a directory.", "Pass a file name ending in .gguf.")
    return source, target, target_type


def _check_input(source: Path, allow_requantize: bool) -> tuple[GGUFHeader, str, bool]:
    """The input's header, its type name, and whether it is already quantized (refused unless allowed)."""
    header = read_header(source)
    if header.file_type_name:
        input_type = header.file_type_name
    elif header.file_type is not None:
        input_type = f"file type {header.file_type}"
    else:
        input_type = "quantized mix" if header.quantized else "F32/F16 mix"
    # Either signal counts: the tensors are the truth, but a label saying quantized deserves a question too.
    quantized = header.quantized or is_quantized(header.file_type_name)
    if quantized and not allow_requantize:
        mix = ", ".join(f"{n}x{k}" for k, n in header.tensor_types.items())
        raise InputError(
            f"{source.name} is already quantized ({input_type}; tensors {mix}); quantizing it again compounds the error.",
            "Quantize from the F16/BF16/F32 export instead, or pass allow_requantize (--allow-requantize) if you accept the loss.",
        )
    return header, input_type, quantized


def _check_output(plan: _Plan, tmp: Path) -> GGUFHeader:
    """The partial `tmp`'s header, refused unless it is the requested file type."""
    out_header = read_header(tmp)
    if out_header.file_type != plan.qtype.ftype:
        raise VerificationFailed(
            f"llama.cpp wrote file type {out_header.file_type_name or out_header.file_type}, not the requested {plan.qtype.name}.",
            "Report this with the quantizer output; the file was not kept.")
    return out_header


def _resume(settings: Settings, recorded: QuantizeResult, plan: _Plan, progress: Progress, started: float) -> QuantizeResult:
    """Reuse a recorded output; verify it now if it was recorded without a quality report."""
    source, target = plan.source, plan.target
    result = recorded.model_copy(update={"skipped": True, "input_path": str(source), "output_path": str(target)})
    if plan.verify and result.quality is None:
        try:
            result.quality = compare_quality(settings, source, target, progress=progress.span(0.1, 1.0))
        except Cancelled:  # both were complete before this call; verifying them only reads them
            raise Cancelled(kept=[str(target), str(_sidecar(target))]) from None
        result.verdict = result.quality.verdict
        result.summary = _summary(result)
        _write_sidecar(result)
    result.wall_s = round(time.perf_counter() - started, 3)
    progress.complete(f"Reused {target.name} (same input and type): {result.summary}")
    return result


_PROGRESS_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")


def _quantizer_name(plan: _Plan) -> str:
    return "llama-quantize" if plan.quantizer is not None and native_argv(plan.quantizer) is not None else "worker"


def _quantizer_argv(plan: _Plan, tmp: Path, matrix: ImatrixUse | None = None) -> list[str]:
    """llama.cpp's own `llama-quantize` when the native build has it (the child is then the bare tool), else our worker."""
    qtype = plan.qtype
    if plan.quantizer is not None and (argv := native_argv(plan.quantizer)) is not None:
        flags = [*(["--allow-requantize"] if plan.allow_requantize else []), *(["--imatrix", matrix.path] if matrix else [])]
        # The numeric file type: llama-quantize accepts it for every type it offers, and refuses the others by name.
        return [*argv, *flags, str(plan.source), str(tmp), str(qtype.ftype), str(plan.threads)]
    # Run by path with -P (no script directory on sys.path): skips the package __init__ and its
    # metadata lookup, which `-m` would pay on every call.
    return python_argv(Path(quantize_worker.__file__), plan.source, tmp, qtype.name, str(qtype.ftype), str(plan.threads),
                       "1" if plan.allow_requantize else "0")


def _run_quantizer(plan: _Plan, tmp: Path, progress: Progress, matrix: ImatrixUse | None = None) -> float:
    """Run the quantizer: llama.cpp's "[ i/ n]" log lines drive the progress bar; our worker's `error` message
    (util/child.py) says why it failed, the bare tool's last lines do for it."""
    source, qtype = plan.source, plan.qtype
    errors: list[child.Message] = []

    def on_line(line: str) -> None:
        message = child.parse(line)
        if message.kind == "error":
            errors.append(message)
        elif message.kind == child.LOG and (match := _PROGRESS_LINE.match(line)):
            done, total = int(match[1]), int(match[2])
            if total:
                progress.update(done / total, f"Quantizing tensor {done}/{total} to {qtype.name}")

    began = time.perf_counter()
    code, tail = run_process(_quantizer_argv(plan, tmp, matrix), progress, on_line=on_line)
    elapsed = time.perf_counter() - began
    if code != 0:
        reason, hint = (errors[-1].get("cause", ""), errors[-1].get("next_step")) if errors else ("", None)
        failed = next((ln.strip() for ln in reversed(tail.splitlines()) if "failed to quantize" in ln or "invalid ftype" in ln), "")
        how = f"exited with code {code}" if code > 0 else f"was killed by signal {-code}"
        default = "Check that the input loads (`model-serving inspect`) and that there is disk space"
        raise ServingError(
            f"llama.cpp's quantizer {how} quantizing {source.name} to {qtype.name}" + (f": {failed or reason}." if failed or reason else "."),
            (hint or default).rstrip(".") + "; the output was not kept.",
            detail="\n".join(tail.splitlines()[-15:]),
        )
    return elapsed


__all__ = ["QUANT_TYPES", "GGUFHeader", "QuantType", "QuantizeResult", "default_output", "quantize_gguf", "read_header", "resolve_qtype"]
