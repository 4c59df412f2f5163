"""Core verbs: inspect, export, quantize, serve, register, status, deploy."""

from __future__ import annotations

import click

from model_serving.cli.app import App, pass_app


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _warnings(items: list[str]) -> None:
    for item in items:
        click.secho(f"  warning: {item}", fg="yellow")


@click.command("inspect")
@click.argument("path")
@click.option("--ctx-size", type=click.IntRange(64, 1 << 20), help="Context length for the memory estimate.")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True, help="Parallel sequences for the memory estimate.")
@pass_app
def inspect_cmd(app: App, path: str, ctx_size: int | None, parallel: int) -> None:
    """Describe a checkpoint folder or a GGUF file, with a memory estimate."""
    from model_serving.checkpoint.inspect import inspect_path

    info = inspect_path(app.settings, path, ctx_size=ctx_size, parallel=parallel)

    def human() -> None:
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
            click.echo(f"  {'memory':18} {_size(m.total_bytes)} = weights {_size(m.weights_bytes)} + KV {_size(m.kv_cache_bytes)} "
                       f"(ctx {m.ctx_size}) + overhead {_size(m.overhead_bytes)}")
        _warnings(info.warnings)

    app.emit(info, human)


@click.command("export")
@click.argument("source")
@click.option("-o", "--output", help="Output .gguf path (default: beside the checkpoint).")
@click.option("--outtype", type=click.Choice(["f16", "bf16", "q8_0", "f32", "auto"]), default="f16", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@pass_app
def export_cmd(app: App, source: str, output: str | None, outtype: str, overwrite: bool) -> None:
    """Convert a Hugging Face checkpoint (folder or Hub repo id) to GGUF with llama.cpp's converter."""
    from model_serving.checkpoint.export import export_gguf

    result = app.run("export", lambda p: export_gguf(app.settings, source, output, outtype=outtype, overwrite=overwrite, progress=p))  # type: ignore[arg-type]

    def human() -> None:
        verb = "reused" if result.skipped else "wrote"
        click.secho(f"{verb} {result.output_path}", fg="green")
        click.echo(f"  {result.file_type}, {_size(result.size_bytes)}, {result.seconds:.1f} s, sha256 {result.sha256[:16]}…")
        v = result.verification
        click.echo(f"  verified: vocab {v.vocab_size}, chat template kept: {v.chat_template_kept}, eos {v.eos_token!r}")

    app.emit(result, human)


@click.command("quantize")
@click.argument("input_path")
@click.argument("qtype")
@click.option("-o", "--output", help="Output .gguf path (default: <input stem>-<QTYPE>.gguf).")
@click.option("--allow-requantize", is_flag=True, help="Quantize an already-quantized input (quality suffers).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--no-verify", is_flag=True, help="Skip the answer-agreement and perplexity check against the input.")
@pass_app
def quantize_cmd(app: App, input_path: str, qtype: str, output: str | None, allow_requantize: bool, overwrite: bool, no_verify: bool) -> None:
    """Quantize a GGUF (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ...) and check it against its source."""
    from pathlib import Path

    from model_serving.quantize.quantizer import quantize_gguf

    result = app.run("quantize", lambda p: quantize_gguf(app.settings, Path(input_path), Path(output) if output else None, qtype,
                                                         allow_requantize=allow_requantize, overwrite=overwrite, verify=not no_verify, progress=p))

    def human() -> None:
        d = result.model_dump(mode="json")
        click.secho(f"{'reused' if d.get('skipped') else 'wrote'} {d.get('output_path')}", fg="green")
        for key in ("qtype", "input_size_bytes", "output_size_bytes", "bits_per_weight", "seconds"):
            if key in d:
                click.echo(f"  {key:18} {d[key]}")
        quality = d.get("quality")
        if quality:
            click.echo(f"  quality verdict    {quality.get('verdict')}: {quality.get('summary', '')}")

    app.emit(result, human)


@click.group("serve")
def serve_group() -> None:
    """Run models on the embedded llama.cpp server (127.0.0.1 only)."""


@serve_group.command("start")
@click.argument("gguf")
@click.option("--name", required=True, help="Name clients use for the model.")
@click.option("--ctx-size", type=click.IntRange(64, 1 << 20), default=2048, show_default=True)
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel slots (continuous batching).")
@click.option("--threads", type=click.IntRange(1, 512), help="CPU threads (default: all cores).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: a free one).")
@click.option("--replace", is_flag=True, help="Replace a model already served under this name.")
@pass_app
def serve_start(app: App, gguf: str, name: str, ctx_size: int, parallel: int, threads: int | None, port: int | None, replace: bool) -> None:
    """Start serving a GGUF under a name."""
    from model_serving.serve.embedded.engine import start_model

    model = app.run("serve", lambda p: start_model(app.settings, gguf, name, ctx_size=ctx_size, parallel=parallel, threads=threads,
                                                   port=port, replace=replace, progress=p))
    app.emit(model, lambda: click.secho(f"{model.name} serves at {model.base_url}/v1/chat/completions (pid {model.pid})", fg="green"))


@serve_group.command("stop")
@click.argument("name")
@pass_app
def serve_stop(app: App, name: str) -> None:
    """Stop a served model and free its memory."""
    from model_serving.serve.embedded.engine import stop_model

    model = stop_model(app.settings, name)
    app.emit(model, lambda: click.echo(f"stopped {model.name}"))


@serve_group.command("list")
@pass_app
def serve_list(app: App) -> None:
    """List models served by the embedded engine."""
    from model_serving.serve.embedded.engine import list_models

    models = list_models(app.settings)

    def human() -> None:
        if not models:
            click.echo("no models served; start one with `model-serving serve start FILE.gguf --name NAME`")
        for m in models:
            click.echo(f"{m.name:28} {m.state:8} {m.base_url:26} {m.file_type or '?':8} ctx {m.ctx_size:<6} slots {m.parallel:<3} rss {_size(m.rss_bytes)}")

    app.emit(models, human)  # type: ignore[arg-type]


@click.command("register")
@click.argument("gguf")
@click.option("--name", required=True, help="Model name.")
@click.option("--target", type=click.Choice(["embedded", "ollama"]), default="embedded", show_default=True)
@click.option("--source-dir", help="The Hugging Face checkpoint the GGUF came from (Ollama: template and stop tokens).")
@click.option("--quantize", "ollama_quantize", help="Ollama target: quantize while registering (q4_K_M, q4_K_S, q8_0 by Ollama; others by us).")
@click.option("--ctx-size", type=click.IntRange(64, 1 << 20), default=2048, show_default=True)
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--system", help="Ollama target: a SYSTEM prompt.")
@click.option("--replace", "--overwrite", "replace", is_flag=True, help="Replace a model already registered under this name.")
@pass_app
def register_cmd(app: App, gguf: str, name: str, target: str, source_dir: str | None, ollama_quantize: str | None, ctx_size: int,
                 parallel: int, system: str | None, replace: bool) -> None:
    """Make a GGUF servable under a name, then prove it answers and stops."""
    from pathlib import Path

    if target == "embedded":
        from model_serving.serve.embedded.engine import register_embedded

        model, probe = app.run("register", lambda p: register_embedded(app.settings, gguf, name, ctx_size=ctx_size, parallel=parallel,
                                                                       replace=replace, progress=p))
        payload = {"target": "embedded", "model": model.model_dump(mode="json"), "probe": probe.model_dump(mode="json")}

        def human() -> None:
            click.secho(f"{name} serves at {model.base_url}/v1/chat/completions", fg="green")
            click.echo(f"  probe: {probe.answer!r} (finish_reason={probe.finish_reason}, template matches: {probe.template_matches})")

        app.emit(payload, human)
        return
    from model_serving.serve.ollama.register import register_gguf

    registration = app.run("register", lambda p: register_gguf(app.settings, Path(gguf), name, source_dir=Path(source_dir) if source_dir else None,
                                                               quantize=ollama_quantize, overwrite=replace, system=system, num_ctx=ctx_size, progress=p))
    app.emit(registration, lambda: click.secho(f"{name} registered with Ollama at {app.settings.ollama_host}", fg="green"))


@click.command("status")
@pass_app
def status_cmd(app: App) -> None:
    """What is served: embedded engine models (health, slots, memory) and Ollama."""
    from model_serving.serve.status import serving_status

    status = serving_status(app.settings)

    def human() -> None:
        click.secho("embedded engine", bold=True)
        if not status.engine:
            click.echo("  no models served")
        for e in status.engine:
            m = e.model
            slots = f"{e.slots_busy}/{e.slots_total} busy" if e.slots_total is not None else "slots ?"
            click.echo(f"  {m.name:26} {'healthy' if e.healthy else m.state:8} {m.base_url:26} {slots:12} rss {_size(m.rss_bytes)}")
        o = status.ollama
        click.secho(f"ollama at {o.host}", bold=True)
        if not o.reachable:
            click.echo(f"  not reachable: {o.error}")
        else:
            click.echo(f"  version {o.version}; {len(o.models)} models; running: {', '.join(str(r['name']) for r in o.running) or 'none'}")

    app.emit(status, human)


@click.command("deploy")
@click.argument("source", required=False)
@click.option("--name", help="Model name (default: from the source; smollm2-135m-instruct for the default model).")
@click.option("--quant", default="Q8_0", show_default=True, help="Quantization type, or F16 to serve the export as is.")
@click.option("--target", type=click.Choice(["auto", "embedded", "ollama"]), default="auto", show_default=True,
              help="auto: Ollama when it answers at OLLAMA_HOST, else the embedded engine.")
@click.option("--out-dir", help="Where artifacts and the manifest go (default: ./deployments/NAME).")
@click.option("--bench/--no-bench", default=True, show_default=True)
@click.option("--bench-requests", type=click.IntRange(1, 10000), default=8, show_default=True)
@click.option("--no-verify", is_flag=True, help="Skip the quantized-vs-source quality check.")
@click.option("--ctx-size", type=click.IntRange(64, 1 << 20), default=2048, show_default=True)
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--plan", "plan_only", is_flag=True, help="Show the steps and exit without doing anything.")
@click.option("--allow-broken", is_flag=True, help="Serve even when the quality check calls the quantized model broken.")
@pass_app
def deploy_cmd(app: App, source: str | None, name: str | None, quant: str, target: str, out_dir: str | None, bench: bool,
               bench_requests: int, no_verify: bool, ctx_size: int, parallel: int, plan_only: bool, allow_broken: bool) -> None:
    """Export, quantize, register, probe and benchmark in one resumable run (default model: SmolLM2-135M)."""
    from model_serving.deploy.pipeline import deploy

    result = app.run("deploy", lambda p: deploy(app.settings, source, name=name, quant=quant, target=target, out_dir=out_dir,  # type: ignore[arg-type]
                                                bench=bench, bench_requests=bench_requests, verify_quality=not no_verify,
                                                ctx_size=ctx_size, parallel=parallel, plan_only=plan_only,
                                                allow_broken=allow_broken, progress=p))

    def human() -> None:
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
            click.secho(f"  {v.get('state')!s:12} {v.get('target')}: {v.get('statistic')} {measured} vs {v.get('threshold')}{why}", fg=colour)
        if result.endpoint:
            click.echo(f"  endpoint: {result.endpoint}")
        if result.manifest_path:
            click.echo(f"  manifest: {result.manifest_path}")

    app.emit(result, human)


def register(group: click.Group) -> None:
    for command in (inspect_cmd, export_cmd, quantize_cmd, serve_group, register_cmd, status_cmd, deploy_cmd):
        group.add_command(command)
