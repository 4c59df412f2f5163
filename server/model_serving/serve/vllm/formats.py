"""Compressed formats meet vLLM: whether this machine's vLLM can serve one (FP8 needs a GPU).

vLLM's CPU build serves AWQ, GPTQ and INT8 W8A8 but not FP8; the CUDA build serves FP8 natively on compute capability
8.9+ (Ada, Hopper) and weight-only from 8.0 (Ampere). An FP8 checkpoint can be made anywhere; serving it where nothing supports it is
refused before vLLM starts, with the way that works.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from model_serving.errors import InputError
from model_serving.quantize import formats
from model_serving.serve.vllm import env as vllm_env
from model_serving.settings import Settings


def gpu_capability() -> float | None:
    """The highest compute capability nvidia-smi reports, or None without an NVIDIA GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        caps = [float(x) for x in out.stdout.split() if x.replace(".", "", 1).isdigit()]
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return max(caps) if out.returncode == 0 and caps else None


def fp8_refusal(build: str | None, capability: float | None) -> str | None:
    """Why FP8 cannot be served here (None when it can): vLLM's CPU build has no FP8, and a GPU before Ampere none either."""
    if build != "cuda" or capability is None:
        return "vLLM's CPU backend has no FP8 kernels"
    if capability < formats.FP8_MIN_CAPABILITY:
        return (f"vLLM runs no FP8 on this GPU (compute capability {capability}; 8.0+ weight-only, 8.9+ native: L4, L40S, "
                "H100, H200)")
    return None


FP8_NEXT_STEP = ("Serve the FP8 checkpoint on a machine with an FP8 GPU (the production bundle, `model-serving plan-production`), "
                 "or make a format vLLM's CPU backend serves here: `quantize --format w8a8-int8` (or awq, gptq).")


def check_servable_format(settings: Settings, fmt: str) -> None:
    """Refuse serving `fmt` where this machine's vLLM cannot (FP8 without an FP8 GPU)."""
    if fmt != "fp8":
        return
    env = vllm_env.find(settings)
    why = fp8_refusal(env.build, gpu_capability() if env.build == "cuda" else None)
    if why:
        raise InputError(f"An FP8 checkpoint cannot be served here: {why}.", FP8_NEXT_STEP)


def check_servable(settings: Settings, folder: Path) -> None:
    """Refuse, before vLLM starts, a checkpoint whose format this machine's vLLM cannot serve (FP8 without an FP8 GPU)."""
    try:
        config = formats.read_config(folder)
    except InputError:
        return  # not a checkpoint: the engine's own checks say so
    if formats.detect(config) != "fp8":
        return
    env = vllm_env.find(settings)
    why = fp8_refusal(env.build, gpu_capability() if env.build == "cuda" else None)
    if why:
        raise InputError(f"{folder.name} is an FP8 checkpoint and {why}.", FP8_NEXT_STEP)
