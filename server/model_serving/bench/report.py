"""Report files: JSON (vLLM `bench serve` keys at the top level), per-request JSONL, Markdown, PNG plots.

Each file is written through `atomic_output`, so a report is either complete or absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_serving.bench import plots
from model_serving.bench.capacity import capacity_text
from model_serving.bench.schema import BenchResult, Workload
from model_serving.util.paths import atomic_output

_VLLM_PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")


def vllm_keys(result: BenchResult) -> dict[str, Any]:
    """The keys a vLLM result reader expects, where our quantity means the same thing."""
    c, s = result.config, result.summary
    keys: dict[str, Any] = {
        "date": result.started_at, "backend": f"{c.api}-{c.route}", "label": c.label, "model_id": c.model, "tokenizer_id": None,
        "num_prompts": c.n_requests, "request_rate": c.rate if c.rate else "inf", "burstiness": 1.0,
        "max_concurrency": c.concurrency,
    }
    keys.update(s.model_dump(exclude={"request_throughput_ci", "request_goodput_ci", "errors_by_cause"}))
    keys["workload"] = result.workload.model_dump(mode="json") if result.workload else None
    return keys


def workload_text(workload: Workload | None) -> str:
    """The workload in one phrase: profile, lengths, ignore_eos, seed, and unique or cached/repeated."""
    if workload is None:
        return "workload not recorded"
    length = f"{workload.input_tokens} in / " if workload.input_tokens else ""
    kind = "cached/repeated prompts" if workload.prompts == "repeated" else "unique prompts"
    nonce = f", run {workload.run_nonce}" if workload.run_nonce else ""
    vocab = " (vocabulary tokens)" if workload.tokenizer else ""
    return (f"{workload.profile}{vocab}: {kind}, {length}{workload.output_tokens} out tokens, "
            f"ignore_eos {'on' if workload.ignore_eos else 'off'}, seed {workload.seed}{nonce}")


def _causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in causes.items())


def failure_lines(result: BenchResult) -> list[str]:
    """Failures first: how many requests failed and why (each sweep level's), or that every request completed."""
    s = result.summary
    if result.sweep:
        lines = [f"FAILED at concurrency {p.concurrency}: {p.failed} of {p.completed + p.failed} requests ({_causes(p.errors_by_cause)})"
                 for p in result.sweep if p.failed]
        if not lines:
            return [f"all {sum(p.completed for p in result.sweep)} requests completed, at every level"]
    elif s.failed:
        lines = [f"FAILED: {s.failed} of {s.completed + s.failed} requests ({_causes(s.errors_by_cause)})"]
    else:
        return [f"all {s.completed} requests completed"]
    sample = next((r.error for r in result.records if r.status != "ok" and r.error), None)
    return lines + ([f"first error: {sample}"] if sample else [])


def headline(result: BenchResult) -> str:
    """Goodput, throughput and the prompt cache's share in one line."""
    s = result.summary
    prefill = f"; prefilled {s.prefilled_fraction:.0%} of prompt tokens sent" if s.prefilled_fraction is not None else ""
    good = f" ({s.good_fraction:.0%} of requests)" if s.good_fraction is not None else ""
    return f"goodput {s.request_goodput:.2f} req/s{good}, throughput {s.request_throughput:.2f} req/s{prefill}"


def to_json(result: BenchResult) -> dict[str, Any]:
    return {**vllm_keys(result), "model_serving": result.model_dump(mode="json")}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _server_lines(result: BenchResult) -> list[str]:
    m = result.server_metrics
    if m is None:
        return []
    if not m.available or m.after is None:
        return ["", "## Server's own metrics", "", f"- {m.reason}"]
    a, d = m.after, m.delta
    ttft = f"{a.ttft.p50_s * 1000:.0f} / {a.ttft.p95_s * 1000:.0f} ms" if a.ttft and a.ttft.p50_s is not None and a.ttft.p95_s is not None else "not exported"
    return ["", f"## Server's own metrics ({a.engine} /metrics, before and after; warm-up included)", "",
            f"- Prompt tokens {d.get('prompt_tokens_total', 0):.0f}, generated tokens {d.get('generation_tokens_total', 0):.0f}"
            + (f", requests completed {d['requests_completed_total']:.0f}" if "requests_completed_total" in d else ""),
            f"- Generation {_fmt(a.generation_tok_s)} tok/s, prompt {_fmt(a.prompt_tok_s)} tok/s over {_fmt(a.rate_window_s)} s; TTFT p50/p95 {ttft}"]


def knee_text(result: BenchResult) -> str:
    """The knee in a few words: its level and cause, or that there is none within the levels swept."""
    knee = result.knee
    if knee is None:
        return "not swept"
    if knee.concurrency is None:
        return "none within the levels swept" if knee.cause == "none" else "not confirmed within the levels swept"
    return f"at concurrency {knee.concurrency} ({knee.cause.replace('_', ' ')})"


def _sweep_lines(result: BenchResult) -> list[str]:
    """The sweep table with the targets each level meets, the knee, where each target holds, and the sweep plot."""
    if not result.sweep:
        return []
    lines: list[str] = []
    lines += ["", "## Concurrency sweep", "",
              "| Concurrency | failed | goodput req/s | req/s | output tok/s | p95 e2el ms | median TTFT ms | median TPOT ms | holds SLO | targets met |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for p in result.sweep:
        lines.append(f"| {p.concurrency} | {p.failed} | {p.request_goodput:.2f} | {p.request_throughput:.2f} | {p.output_throughput:.1f} | {_fmt(p.p95_e2el_ms)} "
                     f"| {_fmt(p.median_ttft_ms)} | {_fmt(p.median_tpot_ms)} | {'yes' if p.holds_slo else 'no'} | {', '.join(p.targets_met) or '-'} |")
    if result.knee:
        lines += ["", f"Knee: {knee_text(result)}. {result.knee.explanation}"]
    if result.files.get("sweep_png"):
        lines += ["", f"![throughput and p95 latency against concurrency]({Path(result.files['sweep_png']).name})"]
    if result.target_levels:
        lines += ["", "Targets by concurrency: " + "; ".join(f"{t} holds at {', '.join(map(str, lv)) or 'no level'}" for t, lv in result.target_levels.items())]
    return lines


def markdown(result: BenchResult) -> str:
    c, s = result.config, result.summary
    profile = f"Poisson {c.rate}/s, cap {c.concurrency}" if c.rate else f"concurrency {c.concurrency}"
    lines = [
        f"# Benchmark: {c.model}", "",
        *[f"- **{line}**" for line in failure_lines(result)],
        f"- Endpoint: {c.base_url} ({c.api}, {c.route}); server: {result.server.kind}"
        + (f", {result.server.total_slots} slot(s)" if result.server.total_slots else ""),
        f"- Load: {c.n_requests} requests, {profile}, {c.warmup} warmup; max_tokens {c.max_tokens}",
        f"- Workload: {workload_text(result.workload)}",
        f"- Started {result.started_at}; {s.completed} completed, {s.failed} failed ({s.connection_errors} lost connections) in {s.duration:.2f} s"
        + ("; **INCOMPLETE**" + (f" ({result.stopped_reason})" if result.stopped_reason else "") if result.incomplete else ""),
        f"- {headline(result)}" + (f" ({s.prompt_tokens_prefilled} of {s.prompt_tokens_sent}, by the server's {s.prefill_source})" if s.prefill_source else ""),
        *([f"- Capacity: {capacity_text(result.capacity)}. {result.capacity.explanation}"] if result.capacity else []),
        "", "## Verdicts", "", "| Target | Verdict | Measured | CI | Threshold | Likely causes |", "|---|---|---|---|---|---|",
    ]
    for v in result.verdicts:
        ci = f"{v.ci[0]:.1f} to {v.ci[1]:.1f}" if v.ci else "-"
        causes = "<br>".join([v.note, *v.likely_causes])  # the note names the sweep level it was judged at
        lines.append(f"| {v.target} ({v.statistic}) | {v.state} | {_fmt(v.measured, 2)} | {ci} | {v.threshold:g} | {causes} |")
    lines += ["", "## Latency (ms)", "", "| Metric | n | mean | median | p90 | p95 | p99 | p95 CI |", "|---|---|---|---|---|---|---|---|"]
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "client_queue_ms"):
        d = result.metrics.get(name)
        if d is None or d.n == 0:
            continue
        p95_ci = d.ci.get("p95")
        lines.append(f"| {name} | {d.n} | {_fmt(d.mean)} | {_fmt(d.median)} | {_fmt(d.p90)} | {_fmt(d.p95)} | {_fmt(d.p99)} | "
                     f"{_fmt(p95_ci[0]) + ' to ' + _fmt(p95_ci[1]) if p95_ci else '-'} |")
    lines += ["", "## Throughput", "",
              f"- Requests/s: {s.request_throughput:.2f}" + (f" (CI {s.request_throughput_ci[0]:.2f} to {s.request_throughput_ci[1]:.2f})" if s.request_throughput_ci else ""),
              f"- Output tokens/s (aggregate): {s.output_throughput:.1f}; per request median: {_fmt(s.median_output_tok_s_per_request)}",
              f"- Decode tokens/s per stream (client, median): {_fmt(result.metrics['decode_tok_s'].median)}; server-reported: {_fmt(s.median_server_decode_tok_s)}",
              f"- Prefill tokens/s (client, prompt tokens / TTFT, median): {_fmt(s.median_prefill_tok_s)}",
              f"- Peak concurrent requests: {s.max_concurrent_requests}"]
    if result.server.memory_bytes:
        lines.append(f"- Memory: {result.server.memory_bytes / 1e9:.2f} GB ({result.server.memory_source})")
    if result.roofline:
        r = result.roofline
        lines += ["", "## Roofline", "",
                  f"- Weights read per token {r.weight_bytes_per_token / 1e6:.1f} MB, KV {r.kv_bytes_per_context_token} B per context token at {r.context_tokens:.0f} tokens",
                  f"- Bandwidth {r.bandwidth_gbs:.1f} GB/s ({r.bandwidth_source}); ceiling {r.ceiling_tok_s:.0f} tok/s; measured {_fmt(r.measured_tok_s)} tok/s"
                  + (f" = {r.percent_of_ceiling:.0f}% of it" if r.percent_of_ceiling is not None else ""),
                  f"- {r.note}"]
    if result.load:
        ld = result.load
        lines += ["", "## Model load", "", f"- Cold TTFT {_fmt(ld.cold_ttft_ms)} ms, warm TTFT {_fmt(ld.warm_ttft_ms)} ms, server load {_fmt(ld.server_load_ms)} ms. {ld.note}"]
    lines += _sweep_lines(result)
    lines += _server_lines(result)
    if result.findings:
        lines += ["", "## Findings", ""] + [f"- [{f.severity}] {f.code}: {f.message}" for f in result.findings]
    o = result.client_overhead
    if o:
        lines += ["", f"Client: event-loop lag max {o.get('loop_lag_max_ms', 0):.1f} ms, p99 {o.get('loop_lag_p99_ms', 0):.1f} ms."]
    return "\n".join(lines) + "\n"


def write_all(result: BenchResult, output_dir: Path) -> dict[str, str]:
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result.config.label}-{result.config.model}".replace("/", "_").replace(":", "_")
    files: dict[str, str] = {}
    targets = {
        "json": (output_dir / f"{stem}.json", lambda: json.dumps(to_json(result), indent=2)),
        "requests_jsonl": (output_dir / f"{stem}.requests.jsonl",
                           lambda: "".join(r.model_dump_json() + "\n" for r in [*result.warmup_records, *result.records])),
        "markdown": (output_dir / f"{stem}.md", lambda: markdown(result)),
    }
    files.update({kind: str(path) for kind, (path, _) in targets.items()})
    files.update(plots.write_plots(result, output_dir, stem))  # first, so that the Markdown can show the sweep plot
    result.files = files
    for kind, (path, render) in targets.items():
        if kind == "json":
            continue  # written last, once the file list is complete
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(render(), encoding="utf-8")
    path, render = targets["json"]
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(render(), encoding="utf-8")
    return files
