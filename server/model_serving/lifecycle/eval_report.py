"""The eval's result: per version a figure with its interval, per measure the paired difference and a verdict.

A verdict is the candidate's, against the baseline: better, worse, or not distinguishable (the interval, or the exact
test, cannot tell them apart). The decision rule the skill states is computed here once: promote when quality is
better or not distinguishable on every measure and no bench figure is worse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.lifecycle import intervals
from model_serving.lifecycle.eval_perplexity import TextScore
from model_serving.lifecycle.eval_targets import EvalTarget
from model_serving.lifecycle.intervals import Verdict
from model_serving.quantize.quality import ratio_interval

MAX_LISTED_CASES = 50


class Figure(BaseModel):
    value: float | None = None
    interval: list[float] | None = Field(default=None, description="95% interval")
    n: int = 0


class Comparison(BaseModel):
    measure: str
    family: Literal["quality", "bench"]
    candidate: Figure
    baseline: Figure
    difference: float | None = Field(default=None, description="candidate - baseline; perplexity: candidate / baseline")
    difference_interval: list[float] | None = Field(default=None, description="95% paired interval of the difference")
    p_value: float | None = Field(default=None, description="pass/fail: McNemar's exact test")
    method: str
    verdict: Verdict
    note: str = ""


class CaseResult(BaseModel):
    id: str
    kind: str
    candidate_answer: str
    baseline_answer: str
    candidate_passed: bool | None = None
    baseline_passed: bool | None = None
    candidate_score: float | None = None
    baseline_score: float | None = None
    candidate_error: str | None = None
    baseline_error: str | None = None


class BenchFigures(BaseModel):
    """A version's short bench run: the figures behind the bench comparisons."""

    concurrency: int
    completed: int
    failed: int
    request_throughput: float
    request_throughput_interval: list[float] | None = None
    median_ttft_ms: float | None = None
    median_e2el_ms: float | None = None
    p95_e2el_ms: float | None = None


class EvalReport(BaseModel):
    candidate: EvalTarget
    baseline: EvalTarget
    eval_set: str = Field(description="The EVALS.jsonl file, or the built-in quality prompts")
    cases_total: int
    cases_by_kind: dict[str, int]
    sampling: str = Field(description="What both versions were asked with")
    settings_differ: list[str] = Field(default_factory=list, description="Engine settings the two versions do not share")
    comparisons: list[Comparison]
    candidate_bench: BenchFigures | None = None
    baseline_bench: BenchFigures | None = None
    cases: list[CaseResult] = Field(description=f"At most {MAX_LISTED_CASES}: the cases where the versions differ first")
    cases_truncated: bool = False
    quality_verdict: Verdict
    bench_verdict: Verdict
    promote: bool = Field(description="Quality better or not distinguishable, and bench not worse")
    decision: str
    summary: str


def _round(values: Sequence[float] | None, digits: int = 4) -> list[float] | None:
    return [round(v, digits) for v in values] if values is not None else None


def pass_fail(measure: str, candidate: Sequence[bool], baseline: Sequence[bool]) -> Comparison:
    """Pass rates on the same cases: Wilson per version, McNemar exact and Newcombe's paired interval for the difference."""
    n = len(candidate)
    both = sum(c and b for c, b in zip(candidate, baseline, strict=True))
    only_c = sum(c and not b for c, b in zip(candidate, baseline, strict=True))
    only_b = sum(b and not c for c, b in zip(candidate, baseline, strict=True))
    d, low, high = intervals.newcombe_paired(both, only_c, only_b, n - both - only_c - only_b)
    verdict, p = intervals.mcnemar_verdict(only_c, only_b)
    figure = lambda k: Figure(value=round(k / n, 4) if n else None, interval=_round(intervals.wilson(k, n)), n=n)  # noqa: E731
    return Comparison(measure=measure, family="quality", candidate=figure(both + only_c), baseline=figure(both + only_b),
                      difference=round(d, 4), difference_interval=_round([low, high]), p_value=round(p, 5), verdict=verdict,
                      method="Wilson score intervals; McNemar's exact test on the discordant cases decides, Newcombe's paired interval",
                      note=f"{only_c} case(s) pass only on the candidate, {only_b} only on the baseline")


def mean_scores(measure: str, family: Literal["quality", "bench"], candidate: Sequence[float], baseline: Sequence[float], *,
                higher_is_better: bool, digits: int = 4) -> Comparison:
    """Mean per case with a bootstrap interval each, and a paired bootstrap of the differences."""
    paired = intervals.paired_bootstrap(candidate, baseline)

    def figure(values: Sequence[float]) -> Figure:
        mean = sum(values) / len(values) if values else None
        return Figure(value=round(mean, digits) if mean is not None else None, interval=_round(intervals.bootstrap_mean(values), digits), n=len(values))

    if paired is None:
        return Comparison(measure=measure, family=family, candidate=figure(candidate), baseline=figure(baseline), verdict="not measured",
                          method="paired bootstrap", note="fewer than two paired cases")
    d, low, high = paired
    return Comparison(measure=measure, family=family, candidate=figure(candidate), baseline=figure(baseline), difference=round(d, digits),
                      difference_interval=_round([low, high], digits), verdict=intervals.verdict_of(low, high, higher_is_better=higher_is_better),
                      method=f"bootstrap of the mean per version; paired bootstrap over the same {len(candidate)} cases for the difference")


def perplexity(candidate: TextScore, baseline: TextScore, text_name: str) -> Comparison:
    """Lower is better; the ratio's interval pairs the same tokens (same tokenizer) or there is no verdict."""
    def figure(s: TextScore) -> Figure:
        spread = intervals.perplexity_interval(s.token_nll) if s.token_nll else None
        return Figure(value=round(s.perplexity, 4) if s.perplexity is not None else None, interval=_round(spread), n=s.tokens_scored)

    measure = f"perplexity on {text_name}"
    missing = candidate.not_measured or baseline.not_measured
    if missing or candidate.perplexity is None or baseline.perplexity is None:
        return Comparison(measure=measure, family="quality", candidate=figure(candidate), baseline=figure(baseline), verdict="not measured",
                          method=candidate.method, note=missing or "a perplexity was not finite")
    ratio = candidate.perplexity / baseline.perplexity
    spread = None
    if candidate.tokens_sha256 == baseline.tokens_sha256 and candidate.token_nll and baseline.token_nll:
        spread = ratio_interval(baseline.token_nll, candidate.token_nll)
    if spread is None:
        return Comparison(measure=measure, family="quality", candidate=figure(candidate), baseline=figure(baseline), difference=round(ratio, 5),
                          verdict="not measured", method=candidate.method,
                          note="the versions scored different tokens (different tokenizers) or too few: their perplexities do not pair")
    return Comparison(measure=measure, family="quality", candidate=figure(candidate), baseline=figure(baseline), difference=round(ratio, 5),
                      difference_interval=_round(spread, 5), verdict=intervals.verdict_of(spread[0], spread[1], no_change=1.0, higher_is_better=False),
                      method=candidate.method + "; the ratio's interval from a paired bootstrap over 64-token blocks of per-token differences")


def overall(comparisons: Sequence[Comparison], family: str) -> Verdict:
    verdicts = [c.verdict for c in comparisons if c.family == family and c.verdict != "not measured"]
    if not verdicts:
        return "not measured"
    if "worse" in verdicts:
        return "worse"
    return "better" if "better" in verdicts else "not distinguishable"


def decide(quality: Verdict, bench: Verdict, comparisons: Sequence[Comparison]) -> tuple[bool, str]:
    """The promote rule: quality better or not distinguishable, and bench not worse."""
    worse = [c.measure for c in comparisons if c.verdict == "worse"]
    if quality == "not measured":
        return False, "no quality measure could be taken: nothing to decide on"
    if quality == "worse" or bench == "worse":
        return False, "keep the live version: the candidate is worse on " + ", ".join(worse)
    if quality == "better":
        return True, "promote: the candidate is better on quality" + ("" if bench != "not measured" else " (bench not measured)")
    return True, "promote if you want its other changes: quality is not distinguishable and the bench is not worse"


def listed_cases(cases: Sequence[CaseResult]) -> tuple[list[CaseResult], bool]:
    """Cases where the versions differ first, then the rest, at most MAX_LISTED_CASES."""
    def differs(c: CaseResult) -> bool:
        return c.candidate_passed != c.baseline_passed or c.candidate_score != c.baseline_score or c.candidate_answer != c.baseline_answer

    ordered = [c for c in cases if differs(c)] + [c for c in cases if not differs(c)]
    return ordered[:MAX_LISTED_CASES], len(ordered) > MAX_LISTED_CASES


def summary_line(report: dict[str, Any]) -> str:
    measured = [c for c in report["comparisons"] if c.verdict != "not measured"]
    parts = [f"{c.measure} {c.verdict}" for c in measured[:6]]
    return (f"{report['candidate'].ref} vs {report['baseline'].ref} on {report['cases_total']} case(s): quality {report['quality_verdict']}, "
            f"bench {report['bench_verdict']}" + (f" ({'; '.join(parts)})" if parts else "") + f". {report['decision']}.")
