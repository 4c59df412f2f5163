"""Every verb's result, rendered once for both faces: a headline and the lines under it.

The MCP tool's text is the headline (the structured result travels beside it); the CLI prints the
headline and then the detail lines, or with --json the same structured result. A renderer is found
by the result's class name, so this module imports none of the floors whose results it renders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model_serving.util.units import human_size

# Imported inside functions: the bench floor (numpy), only to render a bench result; both faces import this module at start-up.

Style = Literal["", "ok", "bad", "warn", "bold", "note"]


@dataclass
class Line:
    text: str
    style: Style = ""


@dataclass
class Rendering:
    headline: str
    style: Style = ""
    lines: list[Line] = field(default_factory=list)
    cli_headline: bool = True  # False where the lines already open with what the headline sums up (a bench: failures first)

    def add(self, text: str, style: Style = "") -> None:
        self.lines.append(Line(text, style))


Renderer = Callable[[Any], Rendering]
_RENDERERS: dict[str, Renderer] = {}


def renders(*names: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        for name in names:
            _RENDERERS[name] = fn
        return fn

    return register


def render(result: Any) -> Rendering:
    """The result's rendering; a result no renderer knows says only that the verb finished."""
    for cls in type(result).__mro__:
        if (fn := _RENDERERS.get(cls.__name__)) is not None:
            return fn(result)
    return Rendering("Done.")


def headline(result: Any) -> str:
    return render(result).headline


_VERDICT_STYLES: dict[str, Style] = {"PASS": "ok", "FAIL": "bad"}


def _verdict_style(state: Any) -> Style:
    return _VERDICT_STYLES.get(str(state), "warn")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- checkpoints, GGUFs, quantization ---

_INSPECT_KEYS = ["architecture", "architectures", "model_type", "file_type", "parameter_count", "bits_per_weight", "dtype", "context_length",
                 "vocab_size", "tokenizer_pre", "has_chat_template", "eos_token", "eot_token", "eos_token_ids", "adapter_base_model"]


@renders("CheckpointInfo", "GGUFInfo")
def _inspect(r: Any) -> Rendering:
    arch = getattr(r, "architecture", None) or ",".join(getattr(r, "architectures", []))
    out = Rendering(f"{r.kind} {arch}: {r.parameter_count or '?'} parameters"
                    + (f", needs {human_size(r.memory.total_bytes)} at ctx {r.memory.ctx_size}" if r.memory else "")
                    + (f"; {len(r.warnings)} warning(s)" if r.warnings else ""), "bold")
    d = r.model_dump()
    out.add(f"  {'path':18} {d['path']}")
    for key in _INSPECT_KEYS:
        if d.get(key) not in (None, [], ""):
            out.add(f"  {key:18} {d[key]}")
    if d.get("chat_template") is not None:
        out.add(f"  {'chat_template':18} {len(d['chat_template'])} characters")
    if d.get("tensor_types"):
        out.add(f"  {'tensor_types':18} " + ", ".join(f"{k}={v}" for k, v in d["tensor_types"].items()))
    if r.memory:
        m = r.memory
        out.add(f"  {'memory':18} {human_size(m.total_bytes)} = weights {human_size(m.weights_bytes)} + KV {human_size(m.kv_cache_bytes)} "
                f"(ctx {m.ctx_size}) + overhead {human_size(m.overhead_bytes)}")
    for warning in r.warnings:
        out.add(f"  warning: {warning}", "warn")
    return out


@renders("ExportResult")
def _export(r: Any) -> Rendering:
    out = Rendering(f"{'reused' if r.skipped else 'wrote'} {r.output_path} ({r.file_type}, {human_size(r.size_bytes)})", "ok")
    v = r.verification
    out.add(f"  {r.seconds:.1f} s, sha256 {r.sha256[:16]}…")
    out.add(f"  verified: vocab {v.vocab_size}, chat template kept: {v.chat_template_kept}, eos {v.eos_token!r}")
    return out


@renders("MergeResult")
def _merge(r: Any) -> Rendering:
    v = r.verification
    out = Rendering(f"merged into {r.output_path} ({r.dtype}); logit check {'passed' if v.passed else 'FAILED'}", "ok" if v.passed else "bad")
    out.add(f"  base {r.base_path}; tokenizer from the {r.tokenizer_from}, chat template from the {r.chat_template_from}")
    out.add(f"  logit check: merged vs base+adapter {v.merged_vs_adapter:.4f} (tolerance {v.tolerance}), "
            f"adapter vs base {v.adapter_vs_base:.4f}, top-1 agreement {v.top1_agreement:.0%}")
    return out


@renders("MergekitResult")
def _mergekit(r: Any) -> Rendering:
    worst = next((q.verdict for q in r.quality or [] if q.verdict == "broken"), None) or next(
        (q.verdict for q in r.quality or [] if q.verdict == "degraded"), None)
    verb = "reused" if r.skipped else "merged"
    out = Rendering(f"{verb} {len(r.inputs)} checkpoints with {r.method} into {r.output_path} ({r.dtype}, mergekit {r.mergekit_version})"
                    + (f"; against its inputs: {worst}" if worst else "; measured against each input" if r.quality else ""),
                    "bad" if worst == "broken" else "warn" if worst or r.quality_error else "ok")
    for i in r.inputs:
        out.add(f"  {i.role:5} {i.path} (sha256 {i.sha256[:12]}…, {human_size(i.size_bytes)})")
    for q in r.quality or []:
        interval = f" [{q.ppl_ratio_interval[0]:.3f}, {q.ppl_ratio_interval[1]:.3f}]" if q.ppl_ratio_interval else ""
        ratio = f"{q.ppl_ratio:.3f}{interval}" if q.ppl_ratio is not None else "not measurable"
        out.add(f"  vs {Path(q.input_path).name}: perplexity ratio {ratio}, same answers {q.agreement_rate:.0%}, {q.verdict}",
                "ok" if q.verdict == "ok" else "bad" if q.verdict == "broken" else "warn")
    for e in r.evals or []:
        out.add(f"  {e['summary']}", "bad" if e["verdict"] == "worse" else "ok" if e["verdict"] != "not measured" else "warn")
    if r.quality_error:
        out.add(f"  not measured: {r.quality_error}", "warn")
    out.add(f"  config (recorded in {Path(r.output_path).name}.merge.json):")
    out.lines.extend(Line(f"    {line}") for line in r.config.rstrip().splitlines())
    return out


@renders("MergekitEnvironment")
def _mergekit_env(r: Any) -> Rendering:
    return _tool_env(f"mergekit {r.version} in {r.python}", r.steps)


@renders("CompressorEnvironment")
def _compressor_env(r: Any) -> Rendering:
    return _tool_env(f"llmcompressor {r.version} in {r.python}", r.steps)


def _tool_env(title: str, steps: Any) -> Rendering:
    """A tool installed in a venv of its own: what it is, and each install step's state."""
    out = Rendering(title, "ok")
    out.lines.extend(Line(f"  {step.step:26} {step.state}") for step in steps)
    return out


@renders("QuantizeResult")
def _quantize(r: Any) -> Rendering:
    out = Rendering(f"{'reused' if r.skipped else 'wrote'} {r.output_path} ({r.qtype}, {r.bits_per_weight:.2f} bpw); quality {r.verdict}", "ok")
    out.add(f"  {r.qtype}: {human_size(r.input_size_bytes)} -> {human_size(r.output_size_bytes)}, {r.wall_s:.1f} s")
    if r.quality:
        out.add(f"  quality verdict    {r.verdict}: {r.summary}")
    return out


@renders("CompressResult")
def _compress(r: Any) -> Rendering:
    style: Style = "bad" if r.verdict == "broken" else "warn" if r.verdict == "degraded" else "ok"
    out = Rendering(f"{'reused' if r.skipped else 'wrote'} {r.output_path} ({r.format}, {r.scheme}); quality {r.verdict}", style)
    out.add(f"  {human_size(r.input_size_bytes)} -> {human_size(r.output_size_bytes)} (x{r.size_ratio:.2f}), "
            f"{r.compress_s:.1f} s in llm-compressor {r.versions.get('llmcompressor', '?')}")
    out.add(f"  recipe             {r.recipe}" + (f"; calibration: {r.calibration}" if r.calibration else ""))
    if r.quality:
        out.add(f"  quality on vLLM    {r.quality.get('summary', '')}", style)
    if not r.vllm_cpu:
        out.add("  serve it on a GPU (FP8 native from compute capability 8.9, weight-only from 8.0); vLLM's CPU backend has no FP8", "warn")
    return out


# --- serving ---


@renders("ServedModel")
def _served(m: Any) -> Rendering:
    if m.state != "running":
        return Rendering(f"stopped {m.name}")
    out = Rendering(f"{m.name} serves at {m.base_url}/v1/chat/completions (pid {m.pid})"
                    + (f" ({len(m.replicas)} replicas behind vllm-router, {m.router})" if m.replicas else "")
                    + (f"; adapters by model name: {', '.join(a.name for a in m.adapters)}" if m.adapters else ""), "ok")
    for a in m.adapters:
        out.add(f"  adapter {a.name} as model {a.name!r}: {a.source}")
    return out


@renders("RegisterResult")
def _registered(r: Any) -> Rendering:
    probe = r.probe
    out = Rendering(f"{r.name} on {r.target} at {r.endpoint}; probe {'passed' if probe.ok else 'FAILED'}", "ok" if probe.ok else "bad")
    out.add(f"  probe: {probe.answer!r} (finish_reason={probe.finish_reason}, ok: {probe.ok})")
    for feature in probe.features():
        out.add(f"  {feature}", "note")
    for problem in probe.problems:
        out.add(f"  problem: {problem}", "warn")
    return out


def _gateway_lines(out: Rendering, g: Any) -> None:
    if g.running:
        out.add(f"  {g.models_max} loaded at once (a count from the memory budget {human_size(g.memory_budget_bytes)}"
                f" / largest model {human_size(g.largest_model_bytes)}); idle models sleep after {g.keep_alive_s} s")
    for m in g.models:
        out.add(f"  {m.name:26} {m.state:10}" + (f" adapter on {m.adapter_of}" if m.adapter_of else ""))
    for r in getattr(g, "routes", []):  # weighted routes (serve/gateway/routes.py): the front's own counts per backend
        out.add(f"  route {r.public}: " + ", ".join(f"{b.model} {b.weight} ({b.share:.0%}; {b.front.requests} req, {b.front.errors} err"
                                                     + (f", e2e p50 {b.front.e2e.p50_s * 1000:.0f} ms" if b.front.e2e.p50_s is not None else "")
                                                     + ")" for b in r.backends))
    for line in [*g.skipped, g.note]:
        out.add(f"  {line}")


@renders("Gateway")
def _gateway(g: Any) -> Rendering:
    out = Rendering(f"gateway {g.base_url + '/v1' if g.running else '(not running)'}: " + (", ".join(f"{m.name} {m.state}" for m in g.models) or "no models"),
                    "bold")
    _gateway_lines(out, g)
    return out


def _status_headline(s: Any) -> str:
    o = s.ollama
    return (f"embedded: {', '.join(f'{e.model.name} {e.model.state}' for e in s.engine) or 'none'}; Ollama at {o.host} "
            + (f"{o.version}: {len(o.models)} model(s), {len(o.running)} loaded" if o.reachable else "not reachable")
            + (f"; gateway {s.gateway.base_url}/v1: " + ", ".join(f"{m.name} {m.state}" for m in s.gateway.models) if s.gateway and s.gateway.running else ""))


@renders("ServingStatus")
def _status(s: Any) -> Rendering:
    out = Rendering(_status_headline(s))
    out.add("embedded engine", "bold")
    if not s.engine:
        out.add("  no models served")
    for e in s.engine:
        m = e.model
        slots = f"{e.slots_busy}/{e.slots_total} busy" if e.slots_total is not None else "slots ?"
        out.add(f"  {m.name:26} {'healthy' if e.healthy else m.state:8} {m.base_url:26} {slots:12} rss {human_size(m.rss_bytes)}"
                + (" (vLLM)" if m.engine == "vllm" else ""))
        for a in m.adapters:  # LoRA adapters on the same engine, each under its own name
            out.add(f"    adapter {a.name:18} {a.source}")
        for r in e.replicas:  # behind vllm-router (serve/router)
            out.add(f"    replica {r.index}  {r.state:8} {r.base_url:26} {'routed' if r.routed else 'NOT routed':12} pid {r.pid}")
    if s.gateway is not None:  # the one endpoint (serve/gateway)
        out.add(f"gateway {s.gateway.base_url + '/v1' if s.gateway.running else '(not running)'}", "bold")
        _gateway_lines(out, s.gateway)
    v = s.vllm  # which vLLM serves --engine vllm (serve/vllm/env.py)
    if v is not None:
        out.add(f"vllm {v.version} ({v.build}, {v.source}) in {v.python}" if v.installed else f"vllm not installed: {v.error}; {v.next_step}")
    o = s.ollama
    out.add(f"ollama at {o.host}", "bold")
    out.add(f"  not reachable: {o.error}" if not o.reachable else
            f"  version {o.version}; {len(o.models)} models; running: {', '.join(r.name for r in o.running) or 'none'}")
    return out


def _metrics_line(m: Any) -> str:
    if not m.available:
        return f"{m.name}: {m.reason}"
    p95 = f", TTFT p95 {m.ttft.p95_s * 1000:.0f} ms" if m.ttft and m.ttft.p95_s is not None else ""
    rate = f", {m.generation_tok_s:.1f} gen tok/s" if m.generation_tok_s is not None else ""
    return f"{m.name} ({m.engine}): {m.requests_running or 0:g} running, {m.requests_waiting or 0:g} waiting{p95}{rate}"


def _latency(latency: Any) -> str:
    if latency is None or latency.p50_s is None:
        return "n/a"
    return f"{latency.p50_s * 1000:.0f}/{latency.p95_s * 1000:.0f} ms ({latency.count}, {latency.window})"


def _num(value: float | None, spec: str = "g") -> str:
    return "n/a" if value is None else format(value, spec)


@renders("MetricsView")
def _metrics(view: Any) -> Rendering:
    out = Rendering("; ".join(_metrics_line(m) for m in view.models) or "no models served")
    for m in view.models:
        out.add(f"{m.name} ({m.engine}) {m.base_url}", "bold")
        if not m.available:
            out.add(f"  metrics not available: {m.reason}")
            continue
        kv = "n/a" if m.kv_cache_usage is None else f"{m.kv_cache_usage:.0%}"
        out.add(f"  requests  running {_num(m.requests_running)}  waiting {_num(m.requests_waiting)}  completed {_num(m.requests_completed_total)}")
        out.add(f"  TTFT p50/p95 {_latency(m.ttft)}   e2e p50/p95 {_latency(m.e2e)}")
        out.add(f"  tokens/s  prompt {_num(m.prompt_tok_s, '.1f')}  generation {_num(m.generation_tok_s, '.1f')}   KV cache {kv}")
        for note in m.notes:
            out.add(f"  note: {note}")
    if view.models:
        out.add(view.quantile_method)
    return out


# --- deploy, clean, publish ---


def _verdict_line(v: dict[str, Any]) -> Line:
    measured = "n/a" if v.get("measured") is None else f"{v['measured']:.4g}"
    why = f" ({'; '.join(v['likely_causes'])})" if v.get("likely_causes") else ""
    level = f" at concurrency {v['concurrency']}" if v.get("concurrency") and v.get("target") != "memory_gb" else ""
    return Line(f"  {v.get('state')!s:12} {v.get('target')}: {v.get('statistic')} {measured} vs {v.get('threshold')}{level}{why}", _verdict_style(v.get("state")))


@renders("DeployResult")
def _deploy(r: Any) -> Rendering:
    if r.planned_only:
        out = Rendering(f"Plan for {r.name} on {r.target}: " + ", ".join(f"{s.step} {s.action}" for s in r.plan), "bold")
        for step in r.plan:
            out.add(f"  {step.step:9} {step.action:6} {step.detail}")
        return out
    verdicts = ", ".join(f"{v.get('target')} {v.get('state')}" for v in r.verdicts)
    out = Rendering(f"{r.name} serves on {r.target} at {r.endpoint}; answer {r.answer!r}; {verdicts or 'no bench'}; {r.total_seconds:.0f} s.", "bold")
    for rec in r.steps:
        out.add(f"  {rec.step:9} {rec.status:8} {rec.seconds:8.1f} s  {rec.output or ''}")
    if r.quality:
        out.add(f"  quality: {r.quality.get('verdict')} {r.quality.get('summary', '')}")
    out.lines.extend(_merge_quality_lines(r.steps))
    if r.answer is not None:
        out.add(f"  answer: {r.answer!r}", "note")
    if r.serves != "chat":
        out.add(f"  {r.serves}", "note")
    if r.chat_template:
        out.add(f"  chat template: {r.chat_template['path']} (sha256 {r.chat_template['sha256'][:12]})")
    for feature in r.chat_features:
        out.add(f"  {feature}", "note")
    out.lines.extend(_verdict_line(v) for v in r.verdicts)
    capacity = next((rec.summary.get("capacity") for rec in r.steps if rec.step == "bench"), None)
    for label, value in (("", capacity), ("endpoint: ", r.endpoint), ("manifest: ", r.manifest_path)):
        if value:
            out.add(f"  {label}{value}")
    if r.reused:
        out.add(f"  {r.reused}: no new version, no second engine", "note")
    if r.version is not None and (r.version > 1 or not r.live):
        out.add(f"  version {r.version}: " + ("live" if r.live else "served beside the live version, not live"), "note")
    out.lines.extend(Line(f"  next: {step}", "note") for step in r.next_steps)
    return out


def _merge_quality_lines(steps: Any) -> list[Line]:
    """A mergekit config's deploy: the merge against each input (or why it was not measured)."""
    merged = next((rec.summary for rec in steps if rec.step == "merge" and rec.summary.get("kind") == "mergekit"), None)
    quality = merged.get("quality") if merged else None
    if isinstance(quality, str):
        return [Line(f"  merge vs inputs: {quality}", "note")]
    return [Line(f"  merge vs {Path(q['input_path']).name}: {q['verdict']}, {q['summary']}", "ok" if q["verdict"] == "ok" else "bad")
            for q in quality or []]


@renders("CleanResult")
def _clean(r: Any) -> Rendering:
    out = Rendering(r.summary, "ok")
    for path in r.removed:
        out.add(f"  {'would remove' if r.planned else 'removed'} {path}")
    for path in r.kept:
        out.add(f"  kept {path}")
    return out


@renders("PublishResult")
def _publish(r: Any) -> Rendering:
    out = Rendering(r.summary, "ok")
    for f in r.files:
        out.add(f"  {f.action:6} {f.path_in_repo:40} {human_size(f.size_bytes):>10} {f.sha256}")
    for w in r.warnings:
        out.add(f"  warning: {w}", "warn")
    if r.planned_only:
        out.add(r.card)
    for check in r.verified:
        out.add(f"  verified: {check}")
    return out


# --- bench ---


def _bench_headline(r: Any) -> str:
    from model_serving.bench.capacity import capacity_text
    from model_serving.bench.report import failure_lines, headline, workload_text

    s = r.summary
    verdicts = ", ".join(f"{v.target} {v.state}" for v in r.verdicts)
    capacity = f"; capacity: {capacity_text(r.capacity)}" if r.capacity else ""
    return ("; ".join(failure_lines(r)) + f". Workload {workload_text(r.workload)}; {headline(r)}{capacity}. "
            f"{s.completed} completed, {s.failed} failed; p95 TTFT {s.p95_ttft_ms or 0:.0f} ms, p95 E2E {s.p95_e2el_ms or 0:.0f} ms, "
            f"{s.request_throughput:.2f} req/s; {verdicts}" + (" [INCOMPLETE]" if r.incomplete else "") + (f"; knee: {r.knee.explanation}" if r.knee else ""))


def _bench_lines(out: Rendering, r: Any) -> None:
    """Failures first, then what was sent, the judgement and capacity."""
    from model_serving.bench.capacity import capacity_text
    from model_serving.bench.report import failure_lines, headline, workload_text

    s = r.summary
    for line in failure_lines(r):
        out.add(line, "bad" if line.startswith(("FAILED", "first error")) else "")
    out.add(f"{r.config.model} at {r.config.base_url}: {s.completed} completed, {s.failed} failed in {s.duration:.2f} s"
            + ("  [INCOMPLETE" + (f": {r.stopped_reason}" if r.stopped_reason else "") + "]" if r.incomplete else ""))
    out.add(f"  workload: {workload_text(r.workload)}")
    out.add(f"  {headline(r)}")
    if r.capacity:
        out.add(f"  capacity: {capacity_text(r.capacity)}. {r.capacity.explanation}")


@renders("BenchResult")
def _bench(r: Any) -> Rendering:
    s = r.summary
    out = Rendering(_bench_headline(r), "bold", cli_headline=False)
    _bench_lines(out, r)
    out.add(f"  TTFT ms   median {_ms(s.median_ttft_ms)}  p95 {_ms(s.p95_ttft_ms)}  p99 {_ms(s.p99_ttft_ms)}")
    if s.total_reasoning_tokens is not None:
        out.add(f"  first answer token ms   median {_ms(s.median_ttfat_ms)}  p95 {_ms(s.p95_ttfat_ms)}  (after reasoning; "
                f"{s.total_reasoning_tokens} reasoning tokens beside {s.total_answer_tokens} answer tokens)")
    out.add(f"  TPOT ms   median {_ms(s.median_tpot_ms)}  p95 {_ms(s.p95_tpot_ms)}")
    out.add(f"  E2E ms    median {_ms(s.median_e2el_ms)}  p95 {_ms(s.p95_e2el_ms)}  p99 {_ms(s.p99_e2el_ms)}")
    out.add(f"  {s.request_throughput:.2f} req/s, {s.output_throughput:.1f} output tok/s; decode per stream "
            f"{_ms(r.metrics['decode_tok_s'].median)} tok/s (server says {_ms(s.median_server_decode_tok_s)})")
    if r.knee:
        out.add(f"  knee: {r.knee.explanation}")
    if r.roofline and r.roofline.percent_of_ceiling is not None:
        f = r.roofline
        out.add(f"  roofline: {f.percent_of_ceiling:.0f}% of {f.ceiling_tok_s:.0f} tok/s at {f.bandwidth_gbs:.1f} GB/s ({f.flag})")
    for v in r.verdicts:
        measured = "-" if v.measured is None else f"{v.measured:.2f}"
        out.add(f"  {v.state:>4} {v.target} {v.statistic} {measured} (threshold {v.threshold:g}) {v.note}", _verdict_style(v.state))
        for cause in v.likely_causes:
            out.add(f"       - {cause}")
    for finding in r.findings:
        out.add(f"  [{finding.severity}] {finding.message}")
    for kind, path in r.files.items():
        out.add(f"  {kind}: {path}")
    return out


@renders("Roofline")
def _roofline(r: Any) -> Rendering:
    out = Rendering(f"ceiling {r.ceiling_tok_s:.0f} tok/s at {r.bandwidth_gbs:.1f} GB/s ({r.bandwidth_source})"
                    + (f"; measured {r.measured_tok_s:.1f} tok/s = {r.percent_of_ceiling:.0f}% ({r.flag})" if r.percent_of_ceiling is not None else ""))
    out.add(f"  weights {r.weight_bytes_per_token / 1e6:.1f} MB per token, KV {r.kv_bytes_per_context_token} B per context token")
    if r.percent_of_ceiling is not None:
        out.add(f"  {r.note}")
    return out


@renders("QuantABResult")
def _quant_ab(r: Any) -> Rendering:
    from model_serving.bench.quant_ab import markdown

    out = Rendering(f"recommended {r.recommended or 'none'}: {r.explanation}", "bold")
    out.add(markdown(r))
    return out


@renders("CompareResult")
def _compare(r: Any) -> Rendering:
    from model_serving.bench.compare import markdown

    out = Rendering(r.summary, "bold")
    out.add(markdown(r))
    for kind, path in r.files.items():
        out.add(f"  {kind}: {path}")
    return out


# --- cluster ---


def _per_day(tokens: float | None) -> str:
    return "never" if tokens is None else f"{tokens:,.0f} tokens/day"


@renders("CostEstimate")
def _cost(r: Any) -> Rendering:
    t = r.throughput
    out = Rendering(r.summary, "ok")
    out.add(f"  throughput: {t.input_tok_s:.4g} input + {t.output_tok_s:.4g} output tok/s ({t.source})")
    out.add(f"  replica: {r.gpus_per_replica} GPU(s), ${r.replica_hourly_usd:g}/h; {r.replica_tokens_per_day:,.0f} tokens/day at most")
    inp = "n/a" if r.self_usd_per_m_input is None else f"${r.self_usd_per_m_input:.4g}"
    out.add(f"  self-hosted per 1M tokens: input {inp}, output ${r.self_usd_per_m_output:.4g}, "
            f"blended ${r.self_usd_per_m_blended:.4g} (input share {r.input_share:.0%})")
    if r.api_usd_per_m_blended is not None and r.crossover_tokens_per_day is None:
        out.add(f"  API blended ${r.api_usd_per_m_blended:.4g}/1M: cheaper at every volume (a full replica's tokens cost less there)")
    elif r.api_usd_per_m_blended is not None:
        out.add(f"  API blended ${r.api_usd_per_m_blended:.4g}/1M; self-hosting cheaper from {_per_day(r.crossover_tokens_per_day)}, "
                f"at every volume from {_per_day(r.cheaper_from_tokens_per_day)}")
    for note in r.notes:
        out.add(f"  note: {note}")
    out.add(f"  model: {r.cost_model}")
    if r.plot:
        out.add(f"  plot: {r.plot}")
    return out


@renders("Bundle")
def _bundle(p: Any) -> Rendering:
    out = Rendering(f"{p.engine} on {p.gpus_per_replica} x {p.gpu}: {len(p.files)} files in {p.output}", "ok")
    out.add(f"  {p.engine_why}")
    out.add(f"  format {p.format}: {p.format_why}")
    if p.sizing:
        s = p.sizing
        out.add(f"  tensor_parallel_size {s.tensor_parallel_size}, max_model_len {s.max_model_len}, max_num_seqs {s.max_num_seqs} "
                f"({s.kv_capacity_tokens:,} KV tokens; {s.parameter_count / 1e9:.2f}B parameters)")
        out.lines.extend(Line(f"  TP {t.tensor_parallel_size}: {t.why}") for t in s.tried)
        out.lines.extend(Line(f"  assumed: {a}") for a in s.assumptions)
    if p.llamacpp:
        m = p.llamacpp
        out.add(f"  {m.quant}, {m.parallel} x {m.ctx_per_sequence} tokens: {m.memory.total_bytes / 2**30:.1f} GiB ({m.fits})")
    if p.throughput:
        t = p.throughput
        cost = f"; ${t.usd_per_m_output:.4g} per 1M output tokens at ${t.gpu_hourly_usd:g}/GPU-hour" if t.usd_per_m_output is not None else ""
        out.add(f"  throughput {t.output_tok_s:g} output tok/s per replica ({t.label}: {t.rule}){cost}")
    if p.canary:
        c = p.canary
        out.add(f"  canary {c.name}: {c.share}% of requests (manifests/httproute.yaml), {c.model_id}, format {c.format}, "
                f"{c.gpus_per_replica} GPU(s) per replica")
    out.add(f"  start-up budget {p.startup_budget_s} s; argv: {' '.join(p.argv)}")
    out.lines.extend(Line(f"  note: {note}") for note in p.notes)
    return out


@renders("VllmEnvironment")
def _vllm_env(r: Any) -> Rendering:
    return _tool_env(f"vllm {r.version} ({r.build}) in {r.python}", r.steps)


# --- Ollama ---


@renders("ServerStatus")
def _ollama_version(s: Any) -> Rendering:
    if not s.reachable:
        return Rendering(f"Ollama is not reachable at {s.host}. {s.next_step}")
    out = Rendering(f"Ollama {s.version} at {s.host}")
    out.lines.extend(Line(f"warning: {w}", "warn") for w in s.warnings)
    return out


@renders("ShowInfo")
def _ollama_show(info: Any) -> Rendering:
    d = info.details
    out = Rendering(f"{info.name}: {d.family} {d.parameter_size} {d.quantization_level} ({d.format}); template {len(info.template)} chars")
    out.add(f"capabilities: {', '.join(info.capabilities) or '-'}")
    out.add("parameters:\n  " + "\n  ".join(info.parameters.splitlines()) if info.parameters else "parameters: -")
    if info.system:
        out.add(f"system: {info.system}")
    out.add("template:\n" + info.template)
    return out


@renders("ActionResult")
def _ollama_action(r: Any) -> Rendering:
    done = {"copy": "copied", "delete": "deleted", "unload": "unloaded", "pull": "pulled"}.get(r.action, r.action)
    return Rendering(f"{done} {r.model}" + (f": {r.detail}" if r.detail else ""))


@renders("ProbeResult")
def _probe(r: Any) -> Rendering:
    out = Rendering(f"{'PASS' if r.ok else 'FAIL'} {r.model}: finish_reason={r.finish_reason}, prompt tokens={r.prompt_tokens}"
                    + (f"; {'; '.join(r.problems)}" if r.problems else ""), "ok" if r.ok else "bad")
    out.add(f"reply: {r.answer}")
    out.lines.extend(Line(f) for f in r.features())
    out.lines.extend(Line(f"problem: {p}") for p in r.problems)
    return out


@renders("ModelfileResult")
def _modelfile(r: Any) -> Rendering:
    out = Rendering(f"Modelfile of {len(r.modelfile.splitlines())} lines")
    out.add(r.modelfile.rstrip("\n"))
    return out


@renders("ModelfileCheck")
def _modelfile_check(r: Any) -> Rendering:
    out = Rendering(f"{r.path}: valid ({', '.join(f'{k} x{v}' for k, v in r.instructions.items())})" if r.valid
                    else f"{r.path}: invalid: {'; '.join(r.problems[:5])}", "ok" if r.valid else "bad")
    out.lines.extend(Line(f"{r.path}: {p}") for p in r.problems)
    return out


# --- lists ---


def _count(listing: Any, what: str) -> str:
    return f"{listing.total} {what}" + (f" (first {len(listing.items)} shown)" if listing.truncated else "")


@renders("Listing[ServedModel]")
def _served_list(models: Any) -> Rendering:
    if not models.items:
        return Rendering("no models served; start one with `model-serving serve start FILE.gguf --name NAME`")
    out = Rendering(_count(models, "model(s) served"))
    for m in models.items:
        out.add(f"{m.name:28} {m.state:8} {m.base_url:26} {m.file_type or '?':8} ctx {m.ctx_size:<6} slots {m.parallel:<3} rss {human_size(m.rss_bytes)}")
        out.lines.extend(Line(f"  adapter {a.name:19} (model {a.name!r} on the same base_url)  {a.source}") for a in m.adapters)
    return out


@renders("Listing[ModelEntry]")
def _ollama_list(models: Any) -> Rendering:
    out = Rendering(_count(models, "model(s) on Ollama") if models.items else "No models.")
    for m in models.items:
        out.add(f"{m.name:40} {human_size(m.size):>10}  {m.details.family:10} {m.details.parameter_size:>8} {m.details.quantization_level:8} {m.modified_at[:19]}")
    return out


@renders("Listing[RunningInfo]")
def _ollama_ps(running: Any) -> Rendering:
    out = Rendering(_count(running, "model(s) loaded") if running.items else "No models loaded.")
    for m in running.items:
        expiry = "forever" if m.expires_in_s is not None and m.expires_in_s > 10**8 else (f"in {m.expires_in_s:.0f} s" if m.expires_in_s is not None else "?")
        out.add(f"{m.name:40} {human_size(m.size):>10}  {m.processor:16} ctx {m.context_length or '-':>6}  expires {expiry}")
    return out


# --- versions (issue 23) ---


def _period(periods: list[Any]) -> str:
    return ", ".join(f"{p.since[:19]} to {(p.until or 'now')[:19]}" for p in periods) or "never live"


@renders("VersionHistory")
def _history(h: Any) -> Rendering:
    canary = f"; canary @{h.canary.version} at {h.canary.share}%" if h.canary else ""
    out = Rendering(f"{h.name}: {len(h.versions)} version(s), live @{h.live}{canary}", "bold")
    for v in h.versions:
        mark = "live" if v.live else (f"canary {v.canary_share}%" if v.canary_share is not None else v.state)
        sha = f" sha256 {v.source_sha256[:12]}" if v.source_sha256 else ""
        out.add(f"  @{v.n:<3} {mark:11} {v.target:8} as {v.served_as}  {v.quant or '-'}  {v.created_at[:19]}", "ok" if v.live else "")
        out.add(f"       source {v.source}{sha}")
        if v.quality:
            out.add(f"       quality {v.quality.get('verdict')} {v.quality.get('summary', '')}")
        if v.bench:
            out.add(f"       bench {', '.join(f'{k} {s}' for k, s in (v.bench.get('verdicts') or {}).items())}")
        where = f"; at {v.base_url}" if v.base_url else ("; its engine is not running (serve it again to use it)" if v.state == "serving" else "")
        out.add(f"       live {_period(v.live_periods)}{where}")
    return out


@renders("PruneResult")
def _prune(r: Any) -> Rendering:
    verb = "would free" if r.planned else "freed"
    out = Rendering(f"{r.name}: {'plan: ' if r.planned else ''}{len(r.pruned)} version(s) pruned, {verb} {human_size(r.freed_bytes)}", "ok")
    for p in r.pruned:
        out.add(f"  @{p.n} ({p.served_as}): {human_size(p.freed_bytes)}" + "".join(f"\n    {'would remove' if r.planned else 'removed'} {f}" for f in p.removed))
    for why in r.kept:
        out.add(f"  kept {why}")
    return out


@renders("SwitchResult")
def _switch(r: Any) -> Rendering:
    if r.action == "canary":
        what = f"canary @{r.canary.version} gets {r.canary.share}% of {r.name}" if r.canary else f"no canary: @{r.live} gets all of {r.name}"
        out = Rendering(f"{what} on the gateway", "ok")
    else:
        out = Rendering(f"{r.action}: {r.name} now answers as @{r.live} (was @{r.was_live}) on {r.target}", "ok")
    if r.route:
        out.add("  route " + ", ".join(f"{b['model']} {b['weight']}" for b in r.route))
    if r.endpoint:
        out.add(f"  clients: {r.endpoint} with model {r.name!r}")
    if r.probe:
        out.add(f"  probe {'same answer' if r.probe.same else 'DIFFERENT answer'} through {r.name} and @{r.live}: {r.probe.public_answer!r}",
                "ok" if r.probe.same else "bad")
    out.lines.extend(Line(f"  next: {step}", "note") for step in r.next_steps)
    return out
# --- end versions ---


# --- eval against another version (issue 23) ---

_EVAL_STYLES: dict[str, Style] = {"better": "ok", "worse": "bad", "not distinguishable": "", "not measured": "warn"}


def _figure(f: Any) -> str:
    if f.value is None:
        return "n/a"
    spread = f" [{f.interval[0]:g}, {f.interval[1]:g}]" if f.interval else ""
    return f"{f.value:g}{spread}"


@renders("EvalReport")
def _eval(r: Any) -> Rendering:
    out = Rendering(r.summary, "ok" if r.promote else "bad" if "worse" in (r.quality_verdict, r.bench_verdict) else "bold")
    out.add(f"  candidate {r.candidate.ref} ({r.candidate.served_as} at {r.candidate.base_url}); baseline {r.baseline.ref} "
            f"({r.baseline.served_as} at {r.baseline.base_url})")
    out.add(f"  set: {r.eval_set}, {r.cases_total} case(s) " + ", ".join(f"{k} {n}" for k, n in r.cases_by_kind.items()) + f"; {r.sampling}")
    if r.settings_differ:
        out.add("  engine settings differ: " + "; ".join(r.settings_differ), "warn")
    for c in r.comparisons:
        diff = "" if c.difference is None else f"  diff {c.difference:g}" + (f" [{c.difference_interval[0]:g}, {c.difference_interval[1]:g}]" if c.difference_interval else "")
        p = "" if c.p_value is None else f" p={c.p_value:.3g}"
        out.add(f"  {c.verdict:>19}  {c.measure}: candidate {_figure(c.candidate)} vs baseline {_figure(c.baseline)}{diff}{p}", _EVAL_STYLES.get(c.verdict, ""))
        if c.note:
            out.add(f"                       {c.note}")
    for label, b in (("candidate", r.candidate_bench), ("baseline", r.baseline_bench)):
        if b is not None:
            out.add(f"  bench {label}: {b.completed} ok, {b.failed} failed at concurrency {b.concurrency}; {b.request_throughput:g} req/s, "
                    f"median TTFT {_ms(b.median_ttft_ms)} ms, median e2e {_ms(b.median_e2el_ms)} ms")
    for case in [c for c in r.cases if c.candidate_passed != c.baseline_passed or c.candidate_error or c.baseline_error][:10]:
        out.add(f"  case {case.id}: candidate {case.candidate_error or repr(case.candidate_answer[:60])} vs baseline "
                f"{case.baseline_error or repr(case.baseline_answer[:60])}")
    out.add(f"  decision: {r.decision}", "ok" if r.promote else "warn")
    return out
# --- end eval ---
