"""The accounting on its own: token timings of every completed request, goodput, prefill against sent, the
workloads (unique by default, repeated only when asked and labelled), capacity as max concurrency under SLO,
and the bench input's bounds shared with requests.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from model_serving.bench import capacity, metrics, runner, workloads
from model_serving.bench.loads import LoadOutcome
from model_serving.bench.options import config_from_request
from model_serving.bench.schema import SLO, BenchConfig, RequestRecord, Roofline, ServerTimings, SweepPoint
from model_serving.requests import MAX_CONCURRENCY, MAX_REQUESTS, BenchRequest

URL = "http://127.0.0.1:1"


def _record(index: int, chunks: list[float], *, tokens: int | None = None, status: str = "ok", kind: str | None = None) -> RequestRecord:
    record = RequestRecord(index=index, prompt_id=f"p{index}", scheduled_ms=0.0, sent_ms=0.0, max_tokens=8, status=status,  # type: ignore[arg-type]
                           error_kind=kind, chunk_ms=chunks, first_token_ms=chunks[0] if chunks else None,
                           last_token_ms=chunks[-1] if chunks else None, end_ms=(chunks[-1] if chunks else 5.0) + 1.0)
    if tokens is not None:
        record.output_tokens, record.output_tokens_source = tokens, "server"
    return metrics.derive(record)


def test_tokens_that_arrive_in_one_read_give_a_zero_tpot_not_none() -> None:
    # The flaky measurement test's cause: 12 tokens stamped by one network read (a stalled client) left TPOT None.
    record = _record(0, [50.0], tokens=12)
    assert record.ttft_ms == 50.0 and record.tpot_ms == 0.0 and record.decode_tok_s is None
    one = _record(1, [40.0], tokens=1)
    assert one.ttft_ms == 40.0 and one.tpot_ms is None  # nothing decoded after the first token: no TPOT, as in vLLM
    dists = metrics.distributions([record, one], confidence=0.95, seed=0)
    assert dists["tpot_ms"].n == 1 and dists["ttft_ms"].n == 2


def test_goodput_counts_only_completed_requests_within_every_latency_target() -> None:
    targets = SLO(ttft_ms=100.0, e2e_ms=1000.0)
    records = [_record(0, [50.0, 60.0], tokens=2), _record(1, [150.0, 160.0], tokens=2), _record(2, [50.0, 1500.0], tokens=2),
               _record(3, [], status="error", kind="http")]
    summary = metrics.summarize(records, metrics.distributions(records, confidence=0.95, seed=0), targets=targets, planned=6)
    assert (summary.completed, summary.failed, summary.not_sent) == (3, 3, 2)
    assert summary.errors_by_cause == {"not_sent": 2, "http": 1}
    assert summary.good_requests == 1 and summary.good_fraction == pytest.approx(1 / 6)
    assert summary.request_goodput == pytest.approx(1 / summary.duration)


def test_prefilled_against_sent_from_the_servers_timings_and_a_finding_below_90_percent() -> None:
    records = [_record(i, [10.0, 20.0], tokens=2) for i in range(4)]
    for r in records:
        r.prompt_tokens, r.prompt_tokens_source = 100, "server"
        r.server = ServerTimings(source="llama.cpp", prompt_tokens=40, cached_tokens=60)
    summary = metrics.summarize(records, metrics.distributions(records, confidence=0.95, seed=0))
    assert (summary.prompt_tokens_sent, summary.prompt_tokens_prefilled, summary.prefill_source) == (400, 160, "timings")
    assert summary.prefilled_fraction == pytest.approx(0.4)
    config = BenchConfig(base_url=URL, model="m", prompt_source="fixed")
    _, _, workload = workloads.build(config, 4, 1)
    codes = {f.code for f in runner._workload_findings(config, summary, records, LoadOutcome(records, workload=workload))}
    assert {"prompt_cache_served", "repeated_prompts"} <= codes


def test_the_default_workload_is_unique_prompts_with_a_fixed_answer_length() -> None:
    config = BenchConfig(base_url=URL, model="m", n_requests=10, input_tokens=64, max_tokens=16)
    assert config.prompt_source == "random" and config.ignore_eos is True
    specs, warm, workload = workloads.build(config, 10, 2)
    again, _, second = workloads.build(config, 10, 2)
    texts = [s.as_text() for s in specs]
    assert len(set(texts)) == 10 and not {s.as_text() for s in warm} & set(texts)  # a warm-up never caches a measured prompt
    assert workload.prompts == "unique" and workload.ignore_eos and workload.input_tokens == 64 and workload.output_tokens == 16
    # Same seed, new run: the nonce differs, so no prompt of the last run is in the server's cache.
    assert workload.run_nonce != second.run_nonce and not set(texts) & {s.as_text() for s in again}
    assert specs[0].messages()[0]["role"] == "system"  # no template default system prompt shared by every request
    assert all(48 <= s.input_tokens_estimate <= 90 and s.max_tokens == 16 for s in specs)


def test_chat_prompts_are_varied_questions_spread_around_the_stated_length() -> None:
    specs = workloads.chat_prompts(60, 100, 32, seed=3, nonce="abc")
    users = [s.messages()[1]["content"] for s in specs]
    assert len(set(users)) > 50
    lengths = sorted(s.input_tokens_estimate for s in specs)
    assert lengths[0] < 90 and lengths[-1] > 120 and 80 < lengths[len(lengths) // 2] < 140


def test_repeated_prompts_only_when_asked_and_labelled() -> None:
    _, warm, workload = workloads.build(BenchConfig(base_url=URL, model="m", prompt_source="fixed"), 12, 2)
    assert workload.prompts == "repeated" and workload.label == "cached/repeated" and not warm and workload.ignore_eos is False


def test_random_prompts_draw_the_models_vocabulary(smollm2_gguf: Path) -> None:
    from model_serving.bench import tokens

    config = BenchConfig(base_url=URL, model="m", n_requests=4, input_tokens=64, gguf_path=smollm2_gguf)
    specs, _, workload = workloads.build(config, 4, 0)
    assert workload.tokenizer
    for spec in specs:
        n = tokens.count(smollm2_gguf, spec.messages()[1]["content"])
        assert 48 <= n <= 64, n


def test_random_prompts_as_the_peers_send_them_count_the_text_alone(smollm2_gguf: Path) -> None:
    """`opening="user"`: one user message of exactly the stated text tokens (the template's tokens come on top), as
    `vllm bench serve --dataset-name random` and GuideLLM's synthetic data send; still unique from the first token on."""
    from model_serving.bench import tokens

    config = BenchConfig(base_url=URL, model="m", n_requests=6, input_tokens=128, gguf_path=smollm2_gguf, opening="user")
    specs, warm, _ = workloads.build(config, 6, 1)
    texts = [s.messages() for s in specs + warm]
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in texts)
    counted = [tokens.count(smollm2_gguf, m[0]["content"]) for m in texts]
    assert all(126 <= n <= 128 for n in counted), counted  # the top-up stops at the stated length; a merge may take one or two
    assert [s.input_tokens_estimate for s in specs + warm] == counted
    assert len({m[0]["content"][:12] for m in texts}) == len(texts)
    completions = BenchConfig(base_url=URL, model="m", n_requests=4, input_tokens=128, gguf_path=smollm2_gguf, route="completions")
    sent = [tokens.count(smollm2_gguf, s.as_text()) for s in workloads.build(completions, 4, 0)[0]]
    assert all(126 <= n <= 128 for n in sent), sent  # one text on /v1/completions: the stated length is what is sent


def _point(c: int, *, ttft: float, tpot: float = 10.0, failed: int = 0, met: tuple[str, ...] = ("ttft_ms", "e2e_ms")) -> SweepPoint:
    point = SweepPoint(concurrency=c, request_throughput=c * 1.0, output_throughput=c * 16.0, p95_e2el_ms=None, median_ttft_ms=ttft,
                       median_tpot_ms=tpot, completed=16, failed=failed, errors_by_cause={"reset": failed} if failed else {},
                       request_goodput=c * 0.9, targets_met=list(met) if not failed else [])
    point.holds_slo = capacity.holds(point, ["ttft_ms", "e2e_ms"])
    return point


def test_capacity_is_the_highest_level_below_the_first_that_breaks() -> None:
    slots = [_point(1, ttft=40), _point(2, ttft=45), _point(4, ttft=60), _point(8, ttft=400, met=("e2e_ms",)), _point(16, ttft=50)]
    found = capacity.max_under_slo(slots, ["ttft_ms", "e2e_ms"], total_slots=4)
    assert (found.concurrency, found.interval, found.bound) == (4, (4, 8), "slots")  # the noisy pass at 16 does not count
    assert found.request_goodput == pytest.approx(3.6)
    compute = capacity.max_under_slo([_point(1, ttft=40), _point(2, ttft=42, tpot=40, met=("ttft_ms",))], ["ttft_ms", "e2e_ms"], total_slots=4)
    assert (compute.concurrency, compute.bound) == (1, "compute")
    roof = Roofline(weight_bytes_per_token=1, kv_bytes_per_context_token=1, context_tokens=1, bandwidth_gbs=1, bandwidth_source="given",
                    ceiling_tok_s=100, measured_tok_s=80, percent_of_ceiling=80)
    assert capacity.max_under_slo([_point(1, ttft=40), _point(2, ttft=42, tpot=40, met=())], ["ttft_ms"], roofline=roof).bound == "bandwidth"
    lost = capacity.max_under_slo([_point(1, ttft=40), _point(2, ttft=40, failed=1)], ["ttft_ms"])
    assert (lost.concurrency, lost.interval, lost.bound) == (1, (1, 2), "failures") and "reset 1" in lost.explanation
    top = capacity.max_under_slo([_point(1, ttft=40), _point(2, ttft=40)], ["ttft_ms"])
    assert (top.concurrency, top.interval, top.bound) == (2, (2, None), "not_reached")
    none = capacity.max_under_slo([_point(1, ttft=900, met=())], ["ttft_ms"])
    assert none.concurrency is None and "No level holds" in none.explanation
    assert capacity.capacity_text(found) == "max concurrency under SLO 4 (in [4, 8)), goodput 3.60 req/s, bound: slots"


def test_bench_bounds_are_the_request_bounds_and_new_options_reach_the_config(settings) -> None:  # noqa: ANN001
    for field, bound in (("n_requests", MAX_REQUESTS), ("concurrency", MAX_CONCURRENCY)):
        BenchConfig(base_url=URL, model="m", **{field: bound})
        with pytest.raises(ValidationError):
            BenchConfig(base_url=URL, model="m", **{field: bound + 1})
    request = BenchRequest(model="m", endpoint=URL, profile="chat", input_tokens=256, max_tokens=64, error_rate=0.05)
    config = config_from_request(settings, request)
    assert (config.prompt_source, config.input_tokens, config.max_tokens, config.ignore_eos) == ("chat", 256, 64, True)
    assert config.targets.error_rate == 0.05
    assert config_from_request(settings, BenchRequest(model="m", endpoint=URL)).prompt_source == "random"
    assert config_from_request(settings, BenchRequest(model="m", endpoint=URL, prompt="Hi")).prompt_source == "text"


def test_the_deploys_capacity_line_puts_failures_first() -> None:
    from model_serving.deploy.steps import capacity_line

    verdicts = [{"target": "error_rate", "state": "FAIL", "measured": 0.1}, {"target": "ttft_ms", "state": "FAIL", "measured": 80.0, "concurrency": 4}]
    line = capacity_line(verdicts, "at concurrency 4 (parallel slots)", None, failures=["FAILED at concurrency 8: 3 of 16 requests (reset 3)"],
                         capacity="max concurrency under SLO 4 (in [4, 8)), goodput 3.10 req/s, bound: failures")
    assert line.startswith("capacity: FAILED at concurrency 8: 3 of 16 requests (reset 3); max concurrency under SLO 4")
    assert "error_rate FAIL 0.1; ttft_ms FAIL 80 at c=4; knee at concurrency 4" in line
