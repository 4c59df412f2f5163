"""The compressed checkpoint formats llm-compressor makes for vLLM, and the checks that refuse a request before any work.

One row per format: its llm-compressor recipe, the bits it keeps per weight, whether it calibrates, and where vLLM
serves it. vLLM's x86 CPU backend serves AWQ, GPTQ and INT8 W8A8 but not FP8 (vLLM's quantization hardware table), so
FP8 is made anywhere and served only on a GPU: natively from compute capability 8.9 (L4, L40S, H100, H200), weight-only
from 8.0 (A100).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from model_serving.errors import InputError
from model_serving.requests import CompressedFormat as Format
from model_serving.util.units import human_size

FORMATS: tuple[Format, ...] = get_args(Format)
GROUP_SIZES = (128, 64, 32)  # W4A16's group: the largest of these that divides every layer's input width
FP8_MIN_CAPABILITY = 8.0  # vLLM runs FP8 weight-only (FP8 Marlin) from Ampere; natively (FP8 matrix units) from 8.9, Ada and Hopper
# The dense decoders whose layer mappings llm-compressor's AWQ and SmoothQuant know (their mapping registries); GPTQ
# and FP8 need no mapping but go through the same table, so every format is refused alike for an unknown model.
ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    "Phi3ForCausalLM", "GraniteForCausalLM", "Olmo3ForCausalLM", "OlmoForCausalLM",
})
MEMORY_FACTOR = 3.0  # the bf16 model, its compressed copy while saving, and calibration state (GPTQ Hessians, AWQ caches)
MEMORY_FLOOR = 1 << 30  # the interpreter, torch and llm-compressor themselves


@dataclass(frozen=True)
class FormatSpec:
    name: Format
    recipe: str  # what the recipe does, in words (recorded in the sidecar)
    bits: int  # bits per weight of the quantized layers
    calibrated: bool
    vllm_cpu: bool  # vLLM's x86 CPU backend serves it
    scheme: str  # compressed-tensors scheme


SPECS: dict[Format, FormatSpec] = {
    "awq": FormatSpec("awq", "AWQ scaling, then W4A16 asymmetric int4 weights per group (QuantizationModifier)", 4, True, True, "W4A16_ASYM"),
    "gptq": FormatSpec("gptq", "GPTQ W4A16 symmetric int4 weights per group (GPTQModifier)", 4, True, True, "W4A16"),
    "w8a8-int8": FormatSpec("w8a8-int8", "SmoothQuant (strength 0.8), then GPTQ int8 weights per channel with dynamic int8 "
                            "activations per token", 8, True, True, "W8A8"),
    "fp8": FormatSpec("fp8", "FP8 dynamic: fp8 weights per channel, activations per token at run time (no calibration)",
                      8, False, False, "FP8_DYNAMIC"),
}


def spec(name: str) -> FormatSpec:
    key = name.strip().lower().replace("_", "-")
    key = {"w8a8": "w8a8-int8", "int8": "w8a8-int8", "fp8-dynamic": "fp8"}.get(key, key)
    if key not in SPECS:
        raise InputError(f"Unknown format {name!r}.", f"Use one of: {', '.join(FORMATS)} (GGUF types go without --format).")
    return SPECS[key]


def read_config(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json; a GGUF or anything else that is not a checkpoint folder is refused with the way that works."""
    if folder.is_file() and (folder.suffix == ".gguf" or folder.read_bytes()[:4] == b"GGUF"):
        raise InputError(f"{folder.name} is a GGUF file; llm-compressor makes its formats from a Hugging Face checkpoint.",
                         f"Pass the checkpoint folder the GGUF was exported from, or quantize the GGUF with a llama.cpp type "
                         f"(`model-serving quantize {folder.name} Q4_K_M`).")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict) or not any(folder.glob("*.safetensors")):
        raise InputError(f"{folder} is not a Hugging Face checkpoint folder (config.json and *.safetensors).",
                         "Pass the folder a checkpoint was saved to (save_pretrained).")
    return config


def check_source(fmt: FormatSpec, config: dict[str, Any]) -> str:
    """The architecture, once the format can take this checkpoint; InputError naming the next step when it cannot."""
    arch = next(iter(config.get("architectures") or []), None) or "unknown"
    if arch not in ARCHITECTURES:
        raise InputError(f"{arch} is not an architecture the {fmt.name} recipe supports here.",
                         f"Use a checkpoint of {', '.join(sorted(ARCHITECTURES))}, or a GGUF type on llama.cpp "
                         "(`model-serving export` then `quantize GGUF Q4_K_M`).")
    existing = config.get("quantization_config")
    if existing:
        method = existing.get("quant_method", "a quantization") if isinstance(existing, dict) else "a quantization"
        raise InputError(f"The checkpoint is already quantized ({method}); compressing it again compounds the error.",
                         "Pass the 16-bit checkpoint it was made from.")
    return str(arch)


def detect(config: dict[str, Any]) -> str | None:
    """The format a checkpoint's quantization_config describes (awq, gptq, w8a8-int8, fp8, or its quant_method), None for 16-bit."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method") or "quantized")
    if method != "compressed-tensors":
        return method
    groups = [g for g in (quant.get("config_groups") or {}).values() if isinstance(g, dict)]
    weights = next((g.get("weights") for g in groups if isinstance(g.get("weights"), dict)), None) or {}
    if weights.get("type") == "float" and weights.get("num_bits") == 8:
        return "fp8"
    if weights.get("num_bits") == 8 and any(g.get("input_activations") for g in groups):
        return "w8a8-int8"
    if weights.get("num_bits") == 4:
        return "gptq" if weights.get("symmetric") else "awq"
    return f"w{weights.get('num_bits', '?')}"


def group_size(config: dict[str, Any]) -> int:
    """W4A16's group size: the largest of GROUP_SIZES dividing the hidden, intermediate and attention widths."""
    hidden = int(config.get("hidden_size") or 0)
    heads = int(config.get("num_attention_heads") or 0)
    widths = [w for w in (hidden, int(config.get("intermediate_size") or 0), heads * int(config.get("head_dim") or (hidden // max(heads, 1)))) if w]
    for size in GROUP_SIZES:
        if all(w % size == 0 for w in widths):
            return size
    raise InputError(f"No group size of {', '.join(map(str, GROUP_SIZES))} divides the layer widths {widths}.",
                     "Use w8a8-int8 or fp8 (per-channel, no groups), or a GGUF type on llama.cpp.")


def checkpoint_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(folder: Path, available: int | None = None) -> int:
    """The memory the one-shot run needs; InputError when this machine has less available."""
    need = int(checkpoint_bytes(folder) * MEMORY_FACTOR) + MEMORY_FLOOR
    free = available if available is not None else _available_memory()
    if free is not None and free < need:
        raise InputError(f"Compressing {folder.name} needs about {human_size(need)} of memory and {human_size(free)} is available.",
                         "Stop other models (`model-serving serve list`), or compress on a machine with more memory.")
    return need


def threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
