"""The sweep's stop rule and knee on hand-made levels: a noisy dip does not end a sweep, a true plateau does,
and each target is judged at the level that shows it (throughput at the best req/s, not at the knee)."""

from __future__ import annotations

from model_serving.bench import loads, verdicts
from model_serving.bench.schema import SweepPoint, Verdict


def _point(c: int, req_s: float, *, ttft: float = 40.0, tpot: float = 20.0, met: tuple[str, ...] = ()) -> SweepPoint:
    # 16-token answers: output tokens/s is 16 x requests/s, and p95 latency grows with the streams in flight.
    return SweepPoint(concurrency=c, request_throughput=req_s, output_throughput=16 * req_s, p95_e2el_ms=100.0 * c,
                      median_ttft_ms=ttft, median_tpot_ms=tpot, completed=16, targets_met=list(met))


def _sweep(points: list[SweepPoint], slots: int | None, **kw: bool) -> list[int]:
    """The levels a sweep over `points` runs before the stop rule ends it."""
    ran: list[SweepPoint] = []
    for point in points:
        ran.append(point)
        if loads.sweep_can_stop(ran, slots, **kw):
            break
    return [p.concurrency for p in ran]


def test_a_noisy_dip_at_two_streams_does_not_end_the_sweep_or_make_a_knee() -> None:
    # The last demo: c=2 measured below c=1 by chance, c=4 gives the real capacity.
    dip = [_point(1, 7.6), _point(2, 6.5), _point(4, 9.6), _point(8, 11.0)]
    assert _sweep(dip, 4) == [1, 2, 4, 8]
    knee = loads.find_knee(dip, total_slots=4)
    assert knee.concurrency is None and knee.cause == "none"
    assert "no knee within the levels swept (1, 2, 4, 8)" in knee.explanation and "compute" not in knee.explanation
    # Even without a slot count, one dip is no plateau: the next level is measured.
    assert _sweep(dip, None) == [1, 2, 4, 8]


def test_one_flat_level_below_the_slots_is_not_called_a_knee() -> None:
    once = [_point(1, 5.0), _point(2, 9.0), _point(4, 9.3, tpot=30.0)]
    knee = loads.find_knee(once, total_slots=8)
    assert knee.concurrency is None and knee.cause == "unknown" and "no knee confirmed" in knee.explanation
    assert not loads.sweep_can_stop(once, 8)


def test_a_plateau_past_the_slots_ends_the_sweep_at_the_knee_level_plus_one() -> None:
    full = [_point(1, 3.0), _point(2, 5.8), _point(4, 9.5), _point(8, 9.9, ttft=400.0), _point(16, 10.0, ttft=900.0)]
    assert _sweep(full, 4) == [1, 2, 4, 8]
    knee = loads.find_knee(full[:4], total_slots=4)
    assert knee.concurrency == 4 and knee.cause == "parallel_slots" and "4 parallel slot(s)" in knee.explanation


def test_a_compute_plateau_needs_two_flat_levels() -> None:
    flat = [_point(1, 6.0), _point(2, 9.0), _point(4, 9.2, tpot=40.0), _point(8, 9.3, tpot=80.0)]
    assert _sweep(flat, 16) == [1, 2, 4, 8]  # below the slot count nothing stops it
    assert _sweep(flat, None) == [1, 2, 4, 8]
    knee = loads.find_knee(flat, total_slots=16)
    assert knee.concurrency == 2 and knee.cause == "compute"
    assert "+2% at 4, +3% at 8" in knee.explanation


def test_a_dip_then_a_level_that_beats_the_anchor_resets_the_plateau() -> None:
    points = [_point(1, 6.0), _point(2, 5.0), _point(4, 5.9), _point(8, 12.0)]
    assert loads.sweep_can_stop(points[:3], None)  # two levels in a row failed to beat 1 stream ...
    assert not loads.sweep_can_stop(points[:3], 8)  # ... but 8 slots are not filled yet
    assert loads.find_knee(points, total_slots=8).cause == "none"  # and 8 streams beat it


def test_one_busy_level_past_the_slots_does_not_end_the_sweep() -> None:
    # Seen on a busy machine: 4 streams measured far below 2 (latency broken there too), 8 not yet run.
    points = [_point(1, 2.5), _point(2, 5.7), _point(4, 1.6, ttft=900.0)]
    assert not loads.sweep_can_stop(points, 4)
    assert loads.find_knee(points, total_slots=4).cause == "unknown"
    assert loads.sweep_can_stop([*points, _point(8, 5.9)], 4)  # two levels failed to beat 2 streams: a plateau


def test_each_target_is_judged_at_its_own_level() -> None:
    points = [_point(1, 3.0, met=("ttft_ms", "e2e_ms")), _point(2, 5.8, met=("ttft_ms", "e2e_ms")), _point(4, 9.5, met=("ttft_ms",)),
              _point(8, 10.2, met=("request_throughput",))]
    holds = {"ttft_ms": [1, 2, 4], "e2e_ms": [1, 2], "request_throughput": [8], "memory_gb": [1, 2, 4, 8]}
    at = verdicts.judged_levels(points, holds, main=4)
    assert at == {"ttft_ms": 4, "e2e_ms": 2, "request_throughput": 8, "memory_gb": 4}
    nowhere = verdicts.judged_levels(points, {"ttft_ms": [], "e2e_ms": [], "request_throughput": []}, main=4)
    assert nowhere["ttft_ms"] == nowhere["e2e_ms"] == 1 and nowhere["request_throughput"] == 8
    # Held nowhere, a latency target is judged where it measured best: on a busy machine that need not be one stream.
    points[0].p95_e2el_ms, points[1].p95_e2el_ms, points[2].p95_e2el_ms = 1041.0, 3062.0, 527.0
    assert verdicts.judged_levels(points, {"e2e_ms": []}, main=4)["e2e_ms"] == 4
    verdict = Verdict(target="request_throughput", state="PASS", threshold=10, measured=10.2, statistic="completed requests/s",
                      note="measured with concurrency 8")
    named = verdicts.name_level(verdict, 8, [8])
    assert named.note == "measured with concurrency 8; judged at concurrency 8; holds at concurrency 8"
    assert verdicts.name_level(verdict, 1, []).note.endswith("holds at no level")
