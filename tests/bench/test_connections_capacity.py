"""The capacity sweep the deploy runs: levels up to one past the knee, the levels at which each target holds, each verdict at its level."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_serving.bench import BenchConfig, run_sweep
from model_serving.serve.embedded.engine import start_model, stop_model
from model_serving.settings import Settings


@pytest.mark.slow
def test_the_sweep_stops_one_level_past_the_knee_and_says_where_each_target_holds(settings: Settings, tiny_gguf: Path, tmp_path: Path) -> None:
    # One slot: more streams only wait for it, so throughput flattens while latency grows (at 1 or 2: the client's gap
    # between requests on one stream is a noticeable share of a short answer).
    served = start_model(settings, tiny_gguf, "one-slot", ctx_size=512, parallel=1)
    try:
        config = BenchConfig.build(base_url=served.base_url, model=served.name, api="openai", n_requests=8, max_tokens=48,
                                   server_pid=served.pid, output_dir=tmp_path / "bench", label="sweep")
        result = run_sweep(config, [1, 2, 4, 8], stop_past_knee=True)
    finally:
        stop_model(settings, served.name)
    assert result.knee is not None and result.knee.concurrency in (1, 2, 4)
    levels = [1, 2, 4, 8]
    assert [p.concurrency for p in result.sweep] == levels[:levels.index(result.knee.concurrency) + 2]  # and no further: it only queues
    assert result.config.concurrency == result.knee.concurrency and result.summary.connection_errors == 0
    assert set(result.target_levels) == {"ttft_ms", "e2e_ms", "request_throughput", "memory_gb"}
    assert result.target_levels["memory_gb"] == [p.concurrency for p in result.sweep]  # a 3M-parameter model is far below 8 GB
    for point in result.sweep:
        assert {t for t, levels in result.target_levels.items() if point.concurrency in levels and t != "memory_gb"} == set(point.targets_met)
    # Each verdict names its level: throughput at the best req/s level, a latency target at the highest level where it holds.
    by_target = {v.target: v for v in result.verdicts}
    assert by_target["request_throughput"].measured == max(p.request_throughput for p in result.sweep)
    best = max(result.sweep, key=lambda p: p.request_throughput).concurrency
    assert f"judged at concurrency {best}" in by_target["request_throughput"].note
    for target, p95 in (("ttft_ms", "p95_ttft_ms"), ("e2e_ms", "p95_e2el_ms")):
        held = result.target_levels[target]
        level = max(held) if held else min(result.sweep, key=lambda p, f=p95: getattr(p, f)).concurrency  # else where it was best
        assert f"judged at concurrency {level};" in by_target[target].note
    assert Path(result.files["sweep_png"]).read_bytes()[:4] == b"\x89PNG"
    report = Path(result.files["markdown"]).read_text(encoding="utf-8")
    assert "Targets by concurrency" in report and f"]({Path(result.files['sweep_png']).name})" in report
