"""Decode speed against the memory-bandwidth ceiling.

At batch 1 each decoded token reads every weight once plus the KV cache so far, so
tok/s <= bandwidth / (weight bytes + KV bytes at the current context). Bytes come from the GGUF;
bandwidth from a quick numpy read probe or the user. A result above the ceiling means a counting or
caching error (or a model small enough to live in CPU cache); far below it means decode is bound by
something else (compute, threads, a partial offload).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_serving.bench.probe import PROBE_TIMEOUT_S, get_json
from model_serving.bench.schema import Roofline
from model_serving.gguf.info import read_gguf

FAR_BELOW_PERCENT = 30.0  # under this share of the ceiling, memory traffic is not what limits decode
_KV_BYTES_PER_ELEMENT = 2  # f16 KV cache, the llama.cpp and Ollama default


@dataclass(frozen=True)
class ModelBytes:
    weight_bytes_per_token: int
    kv_bytes_per_context_token: int
    file_bytes: int
    n_layers: int


def model_bytes(gguf_path: Path) -> ModelBytes:
    """Weight bytes read per decoded token and KV bytes per context token, from the GGUF header."""
    info = read_gguf(gguf_path)  # cached per file version
    return ModelBytes(info.weight_bytes_per_token, info.kv_bytes_per_token(), info.size_bytes, info.block_count or 0)


def _kv_bytes(field: Callable[[str], int | None], arch: str) -> tuple[int, int]:
    """KV bytes per context token (K and V, every layer, f16) and the layer count, from GGUF keys."""
    layers = field(f"{arch}.block_count") or 0
    heads = field(f"{arch}.attention.head_count") or 1
    kv_heads = field(f"{arch}.attention.head_count_kv") or heads
    head_dim = field(f"{arch}.attention.key_length") or (field(f"{arch}.embedding_length") or 0) // heads
    return 2 * layers * kv_heads * head_dim * _KV_BYTES_PER_ELEMENT, layers


def model_bytes_from_ollama(base_url: str, model: str, *, limit_s: float = PROBE_TIMEOUT_S) -> ModelBytes | None:
    """The same figures for a model Ollama serves: GGUF keys from /api/show, the file size from /api/tags.

    Without the tensor list the whole file counts as weights read per token: a slight overestimate
    (vocabulary metadata, an embedding table that is only indexed), so the ceiling errs low. Each of
    the two requests gets `limit_s` as a whole; None when either fails or times out.
    """
    shown = get_json(base_url, "/api/show", limit_s, {"model": model})
    listed = get_json(base_url, "/api/tags", limit_s)
    if not isinstance(shown, dict) or not isinstance(listed, dict):
        return None
    info, tags = shown.get("model_info") or {}, listed.get("models") or []
    size = next((m.get("size") for m in tags if model in (m.get("name"), m.get("model")) or f"{model}:latest" in (m.get("name"), m.get("model"))), None)
    if not info or not size:
        return None

    def field(key: str) -> int | None:
        value = info.get(key)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    kv, layers = _kv_bytes(field, str(info.get("general.architecture") or "llama"))
    return ModelBytes(int(size), kv, int(size), layers)


def measure_bandwidth(size_mb: int = 256, repeats: int = 3, threads: int | None = None) -> float:
    """Read bandwidth in GB/s: each thread sums its own slice of a buffer larger than the CPU caches."""
    threads = threads or os.cpu_count() or 1
    data = np.ones(size_mb * (1 << 20) // 4, dtype=np.float32)
    slices = np.array_split(data, threads)
    best = 0.0
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)

        def read(chunk: np.ndarray, start_together: threading.Barrier) -> None:
            start_together.wait()
            chunk.sum()  # numpy releases the GIL for the reduction, so threads read in parallel

        workers = [threading.Thread(target=read, args=(s, barrier)) for s in slices]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def roofline(model: Path | ModelBytes, measured_tok_s: float | None, context_tokens: float, *, bandwidth_gbs: float | None = None,
             batch: int = 1) -> Roofline:
    """Ceiling for `batch` sequences decoding at `context_tokens` of context each; measured as a share of it."""
    mb = model if isinstance(model, ModelBytes) else model_bytes(model)
    source = "given" if bandwidth_gbs else "measured"
    bw = bandwidth_gbs or measure_bandwidth()
    bytes_per_step = mb.weight_bytes_per_token + batch * mb.kv_bytes_per_context_token * context_tokens
    ceiling = batch * bw * 1e9 / bytes_per_step
    percent = 100.0 * measured_tok_s / ceiling if measured_tok_s else None
    flag, note = None, ""
    if percent is not None:
        if percent > 100.0:
            flag = "above_ceiling"
            note = ("Faster than the memory-bandwidth ceiling allows: tokens may be miscounted or cached, or the model "
                    "is small enough to stay in CPU cache, where bandwidth is higher than the probe measured.")
        elif percent < FAR_BELOW_PERCENT:
            flag = "far_below"
            note = ("Far below the memory-bandwidth ceiling: decode is limited by compute, per-token overhead, "
                    "too few threads or a partial offload rather than by reading weights.")
        else:
            flag = "ok"
            note = "Decode is memory-bound as expected; only fewer bytes per token (a smaller quantization) speeds it up much."
    return Roofline(
        weight_bytes_per_token=mb.weight_bytes_per_token, kv_bytes_per_context_token=mb.kv_bytes_per_context_token,
        context_tokens=context_tokens, bandwidth_gbs=bw, bandwidth_source=source, ceiling_tok_s=ceiling,
        measured_tok_s=measured_tok_s, percent_of_ceiling=percent, flag=flag, note=note,
    )
