"""Intervals for one version and for the difference between two, and the verdict an interval gives.

- A pass rate: the Wilson score interval (good at small n and near 0 or 1, where the normal interval fails).
- Two pass rates on the same cases: McNemar's exact test (a binomial test on the discordant cases) decides, and the
  difference carries Newcombe's square-and-add interval for paired proportions (his method 10: Wilson limits of each
  rate, combined with the estimated correlation between them).
- A mean score (reference agreement, a latency): a percentile bootstrap over cases; two versions on the same cases: a
  paired bootstrap of the per-case differences (the same resampled cases for both).
- Perplexity: a block bootstrap of the mean per-token negative log-likelihood (neighbouring tokens correlate), and for
  two versions that scored the same tokens, quantize.quality's paired block bootstrap of the ratio.

Every bootstrap is seeded, so one evaluation always gives one interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

CONFIDENCE = 0.95
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
RESAMPLES = 2000
BLOCK_TOKENS = 64
Verdict = Literal["better", "worse", "not distinguishable", "not measured"]


def wilson(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of passed/n; (0, 1) when there is nothing to measure."""
    if n <= 0:
        return 0.0, 1.0
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if passed == 0 else low), (1.0 if passed == n else high)  # exact at the ends, where rounding would leave 1e-16


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact p-value of McNemar's test: the discordant pairs split as Binomial(b + c, 1/2) under no difference."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def newcombe_paired(both: int, only_first: int, only_second: int, neither: int) -> tuple[float, float, float]:
    """(difference, low, high) of p_first - p_second on paired cases, Newcombe's method 10 (square and add)."""
    n = both + only_first + only_second + neither
    if n == 0:
        return 0.0, -1.0, 1.0
    first, second = both + only_first, both + only_second
    p1, p2 = first / n, second / n
    l1, u1 = wilson(first, n)
    l2, u2 = wilson(second, n)
    margins = first * (n - first) * second * (n - second)
    phi = 0.0
    if margins > 0:
        cross = both * neither - only_first * only_second
        phi = (cross - n / 2) / math.sqrt(margins) if cross > n / 2 else cross / math.sqrt(margins) if cross < 0 else 0.0
    d = p1 - p2
    low = d - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = d + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return d, max(-1.0, low), min(1.0, high)


def _quantiles(values: Any) -> tuple[float, float]:
    import numpy as np

    low, high = np.quantile(np.asarray(values, dtype=np.float64), [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def bootstrap_mean(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the mean; None under two values."""
    import numpy as np

    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    return _quantiles(data[picks].mean(axis=1))


def paired_bootstrap(first: Sequence[float], second: Sequence[float], *, resamples: int = RESAMPLES,
                     seed: int = 0) -> tuple[float, float, float] | None:
    """(mean difference first - second, low, high), resampling cases (pairs); None when they do not pair or under two pairs."""
    import numpy as np

    if len(first) != len(second) or len(first) < 2:
        return None
    diff = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(diff), size=(resamples, len(diff)))
    low, high = _quantiles(diff[picks].mean(axis=1))
    return float(diff.mean()), low, high


def perplexity_interval(token_nll: Sequence[float], *, block: int = BLOCK_TOKENS, resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Interval of exp(mean NLL) from a block bootstrap over consecutive tokens; None under two blocks."""
    import numpy as np

    if len(token_nll) < 2 * block:
        return None
    nll = np.asarray(token_nll, dtype=np.float64)
    edges = np.arange(0, len(nll), block)
    sums, counts = np.add.reduceat(nll, edges), np.diff(np.append(edges, len(nll)))
    picks = np.random.default_rng(0).integers(0, len(sums), size=(resamples, len(sums)))
    low, high = _quantiles(sums[picks].sum(axis=1) / counts[picks].sum(axis=1))
    return math.exp(min(low, 700.0)), math.exp(min(high, 700.0))


def verdict_of(low: float, high: float, *, no_change: float = 0.0, higher_is_better: bool = True) -> Verdict:
    """Better or worse only when the whole interval lies on one side of `no_change`."""
    if low > no_change:
        return "better" if higher_is_better else "worse"
    if high < no_change:
        return "worse" if higher_is_better else "better"
    return "not distinguishable"


def mcnemar_verdict(only_candidate: int, only_baseline: int, alpha: float = 1 - CONFIDENCE) -> tuple[Verdict, float]:
    """(verdict for the candidate, p): distinguishable only when the exact test rejects 'no difference' at alpha."""
    p = mcnemar_exact(only_candidate, only_baseline)
    if p >= alpha:
        return "not distinguishable", p
    return ("better" if only_candidate > only_baseline else "worse"), p
