"""Which engine a cluster runs, and its argv: vLLM on datacenter GPUs, llama.cpp on CPU or one consumer GPU.

Datacenter GPUs serve many users at once, which is what vLLM's paged KV cache and continuous
batching are for; a CPU node or a single consumer card is where llama.cpp's GGUF quantization earns
its place (the model must shrink to fit, and there is no tensor parallelism to spread it).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from model_serving.cluster.gpus import GpuSpec
from model_serving.cluster.shape import ModelShape
from model_serving.cluster.sizing import LOAD_BYTES_PER_S, LORA_MAX_RANK, MIN_MODEL_LEN, Sizing
from model_serving.errors import InputError
from model_serving.gguf.memory import MemoryEstimate, estimate_memory

# What a cluster node runs (a server image and its argv); not a local serving engine (serve/engines.py).
ServerRuntime = Literal["vllm", "llamacpp"]
# Pinned images: a bundle must not change what it runs between two rollouts.
VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
LLAMACPP_IMAGE = {"cpu": "ghcr.io/ggml-org/llama.cpp:server", "gpu": "ghcr.io/ggml-org/llama.cpp:server-cuda"}
PORT = {"vllm": 8000, "llamacpp": 8080}
# Bits per weight of llama.cpp's types, about what `llama-quantize` reports for a Llama-style model.
GGUF_BITS = {"Q4_K_M": 4.89, "Q5_K_M": 5.7, "Q6_K": 6.56, "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0}
DEFAULT_GGUF_QUANT = "Q4_K_M"
# llama.cpp downloads the GGUF itself (-hf) on first start: assume 100 MB/s from the Hub.
DOWNLOAD_BYTES_PER_S = 100e6
LLAMACPP_WARMUP_S = 30.0
MAX_LORAS = 16
LORA_MODULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}=[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def choose_engine(gpu: GpuSpec) -> tuple[ServerRuntime, str]:
    if gpu.kind == "datacenter":
        return "vllm", f"{gpu.name} is a datacenter GPU: vLLM batches many users on it (paged KV cache, tensor parallelism)"
    where = "a CPU node" if gpu.kind == "cpu" else f"one consumer GPU ({gpu.name})"
    return "llamacpp", f"{where}: llama.cpp serves a quantized GGUF where vLLM has no tensor parallelism to spread it"


class LlamaCppSizing(BaseModel):
    quant: str
    ctx_per_sequence: int
    parallel: int
    memory: MemoryEstimate
    fits: str
    load_seconds: float


def gguf_quant(gguf: str) -> str:
    quant = gguf.rpartition(":")[2].upper() if ":" in gguf else DEFAULT_GGUF_QUANT
    if quant not in GGUF_BITS:
        raise InputError(f"Unknown GGUF type {quant!r} in {gguf!r}; sizing knows {', '.join(GGUF_BITS)}.", "Name the file's type as repo:Q4_K_M (or another listed).")
    return quant


def size_llamacpp(shape: ModelShape, gpu: GpuSpec, gguf: str, *, max_model_len: int | None, target_concurrency: int,
                  gpu_memory_utilization: float) -> LlamaCppSizing:
    """llama.cpp splits one context over its slots: --ctx-size is the per-sequence length times --parallel."""
    quant = gguf_quant(gguf)
    ctx = max_model_len or min(shape.context_length, MIN_MODEL_LEN)
    weights = int(shape.parameter_count * GGUF_BITS[quant] / 8)
    memory = estimate_memory(weights_bytes=weights, n_layers=shape.n_layers, n_kv_heads=shape.n_kv_heads, head_dim=shape.head_dim,
                             ctx_size=ctx * target_concurrency, parallel=target_concurrency)
    usable = int(gpu.memory_bytes * gpu_memory_utilization)
    if gpu.kind != "cpu" and memory.total_bytes > usable:
        raise InputError(f"{quant} weights {weights / 2**30:.1f} GiB + KV for {target_concurrency} x {ctx} tokens need "
                         f"{memory.total_bytes / 2**30:.1f} GiB; one {gpu.name} gives {usable / 2**30:.1f} GiB.",
                         "Use a smaller type (--gguf repo:Q4_K_M), lower --max-model-len or --target-concurrency, or a datacenter GPU (vLLM, tensor parallel).")
    fits = "node memory (CPU)" if gpu.kind == "cpu" else f"{(usable - memory.total_bytes) / 2**30:.1f} GiB spare on {gpu.name}"
    load = weights / DOWNLOAD_BYTES_PER_S + weights / LOAD_BYTES_PER_S + LLAMACPP_WARMUP_S
    return LlamaCppSizing(quant=quant, ctx_per_sequence=ctx, parallel=target_concurrency, memory=memory, fits=fits, load_seconds=load)


def vllm_argv(model_id: str, name: str, s: Sizing, lora: list[str], quantization: list[str] | None = None) -> list[str]:
    """`vllm serve` as the pod runs it; it listens on all pod addresses, since the Service reaches it there."""
    argv = ["vllm", "serve", model_id, "--served-model-name", name, "--host", "0.0.0.0", "--port", str(PORT["vllm"]),
            "--tensor-parallel-size", str(s.tensor_parallel_size), "--max-model-len", str(s.max_model_len),
            "--max-num-seqs", str(s.max_num_seqs), "--gpu-memory-utilization", str(s.gpu_memory_utilization), *(quantization or [])]
    if lora:
        argv += ["--enable-lora", "--max-loras", str(len(lora)), "--max-lora-rank", str(LORA_MAX_RANK), "--lora-modules", *lora]
    return argv


def llamacpp_argv(gguf: str, name: str, s: LlamaCppSizing, gpu: GpuSpec) -> list[str]:
    argv = ["--host", "0.0.0.0", "--port", str(PORT["llamacpp"]), "-hf", gguf if ":" in gguf else f"{gguf}:{s.quant}",
            "--alias", name, "--ctx-size", str(s.ctx_per_sequence * s.parallel), "--parallel", str(s.parallel), "--metrics"]
    return argv + (["--n-gpu-layers", "999"] if gpu.kind != "cpu" else [])


def check_lora(lora: list[str]) -> list[str]:
    if not lora:
        raise InputError("The LoRA list is empty.", "Name at least one adapter as name=owner/repo, or leave the option out.")
    if len(lora) > MAX_LORAS:
        raise InputError(f"{len(lora)} LoRA adapters; a bundle serves at most {MAX_LORAS}.", "Split them over two bundles, or merge the ones always used together.")
    for item in lora:
        if not LORA_MODULE.match(item):
            raise InputError(f"LoRA {item!r} is not NAME=HUB_REPO.", "Give each adapter as name=owner/repo (vLLM downloads it from the Hub).")
    return lora

