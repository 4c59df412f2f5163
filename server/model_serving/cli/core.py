"""Core verbs: inspect, export, quantize, serve, register, status, deploy.

Every verb's parameters come from its input model in limits.py (cli/options.from_model); the
callback hands the validated model to the core and prints the result.
"""

from __future__ import annotations

from typing import Any

import click

from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import (
    CleanRequest,
    DeployRequest,
    ExportRequest,
    GatewayRequest,
    InspectRequest,
    MergeRequest,
    NameRequest,
    NoInput,
    PublishRequest,
    QuantizeRequest,
    RegisterRequest,
    ServeStartRequest,
)
from model_serving.util.units import human_size

OUT = {"output": ["-o"]}


def _warnings(items: list[str]) -> None:
    for item in items:
        click.secho(f"  warning: {item}", fg="yellow")


def _show_inspect(info: Any) -> None:
    d = info.model_dump()
    click.secho(f"{info.kind}: {d['path']}", bold=True)
    keys = ["architecture", "architectures", "model_type", "file_type", "parameter_count", "bits_per_weight", "dtype", "context_length",
            "vocab_size", "tokenizer_pre", "has_chat_template", "eos_token", "eot_token", "eos_token_ids", "adapter_base_model"]
    for key in keys:
        if d.get(key) not in (None, [], ""):
            click.echo(f"  {key:18} {d[key]}")
    if d.get("chat_template") is not None:
        click.echo(f"  {'chat_template':18} {len(d['chat_template'])} characters")
    if d.get("tensor_types"):
        click.echo(f"  {'tensor_types':18} " + ", ".join(f"{k}={v}" for k, v in d["tensor_types"].items()))
    if info.memory:
        m = info.memory
        click.echo(f"  {'memory':18} {human_size(m.total_bytes)} = weights {human_size(m.weights_bytes)} + KV {human_size(m.kv_cache_bytes)} "
                   f"(ctx {m.ctx_size}) + overhead {human_size(m.overhead_bytes)}")
    _warnings(info.warnings)


@click.command("inspect")
@from_model(InspectRequest, positional=("path",))
def inspect_cmd(app: App, req: InspectRequest) -> None:
    """Describe a checkpoint folder or a GGUF file, with a memory estimate."""
    from model_serving.verbs import inspect_model

    info = inspect_model(app.settings, req)
    app.emit(info, lambda: _show_inspect(info))


@click.command("merge")
@from_model(MergeRequest, positional=("adapter",), aliases=OUT)
def merge_cmd(app: App, req: MergeRequest) -> None:
    """Merge a LoRA adapter into its 16-bit base (peft), checking the logits; writes a normal checkpoint."""
    from model_serving.verbs import merge_adapter

    result = app.run("merge", lambda p: merge_adapter(app.settings, req, p))

    def human() -> None:
        v = result.verification
        click.secho(f"merged into {result.output_path} ({result.dtype})", fg="green")
        click.echo(f"  base {result.base_path}; tokenizer from the {result.tokenizer_from}, chat template from the {result.chat_template_from}")
        click.echo(f"  logit check: merged vs base+adapter {v.merged_vs_adapter:.4f} (tolerance {v.tolerance}), "
                   f"adapter vs base {v.adapter_vs_base:.4f}, top-1 agreement {v.top1_agreement:.0%}")

    app.emit(result, human)


@click.command("export")
@from_model(ExportRequest, positional=("source",), aliases=OUT)
def export_cmd(app: App, req: ExportRequest) -> None:
    """Convert a Hugging Face checkpoint (folder or Hub repo id) to GGUF with llama.cpp's converter."""
    from model_serving.verbs import export_gguf

    result = app.run("export", lambda p: export_gguf(app.settings, req, p))

    def human() -> None:
        click.secho(f"{'reused' if result.skipped else 'wrote'} {result.output_path}", fg="green")
        click.echo(f"  {result.file_type}, {human_size(result.size_bytes)}, {result.seconds:.1f} s, sha256 {result.sha256[:16]}…")
        v = result.verification
        click.echo(f"  verified: vocab {v.vocab_size}, chat template kept: {v.chat_template_kept}, eos {v.eos_token!r}")

    app.emit(result, human)


@click.command("quantize")
@from_model(QuantizeRequest, positional=("input_path", "qtype"), aliases=OUT)
def quantize_cmd(app: App, req: QuantizeRequest) -> None:
    """Quantize a GGUF (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ...) and check it against its source."""
    from model_serving.verbs import quantize_gguf

    result = app.run("quantize", lambda p: quantize_gguf(app.settings, req, p))

    def human() -> None:
        click.secho(f"{'reused' if result.skipped else 'wrote'} {result.output_path}", fg="green")
        click.echo(f"  {result.qtype}: {human_size(result.input_size_bytes)} -> {human_size(result.output_size_bytes)}, "
                   f"{result.bits_per_weight:.2f} bits per weight, {result.wall_s:.1f} s")
        if result.quality:
            click.echo(f"  quality verdict    {result.verdict}: {result.summary}")

    app.emit(result, human)


@click.group("serve")
def serve_group() -> None:
    """Run models on the embedded llama.cpp server (127.0.0.1 only)."""


@serve_group.command("start")
@from_model(ServeStartRequest, positional=("gguf_path",))
def serve_start(app: App, req: ServeStartRequest) -> None:
    """Start serving a GGUF under a name."""
    from model_serving.verbs import serve_start as start

    model = app.run("serve", lambda p: start(app.settings, req))
    adapters = "".join(f"; adapter {a.name} as model {a.name!r}" for a in model.adapters)
    app.emit(model, lambda: click.secho(f"{model.name} serves at {model.base_url}/v1/chat/completions (pid {model.pid}){adapters}", fg="green"))


@serve_group.command("stop")
@from_model(NameRequest, positional=("name",))
def serve_stop(app: App, req: NameRequest) -> None:
    """Stop a served model and free its memory."""
    from model_serving.verbs import serve_stop as stop

    model = stop(app.settings, req)
    app.emit(model, lambda: click.echo(f"stopped {model.name}"))


@serve_group.command("list")
@from_model(NoInput)
def serve_list(app: App, req: NoInput) -> None:
    """List models served by the embedded engine."""
    from model_serving.verbs import serve_list as listed

    models = listed(app.settings, req)

    def human() -> None:
        if not models.items:
            click.echo("no models served; start one with `model-serving serve start FILE.gguf --name NAME`")
        for m in models.items:
            click.echo(f"{m.name:28} {m.state:8} {m.base_url:26} {m.file_type or '?':8} ctx {m.ctx_size:<6} slots {m.parallel:<3} rss {human_size(m.rss_bytes)}")
            for a in m.adapters:
                click.echo(f"  adapter {a.name:19} (model {a.name!r} on the same base_url)  {a.gguf_path}")

    app.emit(models, human)


@serve_group.command("gateway")
@from_model(GatewayRequest, positional=("action",))
def serve_gateway(app: App, req: GatewayRequest) -> None:
    """One base URL for every embedded model, picked by the model field: start, stop or show it (ACTION: start|stop|status).

    \b
    --port P              127.0.0.1 port (default 8090; refused when in use)
    --keep-alive S        an idle model sleeps after S seconds (default 300)
    --memory-budget-gb G  models loaded at once = G / the largest model's estimate (default: memory available)
    """
    from model_serving.verbs import serve_gateway as gateway

    result = app.run("gateway", lambda p: gateway(app.settings, req)) if req.action == "start" else gateway(app.settings, req)
    app.emit(result, lambda: _show_gateway(result))


def _show_gateway(g: Any) -> None:
    click.secho(f"gateway {g.base_url + '/v1' if g.running else '(not running)'}", bold=True)
    if g.running:
        click.echo(f"  {g.models_max} loaded at once (a count from the memory budget {human_size(g.memory_budget_bytes)}"
                   f" / largest model {human_size(g.largest_model_bytes)}); idle models sleep after {g.keep_alive_s} s")
    for m in g.models:
        click.echo(f"  {m.name:26} {m.state:10}" + (f" adapter on {m.adapter_of}" if m.adapter_of else ""))
    for line in [*g.skipped, g.note]:
        click.echo(f"  {line}")


@click.command("register")
@from_model(RegisterRequest, positional=("gguf_path",))
def register_cmd(app: App, req: RegisterRequest) -> None:
    """Make a GGUF servable under a name, then prove it answers and stops."""
    from model_serving.verbs import register_model

    result = app.run("register", lambda p: register_model(app.settings, req, p))

    def human() -> None:
        click.secho(f"{result.name} serves at {result.endpoint} ({result.target})", fg="green")
        probe = result.probe
        click.echo(f"  probe: {probe.answer!r} (finish_reason={probe.finish_reason}, ok: {probe.ok})")
        for problem in probe.problems:
            click.echo(f"  problem: {problem}")

    app.emit(result, human)


def _show_status(status: Any) -> None:
    click.secho("embedded engine", bold=True)
    if not status.engine:
        click.echo("  no models served")
    for e in status.engine:
        m = e.model
        slots = f"{e.slots_busy}/{e.slots_total} busy" if e.slots_total is not None else "slots ?"
        click.echo(f"  {m.name:26} {'healthy' if e.healthy else m.state:8} {m.base_url:26} {slots:12} rss {human_size(m.rss_bytes)}"
                   + (" (vLLM)" if m.engine == "vllm" else ""))
        for a in m.adapters:  # LoRA adapters on the same engine, each under its own name
            click.echo(f"    adapter {a.name:18} {a.gguf_path}")
        for r in e.replicas:  # behind vllm-router (serve/router)
            click.echo(f"    replica {r.index}  {r.state:8} {r.base_url:26} {'routed' if r.routed else 'NOT routed':12} pid {r.pid}")
    if status.gateway is not None:  # the one endpoint (serve/gateway)
        _show_gateway(status.gateway)
    v = status.vllm  # which vLLM serves --engine vllm (serve/vllm/env.py)
    if v is not None:
        click.echo(f"vllm {v.version} ({v.build}, {v.source}) in {v.python}" if v.installed else f"vllm not installed: {v.error}; {v.next_step}")
    o = status.ollama
    click.secho(f"ollama at {o.host}", bold=True)
    if not o.reachable:
        click.echo(f"  not reachable: {o.error}")
    else:
        click.echo(f"  version {o.version}; {len(o.models)} models; running: {', '.join(r.name for r in o.running) or 'none'}")


@click.command("status")
@click.option("--watch", is_flag=True, help="Redraw each engine's own metrics until Ctrl-C (display only).")
@click.option("--interval", type=click.FloatRange(0.5, 3600), default=2.0, show_default=True, help="Seconds between redraws.")
@from_model(NoInput)
def status_cmd(app: App, req: NoInput, watch: bool, interval: float) -> None:
    """What is served: embedded engine models (health, slots, memory) and Ollama; --watch: live metrics."""
    from model_serving.verbs import serving_status

    if watch:
        _watch(app, interval)
        return
    status = serving_status(app.settings, req)
    app.emit(status, lambda: _show_status(status))


def _show_metrics(view: Any) -> None:
    def ms(latency: Any) -> str:
        if latency is None or latency.p50_s is None:
            return "n/a"
        return f"{latency.p50_s * 1000:.0f}/{latency.p95_s * 1000:.0f} ms ({latency.count}, {latency.window})"

    def num(value: float | None, spec: str = "g") -> str:
        return "n/a" if value is None else format(value, spec)

    if not view.models:
        click.echo("no models served")
    for m in view.models:
        click.secho(f"{m.name} ({m.engine}) {m.base_url}", bold=True)
        if not m.available:
            click.echo(f"  metrics not available: {m.reason}")
            continue
        kv = "n/a" if m.kv_cache_usage is None else f"{m.kv_cache_usage:.0%}"
        click.echo(f"  requests  running {num(m.requests_running)}  waiting {num(m.requests_waiting)}  completed {num(m.requests_completed_total)}")
        click.echo(f"  TTFT p50/p95 {ms(m.ttft)}   e2e p50/p95 {ms(m.e2e)}")
        click.echo(f"  tokens/s  prompt {num(m.prompt_tok_s, '.1f')}  generation {num(m.generation_tok_s, '.1f')}   KV cache {kv}")
        for note in m.notes:
            click.echo(f"  note: {note}")
    click.echo(view.quantile_method)


def _watch(app: App, interval: float) -> None:
    import json

    from model_serving.serve.metrics import watch

    try:
        for view in watch(app.settings, interval_s=interval):
            if app.json:
                click.echo(json.dumps(view.model_dump(mode="json")), nl=True)  # one frame per line
                continue
            click.clear()
            click.echo(f"every {interval:g} s, Ctrl-C to stop")
            _show_metrics(view)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends


@click.command("metrics")
@from_model(NoInput)
def metrics_cmd(app: App, req: NoInput) -> None:
    """Each served engine's own /metrics, read twice 1 s apart: queue, TTFT/e2e p50/p95, tokens/s, KV cache."""
    from model_serving.verbs import serving_metrics

    view = serving_metrics(app.settings, req)
    app.emit(view, lambda: _show_metrics(view))


def _show_deploy(result: Any) -> None:
    click.secho(f"deploy {result.name} -> {result.target}{' (plan only)' if result.planned_only else ''}", bold=True)
    for step in result.plan if result.planned_only else []:
        click.echo(f"  {step.step:9} {step.action:6} {step.detail}")
    for rec in result.steps:
        click.echo(f"  {rec.step:9} {rec.status:8} {rec.seconds:8.1f} s  {rec.output or ''}")
    if result.quality:
        click.echo(f"  quality: {result.quality.get('verdict')} {result.quality.get('summary', '')}")
    if result.answer is not None:
        click.secho(f"  answer: {result.answer!r}", fg="cyan")
    for v in result.verdicts:
        colour = {"PASS": "green", "FAIL": "red"}.get(str(v.get("state")), "yellow")
        measured = "n/a" if v.get("measured") is None else f"{v['measured']:.4g}"
        why = f" ({'; '.join(v['likely_causes'])})" if v.get("likely_causes") else ""
        level = f" at concurrency {v['concurrency']}" if v.get("concurrency") and v.get("target") != "memory_gb" else ""
        click.secho(f"  {v.get('state')!s:12} {v.get('target')}: {v.get('statistic')} {measured} vs {v.get('threshold')}{level}{why}", fg=colour)
    capacity = next((rec.summary.get("capacity") for rec in result.steps if rec.step == "bench"), None)
    if capacity:
        click.echo(f"  {capacity}")
    if result.endpoint:
        click.echo(f"  endpoint: {result.endpoint}")
    if result.manifest_path:
        click.echo(f"  manifest: {result.manifest_path}")


@click.command("deploy")
@from_model(DeployRequest, positional=("source",), aliases=OUT)
def deploy_cmd(app: App, req: DeployRequest) -> None:
    """Export, quantize, register, probe and benchmark in one resumable run (default model: SmolLM2-135M)."""
    from model_serving.verbs import deploy_model

    result = app.run("deploy", lambda p: deploy_model(app.settings, req, p))
    app.emit(result, lambda: _show_deploy(result))


def register(group: click.Group) -> None:
    for command in (inspect_cmd, merge_cmd, export_cmd, quantize_cmd, serve_group, register_cmd, status_cmd, metrics_cmd, deploy_cmd, clean_cmd, publish_cmd):
        group.add_command(command)


@click.command("clean")
@from_model(CleanRequest, positional=("directory",))
def clean_cmd(app: App, req: CleanRequest) -> None:
    """Remove partial files left by killed runs, and sidecars whose output is gone (never a live writer's file)."""
    from model_serving.verbs import clean_partials

    result = clean_partials(app.settings, req)

    def human() -> None:
        for path in result.removed:
            click.echo(f"  {'would remove' if req.plan else 'removed'} {path}")
        for path in result.kept:
            click.echo(f"  kept {path}")
        click.secho(result.summary, fg="green")

    app.emit(result, human)


# --- publish (issue 12) ---
@click.command("publish")
@from_model(PublishRequest, positional=("source",))
def publish_cmd(app: App, req: PublishRequest) -> None:
    """Publish a deploy's GGUFs, Ollama side files, manifest and model card to the Hugging Face Hub, then verify."""
    from model_serving.verbs import publish_model

    result = app.run("publish", lambda p: publish_model(app.settings, req, p))

    def human() -> None:
        for f in result.files:
            click.echo(f"  {f.action:6} {f.path_in_repo:40} {human_size(f.size_bytes):>10} {f.sha256}")
        for w in result.warnings:
            click.secho(f"  warning: {w}", fg="yellow")
        if result.planned_only:
            click.echo(result.card)
        for check in result.verified:
            click.echo(f"  verified: {check}")
        click.secho(result.summary, fg="green")

    app.emit(result, human)
# --- end publish ---
