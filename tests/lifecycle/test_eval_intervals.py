"""The interval logic of `eval`, against published values and against its own definitions."""

from __future__ import annotations

import math

import pytest

from model_serving.lifecycle import intervals
from model_serving.lifecycle.eval_perplexity import TextScore
from model_serving.lifecycle.eval_report import decide, mean_scores, overall, pass_fail, perplexity


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Stat Med 17:857, table I: 81/263 -> 0.2553 to 0.3662; 0/10 -> 0 to 0.2775
    low, high = intervals.wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert (intervals.wilson(0, 10)[0], round(intervals.wilson(0, 10)[1], 4)) == (0.0, 0.2775)
    assert intervals.wilson(10, 10)[1] == 1.0 and round(intervals.wilson(10, 10)[0], 4) == 0.7225


def test_mcnemar_exact_is_the_binomial_tail_of_the_discordant_cases() -> None:
    # 6 vs 16 discordant pairs (Fagerland, Lydersen & Laake, ch. 8: Cavo et al.): exact conditional p = 0.0525
    assert round(intervals.mcnemar_exact(6, 16), 4) == 0.0525
    assert intervals.mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2**10)
    assert intervals.mcnemar_exact(0, 0) == 1.0 and intervals.mcnemar_exact(5, 5) == 1.0
    assert intervals.mcnemar_exact(16, 6) == intervals.mcnemar_exact(6, 16)


def test_newcombe_paired_interval_matches_the_published_example() -> None:
    # the same table [[59, 6], [16, 80]]: difference -0.0621, 95% CI -0.1186 to -0.0046
    d, low, high = intervals.newcombe_paired(59, 6, 16, 80)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (-0.0621, -0.1186, -0.0046)
    d2, low2, high2 = intervals.newcombe_paired(59, 16, 6, 80)  # swapping the versions mirrors the interval
    assert (d2, low2, high2) == pytest.approx((-d, -high, -low))


def test_identical_results_give_no_difference_and_no_verdict() -> None:
    same = [True, False, True, True, False, True, False, True]
    c = pass_fail("pass rate: contains", same, same)
    assert c.difference == 0.0 and c.difference_interval is not None and c.difference_interval[0] < 0 < c.difference_interval[1]
    assert c.p_value == 1.0 and c.verdict == "not distinguishable"
    assert c.candidate.value == c.baseline.value == 0.625
    assert c.candidate.interval == [round(v, 4) for v in intervals.wilson(5, 8)]


def test_a_clear_pass_rate_gap_is_better_or_worse() -> None:
    better, worse = [True] * 12 + [False] * 8, [False] * 20
    assert pass_fail("x", better, worse).verdict == "better"
    c = pass_fail("x", worse, better)
    assert c.verdict == "worse" and c.p_value == pytest.approx(intervals.mcnemar_exact(0, 12), abs=1e-5) and c.difference == -0.6


def test_bootstrap_intervals_hold_the_mean_and_pair_the_cases() -> None:
    values = [0.1, 0.4, 0.35, 0.8, 0.55, 0.2, 0.9, 0.6]
    low, high = intervals.bootstrap_mean(values)  # type: ignore[misc]
    assert low < sum(values) / len(values) < high
    assert intervals.bootstrap_mean(values) == intervals.bootstrap_mean(values)  # seeded
    shifted = [v + 0.3 for v in values]
    d, dl, dh = intervals.paired_bootstrap(shifted, values)  # type: ignore[misc]
    assert d == pytest.approx(0.3) and dl == pytest.approx(0.3) and dh == pytest.approx(0.3)  # the pairing removes the spread
    assert intervals.paired_bootstrap([1.0], [2.0]) is None and intervals.paired_bootstrap([1.0, 2.0], [1.0]) is None


def test_latency_verdicts_prefer_lower() -> None:
    slow, fast = [100.0 + i for i in range(10)], [50.0 + i for i in range(10)]
    assert mean_scores("e2e", "bench", fast, slow, higher_is_better=False).verdict == "better"
    assert mean_scores("e2e", "bench", slow, fast, higher_is_better=False).verdict == "worse"
    assert mean_scores("e2e", "bench", slow, slow, higher_is_better=False).verdict == "not distinguishable"


def test_perplexity_interval_and_ratio_verdict() -> None:
    nll = [2.0 + 0.5 * math.sin(i) for i in range(512)]
    low, high = intervals.perplexity_interval(nll)  # type: ignore[misc]
    assert low < math.exp(sum(nll) / len(nll)) < high
    base = TextScore(perplexity=math.exp(sum(nll) / len(nll)), tokens_scored=512, token_nll=nll, tokens_sha256="same")
    worse_nll = [x + 0.4 for x in nll]
    cand = TextScore(perplexity=math.exp(sum(worse_nll) / len(worse_nll)), tokens_scored=512, token_nll=worse_nll, tokens_sha256="same")
    c = perplexity(cand, base, "t.txt")
    assert c.verdict == "worse" and c.difference == pytest.approx(math.exp(0.4), rel=1e-4)
    assert perplexity(base, base, "t.txt").verdict == "not distinguishable"
    other = cand.model_copy(update={"tokens_sha256": "other"})
    assert perplexity(other, base, "t.txt").verdict == "not measured"  # different tokens do not pair


def test_the_promote_rule() -> None:
    q_better, q_same = pass_fail("q", [True] * 12 + [False] * 8, [False] * 20), pass_fail("q", [True, False] * 5, [True, False] * 5)
    b_worse = mean_scores("b", "bench", [100.0 + i for i in range(10)], [50.0 + i for i in range(10)], higher_is_better=False)
    b_same = mean_scores("b", "bench", [50.0 + i for i in range(10)], [50.0 + i for i in range(10)], higher_is_better=False)
    for comparisons, promote in (([q_better, b_same], True), ([q_same, b_same], True), ([q_better, b_worse], False),
                                 ([pass_fail("q", [False] * 20, [True] * 12 + [False] * 8), b_same], False)):
        assert decide(overall(comparisons, "quality"), overall(comparisons, "bench"), comparisons)[0] is promote
