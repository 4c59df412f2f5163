"""A model's shape as sizing needs it, from config.json (and the safetensors headers when present).

Without weights the parameter count comes from the config, for the decoder layout that Llama,
Mistral, Qwen and SmolLM share (q/k/v/o projections, a gated MLP of three matrices, RMS norms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from model_serving.checkpoint.inspect import inspect_checkpoint, read_json, typed
from model_serving.errors import InputError

# vLLM's --dtype auto serves 16-bit checkpoints as they are and 32-bit ones in float16.
SERVE_DTYPE_BYTES = 2
NEEDED = ("num_hidden_layers", "num_attention_heads", "hidden_size", "max_position_embeddings")
NEEDED_FOR_COUNT = ("intermediate_size", "vocab_size")


class ModelShape(BaseModel):
    parameter_count: int
    weights_bytes: int  # as served
    weights_source: Literal["config", "safetensors"]
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    context_length: int
    name_or_path: str | None = None
    quantization: dict[str, Any] | None = None  # the config's quantization_config, as written

    @property
    def linear_parameters(self) -> int:
        """The projection matrices of every layer (what weight formats quantize; embeddings, head and norms stay 16-bit)."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        return self.n_layers * (2 * self.hidden_size * q + 2 * self.hidden_size * kv + 3 * self.hidden_size * self.intermediate_size)


def config_parameters(c: dict[str, Any]) -> int:
    """Embeddings, per-layer attention + gated MLP + two norms, the final norm, and an untied lm_head."""
    hidden, vocab, inter = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    q = c["num_attention_heads"] * c["head_dim"]
    kv = c["num_key_value_heads"] * c["head_dim"]
    attention = hidden * q + 2 * hidden * kv + q * hidden + ((q + 2 * kv) if c.get("attention_bias") else 0)
    layer = attention + 3 * hidden * inter + 2 * hidden
    head = 0 if c.get("tie_word_embeddings", True) else vocab * hidden
    return int(vocab * hidden + c["num_hidden_layers"] * layer + hidden + head)


def _fields(cfg: dict[str, Any], path: Path, count: bool) -> dict[str, Any]:
    text = typed(cfg, "text_config", dict) or cfg
    wanted = NEEDED + (NEEDED_FOR_COUNT if count else ())
    got = {k: typed(text, k, int) for k in wanted}
    missing = [k for k, v in got.items() if not v]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}, which sizing needs (KV per token = 2 x layers x kv_heads x head_dim x 2 bytes).",
                         "Use the model's original config.json (a Llama/Mistral/Qwen-style decoder), or a folder with its safetensors.")
    got["num_key_value_heads"] = typed(text, "num_key_value_heads", int) or got["num_attention_heads"]
    got["head_dim"] = typed(text, "head_dim", int) or got["hidden_size"] // got["num_attention_heads"]
    got["attention_bias"] = typed(text, "attention_bias", bool) or False
    tie = [t for t in (typed(text, "tie_word_embeddings", bool), typed(cfg, "tie_word_embeddings", bool)) if t is not None]
    got["tie_word_embeddings"] = tie[0] if tie else True  # transformers' default; Llama 3 configs say false
    return got


def read_shape(source: Path) -> ModelShape:
    """The shape of a checkpoint folder or a bare config.json (configs only: the count comes from the config).

    A compressed checkpoint's safetensors hold packed integers, so its parameters are counted from the config and
    its weights are the files' real size; with its config alone, cluster/formats.py sizes them from the format.
    """
    config = source if source.is_file() else source / "config.json"
    if not config.is_file():
        raise InputError(f"{source} has no config.json.", "Point at the model's folder (or its config.json).")
    cfg = read_json(config)
    quant = typed(cfg, "quantization_config", dict)
    info = inspect_checkpoint(source) if source.is_dir() and any(source.glob("*.safetensors")) else None
    fields = _fields(cfg, config, count=info is None or quant is not None)
    if info and info.parameter_count and not quant:
        params, weights = info.parameter_count, info.parameter_count * SERVE_DTYPE_BYTES
        origin: Literal["config", "safetensors"] = "safetensors"
    else:
        params = config_parameters(fields)
        weights, origin = (info.size_bytes, "safetensors") if info and quant else (params * SERVE_DTYPE_BYTES, "config")
    return ModelShape(parameter_count=params, weights_bytes=weights, weights_source=origin, n_layers=fields["num_hidden_layers"],
                      n_heads=fields["num_attention_heads"], n_kv_heads=fields["num_key_value_heads"], head_dim=fields["head_dim"],
                      hidden_size=fields["hidden_size"],
                      intermediate_size=typed(typed(cfg, "text_config", dict) or cfg, "intermediate_size", int) or 4 * fields["hidden_size"],
                      context_length=fields["max_position_embeddings"],
                      name_or_path=typed(cfg, "_name_or_path", str), quantization=quant)
