"""Which weight format a vLLM bundle serves, its bytes per weight, and the vLLM argument that loads it.

The names are `quantize --format`'s (awq, gptq, w8a8-int8, fp8) plus bf16. The formats quantize the projection
matrices only (llm-compressor's recipes leave the embeddings, the head and the norms in 16 bits), so a format's
weights are the linear parameters at its bits plus the rest at 2 bytes; the KV cache stays 16-bit in every format.

The rule for `auto`, per GPU: a memory-bound card (consumer, or the L4 class) reads every weight once per decoded
token, so 4-bit AWQ W4A16 (a quarter of bf16's bytes; AWQ over GPTQ because it typically loses less accuracy at 4
bits) serves it best; a card with FP8 tensor cores (compute capability >= 8.9: Hopper, Ada) gets FP8, half the bytes
with little loss and made by vLLM at load from the 16-bit checkpoint; an older datacenter card gets INT8 W8A8 where it
fits and W4A16 where it does not. A checkpoint that is already compressed is served as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from model_serving.cluster.gpus import GpuSpec
from model_serving.cluster.shape import SERVE_DTYPE_BYTES, ModelShape
from model_serving.errors import InputError

Format = Literal["bf16", "fp8", "awq", "gptq", "w8a8-int8"]
FP8_COMPUTE = 8.9  # FP8 tensor cores (Ada, Hopper); from 8.0 vLLM runs FP8 checkpoints weight-only (FP8 Marlin)
FP8_WEIGHT_ONLY = 8.0
INT_KERNELS = 7.5  # vLLM's INT8 W8A8 (CUTLASS) and AWQ kernels need Turing or newer


@dataclass(frozen=True)
class FormatSpec:
    name: Format
    label: str
    bits: float  # per quantized weight, scales and zero points included
    bits_rule: str
    from_16bit: bool  # vLLM makes it at load from the 16-bit checkpoint (no quantize step)


FORMATS: dict[str, FormatSpec] = {f.name: f for f in (
    FormatSpec("bf16", "bf16", 16.0, "16 bits", True),
    FormatSpec("fp8", "FP8 W8A8 (dynamic)", 8.0, "8 bits (one scale per output channel)", True),
    FormatSpec("awq", "AWQ W4A16", 4.25, "4 bits + a 16-bit scale and a zero point per group of 128", False),
    FormatSpec("gptq", "GPTQ W4A16", 4.125, "4 bits + a 16-bit scale per group of 128", False),
    FormatSpec("w8a8-int8", "INT8 W8A8", 8.0, "8 bits (one scale per output channel)", False),
)}


@dataclass(frozen=True)
class Choice:
    format: Format
    why: str
    detected: bool  # the checkpoint's own format (its config's quantization_config)
    fallback: Format | None = None  # `auto` on an older GPU: the format to take where the first does not fit


def weights_bytes(shape: ModelShape, fmt: Format, detected: bool) -> int:
    """The served weights: the files' own size for a compressed checkpoint read from its safetensors, else from the format."""
    if detected and shape.quantization and shape.weights_source == "safetensors":
        return shape.weights_bytes
    linear = shape.linear_parameters
    return int(linear * FORMATS[fmt].bits / 8) + (shape.parameter_count - linear) * SERVE_DTYPE_BYTES


def _scheme(q: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    groups = q.get("config_groups")
    group = next(iter(groups.values()), None) if isinstance(groups, dict) and groups else None
    if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
        return {}, None
    acts = group.get("input_activations")
    return group["weights"], acts if isinstance(acts, dict) else None


def detect(shape: ModelShape) -> tuple[Format | None, str]:
    """The format of a compressed checkpoint from its config (None for a 16-bit one), and how it was read."""
    q = shape.quantization
    if not q:
        return None, ""
    method = str(q.get("quant_method", ""))
    if method in ("awq", "gptq", "fp8"):
        return method, f"quant_method {method}"  # type: ignore[return-value]  # the three are Format names
    if method == "compressed-tensors":
        w, a = _scheme(q)
        bits, kind = w.get("num_bits"), w.get("type")
        if (bits, kind) == (8, "float"):
            return "fp8", "compressed-tensors, 8-bit float weights"
        if (bits, kind) == (8, "int") and a and a.get("num_bits") == 8:
            return "w8a8-int8", "compressed-tensors, 8-bit int weights and activations"
        if (bits, kind) == (4, "int") and not a:
            # llm-compressor's AWQ recipe writes asymmetric groups (zero points), its GPTQ recipe symmetric ones
            return ("gptq", "compressed-tensors W4A16, symmetric (GPTQ's scheme)") if w.get("symmetric", True) \
                else ("awq", "compressed-tensors W4A16, asymmetric (AWQ's scheme)")
    raise InputError(f"The checkpoint's quantization ({method or 'unnamed'}: {str(q)[:160]}) is not one the plan sizes.",
                     f"Plan its 16-bit source instead (--format {'|'.join(FORMATS)}), or make one with `model-serving quantize --format`.")


def check_gpu(fmt: Format, gpu: GpuSpec) -> list[str]:
    """Refuses a format the GPU cannot run; the notes say where it runs at reduced speed or could not be checked."""
    cc = gpu.compute_capability
    if cc is None:
        return [] if fmt == "bf16" else [f"{gpu.name}'s compute capability is not known: {FORMATS[fmt].label} needs >= "
                                         f"{FP8_WEIGHT_ONLY if fmt == 'fp8' else INT_KERNELS} (check the card)"]
    need = FP8_WEIGHT_ONLY if fmt == "fp8" else INT_KERNELS if fmt != "bf16" else 0.0
    if cc < need:
        raise InputError(f"{gpu.name} (compute capability {cc}) cannot run {FORMATS[fmt].label} in vLLM: it needs {need} or newer.",
                         "Choose --format awq or w8a8-int8 for this GPU (or --format auto), or a newer GPU.")
    if fmt == "fp8" and cc < FP8_COMPUTE:
        return [f"{gpu.name} (compute capability {cc}) has no FP8 tensor cores: vLLM runs the FP8 weights weight-only (FP8 Marlin), "
                "so FP8 saves memory here but not compute"]
    return []


def preferred(gpu: GpuSpec) -> Choice:
    """`auto`'s format for this GPU, with the reason."""
    cc, bw = gpu.compute_capability, f"{gpu.bandwidth_gbs:g} GB/s" if gpu.bandwidth_gbs else "consumer memory"
    if gpu.memory_bound:
        return Choice("awq", f"{gpu.name} is memory-bound ({bw}): decoding reads every weight once per "
                      "token, and AWQ W4A16 reads about a quarter of bf16's bytes (AWQ rather than GPTQ: it typically loses less "
                      "accuracy at 4 bits)", False)
    if cc is not None and cc >= FP8_COMPUTE:
        return Choice("fp8", f"{gpu.name} (compute capability {cc:.1f}) has FP8 tensor cores: FP8 halves the weights' bytes and runs "
                      "the matrix products in FP8, with little quality loss", False)
    if cc is not None and cc >= INT_KERNELS:
        return Choice("w8a8-int8", f"{gpu.name} (compute capability {cc:.1f}) has INT8 tensor cores but no FP8: INT8 W8A8 halves the "
                      "weights with little quality loss", False, fallback="awq")
    return Choice("bf16", f"{gpu.name}: compute capability not known, so the 16-bit checkpoint as it is", False)


def choose(shape: ModelShape, gpu: GpuSpec, requested: str) -> Choice:
    found, how = detect(shape)
    if found:
        if requested not in ("auto", found):
            raise InputError(f"The checkpoint is already {FORMATS[found].label} ({how}); --format {requested} would need its 16-bit source.",
                             f"Plan the 16-bit checkpoint with --format {requested}, or leave --format out (auto) to serve this one.")
        return Choice(found, f"the checkpoint is {FORMATS[found].label} ({how})", True)
    if requested != "auto":
        return Choice(requested, f"asked for (--format {requested})", False)  # type: ignore[arg-type]  # a Format name by requests.py
    return preferred(gpu)


def vllm_args(fmt: Format, detected: bool) -> list[str]:
    """Only FP8 from a 16-bit checkpoint needs the flag; vLLM reads a compressed checkpoint's format from its config.

    The pinned vLLM quantizes each weight as it streams in (vllm-project/vllm#31914), so the GPU never holds the
    whole 16-bit model: the sizing at FP8's bytes holds at load too.
    """
    return ["--quantization", "fp8"] if fmt == "fp8" and not detected else []
