"""Importance matrices: llama.cpp's `llama-imatrix` run over a calibration text, so the IQ and low-bit K types quantize.

The matrix weighs each weight column by how strongly the calibration text activates it; llama.cpp's
quantizer refuses the types of `IMATRIX_REQUIRED` without one, and the other K/IQ types are
better with one. The calibration is our built-in text (data/calibration.txt) or a UTF-8 file the
caller gives, inside the roots. A matrix is cached in the state folder under the input's sha256,
the calibration's sha256 and the context and chunk counts, so quantizing the same input to another
type reuses it. The binding cannot pass one (its `imatrix` parameter is a C++ map pointer), so
both llama-imatrix and the native `llama-quantize` must be there.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError
from model_serving.gguf.filetypes import IMATRIX_REQUIRED, IMATRIX_UNUSED
from model_serving.jobs import Progress, run_process
from model_serving.settings import Settings
from model_serving.util.paths import atomic_output, confine
from model_serving.util.process import native_argv

BUILT_IN = Path(__file__).with_name("data") / "calibration.txt"
# 4 chunks of 256 tokens: about 9 s for SmolLM2-135M on 2 busy cores (benchmarks/imatrix_types.py);
# llama-imatrix needs at least two chunks' worth of tokens in the text.
CTX_SIZE = 256
CHUNKS = 4
MAX_CALIBRATION_BYTES = 4 << 20
INSTALL_STEP = "Run scripts/install.sh (it builds llama.cpp's llama-imatrix and llama-quantize), or choose a type that needs no matrix (Q4_K_M, Q2_K, IQ4_XS)."


class ImatrixUse(BaseModel):
    """The importance matrix a quantization used; part of what makes its output what it is."""

    path: str
    calibration: str = Field(description="built-in, or the calibration text's path")
    calibration_sha256: str
    ctx_size: int
    chunks: int
    imatrix_s: float = Field(description="Wall time of llama-imatrix; 0 when a cached matrix was reused")
    reused: bool = False


@dataclass(frozen=True)
class ImatrixSpec:
    """A matrix to compute (or reuse) for one quantization, checked: the calibration and the tool."""

    calibration: Path
    label: str
    sha256: str
    tool: Path
    ctx_size: int = CTX_SIZE
    chunks: int = CHUNKS

    def matches(self, recorded: ImatrixUse | None) -> bool:
        """Whether a recorded matrix came from this calibration with these counts (its input is checked by the caller)."""
        return recorded is not None and (recorded.calibration_sha256, recorded.ctx_size, recorded.chunks) == (self.sha256, self.ctx_size, self.chunks)

    def use(self, path: Path, seconds: float, reused: bool) -> ImatrixUse:
        return ImatrixUse(path=str(path), calibration=self.label, calibration_sha256=self.sha256, ctx_size=self.ctx_size,
                          chunks=self.chunks, imatrix_s=round(seconds, 3), reused=reused)


def imatrix_spec(settings: Settings, qtype: str, calibration: str | os.PathLike[str] | None, *, quantizer: Path | None,
                 imatrix_tool: Path | None) -> ImatrixSpec | None:
    """The matrix `qtype` needs (or the caller asked for with `calibration`), or None; refuses what cannot work."""
    if qtype in IMATRIX_UNUSED:
        if calibration is not None:
            raise InputError(f"{qtype} does not use an importance matrix, so a calibration text changes nothing.",
                             "Leave calibration out, or choose a K or IQ type (Q4_K_M, IQ3_XXS, IQ2_XS).")
        return None
    if qtype not in IMATRIX_REQUIRED and calibration is None:
        return None
    if imatrix_tool is None or quantizer is None or native_argv(imatrix_tool) is None:
        missing = "llama-imatrix and llama-quantize" if imatrix_tool is None and quantizer is None else (
            "llama-imatrix" if imatrix_tool is None else "llama-quantize" if quantizer is None else "util-linux's setpriv")
        why = "llama.cpp refuses it without one" if qtype in IMATRIX_REQUIRED else "a calibration text was given"
        raise InputError(f"{qtype} needs an importance matrix ({why}), and the native llama.cpp build's {missing} is missing.", INSTALL_STEP)
    path, label = (BUILT_IN, "built-in") if calibration is None else (_user_text(settings, calibration), "")
    return ImatrixSpec(path, label or str(path), _check_text(path), imatrix_tool)


def _user_text(settings: Settings, calibration: str | os.PathLike[str]) -> Path:
    path = confine(calibration, settings.roots, what="calibration text")
    if not path.is_file():
        raise InputError(f"The calibration text {path} is not a file.", "Pass a UTF-8 text file, or leave calibration out for the built-in one.")
    if path.stat().st_size > MAX_CALIBRATION_BYTES:
        raise InputError(f"The calibration text {path.name} is over {MAX_CALIBRATION_BYTES >> 20} MiB.",
                         f"Pass a smaller excerpt: {CHUNKS} chunks of {CTX_SIZE} tokens use only the first few KB.")
    return path


def _check_text(path: Path) -> str:
    """The text's sha256, once it is known to be UTF-8 text long enough for llama-imatrix's chunks."""
    data = path.read_bytes()
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"The calibration text {path.name} is not UTF-8 text.", "Pass a plain UTF-8 text file (prose, dialogue, code).") from None
    if len(text.strip()) < 2 * CTX_SIZE:  # a token is at least a character: certainly too short for two chunks
        raise _too_short(path, f"{len(text.strip())} characters")
    return hashlib.sha256(data).hexdigest()


def _too_short(path: Path, what: str) -> InputError:
    return InputError(f"The calibration text {path.name} is too short ({what}): llama-imatrix needs at least {2 * CTX_SIZE} tokens.",
                      "Pass a longer text (a few KB), or leave calibration out for the built-in one.")


def cached_path(settings: Settings, spec: ImatrixSpec, input_sha: str) -> Path:
    return settings.state_dir / "imatrix" / f"{input_sha[:20]}-{spec.sha256[:20]}-c{spec.ctx_size}x{spec.chunks}.gguf"


_CHUNKS_LINE = re.compile(r"computing over (\d+) chunks")
_TOO_FEW = re.compile(r"tokenizes to only (\d+) tokens")


def ensure_imatrix(settings: Settings, spec: ImatrixSpec, model: Path, input_sha: str, *, threads: int = 0,
                   progress: Progress | None = None) -> ImatrixUse:
    """The cached matrix for this input and calibration, computed now with llama-imatrix when there is none."""
    progress = progress or Progress()
    target = cached_path(settings, spec, input_sha)
    if target.is_file():
        progress.update(1.0, f"Reusing the importance matrix {target.name}")
        return spec.use(target, 0.0, True)
    progress.update(0.0, f"Computing an importance matrix for {model.name} ({spec.label} calibration, {spec.chunks} chunks)")
    began = time.perf_counter()
    with atomic_output(target, overwrite=True) as tmp:
        argv = native_argv(spec.tool, "-m", model, "-f", spec.calibration, "-o", tmp, "--output-format", "gguf", "-c", str(spec.ctx_size),
                           "--chunks", str(spec.chunks), "--no-ppl", *(["-t", str(threads)] if threads else []))
        assert argv is not None  # imatrix_spec refused a missing setpriv

        def on_line(line: str) -> None:
            if match := _CHUNKS_LINE.search(line):
                progress.update(0.1, f"Computing an importance matrix over {match[1]} chunks of {spec.ctx_size} tokens")

        code, tail = run_process(argv, progress, on_line=on_line)
        if code != 0:
            raise _failed(spec, model, code, tail)
    progress.update(1.0, f"Computed the importance matrix {target.name}")
    return spec.use(target, time.perf_counter() - began, False)


def _failed(spec: ImatrixSpec, model: Path, code: int, tail: str) -> ServingError:
    if match := _TOO_FEW.search(tail):
        return _too_short(spec.calibration, f"{match[1]} tokens")
    how = f"exited with code {code}" if code > 0 else f"was killed by signal {-code}"
    return ServingError(f"llama-imatrix {how} computing an importance matrix for {model.name}.",
                        "Check that the input loads (`model-serving inspect`); nothing was kept.", detail="\n".join(tail.splitlines()[-15:]))


__all__ = ["BUILT_IN", "ImatrixSpec", "ImatrixUse", "ensure_imatrix", "imatrix_spec"]
