"""The GGUF metadata registration needs: chat template, special tokens, context, shapes."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_serving.checkpoint.inspect import FILE_TYPES, open_gguf
from model_serving.errors import InputError

# llama.cpp's token types: 3 = control (special) tokens such as <|im_end|>.
CONTROL, USER_DEFINED = 3, 4

@dataclass
class GGUFInfo:
    path: Path
    size: int
    architecture: str
    name: str = ""
    file_type: int | None = None
    context_length: int | None = None
    block_count: int = 0
    head_count: int = 0
    head_count_kv: int = 0
    embedding_length: int = 0
    chat_template: str | None = None
    tokens: list[str] = field(default_factory=list)
    token_types: list[int] = field(default_factory=list)
    bos_id: int | None = None
    eos_id: int | None = None
    eot_id: int | None = None
    eom_id: int | None = None
    add_bos: bool = False
    license: str = ""
    adapter: bool = False

    def token(self, token_id: int | None) -> str | None:
        if token_id is None or not 0 <= token_id < len(self.tokens):
            return None
        return self.tokens[token_id]

    @property
    def bos_token(self) -> str:
        return self.token(self.bos_id) or ""

    @property
    def eos_token(self) -> str:
        return self.token(self.eos_id) or ""

    @property
    def file_type_name(self) -> str:
        return FILE_TYPES.get(self.file_type, f"type {self.file_type}") if self.file_type is not None else "unknown"

    def is_special(self, text: str) -> bool:
        """True when `text` is one control/user-defined token of the vocabulary."""
        try:
            index = self._index[text]
        except KeyError:
            return False
        return self.token_types[index] in (CONTROL, USER_DEFINED) if index < len(self.token_types) else False

    @property
    def _index(self) -> dict[str, int]:
        cached = getattr(self, "_index_cache", None)
        if cached is None:
            cached = {t: i for i, t in enumerate(self.tokens)}
            self._index_cache = cached
        return cached

    def kv_bytes_per_token(self) -> int:
        """f16 K and V for every layer: what each context position costs in memory."""
        if not (self.block_count and self.head_count and self.embedding_length):
            return 0
        head_dim = self.embedding_length // self.head_count
        return 2 * self.block_count * (self.head_count_kv or self.head_count) * head_dim * 2


def read_gguf(path: Path) -> GGUFInfo:
    """The registration-relevant metadata of a GGUF (parsed once per file version in a process)."""
    stat = path.stat()
    return dataclasses.replace(_read_gguf(path, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _read_gguf(path: Path, size: int, mtime_ns: int) -> GGUFInfo:
    reader = open_gguf(path)  # magic, parse and truncation checks shared with `inspect`

    def get(key: str) -> Any:
        f = reader.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # an unusual value type: treat as absent
            return None

    arch = get("general.architecture") or ""
    prefix = f"{arch}."
    return GGUFInfo(
        path=path,
        size=path.stat().st_size,
        architecture=arch,
        name=get("general.name") or "",
        file_type=get("general.file_type"),
        context_length=get(prefix + "context_length"),
        block_count=get(prefix + "block_count") or 0,
        head_count=get(prefix + "attention.head_count") or 0,
        head_count_kv=get(prefix + "attention.head_count_kv") or 0,
        embedding_length=get(prefix + "embedding_length") or 0,
        chat_template=get("tokenizer.chat_template"),
        tokens=list(get("tokenizer.ggml.tokens") or []),
        token_types=list(get("tokenizer.ggml.token_type") or []),
        bos_id=get("tokenizer.ggml.bos_token_id"),
        eos_id=get("tokenizer.ggml.eos_token_id"),
        eot_id=get("tokenizer.ggml.eot_token_id"),
        eom_id=get("tokenizer.ggml.eom_token_id"),
        add_bos=bool(get("tokenizer.ggml.add_bos_token")),
        license=get("general.license") or "",
        adapter=get("general.type") == "adapter",
    )


def generation_config_eos(source_dir: Path | None) -> list[int]:
    """The eos_token_id list of a checkpoint's generation_config.json (int or list), if any."""
    if source_dir is None:
        return []
    path = source_dir / "generation_config.json"
    if not path.is_file():
        return []
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (json.JSONDecodeError, OSError, AttributeError):
        raise InputError(f"{path} is not valid JSON.", "Fix or remove generation_config.json.") from None
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def source_chat_template(source_dir: Path | None) -> str | None:
    """The checkpoint's own chat template (tokenizer_config.json or chat_template.jinja), if any."""
    if source_dir is None:
        return None
    jinja = source_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = source_dir / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (json.JSONDecodeError, OSError):
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, list):  # named templates: the "default" one is the chat template
            for item in value:
                if isinstance(item, dict) and item.get("name") == "default":
                    return item.get("template")
    return None
