"""The bench on the real embedded engine (the natively built llama-server) with SmolLM2-135M.

Timings on a shared 2-core machine are noisy, so the agreement between our decode speed and the
server's own timings is asserted loosely here; benchmarks/bench_decode_agreement.py records the
ratio (target within 10%) as JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model_serving.bench import BenchConfig, run_benchmark
from model_serving.bench.loadtime import measure_engine_load
from model_serving.serve.embedded import engine
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, engine.ServedModel]]:
    home = tmp_path_factory.mktemp("engine-home")
    settings = Settings(home=home, roots=[home, smollm2_gguf.parent])
    model = engine.start_model(settings, smollm2_gguf, "smol-bench", ctx_size=1024, parallel=2)
    try:
        yield settings, model
    finally:
        engine.stop_model(settings, model.name)


def test_decode_speed_agrees_with_the_servers_own_timings(served: tuple[Settings, engine.ServedModel], smollm2_gguf: Path,
                                                          tmp_path: Path) -> None:
    _, model = served
    config = BenchConfig(base_url=model.base_url, model=model.name, n_requests=4, max_tokens=24, prompt_source="synthetic",
                         input_tokens=32, server_pid=model.pid, gguf_path=smollm2_gguf, bandwidth_gbs=10.0, output_dir=tmp_path)
    result = run_benchmark(config)
    assert result.summary.completed == 4 and not result.incomplete
    assert result.server.kind == "llama.cpp" and result.server.total_slots == 2
    assert all(r.server is not None and r.output_tokens_source == "server" for r in result.records)
    assert all(r.output_tokens == 24 for r in result.records)  # ignore_eos held the length for synthetic prompts
    client, server = result.metrics["decode_tok_s"].median, result.summary.median_server_decode_tok_s
    assert client and server and 0.7 < client / server < 1.4, (client, server)
    assert not [f for f in result.findings if f.code in ("ttft_below_server_prefill", "server_tokenizer_mismatch")]
    memory = next(v for v in result.verdicts if v.target == "memory_gb")
    assert memory.state == "PASS" and 0.05 < memory.measured < 2.0  # a 135M model's engine: well under a GB or two
    assert result.roofline is not None and result.roofline.percent_of_ceiling is not None
    assert Path(result.files["markdown"]).read_text().count("## Roofline") == 1


def test_cold_and_warm_engine_start(smollm2_gguf: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, roots=[tmp_path, smollm2_gguf.parent])
    load = measure_engine_load(settings, smollm2_gguf, "smol-load")
    assert load.cold_start_ms and load.warm_start_ms and load.cold_ttft_ms and load.warm_ttft_ms
    assert not engine.list_models(settings) or all(m.state == "dead" for m in engine.list_models(settings))


def test_the_default_workload_prefills_what_it_sends_by_the_servers_counters(served: tuple[Settings, engine.ServedModel],
                                                                              smollm2_gguf: Path) -> None:
    # The default (random, unique per request and per run) against llama.cpp's prompt cache: its own counters
    # (timings.prompt_n against cache_n per response, and /metrics' prompt_tokens_total) say what it computed.
    _, model = served
    config = BenchConfig(base_url=model.base_url, model=model.name, n_requests=4, concurrency=2, max_tokens=4, gguf_path=smollm2_gguf)
    first = run_benchmark(config)
    again = run_benchmark(config)  # the same seed again: the per-run nonce keeps the cache from serving it
    for result in (first, again):
        s = result.summary
        # Lost requests are counted elsewhere (the wheel's server drops kept-alive connections); the prefill is over the completed.
        assert s.completed and result.workload is not None and result.workload.prompts == "unique" and result.workload.tokenizer
        assert s.prefill_source == "timings" and s.prompt_tokens_sent and s.prompt_tokens_sent >= s.completed * 100
        assert s.prefilled_fraction is not None and s.prefilled_fraction >= 0.9, (s.prompt_tokens_prefilled, s.prompt_tokens_sent)
        assert not [f for f in result.findings if f.code in ("prompt_cache_served", "repeated_prompts")]
        counters = result.server_metrics
        if counters is not None and counters.available and "prompt_tokens_total" in counters.delta:
            warm_sent = sum(r.prompt_tokens or 0 for r in result.warmup_records)
            assert counters.delta["prompt_tokens_total"] >= 0.9 * (s.prompt_tokens_sent + warm_sent)
    # The repeated prompts, asked for, are served from the cache, and the result says so.
    fixed = run_benchmark(config.model_copy(update={"prompt_source": "fixed", "ignore_eos": False, "n_requests": 4}))
    assert fixed.workload is not None and fixed.workload.prompts == "repeated"
    assert any(f.code == "repeated_prompts" for f in fixed.findings)
