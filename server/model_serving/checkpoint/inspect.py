"""Inspect a Hugging Face checkpoint directory or a GGUF file, and estimate serving memory.

Both inputs are untrusted: headers are read with size bounds and every parse failure becomes an
InputError that says what is wrong with the file, never a traceback.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.gguf.header import FILE_TYPES, read_header, token_texts
from model_serving.settings import Settings
from model_serving.util.paths import confine

MAX_JSON_BYTES = 16 << 20  # config/tokenizer_config files larger than this are not configs
MAX_SAFETENSORS_HEADER = 100 << 20
GGUF_MAGIC = b"GGUF"

UNQUANTIZED = {"F32", "F16", "BF16"}
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


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


class CheckpointInfo(BaseModel):
    kind: Literal["hf_checkpoint", "lora_adapter"]
    path: str
    architectures: list[str] = []
    model_type: str | None = None
    parameter_count: int | None = None
    dtype: str | None = None
    vocab_size: int | None = None
    tokenizer_vocab_size: int | None = None
    context_length: int | None = None
    has_tokenizer: bool = False
    has_chat_template: bool = False
    chat_template_source: str | None = None
    eos_token_ids: list[int] = []
    quantization_config: dict[str, Any] | None = None
    adapter_base_model: str | None = None
    weight_files: list[str] = []
    size_bytes: int = 0
    warnings: list[str] = []
    memory: MemoryEstimate | None = None


class GGUFInfo(BaseModel):
    kind: Literal["gguf"] = "gguf"
    path: str
    size_bytes: int
    architecture: str | None = None
    name: str | None = None
    file_type: str | None = Field(default=None, description="general.file_type as a llama.cpp type name")
    is_quantized: bool = False
    tensor_types: dict[str, int] = Field(default_factory=dict, description="tensor count per ggml type")
    parameter_count: int = 0
    bits_per_weight: float | None = None
    context_length: int | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    token_embedding_shape: list[int] | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    vocab_size: int | None = None
    tokenizer_model: str | None = None
    tokenizer_pre: str | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    eot_token: str | None = None
    special_token_ids: dict[str, int] = {}
    add_bos_token: bool | None = None
    warnings: list[str] = []
    memory: MemoryEstimate | None = None


# ---------------------------------------------------------------- helpers


def read_json(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise InputError(f"{path.name} is {path.stat().st_size} bytes, too large to be a config file.", "Check the checkpoint folder.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}).", "Restore the file from the original checkpoint.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object.", "Restore the file from the original checkpoint.")
    return data


def safetensors_header(path: Path) -> dict[str, Any]:
    """Parse a safetensors header and check the data section is all there."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise InputError(f"{path.name} is truncated (shorter than a safetensors header).", "Download or save the checkpoint again.")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
            raise InputError(f"{path.name} is truncated or not a safetensors file (header claims {length} bytes).", "Download or save the checkpoint again.")
        try:
            header = json.loads(fh.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"{path.name} has a corrupt safetensors header.", "Download or save the checkpoint again.") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end > size:
        raise InputError(
            f"{path.name} is truncated: its header needs {8 + length + end} bytes but the file has {size}.",
            "Download or save the checkpoint again (an interrupted copy leaves exactly this).",
        )
    return header


def estimate_memory(*, weights_bytes: int, n_layers: int | None, n_kv_heads: int | None, head_dim: int | None,
                    ctx_size: int, parallel: int, kv_bytes_per_value: float = 2.0) -> MemoryEstimate:
    """llama.cpp splits one context of ctx_size across parallel slots, so KV grows with ctx_size alone.

    `parallel` only changes how much each sequence gets; we report the total the server allocates.
    """
    note = ""
    if n_layers and n_kv_heads and head_dim:
        kv = int(2 * n_layers * n_kv_heads * head_dim * ctx_size * kv_bytes_per_value)
    else:
        kv, note = 0, "KV cache unknown: the model does not state its layer and head counts."
    overhead = int(64 * 2**20 + 0.05 * weights_bytes)
    return MemoryEstimate(weights_bytes=weights_bytes, kv_cache_bytes=kv, overhead_bytes=overhead,
                          total_bytes=weights_bytes + kv + overhead, ctx_size=ctx_size, parallel=parallel, note=note)


# ---------------------------------------------------------------- Hugging Face checkpoints


def _chat_template(directory: Path, tok_cfg: dict[str, Any]) -> tuple[str | None, str | None]:
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8"), "chat_template.jinja"
    template = tok_cfg.get("chat_template")
    if isinstance(template, list):  # named templates: the default one is what chat uses
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str) and template:
        return template, "tokenizer_config.json"
    if (directory / "chat_template.json").exists():
        value = read_json(directory / "chat_template.json").get("chat_template")
        if isinstance(value, str):
            return value, "chat_template.json"
    return None, None


def inspect_checkpoint(directory: Path, *, ctx_size: int | None = None, parallel: int = 1) -> CheckpointInfo:
    if (directory / "adapter_config.json").exists():
        cfg = read_json(directory / "adapter_config.json")
        return CheckpointInfo(
            kind="lora_adapter", path=str(directory), adapter_base_model=cfg.get("base_model_name_or_path"),
            warnings=["This is a LoRA adapter, not a full model: merge it into its base model first, or register it as an ADAPTER."],
        )
    if not (directory / "config.json").exists():
        raise InputError(
            f"{directory} is not a model: it has no config.json.",
            "Point at the folder that holds config.json and the *.safetensors files (or a .gguf file).",
        )
    cfg = read_json(directory / "config.json")
    text_cfg = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    info = CheckpointInfo(kind="hf_checkpoint", path=str(directory), architectures=list(cfg.get("architectures") or []),
                          model_type=cfg.get("model_type"), vocab_size=text_cfg.get("vocab_size"),
                          context_length=text_cfg.get("max_position_embeddings"),
                          dtype=cfg.get("torch_dtype") or cfg.get("dtype"))
    qcfg = cfg.get("quantization_config") or text_cfg.get("quantization_config")
    if isinstance(qcfg, dict):
        info.quantization_config = qcfg
        info.warnings.append(f"Already quantized ({qcfg.get('quant_method', 'unknown method')}): llama.cpp's converter needs 16/32-bit weights.")

    weights = sorted(directory.glob("*.safetensors"))
    if not weights and list(directory.glob("*.bin")):
        info.warnings.append("Weights are in PyTorch .bin files; the converter reads them, but safetensors are safer to load.")
    params = 0
    dtypes: Counter[str] = Counter()
    for file in weights:
        header = safetensors_header(file)
        for key, value in header.items():
            if key == "__metadata__":
                continue
            params += math.prod(value["shape"]) if value["shape"] else 1
            dtypes[value["dtype"]] += 1
    info.weight_files = [w.name for w in weights]
    info.size_bytes = sum(w.stat().st_size for w in weights)
    if weights:
        info.parameter_count = params
        info.dtype = info.dtype or (dtypes.most_common(1)[0][0] if dtypes else None)

    tok_cfg = read_json(directory / "tokenizer_config.json") if (directory / "tokenizer_config.json").exists() else {}
    info.has_tokenizer = (directory / "tokenizer.json").exists() or (directory / "tokenizer.model").exists()
    if (directory / "tokenizer.json").exists() and (directory / "tokenizer.json").stat().st_size < 64 << 20:
        try:
            tok = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
            vocab = (tok.get("model") or {}).get("vocab") or {}
            added = {t["id"] for t in tok.get("added_tokens") or [] if isinstance(t, dict) and "id" in t}
            info.tokenizer_vocab_size = len(set(vocab.values() if isinstance(vocab, dict) else range(len(vocab))) | added)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError):
            info.warnings.append("tokenizer.json could not be read.")
    template, source = _chat_template(directory, tok_cfg)
    info.has_chat_template, info.chat_template_source = template is not None, source
    if not info.has_tokenizer:
        info.warnings.append("No tokenizer files (tokenizer.json / tokenizer.model): the GGUF would have no vocabulary.")
    if template is None:
        info.warnings.append("No chat template: a served model would not know how to format a conversation.")
    eos: list[int] = []
    for source_cfg in (cfg, text_cfg, read_json(directory / "generation_config.json") if (directory / "generation_config.json").exists() else {}):
        value = source_cfg.get("eos_token_id")
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in eos:
                eos.append(item)
    info.eos_token_ids = eos
    if info.tokenizer_vocab_size and info.vocab_size and info.tokenizer_vocab_size > info.vocab_size:
        info.warnings.append(f"The tokenizer has {info.tokenizer_vocab_size} tokens but the embedding has {info.vocab_size} rows: added tokens were not resized into the model.")

    n_heads = text_cfg.get("num_attention_heads")
    hidden = text_cfg.get("hidden_size")
    head_dim = text_cfg.get("head_dim") or (hidden // n_heads if hidden and n_heads else None)
    ctx = ctx_size or min(info.context_length or 4096, 4096)
    info.memory = estimate_memory(weights_bytes=info.size_bytes, n_layers=text_cfg.get("num_hidden_layers"),
                                  n_kv_heads=text_cfg.get("num_key_value_heads") or n_heads, head_dim=head_dim,
                                  ctx_size=ctx, parallel=parallel)
    return info


# ---------------------------------------------------------------- GGUF files


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        value = field.contents()
    except Exception:  # noqa: BLE001 - a malformed field is reported as missing, not fatal
        return None
    return value


def open_gguf(path: Path) -> Any:
    """GGUFReader over a file we have checked looks like a GGUF; parse errors become InputError."""
    from gguf import GGUFReader

    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise InputError(f"{path.name} is not a GGUF file (it starts with {magic!r}, not b'GGUF').", "Export the checkpoint with `model-serving export`.")
    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is damaged
        raise InputError(f"{path.name} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:160]}).",
                         "Export or download the GGUF again; a partial copy leaves exactly this.") from None
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise InputError(f"{path.name} is truncated: its tensors need {end} bytes but the file has {size}.",
                         "Export or download the GGUF again.")
    return reader


def inspect_gguf(path: Path, *, ctx_size: int | None = None, parallel: int = 1) -> GGUFInfo:
    header = read_header(path)
    meta = header.metadata

    def get(key: str, kind: type) -> Any:
        value = meta.get(key)  # a value of the wrong type is treated as absent, not trusted
        return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None

    arch = get("general.architecture", str)
    info = GGUFInfo(path=str(path), size_bytes=header.size_bytes, architecture=arch, name=get("general.name", str),
                    tensor_types=header.tensor_types, parameter_count=header.parameter_count,
                    token_embedding_shape=header.token_embedding_shape)
    if header.parameter_count:  # tensor data only: in a tiny model the vocabulary would dominate the file size
        info.bits_per_weight = round(header.tensor_bytes * 8 / header.parameter_count, 3)
    ftype = get("general.file_type", int)
    if ftype is not None:
        info.file_type = FILE_TYPES.get(ftype, f"type {ftype}")
    elif header.tensor_types:
        weights = Counter({k: v for k, v in header.tensor_types.items() if k != "F32"})
        info.file_type = (weights or Counter(header.tensor_types)).most_common(1)[0][0]
        info.warnings.append("general.file_type is missing; the file type was guessed from the tensors.")
    info.is_quantized = info.file_type not in UNQUANTIZED and info.file_type is not None
    prefix = f"{arch}." if arch else ""
    info.context_length = get(prefix + "context_length", int)
    info.block_count = get(prefix + "block_count", int)
    info.embedding_length = get(prefix + "embedding_length", int)
    info.head_count = get(prefix + "attention.head_count", int)
    info.head_count_kv = get(prefix + "attention.head_count_kv", int) or info.head_count
    info.tokenizer_model = get("tokenizer.ggml.model", str)
    info.tokenizer_pre = get("tokenizer.ggml.pre", str)
    info.chat_template = get("tokenizer.chat_template", str)
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    info.add_bos_token = add_bos if isinstance(add_bos, bool) else None
    info.vocab_size = header.array_lengths.get("tokenizer.ggml.tokens")
    for role in ("bos", "eos", "eot", "eom", "pad", "unknown", "sep"):
        token_id = meta.get(f"tokenizer.ggml.{role}_token_id")
        if isinstance(token_id, int) and not isinstance(token_id, bool):
            info.special_token_ids[role] = token_id
    texts = token_texts(header, set(info.special_token_ids.values()))
    info.bos_token = texts.get(info.special_token_ids.get("bos", -1))
    info.eos_token = texts.get(info.special_token_ids.get("eos", -1))
    info.eot_token = texts.get(info.special_token_ids.get("eot", -1))

    if info.chat_template is None:
        info.warnings.append("No tokenizer.chat_template: servers will fall back to a generic template and chat badly.")
    if "eos" not in info.special_token_ids:
        info.warnings.append("No EOS token id: generation may never stop.")
    if info.chat_template and info.bos_token and info.add_bos_token and "bos_token" in info.chat_template:
        info.warnings.append("Possible double BOS: the tokenizer adds BOS and the chat template also writes it.")
    if info.tokenizer_pre in (None, "default") and info.tokenizer_model == "gpt2":
        info.warnings.append("BPE pre-tokenizer is 'default': the converter did not recognise this tokenizer; tokenization may be wrong.")

    head_dim = info.embedding_length // info.head_count if info.embedding_length and info.head_count else None
    ctx = ctx_size or min(info.context_length or 4096, 4096)
    info.memory = estimate_memory(weights_bytes=info.size_bytes, n_layers=info.block_count, n_kv_heads=info.head_count_kv,
                                  head_dim=head_dim, ctx_size=ctx, parallel=parallel)
    return info


def inspect_path(settings: Settings, path: str | Path, *, ctx_size: int | None = None, parallel: int = 1) -> CheckpointInfo | GGUFInfo:
    """Inspect whatever `path` names: a checkpoint folder, or a .gguf file."""
    resolved = confine(path, settings.roots, what="model path")
    if resolved.is_dir():
        return inspect_checkpoint(resolved, ctx_size=ctx_size, parallel=parallel)
    with resolved.open("rb") as fh:
        magic = fh.read(4)
    if magic == GGUF_MAGIC or resolved.suffix == ".gguf":
        return inspect_gguf(resolved, ctx_size=ctx_size, parallel=parallel)
    raise InputError(f"{resolved.name} is neither a checkpoint folder nor a GGUF file.",
                     "Pass the folder holding config.json, or a .gguf file.")
