"""PASS / FAIL / INCONCLUSIVE per target, each failure with its likely causes drawn from the measurements.

A verdict is INCONCLUSIVE when the bootstrap interval straddles the threshold (a small sample cannot
tell), or when the quantity was not measured; it never guesses.

Every request counts (bench/metrics.py has the rule): `error_rate` is a verdict of its own and comes first,
and while any request failed, the latency, throughput and capacity verdicts are FAIL whatever the completed
requests measured, with the count and the causes as their first likely cause.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from model_serving.bench.schema import (
    SLO,
    BenchConfig,
    Knee,
    LoadTimes,
    RequestRecord,
    Roofline,
    ServerInfo,
    Stats,
    Summary,
    SweepPoint,
    Verdict,
    VerdictState,
)

# What each cause of a failed request usually means, and where to look next.
CAUSE_HINTS = {
    "connect": "connections refused: the server was down or its port closed; check that it runs (model-serving status)",
    "reset": "connections closed mid-request (a crash, an overload, or a kept-alive connection the server dropped): read the server log",
    "timeout": "no complete answer within the request limit: the server stalled or queued too long; lower the concurrency",
    "http": "HTTP error statuses (503: slots or queue full; 400: prompt too long for the context): see the messages",
    "stream_error": "the server reported an error inside the stream",
    "malformed": "stream messages that are not JSON: a proxy or a server speaking another protocol",
    "truncated": "streams cut before their final message: the server or a proxy closed them early",
    "empty": "answers without any text: check the chat template and the stop tokens",
    "not_sent": "requests never sent: the run stopped after consecutive failures",
}
FAILURE_TARGETS = ("ttft_ms", "e2e_ms", "request_throughput", "capacity")
_NO_TARGET = ": a failed request meets no target."


def failures_text(failed: int, total: int, causes: Mapping[str, int]) -> str:
    """'3 of 20 requests failed (reset 2, http 1)': the count and causes every failed verdict carries."""
    by = ", ".join(f"{kind} {n}" for kind, n in causes.items())
    return f"{failed} of {total} requests failed ({by})"


def error_rate_verdict(targets: SLO, failed: int, total: int, causes: Mapping[str, int], sample: str | None = None) -> Verdict | None:
    """Failed share of every request of the run (or sweep) against the allowed share (default 0: any failure FAILs)."""
    if targets.error_rate is None:
        return None
    rate = failed / total if total else None
    state: VerdictState = "INCONCLUSIVE" if rate is None else "PASS" if rate <= targets.error_rate else "FAIL"
    hints = [f"{kind} ({n}): {CAUSE_HINTS.get(kind, kind)}" for kind, n in causes.items()]
    if sample:
        hints.append(f"First error: {sample}")
    note = failures_text(failed, total, causes) if failed else f"all {total} requests completed"
    return Verdict(target="error_rate", state=state, threshold=targets.error_rate, measured=rate, statistic="failed share",
                   likely_causes=hints if state != "PASS" else [], note=note)


def fail_on_failures(verdicts: Sequence[Verdict], failed: int, total: int, causes: Mapping[str, int]) -> list[Verdict]:
    """Latency, throughput and capacity verdicts FAIL while any request failed, the count and causes first among their causes."""
    if not failed:
        return list(verdicts)
    text = failures_text(failed, total, causes)
    out = []
    for v in verdicts:
        if v.target in FAILURE_TARGETS:
            # a sweep counts again over all its levels: the wider count replaces a level's own
            kept = [c for c in v.likely_causes if not c.endswith(_NO_TARGET)]
            note = v.note.split("; FAIL: ")[0]
            v = v.model_copy(update={"state": "FAIL", "likely_causes": [f"{text}{_NO_TARGET}", *kept], "note": f"{note}; FAIL: {text}"})
        out.append(v)
    return out


def capacity_verdict(targets: SLO, goodput: float | None, ci: tuple[float, float] | None, note: str,
                     causes: Sequence[str] = ()) -> Verdict | None:
    """Goodput (completed within every latency target, per second) against the throughput target."""
    if targets.request_throughput is None:
        return None
    state = _judge(goodput, ci, targets.request_throughput, lower_is_better=False)
    return Verdict(target="capacity", state=state, threshold=targets.request_throughput, measured=goodput, ci=ci,
                   statistic="goodput requests/s", likely_causes=list(causes) if state != "PASS" else [], note=note)


def _judge(measured: float | None, ci: tuple[float, float] | None, threshold: float, *, lower_is_better: bool) -> VerdictState:
    if measured is None:
        return "INCONCLUSIVE"
    low, high = ci if ci is not None else (measured, measured)
    if lower_is_better:
        return "PASS" if high < threshold else "FAIL" if low >= threshold else "INCONCLUSIVE"
    return "PASS" if low >= threshold else "FAIL" if high < threshold else "INCONCLUSIVE"


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ttft_causes(records: Sequence[RequestRecord], config: BenchConfig, server: ServerInfo, load: LoadTimes | None) -> list[str]:
    ok = [r for r in records if r.status == "ok" and r.ttft_ms is not None]
    causes: list[str] = []
    ttft = _median([r.ttft_ms for r in ok])
    if not ttft:
        return causes
    load_ms = _median([r.server.load_ms for r in ok if r.server])
    if load and load.server_load_ms and load.cold_ttft_ms and load.cold_ttft_ms > 2 * ttft:
        causes.append(f"Model load dominates a cold request: {load.cold_ttft_ms:.0f} ms to the first token after an unload "
                      f"(load {load.server_load_ms:.0f} ms). Keep the model loaded (longer keep_alive) or warm it up after deploy.")
    if load_ms and load_ms > 0.3 * ttft:
        causes.append(f"Model load is {load_ms:.0f} ms of a {ttft:.0f} ms median TTFT: the model was (re)loaded during the run.")
    first = min(ok, key=lambda r: r.index)
    if len(ok) > 3 and first.ttft_ms and first.ttft_ms > 5 * ttft:
        causes.append(f"The first request took {first.ttft_ms:.0f} ms to its first token against a {ttft:.0f} ms median: a cold start; add warmup.")
    prefill = _median([r.server.prefill_ms for r in ok if r.server])
    prompt_tokens = _median([r.prompt_tokens for r in ok])
    if prefill and prefill > 0.5 * ttft and prompt_tokens:
        causes.append(f"Prefill takes {prefill:.0f} ms for {prompt_tokens:.0f} prompt tokens ({prompt_tokens / prefill * 1000:.0f} tok/s): "
                      "prefill dominates the first token; a shorter prompt or a smaller model shortens it.")
    if prefill is not None:
        queued = _median([r.ttft_ms - (r.server.prefill_ms or 0) - (r.server.load_ms or 0) for r in ok if r.server and r.ttft_ms])
        if queued and queued > 0.4 * ttft:
            slots = f"the server has {server.total_slots} parallel slot(s) for {config.concurrency} concurrent requests" if server.total_slots else "requests queue before the server starts them"
            causes.append(f"Requests wait {queued:.0f} ms before prefill starts: {slots}.")
    if server.vram_fraction is not None and 0.0 < server.vram_fraction < 0.99:  # 0 is a CPU-only server, not a split
        causes.append(f"Only {server.vram_fraction:.0%} of the model is in GPU memory: partial CPU offload slows every step.")
    if not causes and not any(r.server for r in ok):
        causes.append("The server reports no timings, so TTFT cannot be split into load, queue and prefill.")
    return causes


def _e2e_causes(records: Sequence[RequestRecord], metrics: dict[str, Stats], roofline: Roofline | None) -> list[str]:
    causes: list[str] = []
    e2e, ttft, tpot, tokens = metrics["e2el_ms"].median, metrics["ttft_ms"].median, metrics["tpot_ms"].median, metrics["output_tokens"].median
    if not e2e:
        return causes
    if tpot and tokens and tokens > 1:
        decode = tpot * (tokens - 1)
        causes.append(f"Decoding {tokens:.0f} tokens at {tpot:.1f} ms each takes {decode:.0f} ms of the {e2e:.0f} ms: "
                      "ask for a shorter answer (max_tokens) or use a smaller quantization.")
    if ttft and ttft > 0.5 * e2e:
        causes.append(f"Time to first token is {ttft / e2e:.0%} of the end-to-end latency; see the TTFT causes.")
    if roofline and roofline.percent_of_ceiling is not None:
        if roofline.percent_of_ceiling >= 70:
            causes.append(f"Decode runs at {roofline.percent_of_ceiling:.0f}% of the memory-bandwidth ceiling: only fewer bytes per token (a smaller quantization) makes it faster.")
        elif roofline.flag == "far_below":
            causes.append(f"Decode runs at only {roofline.percent_of_ceiling:.0f}% of the memory-bandwidth ceiling: compute-bound, too few threads, or a partial offload.")
    return causes


def _throughput_causes(config: BenchConfig, summary: Summary, metrics: dict[str, Stats], server: ServerInfo, knee: Knee | None) -> list[str]:
    causes: list[str] = []
    in_flight = config.concurrency
    if server.total_slots == 1:
        causes.append("The server has a single parallel slot: requests are served one at a time. Start it with more slots (parallel).")
    if in_flight == 1 and config.rate is None:
        causes.append("Requests were sent one at a time, so throughput is 1 / latency; rerun with concurrency at or above the slot count, or sweep.")
    elif server.total_slots and in_flight < server.total_slots:
        causes.append(f"Only {in_flight} requests were in flight for {server.total_slots} slots; raise the concurrency.")
    e2e = metrics["e2el_ms"].mean
    if e2e and server.total_slots and in_flight <= server.total_slots:  # past the slots, latency includes the wait for one
        bound = server.total_slots * 1000.0 / e2e
        causes.append(f"With {server.total_slots} slot(s) and a mean latency of {e2e:.0f} ms the server cannot exceed about {bound:.1f} requests/s.")
    if knee and knee.cause in ("parallel_slots", "compute"):
        causes.append(knee.explanation)
    return causes


def judge(config: BenchConfig, summary: Summary, metrics: dict[str, Stats], records: Sequence[RequestRecord], server: ServerInfo,
          roofline: Roofline | None = None, load: LoadTimes | None = None, knee: Knee | None = None) -> list[Verdict]:
    targets = config.targets
    stat = targets.statistic
    total = len(records) + summary.not_sent
    sample = next((r.error for r in records if r.status != "ok" and r.error), None)
    first = error_rate_verdict(targets, summary.failed, total, summary.errors_by_cause, sample)
    verdicts: list[Verdict] = [first] if first else []
    for target, key, threshold in (("ttft_ms", "ttft_ms", targets.ttft_ms), ("e2e_ms", "e2el_ms", targets.e2e_ms)):
        if threshold is None:
            continue
        dist = metrics[key]
        measured = getattr(dist, stat)
        state = _judge(measured, dist.ci.get(stat), threshold, lower_is_better=True)
        causes: list[str] = []
        if state != "PASS":
            causes = _ttft_causes(records, config, server, load) if target == "ttft_ms" else _e2e_causes(records, metrics, roofline)
        note = "no successful request to measure" if measured is None else f"{stat} over {dist.n} requests"
        verdicts.append(Verdict(target=target, state=state, threshold=threshold, measured=measured, ci=dist.ci.get(stat),
                                statistic=stat, likely_causes=causes, note=note))
    profile = f"Poisson at {config.rate}/s capped at {config.concurrency}" if config.rate else f"concurrency {config.concurrency}"
    if targets.request_throughput is not None:
        measured = summary.request_throughput if summary.completed else None
        state = _judge(measured, summary.request_throughput_ci, targets.request_throughput, lower_is_better=False)
        verdicts.append(Verdict(
            target="request_throughput", state=state, threshold=targets.request_throughput, measured=measured,
            ci=summary.request_throughput_ci, statistic="completed requests/s",
            likely_causes=_throughput_causes(config, summary, metrics, server, knee) if state != "PASS" else [],
            note=f"measured with {profile}",
        ))
    capacity = capacity_verdict(targets, summary.request_goodput if summary.completed else None, summary.request_goodput_ci,
                                f"completed within every latency target, at {profile}" if targets.request_throughput is not None else "",
                                ["Goodput counts only requests within the TTFT and E2E targets; see those verdicts."])
    if capacity:
        verdicts.append(capacity)
    if targets.memory_gb is not None:
        gb = server.memory_bytes / 1e9 if server.memory_bytes is not None else None
        state = _judge(gb, None, targets.memory_gb, lower_is_better=True)
        causes = []
        if state == "FAIL":
            causes.append("Weights plus KV cache exceed the budget: use a smaller quantization, a shorter context or fewer parallel slots.")
        note = f"peak {server.memory_source}" if gb is not None else "not measured: give the server's pid (embedded engine) or use Ollama"
        verdicts.append(Verdict(target="memory_gb", state=state, threshold=targets.memory_gb, measured=gb, statistic="peak", likely_causes=causes, note=note))
    return fail_on_failures(verdicts, summary.failed, total, summary.errors_by_cause)


def judged_levels(points: Sequence[SweepPoint], target_levels: Mapping[str, Sequence[int]], main: int) -> dict[str, int]:
    """The sweep level each target is judged at: the level that shows what the server can do for it.

    Throughput at the level with the most completed requests/s (not at the knee: a short run's noise can put a
    higher level a little above it); a latency target at the highest level where it holds (the load it holds
    under), or where its p95 was lowest when it holds nowhere (usually one stream; on a busy machine not always);
    memory, one peak over the whole sweep, at the main level.
    """
    chosen: dict[str, int] = {}
    for name, field in (("ttft_ms", "p95_ttft_ms"), ("e2e_ms", "p95_e2el_ms")):
        held = target_levels.get(name)
        chosen[name] = max(held) if held else _lowest(points, field)
    chosen["request_throughput"] = max(points, key=lambda p: (p.request_throughput, -p.concurrency)).concurrency
    chosen["memory_gb"] = main
    return chosen


def _lowest(points: Sequence[SweepPoint], field: str) -> int:
    """The level where `field` was lowest (levels without a value last; among equals, the lowest concurrency)."""
    return min(points, key=lambda p: (getattr(p, field) is None, getattr(p, field) or 0.0, p.concurrency)).concurrency


def name_level(verdict: Verdict, level: int, holds_at: Sequence[int] | None) -> Verdict:
    """The verdict with the sweep level it was judged at and the levels at which it holds, in its note."""
    held = "not measured" if holds_at is None else f"holds at concurrency {', '.join(map(str, holds_at))}" if holds_at else "holds at no level"
    where = "peak over the sweep" if verdict.target == "memory_gb" else f"judged at concurrency {level}"
    return verdict.model_copy(update={"note": f"{verdict.note}; {where}; {held}"})
