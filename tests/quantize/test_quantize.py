"""quantize_gguf on real files: SmolLM2-135M dequantized to F16, then quantized by llama.cpp."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from quant_helpers import cancel_on_message, place, write_unloadable_gguf

from model_serving.errors import Cancelled, InputError, PathNotAllowed, ServingError
from model_serving.jobs import Progress
from model_serving.quantize.quantizer import QUANT_TYPES, default_output, quantize_gguf, read_header, resolve_qtype
from model_serving.settings import Settings

# Bits per weight are file bytes * 8 / parameters. SmolLM2's 576-wide rows do not fit the 256-value
# K-quant blocks, so llama.cpp falls back to Q5_0/Q8_0 for most of Q4_K_M's tensors: wide bands.
BPW_BANDS = {"Q8_0": (8.0, 9.5), "Q4_K_M": (4.5, 7.0), "Q4_0": (4.2, 6.0)}


def gguf_file_type(path: Path) -> int:
    """general.file_type read by the gguf package's own reader, independent of our header walk."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def files(directory: Path) -> list[str]:
    """Everything in a test's directory except the settings' home."""
    return sorted(p.name for p in directory.iterdir() if p.name != "home")


@pytest.fixture
def f16(f16_source: Path, tmp_path: Path) -> Path:  # noqa: F811
    return place(f16_source, tmp_path)


@pytest.mark.parametrize("requested", ["Q8_0", "q4_k_m", "Q4_0"])
def test_quantizes_f16_to_each_type(settings: Settings, f16: Path, requested: str) -> None:
    seen: list[tuple[float, str]] = []
    result = quantize_gguf(settings, f16, None, requested, verify=False, threads=2, progress=Progress(lambda f, m: seen.append((f, m))))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the bar only moves forward, and finishes
    n = read_header(f16).tensor_count
    assert any(m.startswith(f"Quantizing tensor {n}/{n} ") for _, m in seen)  # driven by llama.cpp's own per-tensor lines
    qtype = QUANT_TYPES[requested.upper()]
    output = Path(result.output_path)
    assert output == f16.with_name(f"SmolLM2-135M-Instruct-{qtype.name}.gguf")  # the -f16 suffix is replaced
    assert gguf_file_type(output) == qtype.ftype
    assert result.qtype == qtype.name and result.input_file_type == "F16" and not result.requantized
    assert result.output_size_bytes == output.stat().st_size < f16.stat().st_size
    low, high = BPW_BANDS[qtype.name]
    assert low <= result.bits_per_weight <= high
    assert 15.9 <= result.input_bits_per_weight <= 16.5
    assert result.parameter_count == read_header(f16).parameter_count > 100_000_000
    assert result.output_sha256 == hashlib.sha256(output.read_bytes()).hexdigest()
    assert result.input_sha256 == hashlib.sha256(f16.read_bytes()).hexdigest()
    assert result.verdict == "unverified" and result.quality is None and not result.skipped
    assert sum(result.tensor_types.values()) == read_header(output).tensor_count
    assert Path(result.sidecar_path).exists()
    assert not [n for n in os.listdir(f16.parent) if n.endswith(".partial")]


def test_header_walk_agrees_with_gguf_reader(smollm2_gguf: Path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(smollm2_gguf)
    header = read_header(smollm2_gguf)
    assert header.file_type == gguf_file_type(smollm2_gguf) == QUANT_TYPES["Q4_1"].ftype
    assert header.tensor_count == len(reader.tensors)
    assert header.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    assert header.tensor_types == counts
    assert header.architecture == "llama" and header.quantized


def test_refuses_quantized_input_unless_allowed(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    q41 = place(smollm2_gguf, tmp_path)
    with pytest.raises(InputError, match="already quantized") as err:
        quantize_gguf(settings, q41, None, "Q4_0", verify=False)
    assert "allow_requantize" in err.value.next_step
    assert not (tmp_path / "SmolLM2-135M-Instruct-Q4_0.gguf").exists()
    result = quantize_gguf(settings, q41, None, "Q8_0", allow_requantize=True, verify=False, threads=2)
    assert result.requantized and result.input_file_type == "Q4_1"
    assert Path(result.output_path).name == "SmolLM2-135M-Instruct-Q8_0.gguf"  # the .Q4_1 suffix is replaced
    assert gguf_file_type(Path(result.output_path)) == QUANT_TYPES["Q8_0"].ftype


def test_unknown_and_imatrix_types_are_refused(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "never-read.gguf"  # the type is checked before the file is read
    missing.write_bytes(b"GGUF")
    with pytest.raises(InputError, match="Unknown quantization type 'Q9_9'") as err:
        quantize_gguf(settings, missing, None, "Q9_9")
    for name in ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS"):
        assert name in err.value.next_step
    with pytest.raises(InputError, match="importance matrix") as refused:  # no native build under the test's home
        quantize_gguf(settings, missing, None, "iq2_xs")
    assert "scripts/install.sh" in refused.value.next_step
    assert resolve_qtype("q4_k").name == "Q4_K_M" and resolve_qtype(" q6_k ").name == "Q6_K"


def test_truncated_gguf(settings: Settings, f16_source: Path, tmp_path: Path) -> None:  # noqa: F811
    data = f16_source.read_bytes()
    in_header = tmp_path / "cut-header.gguf"
    in_header.write_bytes(data[:200_000])  # stops inside the vocabulary
    in_tensors = tmp_path / "cut-tensors.gguf"
    in_tensors.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated: its header ends"):
        quantize_gguf(settings, in_header, None, "Q8_0")
    with pytest.raises(InputError, match="truncated: its tensors need"):
        quantize_gguf(settings, in_tensors, None, "Q8_0")
    assert files(tmp_path) == ["cut-header.gguf", "cut-tensors.gguf"]


def test_not_a_gguf(settings: Settings, tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(InputError, match="not a GGUF file"):
        quantize_gguf(settings, text, None, "Q8_0")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**40).to_bytes(8, "little") + bytes(16))
    with pytest.raises(InputError, match="not a valid GGUF"):
        quantize_gguf(settings, corrupt, None, "Q8_0")
    with pytest.raises(InputError, match="does not exist"):
        quantize_gguf(settings, tmp_path / "absent.gguf", None, "Q8_0")


def test_paths_outside_roots(settings: Settings, f16: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(PathNotAllowed):
        quantize_gguf(settings, outside / "x.gguf", None, "Q8_0")
    with pytest.raises(PathNotAllowed):
        quantize_gguf(settings, f16, outside / "out.gguf", "Q8_0")
    (f16.parent / "link.gguf").symlink_to(outside / "target.gguf")
    with pytest.raises(PathNotAllowed):  # a symlink inside the root that points out is refused too
        quantize_gguf(settings, f16, f16.parent / "link.gguf", "Q8_0")
    assert not list(outside.iterdir())


def test_existing_output_needs_overwrite(settings: Settings, f16: Path) -> None:
    target = f16.with_name("mine.gguf")
    target.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists") as err:
        quantize_gguf(settings, f16, target, "Q4_0", verify=False)
    assert "--replace" in err.value.next_step
    assert target.read_bytes() == b"keep me"
    with pytest.raises(InputError, match="input file itself"):
        quantize_gguf(settings, f16, f16, "Q4_0", verify=False, overwrite=True)
    result = quantize_gguf(settings, f16, target, "Q4_0", verify=False, overwrite=True, threads=2)
    assert gguf_file_type(target) == QUANT_TYPES["Q4_0"].ftype and result.output_path == str(target)


def test_resume_skips_matching_output(settings: Settings, f16: Path) -> None:
    first = quantize_gguf(settings, f16, None, "Q4_0", verify=False, threads=2)
    output = Path(first.output_path)
    stamp = output.stat().st_mtime_ns
    again = quantize_gguf(settings, f16, None, "q4_0", verify=False)
    assert again.skipped and not first.skipped
    assert again.output_sha256 == first.output_sha256 and output.stat().st_mtime_ns == stamp
    # both hashes are remembered by file stat, so the next type from this F16 does not read it again
    cache = json.loads((settings.state_dir / "sha256-cache.json").read_text())
    assert cache[str(f16)]["sha256"] == first.input_sha256 and cache[str(output)]["sha256"] == first.output_sha256
    # a different type for the same output name is not the recorded result
    with pytest.raises(InputError, match="not made from this input as Q8_0"):
        quantize_gguf(settings, f16, output, "Q8_0", verify=False)
    # a changed output no longer matches its record: refused, not silently reused
    with output.open("r+b") as fh:
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\x01" * 8)
    with pytest.raises(InputError, match="already exists"):
        quantize_gguf(settings, f16, None, "Q4_0", verify=False)


def test_cancel_mid_run_leaves_nothing(settings: Settings, f16: Path) -> None:
    error = cancel_on_message(lambda progress: quantize_gguf(settings, f16, None, "Q4_K_M", verify=False, threads=1, progress=progress),
                              "Quantizing tensor", wait_s=120, join_s=60)
    assert isinstance(error, Cancelled)
    assert files(f16.parent) == [f16.name]  # no output, partial or sidecar


def test_quantizer_failure_reports_its_output(settings: Settings, tmp_path: Path) -> None:
    path = write_unloadable_gguf(tmp_path / "alien-f16.gguf")
    with pytest.raises(ServingError, match="quantizer exited with code") as err:
        quantize_gguf(settings, path, None, "Q8_0", verify=False)
    assert "alienarch" in err.value.detail or "architecture" in err.value.detail
    assert files(tmp_path) == ["alien-f16.gguf"]


def test_default_output_names() -> None:
    assert default_output(Path("/m/model-f16.gguf"), "Q8_0") == Path("/m/model-Q8_0.gguf")
    assert default_output(Path("/m/model-BF16.gguf"), "Q4_K_M") == Path("/m/model-Q4_K_M.gguf")
    assert default_output(Path("/m/model.Q4_1.gguf"), "F16") == Path("/m/model-F16.gguf")
    assert default_output(Path("/m/model.gguf"), "Q6_K") == Path("/m/model-Q6_K.gguf")
    assert default_output(Path("/m/f16.gguf"), "Q8_0") == Path("/m/f16-Q8_0.gguf")


def test_the_worker_speaks_the_child_protocol(f16: Path, tmp_path: Path) -> None:
    """Its failures come back as `error` messages (util/child.py) with a cause and a next step, its success as `result`."""
    import subprocess
    import sys

    from model_serving.quantize import worker
    from model_serving.util import child

    def run(*args: str) -> tuple[int, list[child.Message]]:
        proc = subprocess.run([sys.executable, "-P", worker.__file__, *args], capture_output=True, text=True, timeout=300)
        return proc.returncode, [m for m in child.read(proc.stdout.splitlines()) if m.kind != child.LOG]

    code, said = run("only", "two")
    assert code == 2 and said[-1].kind == "error" and "6 arguments" in said[-1].get("cause") and said[-1].get("next_step")
    code, said = run(str(f16), str(tmp_path / "x.gguf"), "Q9_9", "7", "1", "0")
    assert code == 3 and said[-1].kind == "error" and "does not offer Q9_9" in said[-1].get("cause")
    code, said = run(str(f16), str(tmp_path / "q.gguf"), "Q8_0", str(QUANT_TYPES["Q8_0"].ftype), "1", "0")
    assert code == 0 and said == [child.Message("result", {"output": str(tmp_path / "q.gguf"), "ftype": QUANT_TYPES["Q8_0"].ftype})]
