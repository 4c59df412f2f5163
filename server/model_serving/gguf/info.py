"""What a GGUF file is, in one model: read by `inspect`, export verification, the embedded engine,
Ollama registration and the decode roofline alike.

Filled from the defensive header walk (gguf/header.py): no full vocabulary load, so reading a file
takes milliseconds, and a corrupt one gives an InputError.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_serving.gguf.filetypes import file_type_name, is_quantized
from model_serving.gguf.header import GGUFHeader, read_header, token_ids_of_types, token_texts
from model_serving.gguf.memory import MemoryEstimate, kv_bytes_per_token

# llama.cpp's token types: 3 = control (special) tokens such as <|im_end|>, 4 = user-defined.
CONTROL, USER_DEFINED = 3, 4
ROLES = ("bos", "eos", "eot", "eom", "pad", "unknown", "sep")


class GGUFInfo(BaseModel):
    """A GGUF's identity, shapes, tokenizer and chat template, with what looks wrong about them."""

    model_config = ConfigDict(validate_assignment=True)

    kind: Literal["gguf"] = "gguf"
    path: str
    size_bytes: int
    architecture: str | None = None
    name: str | None = None
    file_type: str | None = Field(default=None, description="general.file_type as a llama.cpp type name")
    file_type_id: int | None = Field(default=None, description="general.file_type as stored (enum llama_ftype)")
    is_quantized: bool = False
    is_adapter: bool = Field(default=False, description="general.type is 'adapter' (a LoRA, not a model)")
    license: str | None = None
    tensor_types: dict[str, int] = Field(default_factory=dict, description="tensor count per ggml type")
    parameter_count: int = 0
    bits_per_weight: float | None = None
    weight_bytes_per_token: int = Field(default=0, description="tensor bytes one decoded token reads (an untied embedding table is only indexed)")
    context_length: int | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    token_embedding_shape: list[int] | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = Field(default=None, description="attention.key_length: the head size, where it is not embedding/heads")
    vocab_size: int | None = None
    tokenizer_model: str | None = None
    tokenizer_pre: str | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    eot_token: str | None = None
    special_token_ids: dict[str, int] = Field(default_factory=dict, description="role (bos, eos, eot, ...) -> token id")
    add_bos_token: bool | None = None
    warnings: list[str] = Field(default_factory=list)
    memory: MemoryEstimate | None = None
    special_tokens: dict[int, str] = Field(default_factory=dict, exclude=True,
                                           description="id -> text of every control/user-defined token and every role token")

    def token(self, token_id: int | None) -> str | None:
        """The text of a special token id (the plain vocabulary is not loaded)."""
        return self.special_tokens.get(token_id) if token_id is not None else None

    def is_special(self, text: str) -> bool:
        """True when `text` is one control/user-defined (or role) token of the vocabulary."""
        return text in self.special_tokens.values()

    @property
    def head_dim(self) -> int | None:
        if self.key_length:
            return self.key_length
        return self.embedding_length // self.head_count if self.embedding_length and self.head_count else None

    def kv_bytes_per_token(self) -> int:
        """f16 K and V for every layer: what each context position costs in memory (0 when unknown)."""
        return kv_bytes_per_token(self.block_count, self.head_count_kv or self.head_count, self.head_dim)


def read_gguf(path: Path) -> GGUFInfo:
    """Read a GGUF (once per file version in a process); InputError for a non-GGUF, truncated or corrupt file."""
    stat = path.stat()
    cached = _read_cached(path.resolve(), stat.st_size, stat.st_mtime_ns)
    return cached.model_copy(update={"path": str(path)}, deep=True)


@functools.lru_cache(maxsize=16)
def _read_cached(path: Path, size: int, mtime_ns: int) -> GGUFInfo:
    header = read_header(path)
    get = _typed_getter(header.metadata)
    arch = get("general.architecture", str)
    info = GGUFInfo(path=str(path), size_bytes=header.size_bytes, architecture=arch, name=get("general.name", str),
                    is_adapter=get("general.type", str) == "adapter", license=get("general.license", str),
                    tensor_types=header.tensor_types, parameter_count=header.parameter_count,
                    token_embedding_shape=header.token_embedding_shape, weight_bytes_per_token=_weight_bytes(header))
    if header.parameter_count:  # tensor data only: in a tiny model the vocabulary would dominate the file size
        info.bits_per_weight = round(header.tensor_bytes * 8 / header.parameter_count, 3)
    _file_type(info, header, get("general.file_type", int))
    prefix = f"{arch}." if arch else ""
    info.context_length = get(prefix + "context_length", int)
    info.block_count = get(prefix + "block_count", int)
    info.embedding_length = get(prefix + "embedding_length", int)
    info.head_count = get(prefix + "attention.head_count", int)
    info.head_count_kv = get(prefix + "attention.head_count_kv", int) or info.head_count
    info.key_length = get(prefix + "attention.key_length", int)
    _tokenizer(info, header, get)
    info.warnings.extend(_warnings(info))
    return info


def _typed_getter(meta: dict[str, Any]) -> Any:
    def get(key: str, kind: type) -> Any:
        value = meta.get(key)  # a value of the wrong type is treated as absent, not trusted
        return value if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)) else None
    return get


def _weight_bytes(header: GGUFHeader) -> int:
    weights = header.tensor_bytes
    if "output.weight" in header.tensor_sizes and "token_embd.weight" in header.tensor_sizes:
        # with a separate output matrix the embedding table is only indexed: one row per token
        weights -= header.tensor_sizes["token_embd.weight"]
    return weights


def _file_type(info: GGUFInfo, header: GGUFHeader, ftype: int | None) -> None:
    if ftype is not None:
        info.file_type_id, info.file_type = ftype, file_type_name(ftype)
    elif header.tensor_types:
        weights = Counter({k: v for k, v in header.tensor_types.items() if k != "F32"})
        info.file_type = (weights or Counter(header.tensor_types)).most_common(1)[0][0]
        info.warnings.append("general.file_type is missing; the file type was guessed from the tensors.")
    info.is_quantized = is_quantized(info.file_type)


def _tokenizer(info: GGUFInfo, header: GGUFHeader, get: Any) -> None:
    info.tokenizer_model = get("tokenizer.ggml.model", str)
    info.tokenizer_pre = get("tokenizer.ggml.pre", str)
    info.chat_template = get("tokenizer.chat_template", str)
    info.add_bos_token = get("tokenizer.ggml.add_bos_token", bool)
    info.vocab_size = header.array_length("tokenizer.ggml.tokens")
    for role in ROLES:
        token_id = get(f"tokenizer.ggml.{role}_token_id", int)
        if token_id is not None:
            info.special_token_ids[role] = token_id
    ids = set(token_ids_of_types(header, {CONTROL, USER_DEFINED})) | set(info.special_token_ids.values())
    info.special_tokens = token_texts(header, ids)
    info.bos_token = info.token(info.special_token_ids.get("bos"))
    info.eos_token = info.token(info.special_token_ids.get("eos"))
    info.eot_token = info.token(info.special_token_ids.get("eot"))


def _warnings(info: GGUFInfo) -> list[str]:
    warnings = []
    if info.chat_template is None:
        warnings.append("No tokenizer.chat_template: servers will fall back to a generic template and chat badly.")
    if "eos" not in info.special_token_ids:
        warnings.append("No EOS token id: generation may never stop.")
    if info.chat_template and info.bos_token and info.add_bos_token and "bos_token" in info.chat_template:
        warnings.append("Possible double BOS: the tokenizer adds BOS and the chat template also writes it.")
    if info.tokenizer_pre in (None, "default") and info.tokenizer_model == "gpt2":
        warnings.append("BPE pre-tokenizer is 'default': the converter did not recognise this tokenizer; tokenization may be wrong.")
    return warnings
