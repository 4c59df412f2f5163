"""The request-rate interval of a batching server: its completions come in bursts, one per step cycle."""

from __future__ import annotations

from model_serving.bench.metrics import throughput_ci
from model_serving.bench.schema import RequestRecord


def _bursts(cycles_ms: list[float], streams: int) -> list[RequestRecord]:
    """`streams` requests sent together at each cycle's start and finished together (1 ms apart) by its end."""
    records, start = [], 0.0
    for length in cycles_ms:
        for j in range(streams):
            records.append(RequestRecord.model_construct(index=len(records), status="ok", sent_ms=start, end_ms=start + length - j))
        start += length
    return records


def test_steady_bursts_give_a_tight_interval_around_the_rate() -> None:
    low, high = throughput_ci(_bursts([350.0] * 8, 4))  # 4 requests every 350 ms: 11.4 req/s
    assert 11.0 < low <= high < 11.9


def test_an_uneven_run_widens_the_interval_and_keeps_the_rate_inside() -> None:
    cycles = [350.0, 350.0, 700.0, 350.0, 350.0, 350.0, 700.0, 350.0]
    low, high = throughput_ci(_bursts(cycles, 4))
    rate = 32 / (sum(cycles) / 1000.0)
    assert low < rate < high and high - low > 0.5
