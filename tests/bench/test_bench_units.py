"""The bench's parts on their own: stream framing, metric definitions, statistics, knee, verdicts, units, roofline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from model_serving.bench import loads, metrics, prompts, roofline, server_timings, verdicts
from model_serving.bench.clients import Framer, parse_ollama, parse_openai
from model_serving.bench.http_client import Connection, Response, StreamClosed, _Protocol
from model_serving.bench.schema import SLO, BenchConfig, RequestRecord, ServerInfo, SweepPoint


def _chunked_body(parts: list[bytes], *, closed: bool) -> list[bytes]:
    proto = _Protocol()
    for i, part in enumerate(parts):
        proto.parts.append((i, part))
    proto.closed = closed
    response = Response(Connection(proto, "h"), 200, {"transfer-encoding": "chunked"}, 0, b"", 0)

    async def collect() -> list[bytes]:
        return [data async for _, data in response.body()]

    out = asyncio.run(collect())
    assert response.complete
    return out


def test_chunked_decoding_survives_any_split_point() -> None:
    wire = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    for cut in range(1, len(wire)):
        assert b"".join(_chunked_body([wire[:cut], wire[cut:]], closed=False)) == b"hello, world"
    assert b"".join(_chunked_body([bytes([b]) for b in wire], closed=False)) == b"hello, world"


def test_chunked_stream_cut_before_the_last_chunk_raises() -> None:
    with pytest.raises(StreamClosed):
        _chunked_body([b"5\r\nhello\r\n"], closed=True)


def test_sse_framing_and_role_only_chunk() -> None:
    framer = Framer(sse=True)
    wire = (b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\r\n\r\n'
            b': ping\n\ndata: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n')
    messages = framer.feed(wire[:30]) + framer.feed(wire[30:])
    events = [parse_openai(m) for m in messages]
    assert events[0].role_only and not events[0].has_token
    assert events[1] is None  # the comment line
    assert events[2].has_token and events[2].text == "Hi"
    assert events[3].done


def test_reasoning_and_ollama_thinking_count_as_first_tokens() -> None:
    reasoning = parse_openai(b'data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}')
    assert reasoning.has_token and reasoning.text == ""
    thinking = parse_ollama(b'{"message":{"role":"assistant","content":"","thinking":"hmm"},"done":false}')
    assert thinking.has_token
    error = parse_ollama(b'{"error":"model \\"x\\" not found"}')
    assert error.error == 'model "x" not found'


def _record(first: float, chunks: list[float], tokens: int | None = None) -> RequestRecord:
    record = RequestRecord(index=0, prompt_id="p", scheduled_ms=0.0, sent_ms=10.0, max_tokens=64, chunk_ms=chunks,
                           first_token_ms=first if chunks else None, last_token_ms=chunks[-1] if chunks else None, end_ms=200.0)
    if tokens is not None:
        record.output_tokens, record.output_tokens_source = tokens, "server"
    return metrics.derive(record)


def test_tpot_excludes_the_first_token_and_itl_is_per_chunk() -> None:
    r = _record(60.0, [60.0, 70.0, 80.0, 100.0])
    assert r.ttft_ms == 50.0 and r.e2el_ms == 90.0
    assert r.tpot_ms == pytest.approx(40.0 / 3)
    assert r.itl_ms == [10.0, 10.0, 20.0]
    # With a server count of 9 tokens in the same 4 chunks, TPOT is per token, ITL stays per chunk.
    r9 = _record(60.0, [60.0, 70.0, 80.0, 100.0], tokens=9)
    assert r9.tpot_ms == pytest.approx(5.0) and r9.itl_ms == [10.0, 10.0, 20.0]


def test_a_request_without_tokens_has_no_ttft() -> None:
    r = _record(0.0, [])
    assert r.ttft_ms is None and r.tpot_ms is None and r.e2el_ms is None


def test_bootstrap_intervals_bracket_the_estimate() -> None:
    values = [float(v) for v in range(1, 101)]
    s = metrics.stats(values, seed=1)
    assert s.median == 50.5 and s.p95 == pytest.approx(95.05)
    for name in ("mean", "median", "p90", "p95", "p99"):
        low, high = s.ci[name]
        assert low <= getattr(s, name) <= high
    assert s.ci["median"][1] - s.ci["median"][0] > 5  # 100 spread values leave real uncertainty
    flat = metrics.stats([7.0] * 20)
    assert flat.ci["p95"] == (7.0, 7.0) and flat.std == 0.0
    assert metrics.stats([]).n == 0


def test_verdicts_pass_fail_and_inconclusive_follow_the_interval() -> None:
    assert verdicts._judge(100.0, (90.0, 110.0), 200.0, lower_is_better=True) == "PASS"
    assert verdicts._judge(300.0, (250.0, 350.0), 200.0, lower_is_better=True) == "FAIL"
    assert verdicts._judge(195.0, (150.0, 240.0), 200.0, lower_is_better=True) == "INCONCLUSIVE"
    assert verdicts._judge(12.0, (11.0, 13.0), 10.0, lower_is_better=False) == "PASS"
    assert verdicts._judge(None, None, 10.0, lower_is_better=False) == "INCONCLUSIVE"


def test_single_slot_and_serial_load_are_named_as_throughput_causes() -> None:
    config = BenchConfig(base_url="http://127.0.0.1:1", model="m", targets=SLO(memory_gb=None))
    records = [_record(60.0 + i, [60.0 + i, 300.0 + i]) for i in range(10)]
    for i, r in enumerate(records):
        r.index, r.end_ms = i, 400.0 * (i + 1)
    dists = metrics.distributions(records, confidence=0.95, seed=0)
    summary = metrics.summarize(records, dists)
    result = verdicts.judge(config, summary, dists, records, ServerInfo(total_slots=1))
    throughput = next(v for v in result if v.target == "request_throughput")
    assert throughput.state == "FAIL"
    assert any("single parallel slot" in c for c in throughput.likely_causes)
    assert any("one at a time" in c for c in throughput.likely_causes)
    assert not [v for v in result if v.target == "memory_gb"]


def _point(c: int, thr: float, p95: float, ttft: float, tpot: float) -> SweepPoint:
    return SweepPoint(concurrency=c, request_throughput=thr / 10, output_throughput=thr, p95_e2el_ms=p95,
                      median_ttft_ms=ttft, median_tpot_ms=tpot, completed=20)


def test_knee_from_slots_and_from_compute() -> None:
    slots = [_point(1, 100, 200, 20, 18), _point(2, 190, 210, 22, 19), _point(4, 195, 420, 230, 19)]
    knee = loads.find_knee(slots, total_slots=2)
    assert knee.concurrency == 2 and knee.cause == "parallel_slots"
    compute = [_point(1, 100, 200, 20, 18), _point(2, 150, 260, 22, 25), _point(4, 155, 500, 25, 48), _point(8, 156, 990, 27, 96)]
    knee = loads.find_knee(compute, total_slots=8)
    assert knee.concurrency == 2 and knee.cause == "compute"
    rising = [_point(1, 100, 200, 20, 18), _point(2, 190, 210, 22, 19)]
    assert loads.find_knee(rising, total_slots=4).cause == "none"


def test_poisson_offsets_are_seeded_and_have_the_asked_rate() -> None:
    a = loads.poisson_offsets(2000, 5.0, seed=3)
    assert a == loads.poisson_offsets(2000, 5.0, seed=3) and a != loads.poisson_offsets(2000, 5.0, seed=4)
    assert 2000 / a[-1] == pytest.approx(5.0, rel=0.1)


def test_server_timings_units() -> None:
    o = server_timings.from_ollama({"load_duration": 2_000_000, "prompt_eval_duration": 30_000_000, "eval_duration": 500_000_000,
                                    "eval_count": 50, "prompt_eval_count": 12, "total_duration": 540_000_000})
    assert (o.load_ms, o.prefill_ms, o.decode_ms, o.total_ms) == (2.0, 30.0, 500.0, 540.0)
    assert server_timings.server_decode_tok_s(o) == pytest.approx(100.0)
    ll = server_timings.from_llamacpp({"prompt_n": 12, "prompt_ms": 30.5, "predicted_n": 50, "predicted_ms": 500.0, "cache_n": 3})
    assert (ll.prefill_ms, ll.decode_ms, ll.cached_tokens, ll.output_tokens) == (30.5, 500.0, 3, 50)


def test_synthetic_prompts_are_seeded_with_unique_prefixes() -> None:
    a = prompts.synthetic_prompts(20, 64, 16, seed=1)
    assert a == prompts.synthetic_prompts(20, 64, 16, seed=1)
    assert len({p.text.split()[0] for p in a}) == 20  # no shared cacheable prefix
    assert all(50 <= p.input_tokens_estimate <= 80 and p.max_tokens == 16 for p in a)
    fixed = prompts.load_prompts("fixed", n=10, seed=0, prompt=None, prompts_file=None, input_tokens=1, output_tokens=1)
    assert [p.id for p in fixed[:2]] == [p.id for p in fixed[8:]]


def test_jsonl_prompts_accept_text_and_chat(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "Hi", "max_tokens": 5}\n\n{"id": "c", "messages": [{"role": "user", "content": "Yo"}]}\n')
    specs = prompts.jsonl_prompts(path)
    assert specs[0].max_tokens == 5 and specs[0].messages() == [{"role": "user", "content": "Hi"}]
    assert specs[1].id == "c" and specs[1].as_text() == "Yo"


def test_roofline_bytes_come_from_the_gguf(smollm2_gguf: Path) -> None:
    mb = roofline.model_bytes(smollm2_gguf)
    # Tied embeddings (no output.weight) are read in full as the output matrix: all tensor bytes count,
    # which is the whole file less its metadata (the vocabulary, a few MB).
    assert 0.9 * mb.file_bytes < mb.weight_bytes_per_token < mb.file_bytes
    assert mb.kv_bytes_per_context_token == 2 * 30 * 3 * 64 * 2  # K and V, 30 layers, 3 KV heads of 64, f16
    r = roofline.roofline(smollm2_gguf, 50.0, 100.0, bandwidth_gbs=10.0)
    expected = 10e9 / (mb.weight_bytes_per_token + 100 * mb.kv_bytes_per_context_token)
    assert r.ceiling_tok_s == pytest.approx(expected) and r.percent_of_ceiling == pytest.approx(5000 / expected)
    assert roofline.roofline(smollm2_gguf, expected * 1.5, 100.0, bandwidth_gbs=10.0).flag == "above_ceiling"
    assert roofline.roofline(smollm2_gguf, expected * 0.1, 100.0, bandwidth_gbs=10.0).flag == "far_below"


def test_bandwidth_probe_measures_something_plausible() -> None:
    assert 0.5 < roofline.measure_bandwidth(size_mb=64, repeats=2) < 2000


def test_the_slot_bound_on_throughput_is_not_drawn_from_queued_latency() -> None:
    # Past the slot count, end-to-end latency includes the wait for a slot: slots / latency would understate the server.
    records = [_record(60.0 + i, [60.0 + i, 300.0 + i]) for i in range(10)]
    for i, r in enumerate(records):
        r.index, r.end_ms = i, 400.0 * (i + 1)
    dists = metrics.distributions(records, confidence=0.95, seed=0)
    summary = metrics.summarize(records, dists)
    for concurrency, bound in ((4, True), (8, False)):
        config = BenchConfig(base_url="http://127.0.0.1:1", model="m", concurrency=concurrency, targets=SLO(memory_gb=None))
        result = verdicts.judge(config, summary, dists, records, ServerInfo(total_slots=4))
        throughput = next(v for v in result if v.target == "request_throughput")
        assert any("cannot exceed" in c for c in throughput.likely_causes) is bound
