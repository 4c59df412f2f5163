"""How many GPUs a model needs, and what vLLM should be told, from the model's own numbers.

Per GPU, vLLM gets total memory x gpu_memory_utilization. Out of that come the weights (split
across the tensor-parallel group), a reserve for activations and the CUDA context, and the rest is
KV cache. One token of KV costs 2 (K and V) x layers x kv_heads x head_dim x 2 bytes; each GPU holds
kv_heads / TP heads of it (at least one: vLLM replicates KV heads when TP exceeds them).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from model_serving.cluster.gpus import GpuSpec, resolve_gpu
from model_serving.cluster.shape import SERVE_DTYPE_BYTES, ModelShape, read_shape
from model_serving.errors import InputError

TP_SIZES = (1, 2, 4, 8)
GIB = 2**30
# CUDA context, NCCL buffers and CUDA graphs: about 1 GiB per GPU whatever the model.
RESERVE_BASE_BYTES = 1 * GIB
# vLLM profiles one forward pass over max_num_batched_tokens (8192 by default); we allow 16
# hidden-sized 16-bit activations per token live at the peak.
BATCHED_TOKENS = 8192
ACTIVATIONS_PER_TOKEN = 16
MIN_MODEL_LEN = 4096  # the shortest context we choose on our own (the model's, when shorter)
LEN_STEP = 256
MAX_NUM_SEQS_CAP = 256  # vLLM's default max_num_seqs
# Load time: weights read from the model cache volume (a network disk) at 500 MB/s, then about three
# minutes of engine start-up (memory profiling, CUDA graph capture).
LOAD_BYTES_PER_S = 500e6
LORA_MAX_RANK = 64  # vLLM preallocates each adapter slot at --max-lora-rank; adapters of higher rank are refused at load
ENGINE_WARMUP_S = 180.0


class TensorParallelTry(BaseModel):
    tensor_parallel_size: int
    fits: bool
    why: str


class Sizing(BaseModel):
    gpu: str
    gpu_memory_bytes: int
    gpu_memory_utilization: float
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    target_concurrency: int
    parameter_count: int
    weights_bytes: int
    weights_bytes_per_gpu: int
    reserve_bytes_per_gpu: int
    kv_bytes_per_token: int
    kv_bytes_per_token_per_gpu: int
    kv_budget_bytes_per_gpu: int
    kv_capacity_tokens: int
    load_seconds: float
    tried: list[TensorParallelTry]
    assumptions: list[str]


def lora_slot_bytes(shape: ModelShape, rank: int = LORA_MAX_RANK) -> int:
    """One adapter slot: A (rank x in) and B (out x rank) for q, k, v, o, gate, up and down in every layer."""
    h, i, q, kv = shape.hidden_size, shape.intermediate_size, shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 3 * (h + i)
    return shape.n_layers * rank * per_layer * SERVE_DTYPE_BYTES


def reserve_bytes(shape: ModelShape, max_loras: int = 0) -> int:
    activations = BATCHED_TOKENS * shape.hidden_size * SERVE_DTYPE_BYTES * ACTIVATIONS_PER_TOKEN
    return RESERVE_BASE_BYTES + activations + max_loras * lora_slot_bytes(shape)


def kv_per_token_per_gpu(shape: ModelShape, tp: int) -> int:
    return 2 * shape.n_layers * max(1, shape.n_kv_heads // tp) * shape.head_dim * SERVE_DTYPE_BYTES


def load_seconds(weights_bytes: int) -> float:
    return weights_bytes / LOAD_BYTES_PER_S + ENGINE_WARMUP_S


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _splits(shape: ModelShape, tp: int) -> str:
    """Why vLLM cannot split this model `tp` ways ('' when it can)."""
    if shape.n_heads % tp:
        return f"{shape.n_heads} attention heads do not split {tp} ways"
    if shape.n_kv_heads % tp and tp % shape.n_kv_heads:
        return f"{shape.n_kv_heads} KV heads do not split {tp} ways"
    return ""


def _try(shape: ModelShape, usable: int, tp: int, tokens: int, loras: int) -> tuple[TensorParallelTry, int]:
    """(the verdict at this TP, KV bytes left per GPU after weights and reserve)."""
    bad = _splits(shape, tp)
    if bad:
        return TensorParallelTry(tensor_parallel_size=tp, fits=False, why=bad), 0
    reserve = reserve_bytes(shape, loras)
    left = usable - shape.weights_bytes // tp - reserve
    need = tokens * kv_per_token_per_gpu(shape, tp)
    if left <= 0:
        why = f"weights {gib(shape.weights_bytes // tp)} + reserve {gib(reserve)} exceed {gib(usable)} per GPU"
    elif need > left:
        why = f"KV for {tokens} tokens needs {gib(need)} per GPU; {gib(left)} is left after the weights"
    else:
        why = f"fits: {gib(left - need)} spare per GPU"
    return TensorParallelTry(tensor_parallel_size=tp, fits=0 < left and need <= left, why=why), max(left, 0)


def _no_fit(shape: ModelShape, gpu: GpuSpec, tried: list[TensorParallelTry], left8: int, concurrency: int, wanted_len: int) -> InputError:
    best = left8 // kv_per_token_per_gpu(shape, 8) // concurrency if left8 else 0
    steps = f"at TP 8 it fits {best} tokens per sequence at concurrency {concurrency}: lower --max-model-len or --target-concurrency" if best else "a GPU with more memory is needed"
    why = "; ".join(f"TP {t.tensor_parallel_size}: {t.why}" for t in tried)
    return InputError(f"The model does not fit {gpu.name} even at tensor-parallel 8 for {concurrency} x {wanted_len} tokens ({why}).",
                      f"{steps[0].upper()}{steps[1:]}, or choose a larger GPU (e.g. H200-141GB).")


def size_model(shape: ModelShape, gpu: GpuSpec, *, max_model_len: int | None = None, target_concurrency: int = 8,
               gpu_memory_utilization: float = 0.9, max_loras: int = 0, served_as: str = "16 bits") -> Sizing:
    """The smallest TP in 1, 2, 4, 8 where weights + reserve + KV for target_concurrency full sequences fit.

    `shape.weights_bytes` are the weights as served; `served_as` says in what format (for the assumptions).
    """
    if max_model_len and max_model_len > shape.context_length:
        raise InputError(f"--max-model-len {max_model_len} exceeds the model's trained context ({shape.context_length}).",
                         f"Use at most {shape.context_length}.")
    wanted = max_model_len or min(shape.context_length, MIN_MODEL_LEN)
    usable = int(gpu.memory_bytes * gpu_memory_utilization)
    tried: list[TensorParallelTry] = []
    left = 0
    for tp in TP_SIZES:
        verdict, left = _try(shape, usable, tp, wanted * target_concurrency, max_loras)
        tried.append(verdict)
        if verdict.fits:
            break
    else:
        raise _no_fit(shape, gpu, tried, left, target_concurrency, wanted)
    per_token = kv_per_token_per_gpu(shape, tp)
    capacity = left // per_token
    length = max_model_len or max(wanted, min(shape.context_length, capacity // target_concurrency // LEN_STEP * LEN_STEP))
    return Sizing(gpu=gpu.name, gpu_memory_bytes=gpu.memory_bytes, gpu_memory_utilization=gpu_memory_utilization,
                  tensor_parallel_size=tp, max_model_len=length, target_concurrency=target_concurrency,
                  max_num_seqs=min(MAX_NUM_SEQS_CAP, max(target_concurrency, capacity // length)),
                  parameter_count=shape.parameter_count, weights_bytes=shape.weights_bytes,
                  weights_bytes_per_gpu=shape.weights_bytes // tp, reserve_bytes_per_gpu=reserve_bytes(shape, max_loras),
                  kv_bytes_per_token=kv_per_token_per_gpu(shape, 1), kv_bytes_per_token_per_gpu=per_token,
                  kv_budget_bytes_per_gpu=left, kv_capacity_tokens=capacity, load_seconds=load_seconds(shape.weights_bytes),
                  tried=tried, assumptions=assumptions(shape, max_loras, served_as))


def assumptions(shape: ModelShape, max_loras: int = 0, served_as: str = "16 bits") -> list[str]:
    lora = [f"{max_loras} LoRA slot(s) at rank {LORA_MAX_RANK}: {lora_slot_bytes(shape) / GIB:.2f} GiB each"] if max_loras else []
    return lora + [f"weights from the {shape.weights_source}, served in {served_as}",
            f"reserve per GPU: 1 GiB + {BATCHED_TOKENS} batched tokens x {ACTIVATIONS_PER_TOKEN} activations x hidden x 2 bytes",
            f"load time: weights at {LOAD_BYTES_PER_S / 1e6:.0f} MB/s from the cache volume + {ENGINE_WARMUP_S:.0f} s engine start"]


def size_for(source: Path, gpu: str, *, gpu_memory_gb: float | None = None, max_model_len: int | None = None,
             target_concurrency: int = 8, gpu_memory_utilization: float = 0.9) -> Sizing:
    """Sizing for a model folder (or config.json) on a named GPU: the entry point `cost` shares."""
    spec = resolve_gpu(gpu, gpu_memory_gb)
    if spec.kind == "cpu":
        raise InputError("GPU sizing needs a GPU.", "Name one with --gpu (e.g. L4-24GB), or give --gpu-memory-gb.")
    return size_model(read_shape(source), spec, max_model_len=max_model_len, target_concurrency=target_concurrency,
                      gpu_memory_utilization=gpu_memory_utilization)
