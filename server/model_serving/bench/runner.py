"""`run_benchmark`: preflight, load, metrics, reconciliation, roofline, verdicts and report files in one call.

A run that breaks part-way (the server stops answering, streams close early) still returns and
writes what it measured, with `incomplete=True` and the reason; only a cancelled run writes nothing.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from model_serving.bench import capacity, engine_metrics, loads, metrics, probe, quiet, report, roofline, server_timings, tokens, verdicts, workloads
from model_serving.bench.prompts import load_prompts
from model_serving.bench.schema import (
    CONNECTION_ERRORS,
    BenchConfig,
    BenchResult,
    Capacity,
    Finding,
    Knee,
    LoadTimes,
    RequestRecord,
    Roofline,
    ServerInfo,
    ServerMetrics,
    Stats,
    Summary,
    SweepPoint,
    Verdict,
)
from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.serve.metrics import Scrape
from model_serving.settings import is_loopback_url


def _integrity(records: Sequence[RequestRecord], config: BenchConfig, loop_lag_ms: Sequence[float]) -> list[Finding]:
    """Guards from the reference's pitfall list: role chunks, multi-token chunks, buffering, short output, client lag."""
    findings: list[Finding] = []
    ok = [r for r in records if r.status == "ok"]
    if any(r.role_chunk_before_content for r in ok):
        findings.append(Finding(code="role_chunk", severity="info",
                                message="The server sent a role-only opening chunk; TTFT is taken at the first content chunk instead."))
    server_counted = [r for r in ok if r.output_tokens_source == "server" and r.chunk_ms]
    if server_counted:
        ratio = sum(r.output_tokens for r in server_counted) / sum(len(r.chunk_ms) for r in server_counted)
        if ratio > 1.1:
            findings.append(Finding(code="multi_token_chunks",
                                    message=f"Chunks carry {ratio:.2f} tokens on average: inter-token latency is per chunk, TPOT per token."))
    buffered = [r for r in ok if r.output_tokens > 4 and r.e2el_ms and r.ttft_ms and r.ttft_ms / r.e2el_ms > 0.9]
    if buffered and len(buffered) > len(ok) // 2:
        findings.append(Finding(code="buffered_stream",
                                message="First token arrives at over 90% of the end-to-end time: the stream looks buffered (proxy or server)."))
    short = [r for r in ok if r.output_tokens < 0.5 * r.max_tokens]
    if short and len(short) > len(ok) // 2:
        findings.append(Finding(code="short_output", severity="info",
                                message=f"{len(short)} of {len(ok)} answers stopped before half of max_tokens: decode figures rest on few tokens."))
    if ok and all(r.output_tokens_source == "chunks" for r in ok):
        findings.append(Finding(code="client_token_count", severity="info",
                                message="The server sent no token counts and no GGUF was given for its tokenizer; each content chunk counted as one token."))
    if loop_lag_ms:
        worst = max(loop_lag_ms)
        if worst > 20:
            findings.append(Finding(code="client_lag",
                                    message=f"The client's event loop stalled for up to {worst:.0f} ms: client-side timings may be inflated."))
    dropped = sum(1 for r in records if r.error_kind in CONNECTION_ERRORS)
    if dropped:
        findings.append(Finding(code="connection_errors", severity="error", message=(
            f"{dropped} request(s) lost their connection (refused, reset or closed by the server); none was resent, "
            "as users' clients would not.")))
    statuses = {s: sum(1 for r in records if r.status == s) for s in ("incomplete", "empty", "error")}
    for status, count in statuses.items():
        if count:
            sample = next(r.error for r in records if r.status == status)
            findings.append(Finding(code=f"requests_{status}", severity="error", message=f"{count} request(s) {status}: {sample}"))
    return findings


PREFILLED_FLOOR = 0.9  # below it, the prompt cache served enough of the prompts to flatter TTFT


def _prefill_from_counters(summary: Summary, records: Sequence[RequestRecord], outcome: loads.LoadOutcome,
                           server: ServerMetrics | None) -> Summary:
    """Where no request carried llama.cpp timings, prefilled against sent from the server's /metrics counter.

    The counter's delta covers the warm-up requests too (the server cannot tell them apart), so they are sent here as well.
    """
    if summary.prefill_source is not None or server is None or "prompt_tokens_total" not in server.delta:
        return summary
    counted = [r for r in [*records, *outcome.warmups] if r.prompt_tokens_source == "server" and r.prompt_tokens]
    sent = sum(r.prompt_tokens or 0 for r in counted)
    if not counted or sent <= 0:
        return summary
    prefilled = int(server.delta["prompt_tokens_total"])
    return summary.model_copy(update={"prompt_tokens_sent": sent, "prompt_tokens_prefilled": prefilled,
                                      "prefilled_fraction": prefilled / sent, "prefill_source": "metrics"})


def _workload_findings(config: BenchConfig, summary: Summary, records: Sequence[RequestRecord], outcome: loads.LoadOutcome) -> list[Finding]:
    """Repeated prompts, a prompt cache that served much of the prompts, and a fixed answer length the server ignored."""
    findings: list[Finding] = []
    workload = outcome.workload
    if workload is not None and workload.prompts == "repeated":
        findings.append(Finding(code="repeated_prompts", message=(
            f"Workload '{workload.profile}' repeats its prompts (cached/repeated): the prompt cache serves them, so TTFT measures "
            "almost no prefill. Judge a deploy with the default random profile or --profile chat.")))
    fraction = summary.prefilled_fraction
    if fraction is not None and fraction < PREFILLED_FLOOR:
        findings.append(Finding(code="prompt_cache_served", message=(
            f"The server prefilled {summary.prompt_tokens_prefilled} of the {summary.prompt_tokens_sent} prompt tokens sent "
            f"({fraction:.0%}, by its {summary.prefill_source}): the rest came from its prompt cache, so TTFT understates a fresh prompt's.")))
    if workload is not None and workload.ignore_eos:
        short = [r for r in records if r.status == "ok" and r.output_tokens_source == "server" and r.output_tokens < r.max_tokens]
        if short:
            findings.append(Finding(code="ignore_eos_ignored", message=(
                f"{len(short)} answer(s) stopped before max_tokens although ignore_eos asked for a fixed length: the server ignores it, "
                "so output lengths (and throughput) vary with the answers.")))
    return findings


def _warmup_failure(records: Sequence[RequestRecord], info: ServerInfo, config: BenchConfig) -> None:
    """An HTTP 4xx on every request means a request the server refuses, most often an unknown model name."""
    if records and all(r.status == "error" and (r.error or "").startswith(("HTTP 400", "HTTP 404")) for r in records):
        known = f" It lists: {', '.join(info.models)}." if info.models else ""
        raise InputError(f"The server refused every request for model {config.model!r}: {records[0].error}.{known}",
                         "Pass a model name the server serves (see model-serving status).")


def _measure(config: BenchConfig, info: ServerInfo, *, concurrency: int, rate: float | None, progress: Progress) -> tuple[list[RequestRecord], loads.LoadOutcome]:
    specs, warm_specs, workload = workloads.build(config, config.n_requests, config.warmup * min(concurrency, config.n_requests))
    with quiet.QuietWatch("load", [config.server_pid or 0], before_s=0) as watch:
        outcome = asyncio.run(loads.run_load(config, specs, concurrency=concurrency, rate=rate, progress=progress, warm_specs=warm_specs))
    outcome.workload = workload
    if not watch.quiet and watch.others_cores is not None and is_loopback_url(config.base_url):
        outcome.findings.append(Finding(code="host_busy", message=(
            f"Other processes used {watch.others_cores:.2f} cores during the run (the quiet rule allows {quiet.OTHERS_LIMIT_CORES}): "
            "they compete with the local server, so these timings are pessimistic and not comparable. "
            + ("" if config.server_pid else "The server's process was not named (bench a served model by name), so its own work counts here. ")
            + "Rerun on a quiet machine before acting on a FAIL.")))
    if config.gguf_path is not None:
        outcome.findings += tokens.apply(outcome.records, config.gguf_path)
    records = [metrics.derive(r) for r in outcome.records]
    _warmup_failure(records, info, config)
    if outcome.stopped_reason and not records:
        raise InputError(f"The benchmark could not start: {outcome.stopped_reason}.", "Check that the server is up and serves this model.")
    return records, outcome


def _roofline(config: BenchConfig, records: Sequence[RequestRecord], dists: dict[str, Stats]) -> Roofline | None:
    """Decode at one stream against the bandwidth ceiling, with bytes from the GGUF or from Ollama."""
    if config.gguf_path is not None:
        model: roofline.ModelBytes | None = roofline.model_bytes(config.gguf_path)
    elif config.api == "ollama":
        model = roofline.model_bytes_from_ollama(config.base_url, config.model, limit_s=probe.probe_limit(config))
    else:
        return None
    if model is None:
        return None
    ok = [r for r in records if r.status == "ok"]
    context = statistics.mean((r.prompt_tokens or 0) + r.output_tokens / 2 for r in ok) if ok else 0.0
    single_stream = config.concurrency == 1 and config.rate is None
    result = roofline.roofline(model, dists["decode_tok_s"].median if single_stream else None, context, bandwidth_gbs=config.bandwidth_gbs)
    if not single_stream:
        result.note = "Concurrent run: per-stream speed is not comparable with the batch-1 ceiling; run with concurrency 1 for the percentage."
    return result


def run_benchmark(config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    """Benchmark one served model under `config` and judge it against `config.targets`."""
    progress = progress or Progress()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if config.prompt_source == "jsonl" and config.prompts_file is not None:
        load_prompts("jsonl", n=1, seed=0, prompt=None, prompts_file=config.prompts_file, input_tokens=1, output_tokens=1)  # fail fast
    progress.update(0.0, "checking the server")
    info = probe.preflight(config)
    load = None
    if config.cold_start:
        if config.api != "ollama":
            raise InputError("A cold-start measurement needs a server that can unload a model over HTTP (Ollama).",
                             "For the embedded engine use bench.loadtime.measure_engine_load, or drop cold_start.")
        progress.update(0.02, "measuring a cold load")
        load = probe.ollama_cold_load(config)
    server_before = engine_metrics.snapshot(config)
    with probe.MemorySampler(config.server_pid) as sampler:
        records, outcome = _measure(config, info, concurrency=config.concurrency, rate=config.rate, progress=progress.span(0.05, 0.95))
    info = probe.after_run(config, info, sampler)
    return finish(config, records, outcome, info, started=started, load=load, progress=progress, server_before=server_before)


def finish(config: BenchConfig, records: list[RequestRecord], outcome: loads.LoadOutcome, info: ServerInfo, *, started: str,
           load: LoadTimes | None = None, progress: Progress | None = None, sweep: list[SweepPoint] | None = None, knee: Knee | None = None,
           server_before: Scrape | None = None, target_levels: dict[str, list[int]] | None = None, judged: list[Verdict] | None = None,
           roofline: Roofline | None = None, found: Capacity | None = None) -> BenchResult:
    """Statistics, reconciliation, roofline, verdicts (or a sweep's `judged`, each at its own level) and files for measured records."""
    server = engine_metrics.compare(config, server_before) if server_before is not None else None
    targets = config.targets
    dists = metrics.distributions(records, confidence=targets.confidence, seed=config.seed)
    summary = metrics.summarize(records, dists, confidence=targets.confidence, seed=config.seed, targets=targets, planned=config.n_requests)
    summary = _prefill_from_counters(summary, records, outcome, server)
    _, findings = server_timings.reconcile(records)
    findings = _integrity(records, config, outcome.loop_lag_ms) + _workload_findings(config, summary, records, outcome) + outcome.findings + findings
    if info.models and config.model not in info.models and config.api == "openai" and summary.completed:
        findings.append(Finding(code="model_name_ignored", message=(
            f"The server lists {', '.join(info.models)} but answered requests for {config.model!r}: it serves one model whatever "
            "the name, so make sure it is the model you meant to measure.")))
    roof = roofline or _roofline(config, records, dists)
    incomplete = bool(outcome.stopped_reason) or summary.failed > 0 or summary.completed == 0
    lag = outcome.loop_lag_ms
    result = BenchResult(
        config=config, started_at=started, summary=summary, metrics=dists, findings=findings, server=info, roofline=roof, load=load,
        sweep=sweep or [], knee=knee, capacity=found, target_levels=target_levels or {}, incomplete=incomplete, stopped_reason=outcome.stopped_reason,
        client_overhead={
            "loop_lag_max_ms": max(lag) if lag else 0.0,
            "loop_lag_p99_ms": float(metrics.stats(lag).p99 or 0.0) if lag else 0.0,
            "send_delay_p99_ms": float(dists["client_queue_ms"].p99 or 0.0) if config.rate is None else 0.0,
        },
        records=records, warmup_records=[metrics.derive(r) for r in outcome.warmups], server_metrics=server, workload=outcome.workload,
    )
    result.verdicts = judged if judged is not None else verdicts.judge(config, summary, dists, records, info, roof, load, knee)
    if config.output_dir is not None:
        if progress:
            progress.update(0.97, "writing the report")
        result.files = report.write_all(result, config.output_dir)
    return result


@dataclass
class _Level:
    """One sweep level's run and figures, kept so that each target can be judged at its own level."""

    config: BenchConfig
    records: list[RequestRecord]
    outcome: loads.LoadOutcome
    dists: dict[str, Stats]
    summary: Summary
    point: SweepPoint


def _sweep_level(level_config: BenchConfig, records: list[RequestRecord], outcome: loads.LoadOutcome) -> _Level:
    """One level's figures, and which latency and throughput targets it meets (point estimates of the judged statistic)."""
    targets = level_config.targets
    dists = metrics.distributions(records, confidence=targets.confidence, seed=level_config.seed)
    s = metrics.summarize(records, dists, confidence=targets.confidence, seed=level_config.seed, targets=targets, planned=level_config.n_requests)
    met = []
    for target, key, threshold in (("ttft_ms", "ttft_ms", targets.ttft_ms), ("e2e_ms", "e2el_ms", targets.e2e_ms)):
        value = getattr(dists[key], targets.statistic)
        if threshold is not None and value is not None and value < threshold:
            met.append(target)
    if targets.request_throughput is not None and s.completed and s.request_throughput >= targets.request_throughput:
        met.append("request_throughput")
    if s.failed:
        met = []  # a level that lost requests meets no target: every request counts
    point = SweepPoint(concurrency=level_config.concurrency, request_throughput=s.request_throughput, output_throughput=s.output_throughput,
                       p95_e2el_ms=s.p95_e2el_ms, median_ttft_ms=s.median_ttft_ms, median_tpot_ms=s.median_tpot_ms,
                       completed=s.completed, p95_ttft_ms=s.p95_ttft_ms, connection_errors=s.connection_errors, targets_met=met,
                       failed=s.failed, errors_by_cause=s.errors_by_cause, request_goodput=s.request_goodput,
                       median_server_decode_tok_s=s.median_server_decode_tok_s)
    point.holds_slo = capacity.holds(point, _latency_targets(level_config))
    return _Level(level_config, records, outcome, dists, s, point)


def _latency_targets(config: BenchConfig) -> list[str]:
    return [name for name, value in (("ttft_ms", config.targets.ttft_ms), ("e2e_ms", config.targets.e2e_ms)) if value is not None]


def _sweep_accounting(swept: dict[int, _Level], config: BenchConfig, info: ServerInfo, roof: Roofline | None,
                      judged: list[Verdict]) -> tuple[Capacity, list[Verdict]]:
    """Capacity (max concurrency under SLO), and the verdicts with the whole sweep's failures counted: error_rate
    over every level first, then FAIL for latency, throughput and capacity wherever any level lost a request."""
    points = [lv.point for lv in swept.values()]
    found = capacity.max_under_slo(
        points, _latency_targets(config), total_slots=info.total_slots, roofline=roof,
        client_lag_ms={c: float(metrics.stats(lv.outcome.loop_lag_ms).p99 or 0.0) for c, lv in swept.items() if lv.outcome.loop_lag_ms},
        goodput_ci={c: lv.summary.request_goodput_ci for c, lv in swept.items()})
    records = [r for lv in swept.values() for r in lv.records]
    not_sent = sum(lv.summary.not_sent for lv in swept.values())
    failed, total = sum(lv.summary.failed for lv in swept.values()), len(records) + not_sent
    causes = metrics.errors_by_cause(records, not_sent)
    sample = next((r.error for r in records if r.status != "ok" and r.error), None)
    first = verdicts.error_rate_verdict(config.targets, failed, total, causes, sample)
    cap = verdicts.capacity_verdict(config.targets, found.request_goodput, found.request_goodput_ci, capacity.capacity_text(found),
                                    [found.explanation])
    out = ([first] if first else []) + [v for v in judged if v.target not in ("error_rate", "capacity", "memory_gb")]
    out += ([cap] if cap else []) + [v for v in judged if v.target == "memory_gb"]
    return found, verdicts.fail_on_failures(out, failed, total, causes)


def _target_levels(points: Sequence[SweepPoint], config: BenchConfig, info: ServerInfo) -> dict[str, list[int]]:
    """target -> the levels at which it holds; memory is one peak over the whole sweep, so it holds at all or none."""
    targets = config.targets
    names = [n for n, t in (("ttft_ms", targets.ttft_ms), ("e2e_ms", targets.e2e_ms), ("request_throughput", targets.request_throughput)) if t]
    levels = {name: [p.concurrency for p in points if name in p.targets_met] for name in names}
    if targets.memory_gb is not None and info.memory_bytes is not None:
        levels["memory_gb"] = [p.concurrency for p in points] if info.memory_bytes / 1e9 < targets.memory_gb else []
    return levels


def _judge_levels(swept: dict[int, _Level], info: ServerInfo, knee: Knee, target_levels: dict[str, list[int]], main: int,
                  roof: Roofline | None) -> list[Verdict]:
    """Each target's verdict at the level `verdicts.judged_levels` picks for it, the level named in its note."""
    chosen = verdicts.judged_levels([lv.point for lv in swept.values()], target_levels, main)
    out: list[Verdict] = []
    for level in sorted(set(chosen.values())):
        lv = swept[level]
        judged = verdicts.judge(lv.config, lv.summary, lv.dists, lv.records, info, roof if level == 1 else None, None, knee)
        out += [v for v in judged if chosen.get(v.target) == level]
    order = list(chosen)
    out.sort(key=lambda v: order.index(v.target) if v.target in order else len(order))
    return [verdicts.name_level(v, chosen.get(v.target, main), target_levels.get(v.target)) for v in out]


def run_sweep(config: BenchConfig, levels: Sequence[int], progress: Progress | None = None, *, stop_past_knee: bool = False) -> BenchResult:
    """Closed-loop runs at each concurrency level; the knee, each target judged at its level, and the run at the knee form the result.

    With `stop_past_knee` the sweep ends once higher levels can only queue (`loads.sweep_can_stop`).
    """
    if not levels or any(level < 1 for level in levels):
        raise InputError(f"Sweep levels must be positive integers, got {list(levels)}.", "Pass levels such as 1,2,4,8.")
    progress = progress or Progress()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    info = probe.preflight(config)
    server_before = engine_metrics.snapshot(config)  # the server's view covers every level of the sweep
    swept: dict[int, _Level] = {}
    ordered = sorted(set(levels))
    with probe.MemorySampler(config.server_pid) as sampler:
        for i, level in enumerate(ordered):
            step = progress.span(i / len(ordered), (i + 1) / len(ordered))
            level_config = config.model_copy(update={"concurrency": level, "rate": None, "n_requests": max(config.n_requests, 2 * level)})
            records, outcome = _measure(level_config, info, concurrency=level, rate=None, progress=step)
            swept[level] = _sweep_level(level_config, records, outcome)
            points = [lv.point for lv in swept.values()]
            if outcome.stopped_reason or (stop_past_knee and loads.sweep_can_stop(points, info.total_slots)):
                break
    info = probe.after_run(config, info, sampler)
    points = [lv.point for lv in swept.values()]
    knee = loads.find_knee(points, info.total_slots)
    best = knee.concurrency or max(points, key=lambda p: p.request_throughput).concurrency
    target_levels = _target_levels(points, config, info)
    # The batch-1 ceiling, measured once (a bandwidth probe per call): decode at more streams is not comparable with it.
    single = swept.get(1)
    roof = _roofline(single.config, single.records, single.dists) if single else None
    if roof is not None:
        roof.note = f"{roof.note} Decode at concurrency 1 of the sweep.".strip()
    found, judged = _sweep_accounting(swept, config, info, roof, _judge_levels(swept, info, knee, target_levels, best, roof))
    main = swept[best]
    final = config.model_copy(update={"concurrency": best, "rate": None})
    return finish(final, main.records, main.outcome, info, started=started, progress=progress, sweep=points, knee=knee, server_before=server_before,
                  target_levels=target_levels, judged=judged, roofline=roof if single else None, found=found)
