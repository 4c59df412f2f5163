"""Server-reported timings, normalised to milliseconds, and their reconciliation with the client's clock.

llama.cpp's server reports `timings` in milliseconds; Ollama reports `*_duration` in nanoseconds.
Each request is split into load, queue (what the client waited beyond the server's own load and
prefill), prefill and decode; where the two clocks disagree beyond noise, a finding says so.
"""

from __future__ import annotations

import statistics
from typing import Any

from model_serving.bench.schema import Finding, RequestRecord, ServerTimings

_NS_PER_MS = 1e6
# Relative disagreement in decode speed that we report: larger than run-to-run noise on a busy
# machine, small enough to catch chunks that carry several tokens or a buffering proxy.
DECODE_TOLERANCE = 0.15


def _num(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(obj: dict[str, Any], key: str) -> int | None:
    value = _num(obj, key)
    return int(value) if value is not None else None


def from_llamacpp(timings: dict[str, Any]) -> ServerTimings:
    prefill, decode = _num(timings, "prompt_ms"), _num(timings, "predicted_ms")
    total = (prefill or 0.0) + (decode or 0.0) if prefill is not None or decode is not None else None
    return ServerTimings(
        source="llama.cpp", prefill_ms=prefill, decode_ms=decode, total_ms=total,
        prompt_tokens=_int(timings, "prompt_n"), cached_tokens=_int(timings, "cache_n"), output_tokens=_int(timings, "predicted_n"),
    )


def from_ollama(final: dict[str, Any]) -> ServerTimings:
    def ms(key: str) -> float | None:
        value = _num(final, key)
        return value / _NS_PER_MS if value is not None else None

    return ServerTimings(
        source="ollama", load_ms=ms("load_duration"), prefill_ms=ms("prompt_eval_duration"), decode_ms=ms("eval_duration"),
        total_ms=ms("total_duration"), prompt_tokens=_int(final, "prompt_eval_count"), output_tokens=_int(final, "eval_count"),
    )


def server_decode_tok_s(server: ServerTimings) -> float | None:
    """Tokens over decode time, as both servers compute their own rate (eval rate, predicted_per_second)."""
    if server.decode_ms and server.output_tokens and server.output_tokens > 1:
        return server.output_tokens / (server.decode_ms / 1e3)
    return None


def split(record: RequestRecord) -> dict[str, float | None]:
    """Load, queue, prefill and decode of one request in ms (None where the server is silent)."""
    server = record.server
    if server is None or record.ttft_ms is None:
        return {"load_ms": None, "queue_ms": None, "prefill_ms": None, "decode_ms": None}
    inside = (server.load_ms or 0.0) + (server.prefill_ms or 0.0)
    return {
        "load_ms": server.load_ms,
        "queue_ms": max(0.0, record.ttft_ms - inside),
        "prefill_ms": server.prefill_ms,
        "decode_ms": server.decode_ms,
    }


def reconcile(records: list[RequestRecord]) -> tuple[float | None, list[Finding]]:
    """Median server decode tok/s and the findings where client and server disagree."""
    findings: list[Finding] = []
    ok = [r for r in records if r.status == "ok" and r.server is not None]
    if not ok:
        return None, findings
    server_rates = [rate for r in ok if r.server and (rate := server_decode_tok_s(r.server))]
    client_rates = [1000.0 / r.tpot_ms for r in ok if r.tpot_ms]
    server_median = statistics.median(server_rates) if server_rates else None
    if server_median and client_rates:
        client_median = statistics.median(client_rates)
        gap = client_median / server_median - 1.0
        if abs(gap) > DECODE_TOLERANCE:
            findings.append(Finding(
                code="decode_rate_mismatch",
                message=(f"Client decode speed {client_median:.1f} tok/s differs from the server's own {server_median:.1f} tok/s "
                         f"by {gap:+.0%}: chunks may carry several tokens, a proxy may buffer the stream, or the client is overloaded."),
            ))
    impossible = [r for r in ok if r.server and r.server.prefill_ms and r.ttft_ms is not None
                  and r.ttft_ms + 1.0 < r.server.prefill_ms + (r.server.load_ms or 0.0)]
    if impossible:
        findings.append(Finding(
            code="ttft_below_server_prefill", severity="error",
            message=f"{len(impossible)} request(s) got their first token before the server says prefill ended: a clock or counting bug.",
        ))
    mismatched = [r for r in ok if r.server and r.server.output_tokens is not None and r.output_tokens_source == "server"
                  and abs(r.server.output_tokens - r.output_tokens) > 1]
    if mismatched:
        findings.append(Finding(
            code="token_count_mismatch",
            message=f"{len(mismatched)} request(s) report different output token counts in usage and in server timings.",
        ))
    cached = [r.server.cached_tokens for r in ok if r.server and r.server.cached_tokens]
    if cached and len(cached) > len(ok) // 2:
        findings.append(Finding(
            code="prompt_cache_hits", severity="info",
            message=f"{len(cached)} of {len(ok)} requests reused cached prompt tokens (median {statistics.median(cached):.0f}); "
                    "prefill figures are lower than for fresh prompts. Use the random or chat profile (unique prompts) to defeat the cache.",
        ))
    return server_median, findings
