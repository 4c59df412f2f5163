"""Inspect a Hugging Face checkpoint directory or a GGUF file, and estimate serving memory.

Both inputs are untrusted: headers are read with size bounds and every parse failure becomes an
InputError that says what is wrong with the file, never a traceback. A value of the wrong type in a
config file is treated as absent, the way the GGUF reader treats metadata.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from model_serving.checkpoint.adapter import AdapterDetails, add_weights, find_base, parse_adapter_config
from model_serving.errors import InputError
from model_serving.gguf.info import GGUFInfo, read_gguf
from model_serving.gguf.memory import MemoryEstimate, estimate_memory
from model_serving.settings import Settings
from model_serving.util.paths import confine

MAX_JSON_BYTES = 16 << 20  # config/tokenizer_config files larger than this are not configs
MAX_SAFETENSORS_HEADER = 100 << 20
GGUF_MAGIC = b"GGUF"

SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_RESAVE = "Download or save the checkpoint again."


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
    adapter: AdapterDetails | None = None
    weight_files: list[str] = []
    size_bytes: int = 0
    warnings: list[str] = []
    memory: MemoryEstimate | None = None


# ---------------------------------------------------------------- helpers


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a config file; InputError when it is too large, not JSON, or not an object."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InputError(f"{path.name} is {size} bytes, too large to be a config file.", "Check the checkpoint folder.")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError also covers integers past Python's digit limit; RecursionError, absurd nesting
        why = str(exc)[:160] if isinstance(exc, ValueError) else "nested too deeply"
        raise InputError(f"{path} is not valid JSON ({why}).", "Restore the file from the original checkpoint.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object.", "Restore the file from the original checkpoint.")
    return data


def typed(data: dict[str, Any], key: str, kind: type) -> Any:
    """data[key] when it has the expected type (an int is never a bool), else None."""
    value = data.get(key)
    if kind is int and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None


def safetensors_header(path: Path) -> dict[str, Any]:
    """Parse a safetensors header and check every tensor entry and that the data section is all there."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise InputError(f"{path.name} is truncated (shorter than a safetensors header).", _RESAVE)
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
            raise InputError(f"{path.name} is truncated or not a safetensors file (header claims {length} bytes).", _RESAVE)
        try:
            header = json.loads(fh.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise InputError(f"{path.name} has a corrupt safetensors header (not valid JSON).", _RESAVE) from None
    if not isinstance(header, dict):
        raise InputError(f"{path.name} has a corrupt safetensors header (not a JSON object).", _RESAVE)
    end = max((_tensor_end(path, name, entry) for name, entry in header.items() if name != "__metadata__"), default=0)
    if 8 + length + end > size:
        raise InputError(
            f"{path.name} is truncated: its header needs {8 + length + end} bytes but the file has {size}.",
            "Download or save the checkpoint again (an interrupted copy leaves exactly this).",
        )
    return header


def _tensor_end(path: Path, name: str, entry: Any) -> int:
    """The end offset of one tensor entry, after checking its dtype, shape and offsets agree."""
    def bad(why: str) -> InputError:
        return InputError(f"{path.name} has a corrupt safetensors header: tensor {name[:80]!r} {why}.", _RESAVE)

    if not isinstance(entry, dict):
        raise bad("is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad("has no dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad("has no shape of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise bad("has no data_offsets [begin, end]")
    width = SAFETENSORS_DTYPE_BYTES.get(dtype)
    if width is not None and (offsets[1] - offsets[0]) != math.prod(shape) * width:
        raise bad(f"holds {offsets[1] - offsets[0]} bytes, not the {math.prod(shape) * width} its shape and dtype need")
    return int(offsets[1])


# ---------------------------------------------------------------- Hugging Face checkpoints


def chat_template(directory: Path, tok_cfg: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
    """A checkpoint's chat template and the file it came from (chat_template.jinja, tokenizer_config.json, chat_template.json)."""
    if (directory / "chat_template.jinja").is_file():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8", errors="replace"), "chat_template.jinja"
    if tok_cfg is None:
        config = directory / "tokenizer_config.json"
        tok_cfg = read_json(config) if config.is_file() else {}
    template = tok_cfg.get("chat_template")
    if isinstance(template, list):  # named templates: the default one is what chat uses
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str) and template:
        return template, "tokenizer_config.json"
    if (directory / "chat_template.json").is_file():
        value = read_json(directory / "chat_template.json").get("chat_template")
        if isinstance(value, str):
            return value, "chat_template.json"
    return None, None


def source_chat_template(source_dir: Path | None) -> str | None:
    """The checkpoint's own chat template, if any (None for no checkpoint)."""
    return chat_template(source_dir)[0] if source_dir is not None else None


def _eos_ids(value: Any, into: list[int]) -> list[int]:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, int) and not isinstance(item, bool) and item not in into:
            into.append(item)
    return into


def generation_config_eos(source_dir: Path | None) -> list[int]:
    """The eos_token_id list of a checkpoint's generation_config.json (int or list), if any."""
    path = source_dir / "generation_config.json" if source_dir is not None else None
    if path is None or not path.is_file():
        return []
    return _eos_ids(read_json(path).get("eos_token_id"), [])


# ---- LoRA adapters (details in checkpoint/adapter.py)
def _adapter(directory: Path, base_dir: Path | None = None) -> CheckpointInfo:
    details = parse_adapter_config(read_json(directory / "adapter_config.json"))
    weights = sorted(directory.glob("adapter_model*.safetensors"))
    if not weights:
        raise InputError(f"{directory} has adapter_config.json but no adapter_model.safetensors.",
                         "Save the adapter again with peft's save_pretrained (safetensors).")
    for file in weights:
        add_weights(details, safetensors_header(file))
    details.adapter_bytes = sum(w.stat().st_size for w in weights)
    details.has_tokenizer = (directory / "tokenizer.json").is_file() or (directory / "tokenizer.model").is_file()
    details.has_chat_template = chat_template(directory)[0] is not None
    details.tokenizer_vocab_size = _tokenizer_vocab_size(directory / "tokenizer.json")[0]
    info = CheckpointInfo(kind="lora_adapter", path=str(directory), adapter_base_model=details.base_model, adapter=details,
                          size_bytes=details.adapter_bytes, has_tokenizer=details.has_tokenizer, has_chat_template=details.has_chat_template,
                          warnings=["This is a LoRA adapter, not a full model: merge it into its base (merge), or serve it on the base GGUF (--lora)."])
    if base_dir is not None:
        base = inspect_checkpoint(base_dir)
        details.base_path, details.base_available = str(base_dir), True
        if details.tokenizer_vocab_size and base.vocab_size:
            details.added_tokens = max(0, details.tokenizer_vocab_size - base.vocab_size)
        details.merged_bytes = base.size_bytes // (2 if base.dtype in ("float32", "F32") else 1)  # merged in 16 bits
        details.base_plus_adapter_bytes = base.size_bytes + details.adapter_bytes
        info.architectures, info.model_type, info.dtype = base.architectures, base.model_type, base.dtype
        info.memory = base.memory
    else:
        info.warnings.append(f"The base ({details.base_model or 'not named'}) is not available locally: pass its folder with --base.")
    return info


def _weights(directory: Path, info: CheckpointInfo) -> None:
    weights = sorted(directory.glob("*.safetensors"))
    if not weights and list(directory.glob("*.bin")):
        info.warnings.append("Weights are in PyTorch .bin files; the converter reads them, but safetensors are safer to load.")
    params = 0
    dtypes: Counter[str] = Counter()
    for file in weights:
        for key, value in safetensors_header(file).items():
            if key != "__metadata__":  # entries were checked by safetensors_header
                params += math.prod(value["shape"])
                dtypes[value["dtype"]] += 1
    info.weight_files = [w.name for w in weights]
    info.size_bytes = sum(w.stat().st_size for w in weights)
    if weights:
        info.parameter_count = params
        info.dtype = info.dtype or (dtypes.most_common(1)[0][0] if dtypes else None)


def _tokenizer_vocab_size(path: Path) -> tuple[int | None, bool]:
    """(distinct token ids in tokenizer.json, whether it could be read); large files are not read."""
    if not path.is_file() or path.stat().st_size >= 64 << 20:
        return None, True
    try:
        tok = json.loads(path.read_bytes().decode("utf-8"))
        vocab = (tok.get("model") or {}).get("vocab") or {}
        added = {t["id"] for t in tok.get("added_tokens") or [] if isinstance(t, dict) and "id" in t}
        return len(set(vocab.values() if isinstance(vocab, dict) else range(len(vocab))) | added), True
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError, AttributeError):
        return None, False


def _tokenizer(directory: Path, cfg: dict[str, Any], text_cfg: dict[str, Any], info: CheckpointInfo) -> None:
    tok_cfg = read_json(directory / "tokenizer_config.json") if (directory / "tokenizer_config.json").is_file() else {}
    info.has_tokenizer = (directory / "tokenizer.json").exists() or (directory / "tokenizer.model").exists()
    info.tokenizer_vocab_size, readable = _tokenizer_vocab_size(directory / "tokenizer.json")
    if not readable:
        info.warnings.append("tokenizer.json could not be read.")
    template, source = chat_template(directory, tok_cfg)
    info.has_chat_template, info.chat_template_source = template is not None, source
    if not info.has_tokenizer:
        info.warnings.append("No tokenizer files (tokenizer.json / tokenizer.model): the GGUF would have no vocabulary.")
    if template is None:
        info.warnings.append("No chat template: a served model would not know how to format a conversation.")
    eos: list[int] = []
    for source_cfg in (cfg, text_cfg):
        _eos_ids(source_cfg.get("eos_token_id"), eos)
    info.eos_token_ids = _eos_ids(generation_config_eos(directory), eos)
    if info.tokenizer_vocab_size and info.vocab_size and info.tokenizer_vocab_size > info.vocab_size:
        info.warnings.append(f"The tokenizer has {info.tokenizer_vocab_size} tokens but the embedding has {info.vocab_size} rows: added tokens were not resized into the model.")


def inspect_checkpoint(directory: Path, *, ctx_size: int | None = None, parallel: int = 1, base_dir: Path | None = None) -> CheckpointInfo:
    if (directory / "adapter_config.json").exists():
        return _adapter(directory, base_dir)
    if not (directory / "config.json").exists():
        raise InputError(
            f"{directory} is not a model: it has no config.json.",
            "Point at the folder that holds config.json and the *.safetensors files (or a .gguf file).",
        )
    cfg = read_json(directory / "config.json")
    text_cfg = typed(cfg, "text_config", dict) or cfg
    architectures = typed(cfg, "architectures", list) or []
    info = CheckpointInfo(kind="hf_checkpoint", path=str(directory), architectures=[a for a in architectures if isinstance(a, str)],
                          model_type=typed(cfg, "model_type", str), vocab_size=typed(text_cfg, "vocab_size", int),
                          context_length=typed(text_cfg, "max_position_embeddings", int),
                          dtype=typed(cfg, "torch_dtype", str) or typed(cfg, "dtype", str))
    qcfg = typed(cfg, "quantization_config", dict) or typed(text_cfg, "quantization_config", dict)
    if qcfg:
        info.quantization_config = qcfg
        info.warnings.append(f"Already quantized ({qcfg.get('quant_method', 'unknown method')}): llama.cpp's converter needs 16/32-bit weights.")
    _weights(directory, info)
    _tokenizer(directory, cfg, text_cfg, info)
    n_heads = typed(text_cfg, "num_attention_heads", int)
    hidden = typed(text_cfg, "hidden_size", int)
    head_dim = typed(text_cfg, "head_dim", int) or (hidden // n_heads if hidden and n_heads else None)
    ctx = ctx_size or min(info.context_length or 4096, 4096)
    info.memory = estimate_memory(weights_bytes=info.size_bytes, n_layers=typed(text_cfg, "num_hidden_layers", int),
                                  n_kv_heads=typed(text_cfg, "num_key_value_heads", int) or n_heads, head_dim=head_dim,
                                  ctx_size=ctx, parallel=parallel)
    return info


# ---------------------------------------------------------------- GGUF files


def inspect_gguf(path: Path, *, ctx_size: int | None = None, parallel: int = 1) -> GGUFInfo:
    """read_gguf plus the memory estimate at a context length (the trained one, capped at 4096)."""
    info = read_gguf(path)
    ctx = ctx_size or min(info.context_length or 4096, 4096)
    info.memory = estimate_memory(weights_bytes=info.size_bytes, n_layers=info.block_count, n_kv_heads=info.head_count_kv,
                                  head_dim=info.head_dim, ctx_size=ctx, parallel=parallel)
    return info


def inspect_path(settings: Settings, path: str | Path, *, ctx_size: int | None = None, parallel: int = 1,
                 base: str | None = None) -> CheckpointInfo | GGUFInfo:
    """Inspect whatever `path` names: a checkpoint folder (or LoRA adapter, with its base), or a .gguf file."""
    resolved = confine(path, settings.roots, what="model path")
    if resolved.is_dir():
        base_dir = None
        if (resolved / "adapter_config.json").exists():
            named = typed(read_json(resolved / "adapter_config.json"), "base_model_name_or_path", str)
            base_dir = find_base(settings, base, named)
        return inspect_checkpoint(resolved, ctx_size=ctx_size, parallel=parallel, base_dir=base_dir)
    with resolved.open("rb") as fh:
        magic = fh.read(4)
    if magic == GGUF_MAGIC or resolved.suffix == ".gguf":
        return inspect_gguf(resolved, ctx_size=ctx_size, parallel=parallel)
    raise InputError(f"{resolved.name} is neither a checkpoint folder nor a GGUF file.",
                     "Pass the folder holding config.json, or a .gguf file.")
