"""Hostile files against every parser of untrusted input: our InputError or a valid parse, nothing else.

Each parser gets real files, mutated: the packaged SmolLM2 GGUF's header (its vocabulary cut short so a
case parses in milliseconds, plus the full-size header for the big-count paths), a safetensors file
written by the safetensors library with the config.json beside it, a peft-shaped adapter_config.json,
and the Modelfiles our registration writes. Mutations: truncation at any offset, byte flips, spliced
bytes, length and count fields replaced by huge or "negative" values, and wrong types in JSON.

Each case runs under a hard alarm (a hang fails the case instead of the run) and tracemalloc: no case
may allocate more than its input file plus a fixed slack, so a length field cannot make a parser
allocate what the file does not hold. The quick tests run 100 cases per parser; the slow ones 2,000.
"""

from __future__ import annotations

import itertools
import json
import mmap
import signal
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from lora_fixtures import adapter_files as adapter_folder

from model_serving.checkpoint.inspect import inspect_checkpoint, safetensors_header
from model_serving.errors import InputError
from model_serving.gguf import info as gguf_info
from model_serving.gguf.header import read_header
from model_serving.serve.ollama.modelfile import Modelfile, parse

SLACK = 1 << 20  # interpreter noise and small fixed structures; anything sized by the input must fit in the file
CASE_LIMIT_S = 30  # a case that runs this long is a hang, whatever the machine's load
QUICK, SLOW = 100, 2000
HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large, HealthCheck.large_base_example]


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=timedelta(seconds=10), suppress_health_check=HEALTH, derandomize=examples == QUICK)


class Hang(BaseException):  # not an Exception: no parser's except clause may swallow it
    pass


@contextmanager
def bounded(file_bytes: int) -> Iterator[None]:
    """Fail the case if it runs past CASE_LIMIT_S or its allocations peak above the file size plus SLACK."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"a case ran past {CASE_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT_S)
    tracemalloc.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < file_bytes + SLACK, f"allocated {peak} bytes for a {file_bytes}-byte input"


def outcome(call: Callable[[], Any], file_bytes: int) -> Any:
    """The parse, or None for our InputError; any other exception fails the case."""
    with bounded(file_bytes):
        try:
            result = call()
        except InputError as exc:
            assert exc.cause and exc.next_step, "an InputError must say what is wrong and what to do"
            _event("InputError")
            return None
    _event("parsed")
    return result


def _event(name: str) -> None:
    if currently_in_test_context():  # the outcome mix shows with --hypothesis-show-statistics
        event(name)


_names = itertools.count()


def fresh(directory: Path, suffix: str) -> Path:
    # a new name per case: the GGUF reader caches by path, size and mtime, which one tick could repeat
    return directory / f"case-{next(_names)}{suffix}"


# ---------------------------------------------------------------- byte mutations

HUGE_U64 = [0, 1, 7, 2**31 - 1, 2**32, 2**32 + 1, 2**40, 2**63 - 1, 2**63, 2**64 - 1, 2**64 - 2, 2**64 - 2**31]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, u64_fields: list[int] = (), u32_fields: list[int] = (),
            payloads: list[tuple[int, int]] = ()) -> bytes:
    """`seed` after one to three mutations: truncate, flip, splice, overwrite a length/count/type field,
    or overwrite bytes inside a string's payload (the file stays well-formed; its text does not)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "splice", "u64", "u32", "payload"]))
        if kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "splice":
            i = draw(st.integers(0, len(data)))
            data[i:i + draw(st.integers(0, 16))] = draw(st.binary(max_size=16))
        elif kind == "u64" and u64_fields:
            at = draw(st.sampled_from(u64_fields))
            value = draw(st.one_of(st.sampled_from(HUGE_U64 + [len(seed), len(seed) + 1]), st.integers(0, 2**64 - 1)))
            data[at:at + 8] = value.to_bytes(8, "little")[: max(0, len(data) - at)]
        elif kind == "u32" and u32_fields:
            at = draw(st.sampled_from(u32_fields))
            value = draw(st.one_of(st.integers(0, 40), st.sampled_from([2**31 - 1, 2**32 - 1])))
            data[at:at + 4] = value.to_bytes(4, "little")[: max(0, len(data) - at)]
        elif kind == "payload" and payloads:
            start, end = draw(st.sampled_from(payloads))
            at = draw(st.integers(start, end - 1))
            chunk = draw(st.binary(min_size=1, max_size=4))[: max(0, min(end, len(data)) - at)]
            data[at:at + len(chunk)] = chunk
    return bytes(data)


# ---------------------------------------------------------------- GGUF seeds

_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _u64(data: bytes, at: int) -> int:
    return struct.unpack_from("<Q", data, at)[0]


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


@dataclass
class Walk:
    """A valid GGUF's layout, for building seeds and aiming mutations at its fields."""

    kvs: list[tuple[int, int, int, int]]  # (start, value start, end, value type)
    tensors: list[tuple[int, int, int, int]]  # (start, end, data offset, data bytes)
    end: int
    u64_fields: list[int]
    u32_fields: list[int]
    payloads: list[tuple[int, int]]  # (start, end) of non-empty string payloads


def _skip(data: bytes, pos: int, vtype: int, walk: Walk, record: bool = True) -> int:
    """The end of one value; `record` notes its length/count fields (arrays: for their first items only)."""
    if vtype in _SCALAR_SIZE:
        return pos + _SCALAR_SIZE[vtype]
    if vtype == 8:
        length = _u64(data, pos)
        if record:
            walk.u64_fields.append(pos)
            walk.payloads.extend([(pos + 8, pos + 8 + length)] if length else [])
        return pos + 8 + length
    item, count = _u32(data, pos), _u64(data, pos + 4)
    if record:
        walk.u32_fields.append(pos)
        walk.u64_fields.append(pos + 4)
    pos += 12
    if item in _SCALAR_SIZE:
        return pos + count * _SCALAR_SIZE[item]
    for n in range(count):
        pos = _skip(data, pos, item, walk, record and n < 3)
    return pos


def walk_gguf(data: Any) -> Walk:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    walk = Walk([], [], 0, [8, 16], [4], [])
    pos = 24
    for _ in range(_u64(data, 16)):
        start = pos
        walk.u64_fields.append(pos)
        pos += 8 + _u64(data, pos)
        vtype = _u32(data, pos)
        walk.u32_fields.append(pos)
        end = _skip(data, pos + 4, vtype, walk)
        walk.kvs.append((start, pos + 4, end, vtype))
        pos = end
    for _ in range(_u64(data, 8)):
        start = pos
        walk.u64_fields.append(pos)
        pos += 8 + _u64(data, pos)
        dims = [_u64(data, pos + 4 + 8 * i) for i in range(_u32(data, pos))]
        walk.u32_fields.append(pos)
        walk.u64_fields.extend(pos + 4 + 8 * i for i in range(len(dims)))
        pos += 4 + 8 * len(dims)
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(_u32(data, pos))]
        walk.u32_fields.append(pos)
        walk.u64_fields.append(pos + 4)
        walk.tensors.append((start, pos + 12, _u64(data, pos + 4), int(np.prod(dims)) // block * size))
        pos += 12
    walk.end = pos
    return walk


def shrink_gguf(data: Any, items: int, tensor_budget: int) -> bytes:
    """The same GGUF with every metadata array cut to `items` items and only the tensors (with their
    data) that fit in `tensor_budget` bytes: still a valid file, with SmolLM2's own keys and values."""
    walk = walk_gguf(data)
    out = bytearray(data[:24])
    for start, value_start, end, vtype in walk.kvs:
        if vtype != 9 or _u64(data, value_start + 4) <= items:
            out += data[start:end]
            continue
        item = _u32(data, value_start)
        pos = value_start + 12
        for _ in range(items):
            pos += _SCALAR_SIZE[item] if item in _SCALAR_SIZE else 8 + _u64(data, pos)
        out += data[start:value_start + 4] + items.to_bytes(8, "little") + data[value_start + 12:pos]
    data_start = -(-walk.end // 32) * 32
    kept = sorted(walk.tensors, key=lambda t: t[2])[1:]  # the first (the embedding table) is the largest
    base, chosen = kept[0][2], []
    for tensor in kept:
        if tensor[2] + tensor[3] - base > tensor_budget:
            break
        chosen.append(tensor)
    for start, end, offset, _ in chosen:
        out += data[start:end - 8] + (offset - base).to_bytes(8, "little")
    struct.pack_into("<Q", out, 8, len(chosen))
    out += bytes(-len(out) % 32)
    last = max(t[2] + t[3] for t in chosen)
    return bytes(out + data[data_start + base:data_start + last])


@dataclass(frozen=True)
class Seed:
    data: bytes
    u64_fields: list[int]
    u32_fields: list[int]
    payloads: list[tuple[int, int]]


@pytest.fixture(scope="module")
def gguf_seeds(smollm2_gguf: Path) -> dict[str, Seed]:
    with smollm2_gguf.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as whole:
        small = shrink_gguf(whole, items=512, tensor_budget=256 << 10)
        header_bytes = whole[: 4 << 20]  # the header is about 2 MB; tensor data follows
    small_walk, full_walk = walk_gguf(small), walk_gguf(header_bytes)
    return {"small": Seed(small, small_walk.u64_fields, small_walk.u32_fields, small_walk.payloads),
            "header": Seed(header_bytes, full_walk.u64_fields, full_walk.u32_fields, full_walk.payloads)}


def test_gguf_seeds_are_real_and_valid(gguf_seeds: dict[str, Seed], tmp_path: Path) -> None:
    path = fresh(tmp_path, ".gguf")
    path.write_bytes(gguf_seeds["small"].data)
    info = gguf_info.read_gguf(path)
    assert info.architecture == "llama" and info.vocab_size == 512 and info.chat_template and info.eos_token == "<|im_end|>"
    assert info.parameter_count > 0 and info.special_tokens[1] == "<|im_start|>"
    path.write_bytes(gguf_seeds["header"].data)
    with pytest.raises(InputError, match="truncated"):
        read_header(path)


def _gguf_case(tmp_path: Path, data: bytes) -> None:
    path = fresh(tmp_path, ".gguf")
    path.write_bytes(data)
    try:
        info = outcome(lambda: gguf_info.read_gguf(path), len(data))
        if info is not None:
            assert info.size_bytes == len(data) and info.parameter_count >= 0
            assert info.vocab_size is None or info.vocab_size * 8 <= len(data)
    finally:
        path.unlink()


def _gguf_test(name: str, examples: int) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(data=st.data())
    def run(gguf_seeds: dict[str, Seed], tmp_path: Path, data: st.DataObject) -> None:
        seed = gguf_seeds[name]
        _gguf_case(tmp_path, data.draw(mutated(seed.data, seed.u64_fields, seed.u32_fields, seed.payloads)))
    return run


test_gguf_quick = _gguf_test("small", QUICK)
test_gguf_full_header_quick = _gguf_test("header", 20)
test_gguf_slow = pytest.mark.slow(_gguf_test("small", SLOW))
test_gguf_full_header_slow = pytest.mark.slow(_gguf_test("header", 200))


# ---------------------------------------------------------------- safetensors and config.json

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
          "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256,
          "max_position_embeddings": 2048, "torch_dtype": "float32", "eos_token_id": [2, 3], "bos_token_id": 1,
          "text_config": None, "quantization_config": None, "head_dim": 16}
JSON_WRONG = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def safetensors_seed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {"model.embed_tokens.weight": rng.standard_normal((256, 64)).astype(np.float32),
               "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((64, 64)).astype(np.float16),
               "model.layers.0.input_layernorm.weight": np.ones(64, dtype=np.float32),
               "model.rotary.inv_freq": np.arange(8, dtype=np.int64)}
    path = tmp_path_factory.mktemp("safetensors") / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path.read_bytes()


@st.composite
def json_mutated(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one entry somewhere inside replaced by a wrong-typed value, or removed."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if draw(st.integers(0, 4)) == 0:
            del out[key]
        else:
            out[key] = draw(json_mutated(value[key]))
        return out
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], draw(json_mutated(value[i])), *value[i + 1:]]
    return draw(JSON_WRONG)


def _with_header(seed: bytes, header: Any) -> bytes:
    length = _u64(seed, 0)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + seed[8 + length:]


@st.composite
def checkpoint_files(draw: st.DrawFn, seed: bytes) -> tuple[bytes, bytes]:
    """(model.safetensors, config.json), one of them made hostile."""
    config = json.dumps(CONFIG).encode()
    kind = draw(st.sampled_from(["bytes", "header", "config", "config-bytes"]))
    if kind == "bytes":
        return draw(mutated(seed, [0])), config
    if kind == "header":
        header = json.loads(seed[8:8 + _u64(seed, 0)])
        return _with_header(seed, draw(json_mutated(header))), config
    if kind == "config":
        return seed, json.dumps(draw(json_mutated(CONFIG))).encode()
    return seed, draw(mutated(config))


def _checkpoint_case(directory: Path, weights: bytes, config: bytes) -> None:
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "config.json").write_bytes(config)
    size = len(weights) + len(config)
    header = outcome(lambda: safetensors_header(directory / "model.safetensors"), len(weights))
    info = outcome(lambda: inspect_checkpoint(directory), size)
    if info is not None:
        assert info.kind == "hf_checkpoint" and (info.parameter_count or 0) >= 0
    if header is not None:
        assert all(isinstance(v, dict) for k, v in header.items() if k != "__metadata__")


def _checkpoint_test(examples: int) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(data=st.data())
    def run(safetensors_seed: bytes, tmp_path: Path, data: st.DataObject) -> None:
        weights, config = data.draw(checkpoint_files(safetensors_seed))
        _checkpoint_case(tmp_path, weights, config)
    return run


test_checkpoint_quick = _checkpoint_test(QUICK)
test_checkpoint_slow = pytest.mark.slow(_checkpoint_test(SLOW))


def test_safetensors_seed_parses_and_a_missing_data_offsets_is_refused(safetensors_seed: bytes, tmp_path: Path) -> None:
    _checkpoint_case(tmp_path, safetensors_seed, json.dumps(CONFIG).encode())
    info = inspect_checkpoint(tmp_path)
    assert info.parameter_count == 256 * 64 + 64 * 64 + 64 + 8 and info.eos_token_ids == [2, 3]
    header = json.loads(safetensors_seed[8:8 + _u64(safetensors_seed, 0)])
    del header["model.layers.0.input_layernorm.weight"]["data_offsets"]
    (tmp_path / "model.safetensors").write_bytes(_with_header(safetensors_seed, header))
    with pytest.raises(InputError, match="data_offsets"):
        inspect_checkpoint(tmp_path)


# ---------------------------------------------------------------- adapter_config.json

ADAPTER = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
           "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
           "layers_to_transform": None, "lora_alpha": 16, "lora_dropout": 0.05, "modules_to_save": None, "peft_type": "LORA",
           "r": 8, "rank_pattern": {}, "revision": None, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM",
           "use_dora": False, "use_rslora": False}
HOSTILE_JSON = [b"[" * 100_000 + b"]" * 100_000, b'{"r": ' + b"9" * 5000 + b"}", b"\xff\xfe{}", b"", b"null", b'"text"',
                b'{"base_model_name_or_path": ["a", "b"]}', b'{"base_model_name_or_path": 1e999}']


@st.composite
def adapter_files(draw: st.DrawFn) -> bytes:
    text = json.dumps(ADAPTER, indent=2).encode()
    kind = draw(st.sampled_from(["bytes", "json", "hostile"]))
    if kind == "bytes":
        return draw(mutated(text))
    if kind == "json":
        return json.dumps(draw(json_mutated(ADAPTER))).encode()
    return draw(st.sampled_from(HOSTILE_JSON))


def _adapter_case(directory: Path, text: bytes) -> None:
    (directory / "adapter_config.json").write_bytes(text)
    info = outcome(lambda: inspect_checkpoint(directory), len(text))
    if info is not None:
        assert info.kind == "lora_adapter"
        assert info.adapter_base_model is None or isinstance(info.adapter_base_model, str)


def _adapter_test(examples: int) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(text=adapter_files())
    def run(tmp_path: Path, text: bytes) -> None:
        _adapter_case(tmp_path, text)
    return run


test_adapter_quick = _adapter_test(QUICK)
test_adapter_slow = pytest.mark.slow(_adapter_test(SLOW))


def test_adapter_seed_is_detected(tmp_path: Path) -> None:
    adapter_folder(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps(ADAPTER), encoding="utf-8")
    assert inspect_checkpoint(tmp_path).adapter_base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


# ---------------------------------------------------------------- Modelfiles

GO_CHATML = ('{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n'
             '<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ if and $last (ne .Role "assistant") }}<|im_start|>assistant\n{{ end }}'
             '{{- end }}')
MODELFILES = [
    Modelfile(from_="/models/SmolLM2-135M-Instruct.Q4_1.gguf",
              parameters=[("num_ctx", 8192), ("stop", "<|im_end|>"), ("stop", "<|im_start|>"), ("temperature", 0.2), ("top_p", 0.9)],
              template=GO_CHATML, system="You are a concise assistant.", license=["apache-2.0"]),
    Modelfile(from_="/models/base-F16.gguf", adapter="/models/lora.gguf", parameters=[("num_ctx", 2048), ("use_mmap", False), ("seed", -1)],
              messages=[("user", "Hi"), ("assistant", 'He said "hello"\nand left.'), ("system", " padded ")],
              license=["MIT License\n\nCopyright (c) the authors", "second licence"], requires="0.30.0"),
    Modelfile(from_="smol:latest"),
]
INTERESTING = ['"""', '"', "\n", " ", "#", "\x00", "\r", "\r\n", "\t", "PARAMETER ", "MESSAGE ", "FROM ", "TEMPLATE ", "9" * 5000,
               "-1", "nan", "inf", "1e999", "1_000", "\u00e9", "\U0001f600", "\ufffd", "num_ctx", "stop", "true"]


@st.composite
def modelfile_texts(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(MODELFILES)).render()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "insert", "delete", "duplicate-line", "replace"]))
        i = draw(st.integers(0, len(text)))
        if kind == "truncate":
            text = text[:i]
        elif kind == "insert":
            text = text[:i] + draw(st.one_of(st.sampled_from(INTERESTING), st.text(max_size=8))) + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 40)):]
        elif kind == "duplicate-line":
            lines = text.split("\n")
            j = draw(st.integers(0, len(lines) - 1))
            text = "\n".join([*lines[:j + 1], lines[j], *lines[j + 1:]])
        else:
            text = text[:i] + draw(st.sampled_from(INTERESTING)) + text[i + 1:]
    return text


def _modelfile_case(text: str) -> None:
    mf = outcome(lambda: parse(text), len(text.encode("utf-8", "surrogatepass")))
    if mf is not None:
        assert mf.from_
        assert parse(mf.render()) == mf if _renderable(mf) else True


def _renderable(mf: Modelfile) -> bool:
    try:
        mf.render()
    except InputError:
        return False
    return True


def _modelfile_test(examples: int) -> Callable[..., None]:
    @fuzz_settings(examples)
    @given(text=modelfile_texts())
    def run(text: str) -> None:
        _modelfile_case(text)
    return run


test_modelfile_quick = _modelfile_test(QUICK)
test_modelfile_slow = pytest.mark.slow(_modelfile_test(SLOW))


@pytest.mark.parametrize("index", range(len(MODELFILES)))
def test_the_modelfiles_we_write_read_back_unchanged(index: int) -> None:
    mf = MODELFILES[index]
    assert parse(mf.render()) == mf
