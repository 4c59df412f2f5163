"""Importance matrices: llama-imatrix over a calibration text, then llama-quantize --imatrix (real binaries)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from quant_helpers import cancel_on_message, place

from model_serving import verbs
from model_serving.errors import Cancelled, InputError, PathNotAllowed
from model_serving.jobs import Progress
from model_serving.quantize.imatrix import BUILT_IN, CTX_SIZE
from model_serving.quantize.quantizer import QUANT_TYPES, quantize_gguf, read_header
from model_serving.requests import DeployRequest, QuantizeRequest
from model_serving.settings import Settings
from model_serving.toolchain import tool
from model_serving.util.process import native_argv

# The build the install made for this machine (scripts/install.sh), not the test's fresh home.
NATIVE = Settings.from_env().native_cache
LLAMA_QUANTIZE, LLAMA_IMATRIX = (tool(Settings.from_env(), name) for name in ("llama-quantize", "llama-imatrix"))
needs_native = pytest.mark.skipif(LLAMA_QUANTIZE is None or LLAMA_IMATRIX is None or native_argv("x") is None,
                                  reason="no native llama.cpp build with llama-imatrix and llama-quantize (scripts/install.sh), or no setpriv")


@pytest.fixture
def f16(f16_source: Path, tmp_path: Path) -> Path:  # noqa: F811
    return place(f16_source, tmp_path)


@pytest.fixture
def native(settings: Settings) -> Settings:
    """The test's settings with the machine's native build, so the verbs find its tools."""
    return dataclasses.replace(settings, native_cache=NATIVE)


def quantize(settings: Settings, source: Path, output: Path, qtype: str = "Q2_K_S", **kwargs: object):  # noqa: ANN201
    return verbs.quantize_gguf(settings, QuantizeRequest(input_path=str(source), qtype=qtype, output=str(output), verify=False, **kwargs),
                               Progress())


def matrices(settings: Settings) -> list[Path]:
    return sorted((settings.state_dir / "imatrix").glob("*")) if (settings.state_dir / "imatrix").exists() else []


def test_without_the_native_build_the_refusal_names_the_install(settings: Settings, f16: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-native-build"
    empty.mkdir()
    bare = dataclasses.replace(settings, native_cache=empty)
    for qtype, calibration in (("IQ2_XS", None), ("Q4_K_M", str(BUILT_IN))):
        with pytest.raises(InputError, match="importance matrix.*llama-imatrix and llama-quantize is missing") as refused:
            quantize(bare, f16, tmp_path / f"{qtype}.gguf", qtype, calibration=calibration)
        assert "scripts/install.sh" in refused.value.next_step
    assert not list(tmp_path.glob("*Q*.gguf")) and not matrices(bare)


def test_a_calibration_text_for_a_type_without_matrix_is_refused(settings: Settings, f16: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Q8_0 does not use an importance matrix"):
        quantize_gguf(settings, f16, None, "Q8_0", calibration=BUILT_IN)


@needs_native
@pytest.mark.slow
def test_a_matrix_is_computed_once_and_reused(native: Settings, f16: Path, tmp_path: Path) -> None:
    first = quantize(native, f16, tmp_path / "a-Q2_K_S.gguf")
    assert first.imatrix is not None and not first.imatrix.reused and first.imatrix.calibration == "built-in"
    assert read_header(Path(first.output_path)).file_type == QUANT_TYPES["Q2_K_S"].ftype
    (made,) = matrices(native)
    assert Path(first.imatrix.path) == made
    stamp = made.stat().st_mtime_ns
    second = quantize(native, f16, tmp_path / "b-Q2_K_S.gguf")  # another output of the same input: the cached matrix
    assert second.imatrix is not None and second.imatrix.reused and second.imatrix.imatrix_s == 0
    assert made.stat().st_mtime_ns == stamp and matrices(native) == [made]
    again = quantize(native, f16, tmp_path / "a-Q2_K_S.gguf")
    assert again.skipped and again.imatrix == first.imatrix  # the sidecar recorded the matrix
    # Another calibration is another output: not reused, a second matrix.
    text = tmp_path / "mine.txt"
    text.write_text(BUILT_IN.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    other = quantize(native, f16, tmp_path / "a-Q2_K_S.gguf", calibration=str(text), overwrite=True)
    assert not other.skipped and other.imatrix is not None and other.imatrix.calibration == str(text)
    assert other.imatrix.calibration_sha256 != first.imatrix.calibration_sha256 and len(matrices(native)) == 2


@needs_native
def test_bad_calibration_texts_are_refused(native: Settings, f16: Path, tmp_path: Path) -> None:
    outside = Path("/etc/hostname")
    with pytest.raises(PathNotAllowed):
        quantize(native, f16, tmp_path / "x.gguf", calibration=str(outside))
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"GGUF\0\0\x03\x00" * 200)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 300)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for path, match in ((binary, "not UTF-8 text"), (latin, "not UTF-8 text"), (empty, "too short"), (tmp_path, "not a file")):
        with pytest.raises(InputError, match=match) as refused:
            quantize(native, f16, tmp_path / "x.gguf", calibration=str(path))
        assert refused.value.next_step
    assert not (tmp_path / "x.gguf").exists() and not matrices(native)


@needs_native
def test_a_text_too_short_in_tokens_is_refused_by_llama_imatrix(native: Settings, f16: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("word " * (CTX_SIZE // 2 + 20))  # more characters than the pre-check asks, fewer tokens than two chunks
    with pytest.raises(InputError, match=r"too short \(\d+ tokens\)"):
        quantize(native, f16, tmp_path / "x.gguf", calibration=str(short))
    assert not (tmp_path / "x.gguf").exists() and not matrices(native)
    assert not list((native.state_dir / "imatrix").glob(".*.partial"))


@needs_native
def test_cancel_during_the_matrix_leaves_nothing(native: Settings, f16: Path, tmp_path: Path) -> None:
    target = tmp_path / "c-IQ2_XS.gguf"

    def run(progress: Progress) -> None:
        quantize_gguf(native, f16, target, "IQ2_XS", verify=False, quantizer=LLAMA_QUANTIZE, imatrix_tool=LLAMA_IMATRIX, progress=progress)

    assert isinstance(cancel_on_message(run, "Computing an importance matrix over"), Cancelled)
    folder = native.state_dir / "imatrix"
    assert folder.is_dir() and not list(folder.iterdir())  # neither the matrix nor its partial
    assert not target.exists() and not list(tmp_path.glob(".*.partial"))


@needs_native
def test_the_deploy_plan_says_a_matrix_is_computed(native: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from model_serving.deploy.pipeline import deploy

    result = deploy(native, DeployRequest(source=str(tiny_checkpoint), quant="IQ2_XS", out_dir=str(tmp_path / "d"), target="embedded",
                                          plan_only=True), Progress())
    (step,) = [s for s in result.plan if s.step == "quantize"]
    assert step.action == "run" and "importance matrix" in step.detail and "built-in calibration" in step.detail
    with pytest.raises(InputError, match="quantizes nothing"):
        deploy(native, DeployRequest(source=str(tiny_checkpoint), quant="F16", calibration=str(BUILT_IN), target="embedded", plan_only=True),
               Progress())
