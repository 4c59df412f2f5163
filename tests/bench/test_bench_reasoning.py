"""A reasoning model's stream: the bench times the first answer token beside TTFT and splits reasoning from answer tokens.

The scripted server streams its first REASONING tokens as reasoning (OpenAI `reasoning_content` deltas, Ollama's
`thinking`), then the answer, on a known clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_server import spawned

from model_serving.bench.runner import run_benchmark
from model_serving.bench.schema import BenchConfig
from model_serving.results import render

TTFT_MS, TPOT_MS, TOKENS, REASONING = 30.0, 10.0, 12, 5


@pytest.fixture(scope="module")
def thinking_server() -> Iterator[str]:
    with spawned(ttft_ms=TTFT_MS, tpot_ms=TPOT_MS, tokens=TOKENS, reasoning=REASONING, slots=4) as url:
        yield url


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_reasoning_tokens_and_the_first_answer_token_are_reported(thinking_server: str, api: str) -> None:
    config = BenchConfig(base_url=thinking_server, model="scripted", api=api, route="chat", n_requests=4, concurrency=2,
                         max_tokens=TOKENS, prompt_source="synthetic", input_tokens=16, seed=1)
    result = run_benchmark(config)
    s = result.summary
    assert s.completed == 4
    assert (s.total_reasoning_tokens, s.total_answer_tokens) == (4 * REASONING, 4 * (TOKENS - REASONING))
    for r in result.records:
        assert (r.reasoning_tokens, r.answer_tokens) == (REASONING, TOKENS - REASONING)
        assert r.ttft_ms is not None and r.ttfat_ms is not None
        # the first answer token is the chunk after the reasoning ones, stamped when it arrived
        assert r.first_answer_ms == r.chunk_ms[REASONING] and r.ttfat_ms >= r.ttft_ms
    assert s.median_ttfat_ms is not None and s.p95_ttfat_ms is not None
    assert any("reasoning tokens beside" in line.text for line in render(result).lines)


def test_a_model_that_does_not_reason_has_no_reasoning_figures(thinking_server: str) -> None:
    config = BenchConfig(base_url=thinking_server, model="scripted", api="openai", route="completions", n_requests=2, concurrency=1,
                         max_tokens=TOKENS, prompt_source="synthetic", input_tokens=16, seed=1)
    s = run_benchmark(config).summary
    assert s.completed == 2 and s.total_reasoning_tokens is None and s.median_ttfat_ms is None
