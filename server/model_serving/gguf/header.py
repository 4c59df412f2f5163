"""A fast, defensive walk over a GGUF header: metadata, tensor table, a few vocabulary strings.

gguf.GGUFReader builds an object per vocabulary string: about 3-4 s for a 135M model, longer than
quantizing it. This walk reads the same header with gguf's own type tables and skips arrays, so
`inspect`, export verification and quantize can afford to read every file they touch.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from model_serving.errors import InputError

# llama.h file types (general.file_type); names as llama-quantize prints them.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}
FILE_TYPE_NAMES = FILE_TYPES
_FLOAT_TENSOR_TYPES = {"F32", "F16", "BF16", "F64"}
_KEEP_LONG = {"tokenizer.chat_template"}  # long strings kept whole; others over 4 KiB are dropped

_GGUF_MAGIC = b"GGUF"
_SCALAR = {t: struct.Struct(f) for t, f in
           {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}.items()}
_U32, _U64 = _SCALAR[4], _SCALAR[10]
_STRING, _ARRAY = 8, 9
_LIMIT = 1 << 24  # more tensors/keys/array items than this is a corrupt count, not a model


class GGUFHeader(BaseModel):
    """What quantization needs from a GGUF: file type, tensor mix, parameter count, intact length."""

    path: str
    size_bytes: int
    version: int
    architecture: str | None = None
    file_type: int | None = Field(default=None, description="general.file_type (enum llama_ftype)")
    file_type_name: str | None = None
    tensor_count: int
    tensor_types: dict[str, int] = Field(description="ggml tensor type -> number of tensors")
    parameter_count: int
    metadata: dict[str, Any] = Field(default_factory=dict, description="scalar and string keys (arrays as their length)")
    array_lengths: dict[str, int] = Field(default_factory=dict, description="metadata array key -> number of items")
    tensor_bytes: int = Field(default=0, description="bytes of tensor data (the file less its header)")
    token_embedding_shape: list[int] | None = None
    tokens_offset: int | None = Field(default=None, description="byte offset of the first vocabulary string")

    @property
    def quantized(self) -> bool:
        """True when any tensor holds a quantized type (the file type alone can be missing or wrong)."""
        return any(name not in _FLOAT_TENSOR_TYPES for name in self.tensor_types)


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf, self.pos, self.end = buf, 0, len(buf)

    def take(self, fmt: struct.Struct) -> Any:
        if self.pos + fmt.size > self.end:
            raise _Truncated
        value = fmt.unpack_from(self.buf, self.pos)[0]
        self.pos += fmt.size
        return value

    def string(self, keep: bool = True) -> str | None:
        length = self.take(_U64)
        if length > self.end - self.pos:
            raise _Truncated
        start, self.pos = self.pos, self.pos + length
        return bytes(self.buf[start:self.pos]).decode("utf-8", errors="replace") if keep else None

    def skip_strings(self, count: int) -> None:
        # the vocabulary and merges: ~100k strings, so this loop is kept tight
        buf, pos, end, unpack = self.buf, self.pos, self.end, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                raise _Truncated
            pos += 8 + unpack(buf, pos)[0]
        if pos > end:
            raise _Truncated
        self.pos = pos

    def value(self, vtype: int, keep: bool = True) -> Any:
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string(keep)
        if vtype == _ARRAY:
            item_type, count = self.take(_U32), self.take(_U64)
            if count > _LIMIT * 16:
                raise _Corrupt(f"an array claims {count} items")
            if item_type in _SCALAR:
                skip = _SCALAR[item_type].size * count
                if self.pos + skip > self.end:
                    raise _Truncated
                self.pos += skip
            elif item_type == _STRING:
                self.skip_strings(count)
            else:
                for _ in range(count):
                    self.value(item_type, keep=False)
            return f"<array of {count}>"
        raise _Corrupt(f"unknown metadata value type {vtype}")


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


def read_header(path: Path) -> GGUFHeader:
    """Parse a GGUF header defensively: a non-GGUF, truncated or corrupt file gives an InputError."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    size = path.stat().st_size
    if size < 24:
        raise _not_gguf(path, f"it is only {size} bytes long")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != _GGUF_MAGIC:
            raise _not_gguf(path, f"it starts with {bytes(buf[:4])!r}, not b'GGUF'")
        cur = _Cursor(buf)
        try:
            cur.pos = 4
            version_ = cur.take(_U32)
            if version_ not in (2, 3):
                raise _Corrupt(f"GGUF version {version_} is not supported (2 and 3 are)")
            n_tensors, n_kv = cur.take(_U64), cur.take(_U64)
            if n_tensors > _LIMIT or n_kv > _LIMIT:
                raise _Corrupt(f"it claims {n_tensors} tensors and {n_kv} keys")
            meta: dict[str, Any] = {}
            arrays: dict[str, int] = {}
            tokens_offset = None
            for _ in range(n_kv):
                key = cur.string() or ""
                vtype = cur.take(_U32)
                if vtype == _ARRAY and key == "tokenizer.ggml.tokens" and cur.pos + 12 <= cur.end:
                    tokens_offset = cur.pos + 12  # after the item type (u32) and count (u64)
                meta[key] = cur.value(vtype)
                if vtype == _ARRAY:
                    arrays[key] = int(str(meta[key]).split()[-1].rstrip(">"))
            types: Counter[str] = Counter()
            params, data_end = 0, 0
            embd_shape = None
            tensor_bytes = 0
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = cur.take(_U32)
                if n_dims > 8:
                    raise _Corrupt(f"a tensor claims {n_dims} dimensions")
                elements = 1
                dims = [cur.take(_U64) for _ in range(n_dims)]
                for dim in dims:
                    elements *= dim
                if name == "token_embd.weight":
                    embd_shape = [int(d) for d in dims]
                ggml_type, offset = cur.take(_U32), cur.take(_U64)
                try:
                    type_name = GGMLQuantizationType(ggml_type).name
                    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
                except (ValueError, KeyError):
                    raise _Corrupt(f"a tensor has ggml type {ggml_type}, unknown to the installed gguf package") from None
                types[type_name] += 1
                params += elements
                data_end = max(data_end, offset + elements // block * type_size)
                tensor_bytes += elements // block * type_size
            alignment = meta.get("general.alignment", 32)
            alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
            data_start = -(-cur.pos // alignment) * alignment
        except _Truncated:
            raise InputError(f"{path.name} is truncated: its header ends before the GGUF metadata does.",
                             "Export or download the GGUF again; a partial copy looks exactly like this.") from None
        except _Corrupt as exc:
            raise InputError(f"{path.name} is not a valid GGUF: {exc}.", "Export the model again with `model-serving export`.") from None
    if data_start + data_end > size:
        raise InputError(
            f"{path.name} is truncated: its tensors need {data_start + data_end} bytes but the file has {size}.",
            "Export or download the GGUF again; a partial copy looks exactly like this.",
        )
    ftype = meta.get("general.file_type")
    ftype = ftype if isinstance(ftype, int) else None
    return GGUFHeader(
        path=str(path), size_bytes=size, version=version_, architecture=meta.get("general.architecture"),
        file_type=ftype, file_type_name=FILE_TYPE_NAMES.get(ftype) if ftype is not None else None,
        tensor_count=n_tensors, tensor_types=dict(types.most_common()), parameter_count=params,
        metadata={k: v for k, v in meta.items() if k in _KEEP_LONG or not (isinstance(v, str) and len(v) > 4096)},
        array_lengths=arrays, tensor_bytes=tensor_bytes, token_embedding_shape=embd_shape, tokens_offset=tokens_offset,
    )


def token_texts(header: GGUFHeader, ids: set[int]) -> dict[int, str]:
    """The vocabulary strings for a few token ids, read by skipping to them (no full vocabulary load)."""
    count = header.array_lengths.get("tokenizer.ggml.tokens", 0)
    wanted = sorted(i for i in ids if 0 <= i < count)
    if not wanted or header.tokens_offset is None:
        return {}
    found: dict[int, str] = {}
    with open(header.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        cur.pos, index = header.tokens_offset, 0
        try:
            for token_id in wanted:
                cur.skip_strings(token_id - index)
                found[token_id] = cur.string() or ""
                index = token_id + 1
        except _Truncated:
            return found
    return found


def _not_gguf(path: Path, why: str) -> InputError:
    return InputError(f"{path.name} is not a GGUF file ({why}).", "Pass a .gguf file, e.g. one written by `model-serving export`.")
