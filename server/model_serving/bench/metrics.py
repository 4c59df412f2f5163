"""Per-request metrics, their distributions with bootstrap confidence intervals, and the run summary.

Definitions (the README section lists each with its vLLM / GuideLLM name):
- TTFT: first chunk carrying generated text minus send time.
- TPOT: (last token - first token) / (output tokens - 1), so the first token is excluded.
- ITL: gaps between consecutive content chunks, pooled over requests (vLLM's ITL).
- E2EL: last token minus send time; client queue time (send minus scheduled) is kept apart.

Every request counts (the rule behind every verdict; vLLM `--goodput` and AIPerf count failures the same way):
- A request succeeds ("ok") only when its stream ended with the server's final message and carried text. One
  refused, reset, timed out, answered with an HTTP error, cut short (truncated) or empty fails, by that cause
  (`Summary.errors_by_cause`), and so does one the run never sent because it stopped early (`not_sent`).
- A completed request always has a TTFT and an E2EL, and a TPOT once it has two tokens or more: when every
  token arrived in one network read (a stalled client, a buffering proxy) its TPOT is 0, what its user saw.
  A one-token answer has no TPOT and is left out of the TPOT distribution, as vLLM leaves it (with
  `ignore_eos` asked for, answers shorter than `max_tokens` are a finding: the server ignored it).
- The latency distributions describe the completed requests (vLLM's definition), but a failed request never
  meets a latency target: goodput counts only completed requests within every latency target, over every
  request of the run (AIPerf's good_request_fraction keeps errors in the denominator), and any failure makes
  the latency, throughput and capacity verdicts FAIL (bench/verdicts.py), whatever the percentiles say.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model_serving.bench.schema import CONNECTION_ERRORS, SLO, RequestRecord, Stats, Summary
from model_serving.bench.server_timings import server_decode_tok_s

STATISTICS = ("mean", "median", "p90", "p95", "p99")
_PERCENTILE = {"median": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def derive(record: RequestRecord) -> RequestRecord:
    """Fill the per-request metrics from the raw timestamps. A request without a first token gets none."""
    if record.output_tokens_source == "chunks":
        record.output_tokens = len(record.chunk_ms)  # one token per content chunk: the last resort
    if record.sent_ms is not None:
        record.queue_ms = record.sent_ms - record.scheduled_ms
    if record.first_token_ms is None or record.sent_ms is None or record.last_token_ms is None:
        return record  # never a TTFT of 0 for a request that produced nothing
    record.ttft_ms = record.first_token_ms - record.sent_ms
    if record.first_answer_ms is not None:
        record.ttfat_ms = record.first_answer_ms - record.sent_ms
    if record.reasoning_chunks:
        record.reasoning_tokens = min(record.reasoning_chunks, record.output_tokens)
        record.answer_tokens = record.output_tokens - record.reasoning_tokens
    record.e2el_ms = record.last_token_ms - record.sent_ms
    record.itl_ms = [b - a for a, b in zip(record.chunk_ms, record.chunk_ms[1:], strict=False)]
    n = record.output_tokens
    if n > 1:  # 0 when every token came in one read: the client saw no decode time, and says so
        record.tpot_ms = max(0.0, record.last_token_ms - record.first_token_ms) / (n - 1)
        record.decode_tok_s = 1000.0 / record.tpot_ms if record.tpot_ms > 0 else None
    if record.e2el_ms > 0:
        record.output_tok_s = n / (record.e2el_ms / 1000.0)
    if record.prompt_tokens and record.ttft_ms > 0:
        record.prefill_tok_s = record.prompt_tokens / (record.ttft_ms / 1000.0)
    return record


def _resample_count(n: int) -> int:
    return int(min(1000, max(100, 2_000_000 // max(n, 1))))  # bounded memory for very large runs


def stats(values: Sequence[float], *, confidence: float = 0.95, seed: int = 0) -> Stats:
    """Mean, median, std, min, max and p90/p95/p99, each with a percentile-bootstrap interval."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    n = int(data.size)
    if n == 0:
        return Stats(n=0)
    point = {"mean": float(data.mean()), **{k: float(np.percentile(data, q)) for k, q in _PERCENTILE.items()}}
    result = Stats(n=n, std=float(data.std(ddof=1)) if n > 1 else 0.0, min=float(data.min()), max=float(data.max()), **point)
    if n > 1:
        rng = np.random.default_rng(seed)
        samples = data[rng.integers(0, n, size=(_resample_count(n), n))]
        draws = {"mean": samples.mean(axis=1), **{k: np.percentile(samples, q, axis=1) for k, q in _PERCENTILE.items()}}
        alpha = (1.0 - confidence) / 2.0 * 100.0
        result.ci = {k: (float(np.percentile(v, alpha)), float(np.percentile(v, 100.0 - alpha))) for k, v in draws.items()}
    else:
        result.ci = {k: (v, v) for k, v in point.items()}
    return result


def throughput_ci(records: Sequence[RequestRecord], *, confidence: float = 0.95, seed: int = 0,
                  counted: Callable[[RequestRecord], bool] | None = None) -> tuple[float, float] | None:
    """Bootstrap interval of completed requests/s, resampling blocks of consecutive gaps between completions.

    A batching server finishes its concurrent requests together (gaps of ~0 ms, then one of a whole step cycle), so
    gaps drawn one by one mix bursts and pauses freely and widened the interval to +-50% (8.0-17.9 around 11.4 req/s);
    a block as long as the concurrency keeps each cycle whole. `counted` picks the requests that count (default:
    completed ones; goodput passes the good ones).
    """
    counted = counted or (lambda r: r.status == "ok")
    ok = sorted(r.end_ms for r in records if counted(r) and r.end_ms is not None)
    starts = [r.sent_ms for r in records if r.sent_ms is not None]
    if len(ok) < 2 or not starts:
        return None
    gaps = np.diff(np.asarray([min(starts), *ok], dtype=float))
    block = max(1, min(max_concurrency(records), gaps.size))
    sums = np.convolve(gaps, np.ones(block), mode="valid")  # every run of `block` consecutive gaps
    count = -(-gaps.size // block)
    rng = np.random.default_rng(seed)
    totals = sums[rng.integers(0, sums.size, size=(_resample_count(gaps.size), count))].sum(axis=1)
    rates = count * block / (np.maximum(totals, 1e-9) / 1000.0)
    alpha = (1.0 - confidence) / 2.0 * 100.0
    return float(np.percentile(rates, alpha)), float(np.percentile(rates, 100.0 - alpha))


def max_concurrency(records: Sequence[RequestRecord]) -> int:
    events = []
    for r in records:
        if r.sent_ms is not None and r.end_ms is not None:
            events += [(r.sent_ms, 1), (r.end_ms, -1)]
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end at the same instant frees first
        level += step
        peak = max(peak, level)
    return peak


def distributions(records: Sequence[RequestRecord], *, confidence: float, seed: int) -> dict[str, Stats]:
    ok = [r for r in records if r.status == "ok"]
    columns: dict[str, list[float]] = {
        "ttft_ms": [r.ttft_ms for r in ok if r.ttft_ms is not None],
        "ttfat_ms": [r.ttfat_ms for r in ok if r.ttfat_ms is not None and r.reasoning_tokens],
        "tpot_ms": [r.tpot_ms for r in ok if r.tpot_ms is not None],
        "itl_ms": [gap for r in ok for gap in r.itl_ms],
        "e2el_ms": [r.e2el_ms for r in ok if r.e2el_ms is not None],
        "client_queue_ms": [r.queue_ms for r in records if r.queue_ms is not None],
        "output_tok_s": [r.output_tok_s for r in ok if r.output_tok_s is not None],
        "decode_tok_s": [r.decode_tok_s for r in ok if r.decode_tok_s is not None],
        "prefill_tok_s": [r.prefill_tok_s for r in ok if r.prefill_tok_s is not None],
        "output_tokens": [float(r.output_tokens) for r in ok],
    }
    return {name: stats(values, confidence=confidence, seed=seed) for name, values in columns.items()}


def is_good(record: RequestRecord, targets: SLO | None) -> bool:
    """Completed and within every latency target (TTFT, E2E): what goodput counts."""
    if record.status != "ok":
        return False
    if targets is None:
        return True
    return all(limit is None or (value is not None and value < limit)
               for value, limit in ((record.ttft_ms, targets.ttft_ms), (record.e2el_ms, targets.e2e_ms)))


def errors_by_cause(records: Sequence[RequestRecord], not_sent: int = 0) -> dict[str, int]:
    causes = Counter(r.error_kind or r.status for r in records if r.status != "ok")
    if not_sent:
        causes["not_sent"] += not_sent
    return dict(sorted(causes.items(), key=lambda kv: (-kv[1], kv[0])))


def prefill_counts(records: Sequence[RequestRecord]) -> tuple[int, int] | None:
    """(prompt tokens sent, tokens the server prefilled) from llama.cpp's per-request timings; None without them."""
    timed = [r for r in records if r.status == "ok" and r.server and r.server.source == "llama.cpp" and r.server.prompt_tokens is not None]
    if not timed:
        return None
    prefilled = sum(r.server.prompt_tokens or 0 for r in timed if r.server)
    sent = sum(max(r.prompt_tokens or 0, (r.server.prompt_tokens or 0) + (r.server.cached_tokens or 0)) for r in timed if r.server)
    return sent, prefilled


def _accounting(records: Sequence[RequestRecord], targets: SLO | None, planned: int | None, duration: float,
                *, confidence: float, seed: int) -> dict[str, Any]:
    """The Summary fields that make every request count: failures by cause, goodput, prefill against sent."""
    not_sent = max(0, planned - len(records)) if planned is not None else 0
    good = [r for r in records if is_good(r, targets)]
    everyone = len(records) + not_sent
    prefill = prefill_counts(records)
    fields: dict[str, Any] = {  # Summary's fields by name: Summary validates them
        "not_sent": not_sent, "errors_by_cause": errors_by_cause(records, not_sent), "good_requests": len(good),
        "good_fraction": len(good) / everyone if everyone else None,
        "request_goodput": len(good) / duration if duration > 0 else 0.0,
        "request_goodput_ci": throughput_ci(records, confidence=confidence, seed=seed, counted=lambda r: is_good(r, targets)),
    }
    if prefill is not None:
        sent, prefilled = prefill
        fields.update(prompt_tokens_sent=sent, prompt_tokens_prefilled=prefilled, prefilled_fraction=prefilled / sent if sent else None,
                      prefill_source="timings")
    return fields


def _reasoning(ok: Sequence[RequestRecord], metrics: dict[str, Stats]) -> dict[str, float | None]:
    """Time to the first answer token and the reasoning/answer token split, for runs where the model reasoned."""
    reasoned = [r for r in ok if r.reasoning_tokens]
    answer = metrics.get("ttfat_ms")
    if not reasoned:
        return {}
    return {"median_ttfat_ms": answer.median if answer else None, "p95_ttfat_ms": answer.p95 if answer else None,
            "total_reasoning_tokens": sum(r.reasoning_tokens or 0 for r in reasoned),
            "total_answer_tokens": sum(r.answer_tokens or 0 for r in reasoned)}


def summarize(records: Sequence[RequestRecord], metrics: dict[str, Stats], *, confidence: float = 0.95, seed: int = 0,
              targets: SLO | None = None, planned: int | None = None) -> Summary:
    """The run's aggregates; `targets` decide which requests count as good (goodput), `planned` how many were never sent."""
    ok = [r for r in records if r.status == "ok"]
    sent = [r.sent_ms for r in records if r.sent_ms is not None]
    ends = [r.end_ms for r in records if r.end_ms is not None]
    duration = (max(ends) - min(sent)) / 1000.0 if sent and ends else 0.0
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    per_second = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    fields: dict[str, float | None] = {}
    for name, key in (("ttft_ms", "ttft"), ("tpot_ms", "tpot"), ("itl_ms", "itl"), ("e2el_ms", "e2el")):
        s = metrics[name]
        for stat in ("mean", "median", "std", "p90", "p95", "p99"):
            fields[f"{stat}_{key}_ms"] = getattr(s, stat)
    rates = [x for r in ok if r.server and (x := server_decode_tok_s(r.server))]
    fields.update(_reasoning(ok, metrics))
    accounting = _accounting(records, targets, planned, duration, confidence=confidence, seed=seed)
    return Summary(
        completed=len(ok),
        failed=len(records) - len(ok) + int(accounting["not_sent"]),
        incomplete_requests=sum(1 for r in records if r.status == "incomplete"),
        connection_errors=sum(1 for r in records if r.error_kind in CONNECTION_ERRORS),
        duration=duration,
        total_input_tokens=in_tokens,
        total_output_tokens=out_tokens,
        request_throughput=per_second(len(ok)),
        output_throughput=per_second(out_tokens),
        total_token_throughput=per_second(in_tokens + out_tokens),
        max_concurrent_requests=max_concurrency(records),
        mean_client_queue_ms=metrics["client_queue_ms"].mean,
        p99_client_queue_ms=metrics["client_queue_ms"].p99,
        median_output_tok_s_per_request=metrics["output_tok_s"].median,
        median_prefill_tok_s=metrics["prefill_tok_s"].median,
        median_server_decode_tok_s=float(np.median(rates)) if rates else None,
        request_throughput_ci=throughput_ci(records, confidence=confidence, seed=seed),
        **fields,
        **accounting,
    )
