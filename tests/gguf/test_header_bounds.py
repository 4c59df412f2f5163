"""The GGUF walk refuses sizes the file cannot hold before allocating; one table of file types serves all."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from model_serving.errors import InputError
from model_serving.gguf import filetypes
from model_serving.gguf.header import MAX_KEYS, MAX_TEMPLATE, read_header
from model_serving.gguf.info import read_gguf
from model_serving.quantize.quantizer import QUANT_TYPES, resolve_qtype


def _string(text: str, length: int | None = None) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def _gguf(*kvs: bytes, n_kv: int | None = None, n_tensors: int = 0, tail: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + tail


def _kv_string(key: str, value: str, length: int | None = None) -> bytes:
    return _string(key) + struct.pack("<I", 8) + _string(value, length)


def _kv_array(key: str, item_type: int, count: int, items: bytes = b"") -> bytes:
    return _string(key) + struct.pack("<IIQ", 9, item_type, count) + items


def _refused(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(InputError, match=match) as err:
        read_gguf(path)
    assert err.value.next_step


def test_a_minimal_vocabulary_only_gguf_reads(tmp_path: Path) -> None:
    tokens = [b"<s>", b"</s>", b"hi"]
    items = b"".join(struct.pack("<Q", len(t)) + t for t in tokens)
    data = _gguf(_kv_string("general.architecture", "llama"), _kv_array("tokenizer.ggml.tokens", 8, 3, items),
                 _kv_array("tokenizer.ggml.token_type", 5, 3, struct.pack("<3i", 3, 3, 1)),
                 _string("tokenizer.ggml.eos_token_id") + struct.pack("<II", 4, 1))
    path = tmp_path / "vocab.gguf"
    path.write_bytes(data)
    info = read_gguf(path)
    assert info.vocab_size == 3 and info.eos_token == "</s>" and info.special_tokens == {0: "<s>", 1: "</s>"}
    assert info.is_special("<s>") and not info.is_special("hi") and info.file_type is None


@pytest.mark.parametrize(("data", "match"), [
    (_gguf(_kv_string("general.name", "x", length=2**63)), "truncated"),  # a string longer than the file
    (_gguf(_kv_string("general.name", "x", length=2**64 - 1)), "truncated"),  # a "negative" length
    (_gguf(_kv_array("tokenizer.ggml.tokens", 8, 2**60)), "truncated"),  # more strings than the file has bytes
    (_gguf(_kv_array("tokenizer.ggml.scores", 6, 2**62)), "truncated"),  # a scalar array past the end
    (_gguf(_kv_array("nested", 9, 2**40)), "truncated"),  # arrays of arrays, more than fit
    (_gguf(_kv_array("deep", 9, 1, struct.pack("<IQ", 9, 1) * 8)), "nest more than"),  # arrays of arrays of ...
    (_gguf(n_kv=MAX_KEYS + 1), "metadata keys"),
    (_gguf(n_kv=2**64 - 1), "metadata keys"),
    (_gguf(_string("k") + struct.pack("<I", 99)), "unknown metadata value type 99"),
    (_gguf(_kv_string("tokenizer.chat_template", "x" * (MAX_TEMPLATE + 1))), "longer than 1 MiB"),
    (_gguf(n_tensors=1, tail=_string("t") + struct.pack("<I", 2) + struct.pack("<QQ", 2**40, 2**40) + struct.pack("<IQ", 0, 0)), "tensors need"),
    (_gguf(n_tensors=1, tail=_string("t") + struct.pack("<I", 1000)), "dimensions"),
    (_gguf(n_tensors=1, tail=_string("t") + struct.pack("<IQ", 1, 4) + struct.pack("<IQ", 1234, 0)), "ggml type 1234"),
    (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1"),
    (b"GGML" + bytes(20), "not a GGUF file"),
], ids=["string-past-end", "string-negative", "string-array-count", "scalar-array-count", "nested-count", "nesting-depth",
        "too-many-keys", "keys-negative", "unknown-type", "huge-template", "tensor-past-end", "tensor-dims",
        "tensor-type", "old-version", "foreign"])
def test_sizes_the_file_cannot_hold_are_refused(tmp_path: Path, data: bytes, match: str) -> None:
    _refused(tmp_path, data, match)


def test_one_file_type_table_names_every_llama_ftype_and_feeds_the_quantizer() -> None:
    import llama_cpp

    enum = {getattr(llama_cpp, n): n.removeprefix("LLAMA_FTYPE_MOSTLY_").removeprefix("LLAMA_FTYPE_ALL_")
            for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_") and n != "LLAMA_FTYPE_GUESSED"}
    assert {i: filetypes.FILE_TYPES[i] for i in enum} == enum  # same ids, same names, 39-41 included
    assert {t.ftype: n for n, t in QUANT_TYPES.items()} == filetypes.FILE_TYPES
    assert resolve_qtype("q4_k_m").ftype == 15 and resolve_qtype("Q2_0").ftype == 41
    assert filetypes.file_type_name(99) == "type 99" and filetypes.file_type_name(None) is None
    assert not filetypes.is_quantized("BF16") and filetypes.is_quantized("Q8_0") and not filetypes.is_quantized(None)


def test_the_packaged_model_reads_the_same_through_header_and_info(smollm2_gguf: Path) -> None:
    header, info = read_header(smollm2_gguf), read_gguf(smollm2_gguf)
    assert info.file_type == header.file_type_name == "Q4_1" and info.file_type_id == header.file_type == 3
    assert info.is_quantized and header.quantized and info.parameter_count == header.parameter_count
    assert info.vocab_size == header.array_length("tokenizer.ggml.tokens") == 49152
    assert info.token(info.special_token_ids["eos"]) == info.eos_token == "<|im_end|>" and info.is_special("<|im_start|>")
    assert info.kv_bytes_per_token() == 2 * 30 * 3 * 64 * 2 and info.weight_bytes_per_token == header.tensor_bytes  # tied embeddings
