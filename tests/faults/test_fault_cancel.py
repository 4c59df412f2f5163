"""Cancel in each phase (converting, quantizing, verifying): no output, no sidecar, no partial, no process, and the message says what was kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_kit import CONVERTER, QUALITY_CHILD, QUANTIZE_WORKER, BackgroundWork, children_of_ours, partials, wait_for
from quant_helpers import cancel_on_message, place

from model_serving.errors import Cancelled
from model_serving.settings import Settings


def files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if "home" not in p.relative_to(directory).parts)


def _no_children(tmp_path: Path) -> None:
    wait_for(lambda: not children_of_ours(str(tmp_path)), 30, "our children to end")


def test_cancel_while_converting(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from model_serving.checkpoint.export import export_gguf

    work = BackgroundWork(lambda p: export_gguf(settings, str(tiny_checkpoint), str(tmp_path / "tiny-f16.gguf"), progress=p))
    try:
        wait_for(lambda: children_of_ours(str(tmp_path), (CONVERTER,)), 180, "the converter to start")
        assert partials(tmp_path)  # it is writing
    finally:
        work.progress.cancel()
        work.join()
    assert isinstance(work.error, Cancelled) and "no partial output was kept" in work.error.cause
    assert work.error.kept == []
    _no_children(tmp_path)
    assert files(tmp_path) == []


def test_cancel_while_quantizing(settings: Settings, f16_source: Path, tmp_path: Path) -> None:
    from model_serving.quantize.quantizer import quantize_gguf

    f16 = place(f16_source, tmp_path)
    error = cancel_on_message(lambda p: quantize_gguf(settings, f16, None, "Q4_K_M", verify=False, threads=1, progress=p), "Quantizing tensor")
    assert isinstance(error, Cancelled) and error.kept == []
    assert error.cause == f"Quantizing {f16.name} to Q4_K_M was cancelled; no partial output was kept."
    _no_children(tmp_path)
    assert files(tmp_path) == [f16.name]


def test_cancel_while_verifying(settings: Settings, f16_source: Path, tmp_path: Path) -> None:
    """The quantized file is complete but not yet measured: it goes, with its sidecar (it never had the final name)."""
    from model_serving.quantize.quantizer import quantize_gguf

    f16 = place(f16_source, tmp_path)
    seen: list[str] = []

    def run(progress):  # noqa: ANN001, ANN202
        progress.subscribe(lambda f, m: seen.append(m))
        return quantize_gguf(settings, f16, None, "Q8_0", verify=True, threads=2, progress=progress)

    work = BackgroundWork(run)
    try:
        wait_for(lambda: children_of_ours(str(tmp_path), (QUALITY_CHILD,)), 240, "the quality evaluation to start")
        assert not children_of_ours(str(tmp_path), (QUANTIZE_WORKER,))  # quantizing is over: this is the verifying phase
    finally:
        work.progress.cancel()
        work.join()
    assert any(m.startswith("Wrote ") for m in seen)
    assert isinstance(work.error, Cancelled) and work.error.kept == []
    assert "no partial output was kept" in work.error.cause
    _no_children(tmp_path)
    assert files(tmp_path) == [f16.name]  # neither SmolLM2-...-Q8_0.gguf nor its .json


def test_cancel_while_verifying_an_earlier_output_keeps_it_and_says_so(settings: Settings, f16_source: Path, tmp_path: Path) -> None:
    """An output finished by an earlier run (without verification) is not this run's to remove; the message names it."""
    from model_serving.quantize.quantizer import quantize_gguf

    f16 = place(f16_source, tmp_path)
    first = quantize_gguf(settings, f16, None, "Q8_0", verify=False, threads=2)
    output, sidecar = Path(first.output_path), Path(first.sidecar_path)
    work = BackgroundWork(lambda p: quantize_gguf(settings, f16, None, "Q8_0", verify=True, progress=p))
    try:
        wait_for(lambda: children_of_ours(str(tmp_path), (QUALITY_CHILD,)), 240, "the quality evaluation to start")
    finally:
        work.progress.cancel()
        work.join()
    assert isinstance(work.error, Cancelled)
    assert work.error.kept == [str(output), str(sidecar)]
    assert str(output) in work.error.cause and str(sidecar) in work.error.cause
    _no_children(tmp_path)
    assert files(tmp_path) == sorted([f16.name, output.name, sidecar.name])
    assert "quality" not in sidecar.read_text() or '"quality": null' in sidecar.read_text()  # still the unverified record


@pytest.mark.slow
def test_a_verified_output_is_measured_before_it_takes_its_name(settings: Settings, f16_source: Path, tmp_path: Path) -> None:
    """Uncancelled, the same path ends with the output, its sidecar and a report that names the final file, not the partial."""
    from model_serving.jobs import Progress
    from model_serving.quantize.quantizer import QuantizeResult, quantize_gguf

    f16 = place(f16_source, tmp_path)
    seen: list[str] = []
    result = quantize_gguf(settings, f16, None, "Q8_0", verify=True, threads=2, progress=Progress(lambda f, m: seen.append(m)))
    output = Path(result.output_path)
    assert f"Evaluating {output.name}" in seen and not [m for m in seen if ".partial" in m]  # messages name the output
    assert result.quality is not None and result.verdict == result.quality.verdict
    assert result.quality.candidate.path == str(output) and {r.path for r in result.quality.ranking} == {str(f16), str(output)}
    assert QuantizeResult.model_validate_json(Path(result.sidecar_path).read_text()).quality == result.quality
    assert files(tmp_path) == sorted([f16.name, output.name, Path(result.sidecar_path).name])


def test_cancelling_an_overwrite_leaves_the_old_output_and_its_record(settings: Settings, f16_source: Path, tmp_path: Path) -> None:
    from model_serving.quantize.quantizer import QuantizeResult, quantize_gguf

    f16 = place(f16_source, tmp_path)
    target = tmp_path / "model.gguf"
    old = quantize_gguf(settings, f16, target, "Q4_0", verify=False, threads=2)
    before = target.read_bytes()
    error = cancel_on_message(lambda p: quantize_gguf(settings, f16, target, "Q8_0", overwrite=True, verify=False, threads=1, progress=p),
                              "Quantizing tensor")
    assert isinstance(error, Cancelled) and error.kept == []
    assert target.read_bytes() == before  # replaced only by a finished, checked output
    assert QuantizeResult.model_validate_json(Path(old.sidecar_path).read_text()).qtype == "Q4_0"  # the record still describes it
    assert files(tmp_path) == sorted([f16.name, target.name, Path(old.sidecar_path).name])


def test_job_cancel_while_verifying_answers_what_was_kept(settings: Settings, f16_source: Path, tmp_path: Path) -> None:
    """The MCP path: job_cancel during the quality comparison; the job's error says nothing was kept, and nothing was."""
    from model_serving.jobs import JobManager
    from model_serving.quantize.quantizer import quantize_gguf

    f16 = place(f16_source, tmp_path)
    manager = JobManager(settings.state_dir)
    job = manager.submit("quantize", lambda p: quantize_gguf(settings, f16, None, "Q8_0", verify=True, threads=2, progress=p))
    wait_for(lambda: children_of_ours(str(tmp_path), (QUALITY_CHILD,)), 240, "the quality evaluation to start")
    info = manager.cancel(job.id, wait=120)
    assert info.status == "cancelled"
    assert info.error is not None and info.error["cause"] == f"Quantizing {f16.name} to Q8_0 was cancelled; no partial output was kept."
    _no_children(tmp_path)
    assert files(tmp_path) == [f16.name]
