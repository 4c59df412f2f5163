"""The metrics view on a live vLLM (the session's server; this file sorts before the one whose last test stops it).

vLLM exports what llama.cpp does not: TTFT and end-to-end histograms, a request counter and KV-cache use.
"""

from __future__ import annotations

import httpx
from vllm_helpers import SERVED, World

from model_serving.serve.metrics import watch


def test_the_view_of_a_live_vllm_counts_the_requests_sent_and_their_latencies(vllm_world: World) -> None:
    frames = watch(vllm_world.settings, interval_s=0.25)
    first = next(m for m in next(frames).models if m.name == SERVED)
    assert first.available and first.engine == "vllm", first.reason
    base_url = vllm_world.served["base_url"]
    usages = [httpx.post(f"{base_url}/v1/chat/completions", timeout=300, json={
        "model": SERVED, "messages": [{"role": "user", "content": f"Name a fruit, {i}."}], "max_tokens": 6, "temperature": 0,
    }).raise_for_status().json()["usage"] for i in range(3)]
    for _ in range(40):  # the engine records a request's stats as it finishes it: read until the three are in
        last = next(m for m in next(frames).models if m.name == SERVED)
        if last.requests_completed_total - first.requests_completed_total >= 3:
            break
    assert last.requests_completed_total - first.requests_completed_total == 3
    assert last.generation_tokens_total - first.generation_tokens_total == sum(u["completion_tokens"] for u in usages)
    assert last.prompt_tokens_total - first.prompt_tokens_total == sum(u["prompt_tokens"] for u in usages)
    assert last.requests_running == 0 and last.requests_waiting == 0
    assert last.kv_cache_usage is not None and 0 <= last.kv_cache_usage <= 1
    # the histograms since start hold at least our three; their p50 <= p95, and a request's TTFT is within its e2e
    assert last.ttft and last.e2e and last.ttft.count >= 3 and last.e2e.count >= 3
    assert 0 < last.ttft.p50_s <= last.ttft.p95_s and last.ttft.p50_s <= last.e2e.p95_s
    assert not [n for n in last.notes if "no latency histograms" in n]
