"""A fast, defensive walk over a GGUF header: metadata, tensor table, a few vocabulary strings.

gguf.GGUFReader builds an object per vocabulary string: about 3-4 s for a 135M model, longer than
quantizing it. This walk reads the same header with gguf's own type tables and skips arrays, so
`inspect`, export verification and quantize can afford to read every file they touch.

The file is untrusted: every count and length is checked against the bytes that remain before
anything is allocated or looped over, so a corrupt file costs at most one pass over its bytes and
ends in an InputError.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.gguf.filetypes import FILE_TYPES, TENSOR_TYPES, is_quantized

# Imported inside functions: gguf (a tensor type newer than our table) and numpy (token-id scans), only on those paths.

_GGUF_MAGIC = b"GGUF"
_SCALAR = {t: struct.Struct(f) for t, f in
           {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}.items()}
_U32, _U64 = _SCALAR[4], _SCALAR[10]
STRING, ARRAY, INT32 = 8, 9, 5
_KEEP_LONG = {"tokenizer.chat_template"}  # long strings kept whole; others over SHORT_STRING are dropped
SHORT_STRING = 4096
# Real files stay far below these; past them a count is corruption, and the Python objects it would
# make (a dict entry per key, a decoded template) would outgrow the file itself.
MAX_KEYS = 4096
MAX_TENSORS = 1 << 20
MAX_DIMS = 8
MAX_NESTING = 4  # arrays of arrays: GGUF writers nest at most once
MAX_TEMPLATE = 1 << 20


class ArrayRef(BaseModel):
    """Where a metadata array lies in the file, so a reader can come back for a few of its items."""

    item_type: int
    count: int
    offset: int = Field(description="byte offset of the first item")


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
    arrays: dict[str, ArrayRef] = Field(default_factory=dict, description="metadata array key -> item type, count, offset")
    tensor_bytes: int = Field(default=0, description="bytes of tensor data (the file less its header)")
    tensor_sizes: dict[str, int] = Field(default_factory=dict, description="bytes of token_embd.weight and output.weight, where present")
    token_embedding_shape: list[int] | None = None

    @property
    def quantized(self) -> bool:
        """True when any tensor holds a quantized type (the file type alone can be missing or wrong)."""
        return any(is_quantized(name) for name in self.tensor_types)

    def array_length(self, key: str) -> int | None:
        ref = self.arrays.get(key)
        return ref.count if ref else None


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf, self.pos, self.end = buf, 0, len(buf)

    def take(self, fmt: struct.Struct) -> Any:
        if self.pos + fmt.size > self.end:
            raise _Truncated
        value = fmt.unpack_from(self.buf, self.pos)[0]
        self.pos += fmt.size
        return value

    def string(self, keep_up_to: int | None = None) -> str | None:
        """The next string, decoded when no longer than `keep_up_to` (None: always), else skipped."""
        length = self.take(_U64)
        if length > self.end - self.pos:
            raise _Truncated
        start, self.pos = self.pos, self.pos + length
        if keep_up_to is not None and length > keep_up_to:
            return None
        # decoded straight from the map: no intermediate copy of a long string
        return str(memoryview(self.buf)[start:self.pos], "utf-8", "replace")

    def skip_strings(self, count: int) -> None:
        # the vocabulary and merges: ~100k strings, so this loop is kept tight
        buf, pos, end, unpack = self.buf, self.pos, self.end, _U64.unpack_from
        if count * 8 > end - pos:
            raise _Truncated
        for _ in range(count):
            if pos + 8 > end:
                raise _Truncated
            pos += 8 + unpack(buf, pos)[0]
        if pos > end:
            raise _Truncated
        self.pos = pos

    def skip_array(self, depth: int = 0) -> tuple[int, int, int]:
        """Skip an array value: (item type, count, offset of its first item)."""
        if depth >= MAX_NESTING:
            raise _Corrupt(f"arrays nest more than {MAX_NESTING} deep")
        item_type, count = self.take(_U32), self.take(_U64)
        offset = self.pos
        if item_type in _SCALAR:
            skip = _SCALAR[item_type].size * count
            if skip > self.end - self.pos:
                raise _Truncated
            self.pos += skip
        elif item_type == STRING:
            self.skip_strings(count)
        elif item_type == ARRAY:
            if count * 12 > self.end - self.pos:  # each item holds at least its type and count
                raise _Truncated
            for _ in range(count):
                self.skip_array(depth + 1)
        else:
            raise _Corrupt(f"an array holds unknown value type {item_type}")
        return item_type, count, offset


@dataclass
class _Metadata:
    values: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, ArrayRef] = field(default_factory=dict)


def _read_metadata(cur: _Cursor, n_kv: int) -> _Metadata:
    meta = _Metadata()
    for _ in range(n_kv):
        key = cur.string(SHORT_STRING)
        if key is None:
            raise _Corrupt("a metadata key is longer than 4 KiB")
        vtype = cur.take(_U32)
        if vtype in _SCALAR:
            meta.values[key] = cur.take(_SCALAR[vtype])
        elif vtype == STRING:
            value = cur.string(MAX_TEMPLATE if key in _KEEP_LONG else SHORT_STRING)
            if value is None and key in _KEEP_LONG:
                raise _Corrupt(f"{key} is longer than {MAX_TEMPLATE >> 20} MiB")
            if value is not None:
                meta.values[key] = value
        elif vtype == ARRAY:
            item_type, count, offset = cur.skip_array()
            meta.arrays[key] = ArrayRef(item_type=item_type, count=count, offset=offset)
            meta.values[key] = f"<array of {count}>"
        else:
            raise _Corrupt(f"unknown metadata value type {vtype}")
    return meta


@dataclass
class _Tensors:
    types: Counter[str] = field(default_factory=Counter)
    params: int = 0
    data_end: int = 0
    data_bytes: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    embedding_shape: list[int] | None = None


_SIZED = ("token_embd.weight", "output.weight")  # what the decode roofline needs separately


def _tensor_type(ggml_type: int) -> tuple[str, int, int]:
    known = TENSOR_TYPES.get(ggml_type)
    if known is not None:
        return known
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # a type newer than our table

    try:
        qtype = GGMLQuantizationType(ggml_type)
        return (qtype.name, *GGML_QUANT_SIZES[qtype])
    except (ValueError, KeyError):
        raise _Corrupt(f"a tensor has ggml type {ggml_type}, unknown to the installed gguf package") from None


def _read_tensor_infos(cur: _Cursor, n_tensors: int) -> _Tensors:
    out = _Tensors()
    for _ in range(n_tensors):
        name = cur.string(SHORT_STRING)
        n_dims = cur.take(_U32)
        if name is None or n_dims > MAX_DIMS:
            raise _Corrupt("a tensor has a name longer than 4 KiB" if name is None else f"a tensor claims {n_dims} dimensions")
        dims = [cur.take(_U64) for _ in range(n_dims)]
        ggml_type, offset = cur.take(_U32), cur.take(_U64)
        type_name, block, type_size = _tensor_type(ggml_type)
        elements = 1
        for dim in dims:
            elements *= dim
        nbytes = elements // block * type_size
        if name == "token_embd.weight":
            out.embedding_shape = [int(d) for d in dims]
        if name in _SIZED:
            out.sizes[name] = nbytes
        out.types[type_name] += 1
        out.params += elements
        out.data_end = max(out.data_end, offset + nbytes)
        out.data_bytes += nbytes
    return out


def _preamble(cur: _Cursor) -> tuple[int, int, int]:
    cur.pos = 4
    version = cur.take(_U32)
    if version not in (2, 3):
        raise _Corrupt(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = cur.take(_U64), cur.take(_U64)
    if n_tensors > MAX_TENSORS or n_kv > MAX_KEYS:
        raise _Corrupt(f"it claims {n_tensors} tensors and {n_kv} metadata keys")
    return version, n_tensors, n_kv


def _data_start(pos: int, values: dict[str, Any]) -> int:
    alignment = values.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0:
        alignment = 32
    return -(-pos // alignment) * alignment


def read_header(path: Path) -> GGUFHeader:
    """Parse a GGUF header defensively: a folder, a non-GGUF, truncated or corrupt file gives an InputError."""
    if path.is_dir():  # every verb that takes a GGUF reads its header first: one refusal for them all
        found = sorted(p.name for p in path.glob("*.gguf"))[:5]
        inside = f"; it holds {', '.join(found)}" if found else ", and it holds no .gguf file"
        raise InputError(f"{path} is a directory, not a GGUF file{inside}.",
                         "Pass the .gguf file itself; a checkpoint folder goes to `model-serving export` or `deploy` first.")
    size = path.stat().st_size
    if size < 24:
        raise _not_gguf(path, f"it is only {size} bytes long")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != _GGUF_MAGIC:
            raise _not_gguf(path, f"it starts with {bytes(buf[:4])!r}, not b'GGUF'")
        cur = _Cursor(buf)
        try:
            version, n_tensors, n_kv = _preamble(cur)
            meta = _read_metadata(cur, n_kv)
            tensors = _read_tensor_infos(cur, n_tensors)
        except _Truncated:
            raise InputError(f"{path.name} is truncated: its header ends before the GGUF metadata does.",
                             "Export or download the GGUF again; a partial copy looks exactly like this.") from None
        except _Corrupt as exc:
            raise InputError(f"{path.name} is not a valid GGUF: {exc}.", "Export the model again with `model-serving export`.") from None
        data_start = _data_start(cur.pos, meta.values)
    if tensors.data_end and data_start + tensors.data_end > size:  # no tensor data, no padding needed
        raise InputError(
            f"{path.name} is truncated: its tensors need {data_start + tensors.data_end} bytes but the file has {size}.",
            "Export or download the GGUF again; a partial copy looks exactly like this.",
        )
    ftype = meta.values.get("general.file_type")
    ftype = ftype if isinstance(ftype, int) and not isinstance(ftype, bool) else None
    arch = meta.values.get("general.architecture")
    return GGUFHeader(
        path=str(path), size_bytes=size, version=version, architecture=arch if isinstance(arch, str) else None,
        file_type=ftype, file_type_name=FILE_TYPES.get(ftype) if ftype is not None else None,
        tensor_count=n_tensors, tensor_types=dict(tensors.types.most_common()), parameter_count=tensors.params,
        metadata=meta.values, arrays=meta.arrays, tensor_bytes=tensors.data_bytes, tensor_sizes=tensors.sizes,
        token_embedding_shape=tensors.embedding_shape,
    )


def token_texts(header: GGUFHeader, ids: set[int]) -> dict[int, str]:
    """The vocabulary strings for a few token ids, read by skipping to them (no full vocabulary load)."""
    ref = header.arrays.get("tokenizer.ggml.tokens")
    if ref is None or ref.item_type != STRING:
        return {}
    wanted = sorted(i for i in ids if 0 <= i < ref.count)
    found: dict[int, str] = {}
    if not wanted:
        return found
    with open(header.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        cur.pos, index = ref.offset, 0
        try:
            for token_id in wanted:
                cur.skip_strings(token_id - index)
                found[token_id] = cur.string(SHORT_STRING) or ""
                index = token_id + 1
        except _Truncated:
            return found
    return found


def token_ids_of_types(header: GGUFHeader, types: set[int]) -> list[int]:
    """Ids whose tokenizer.ggml.token_type is one of `types` (e.g. control tokens), read from the map."""
    import numpy as np

    ref = header.arrays.get("tokenizer.ggml.token_type")
    if ref is None or ref.item_type != INT32 or ref.offset + 4 * ref.count > header.size_bytes:
        return []
    with open(header.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        kinds = np.frombuffer(buf, dtype="<i4", count=ref.count, offset=ref.offset)
        ids = np.flatnonzero(np.isin(kinds, list(types))).tolist()
        del kinds  # the map cannot close while an array still views it
    return ids


def _not_gguf(path: Path, why: str) -> InputError:
    return InputError(f"{path.name} is not a GGUF file ({why}).", "Pass a .gguf file, e.g. one written by `model-serving export`.")
