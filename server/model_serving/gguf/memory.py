"""What serving a model costs in memory: weights, KV cache at a context length, and an allowance."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MemoryEstimate(BaseModel):
    """Weights plus KV cache at a context length and number of parallel sequences."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int = Field(description="Compute buffers and runtime, a rough allowance")
    total_bytes: int
    ctx_size: int
    parallel: int
    kv_type: str = "f16"
    note: str = ""


def kv_bytes_per_token(n_layers: int | None, n_kv_heads: int | None, head_dim: int | None, bytes_per_value: float = 2.0) -> int:
    """K and V for every layer: what one context position costs (0 when a count is unknown)."""
    if not (n_layers and n_kv_heads and head_dim):
        return 0
    return int(2 * n_layers * n_kv_heads * head_dim * bytes_per_value)


def estimate_memory(*, weights_bytes: int, n_layers: int | None, n_kv_heads: int | None, head_dim: int | None,
                    ctx_size: int, parallel: int, kv_bytes_per_value: float = 2.0) -> MemoryEstimate:
    """llama.cpp splits one context of ctx_size across parallel slots, so KV grows with ctx_size alone.

    `parallel` only changes how much each sequence gets; we report the total the server allocates.
    """
    per_token = kv_bytes_per_token(n_layers, n_kv_heads, head_dim, kv_bytes_per_value)
    note = "" if per_token else "KV cache unknown: the model does not state its layer and head counts."
    kv = per_token * ctx_size
    overhead = int(64 * 2**20 + 0.05 * weights_bytes)
    return MemoryEstimate(weights_bytes=weights_bytes, kv_cache_bytes=kv, overhead_bytes=overhead,
                          total_bytes=weights_bytes + kv + overhead, ctx_size=ctx_size, parallel=parallel, note=note)
