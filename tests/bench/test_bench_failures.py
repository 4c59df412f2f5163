"""Every request counts: a server that drops, 500s or truncates a share of requests never PASSes a latency,
throughput or capacity verdict, and the bench names each failure and its cause.

The same lenient targets PASS against the same server when it fails nothing, so the FAILs below come from
the lost requests and from nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_server import spawned

from model_serving.bench import BenchConfig, run_benchmark, run_sweep
from model_serving.bench.schema import SLO

FAST = {"ttft_ms": 5, "tpot_ms": 1, "tokens": 6}
LENIENT = SLO(ttft_ms=10_000.0, e2e_ms=10_000.0, request_throughput=0.001, memory_gb=None)
JUDGED = ("ttft_ms", "e2e_ms", "request_throughput", "capacity")


@pytest.fixture(scope="module")
def failing() -> Iterator[str]:
    # Every 4th generation request fails: dropped before any response, HTTP 500, or cut short, in turn.
    with spawned(fail_every=4, fail_modes="drop,500,truncate", slots=4, **FAST) as url:
        yield url


def _config(url: str, **kw: object) -> BenchConfig:
    values: dict[str, object] = {"n_requests": 24, "concurrency": 2, "warmup": 0, "max_tokens": 6, "targets": LENIENT, **kw}
    return BenchConfig(base_url=url, model="scripted", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_share_of_failed_requests_fails_every_verdict_with_its_causes(failing: str, api: str) -> None:
    result = run_benchmark(_config(failing, api=api))
    s = result.summary
    assert (s.completed, s.failed) == (18, 6)
    assert s.errors_by_cause == {"http": 2, "reset": 2, "truncated": 2}  # drop reads as a reset connection
    assert s.good_requests == 18 and s.good_fraction == pytest.approx(0.75)
    first = result.verdicts[0]
    assert first.target == "error_rate" and first.state == "FAIL" and first.measured == pytest.approx(0.25)
    assert "6 of 24 requests failed (http 2, reset 2, truncated 2)" in first.note
    judged = {v.target: v for v in result.verdicts if v.target in JUDGED}
    assert set(judged) == set(JUDGED)
    for verdict in judged.values():
        assert verdict.state == "FAIL", verdict
        assert verdict.likely_causes[0].startswith("6 of 24 requests failed"), verdict.likely_causes
    kinds = {r.error_kind for r in result.records if r.status != "ok"}
    assert kinds == {"http", "reset", "truncated"}
    assert all(r.ttft_ms is not None and r.tpot_ms is not None for r in result.records if r.status == "ok")


def test_the_same_targets_pass_when_nothing_fails() -> None:
    with spawned(slots=4, **FAST) as url:
        result = run_benchmark(_config(url))
    assert result.summary.failed == 0 and result.summary.errors_by_cause == {}
    states = {v.target: v.state for v in result.verdicts}
    assert states == {"error_rate": "PASS", "ttft_ms": "PASS", "e2e_ms": "PASS", "request_throughput": "PASS", "capacity": "PASS"}
    assert result.summary.request_goodput == pytest.approx(result.summary.request_throughput)


def test_a_stream_reset_after_its_last_chunk_is_not_a_completed_request() -> None:
    # The whole answer and [DONE] arrived, then the connection reset before the body ended: the exchange failed.
    with spawned(fail_every=2, fail_modes="reset_after_final", slots=4, **FAST) as url:
        result = run_benchmark(_config(url, n_requests=8))
    lost = [r for r in result.records if r.status != "ok"]
    assert len(lost) == 4 and all(r.status == "incomplete" and r.error_kind == "reset" for r in lost)
    assert all(r.tpot_ms is not None for r in result.records if r.status == "ok")
    assert next(v for v in result.verdicts if v.target == "error_rate").state == "FAIL"


def test_a_sweep_with_failures_has_no_capacity_and_says_why(failing: str) -> None:
    result = run_sweep(_config(failing, n_requests=12), [1, 2])
    assert all(p.failed and not p.holds_slo and not p.targets_met for p in result.sweep)
    assert result.capacity is not None and result.capacity.concurrency is None and result.capacity.bound == "failures"
    states = {v.target: v.state for v in result.verdicts}
    assert result.verdicts[0].target == "error_rate" and states["error_rate"] == "FAIL"
    assert all(states[t] == "FAIL" for t in JUDGED)
    error_rate = result.verdicts[0]
    assert error_rate.measured == pytest.approx(sum(p.failed for p in result.sweep) / sum(p.failed + p.completed for p in result.sweep))
