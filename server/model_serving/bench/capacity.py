"""Capacity: the highest concurrency that holds the SLO (AIPerf's "max concurrency under SLA"), and what bounds it.

A level holds the SLO when none of its requests failed and its latency targets (TTFT and E2E, at the judged
statistic) are met. The search is the sweep's levels, walked upward: the capacity is the highest level below
the first one that breaks, so a noisy pass above a break never counts (AIPerf smooths the same way with an
isotonic fit). The true limit lies in [holding level, breaking level); with no break it is at least the top level.

What bounds it, from the breaking level against the holding one: failures (requests lost), the client (its
event loop lagged), the server's slots (past them requests wait, so TTFT grows more than decode time), or the
batched decode (time per token grows): bandwidth when batch-1 decode already ran near the memory-bandwidth
ceiling, compute otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from model_serving.bench.schema import Capacity, Roofline, SweepPoint

CLIENT_LAG_MS = 20.0  # event-loop lag (p99) above which the client, not the server, may have set the limit


def holds(point: SweepPoint, latency_targets: Sequence[str]) -> bool:
    """No failure at this level and every latency target met there."""
    return point.failed == 0 and point.completed > 0 and all(t in point.targets_met for t in latency_targets)


def _bound(hold: SweepPoint | None, brk: SweepPoint, total_slots: int | None, roofline: Roofline | None,
           client_lag_ms: float) -> tuple[str, str]:
    if brk.failed:
        by = ", ".join(f"{kind} {n}" for kind, n in brk.errors_by_cause.items())
        return "failures", f"at concurrency {brk.concurrency}, {brk.failed} request(s) failed ({by}): a level that loses requests does not hold."
    if client_lag_ms > CLIENT_LAG_MS:
        return "client", (f"the client's event loop lagged {client_lag_ms:.0f} ms (p99) at concurrency {brk.concurrency}: the load generator, "
                          "not the server, may set this limit; rerun on a quieter machine or with fewer streams per client.")
    if hold is None:
        return "unknown", f"even concurrency {brk.concurrency} misses the latency targets: the model is too slow for them at any load."
    ttft_growth = (brk.median_ttft_ms or 0.0) - (hold.median_ttft_ms or 0.0)
    tokens = brk.output_throughput / brk.request_throughput if brk.request_throughput > 0 else 1.0
    tpot_growth = ((brk.median_tpot_ms or 0.0) - (hold.median_tpot_ms or 0.0)) * tokens
    if total_slots and brk.concurrency > total_slots and ttft_growth >= tpot_growth:
        return "slots", (f"concurrency {brk.concurrency} exceeds the server's {total_slots} parallel slot(s): requests wait for a slot and "
                         f"median TTFT grows by {ttft_growth:.0f} ms. More slots (if memory allows) or another replica raise it.")
    if roofline is not None and roofline.percent_of_ceiling is not None and roofline.percent_of_ceiling >= 70:
        return "bandwidth", (f"time per token grows with the batch while decode already runs at {roofline.percent_of_ceiling:.0f}% of the "
                             "memory-bandwidth ceiling: fewer bytes per token (a smaller quantization) or faster memory raise it.")
    if tpot_growth > ttft_growth:
        return "compute", (f"time per output token grows by {(brk.median_tpot_ms or 0) - (hold.median_tpot_ms or 0):.1f} ms at concurrency "
                           f"{brk.concurrency}: the batched decode is compute-bound; more cores or a smaller model raise it.")
    return "unknown", f"latency breaks at concurrency {brk.concurrency} without one clear cause."


def max_under_slo(points: Sequence[SweepPoint], latency_targets: Sequence[str], *, total_slots: int | None = None,
                  roofline: Roofline | None = None, client_lag_ms: Mapping[int, float] | None = None,
                  goodput_ci: Mapping[int, tuple[float, float] | None] | None = None) -> Capacity:
    """The highest level holding the SLO with every level below it, its interval and goodput, and what bounds it."""
    ordered = sorted(points, key=lambda p: p.concurrency)
    hold: SweepPoint | None = None
    brk: SweepPoint | None = None
    for point in ordered:
        if not holds(point, latency_targets):
            brk = point
            break
        hold = point
    if not ordered:
        return Capacity(concurrency=None, bound="unknown", explanation="No level was measured.")
    ci = (goodput_ci or {}).get(hold.concurrency) if hold else None
    if brk is None:
        assert hold is not None
        return Capacity(concurrency=hold.concurrency, interval=(hold.concurrency, None), request_goodput=hold.request_goodput,
                        request_goodput_ci=ci, bound="not_reached", explanation=(
                            f"Every level up to {hold.concurrency} holds the SLO: capacity is at least {hold.concurrency}; sweep higher to find it."))
    bound, why = _bound(hold, brk, total_slots, roofline, (client_lag_ms or {}).get(brk.concurrency, 0.0))
    if hold is None:
        return Capacity(concurrency=None, interval=None, bound=bound,
                        explanation=f"No level holds the SLO, not even concurrency {brk.concurrency}: {why}")
    return Capacity(concurrency=hold.concurrency, interval=(hold.concurrency, brk.concurrency), request_goodput=hold.request_goodput,
                    request_goodput_ci=ci, bound=bound,
                    explanation=f"Holds at concurrency {hold.concurrency}, breaks at {brk.concurrency}: {why}")


def capacity_text(capacity: Capacity | None) -> str:
    """One line: the level, its interval and goodput, and the bound."""
    if capacity is None:
        return "not swept"
    if capacity.concurrency is None:
        return f"no level holds the SLO ({capacity.bound})"
    low, high = capacity.interval or (capacity.concurrency, None)
    span = f"[{low}, {high})" if high is not None else f">= {low}"
    goodput = f", goodput {capacity.request_goodput:.2f} req/s" if capacity.request_goodput is not None else ""
    return f"max concurrency under SLO {capacity.concurrency} (in {span}){goodput}, bound: {capacity.bound.replace('_', ' ')}"
