"""Core verbs: inspect, export, quantize, serve, register, status, deploy.

Every verb's parameters come from its input model in requests.py (cli/options.from_model); the
callback hands the validated model to the core and prints the result.
"""

from __future__ import annotations

import json

import click

from model_serving import verbs
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
from model_serving.verbs import (
    clean_partials,
    deploy_model,
    export_gguf,
    inspect_model,
    merge_adapter,
    publish_model,
    quantize_gguf,
    register_model,
    serving_metrics,
    serving_status,
)

# Imported inside functions: serve.metrics (httpx, prometheus_client), only for `metrics --watch`.

OUT = {"output": ["-o"]}


@click.command("inspect")
@from_model(InspectRequest, positional=("path",))
def inspect_cmd(app: App, req: InspectRequest) -> None:
    """Describe a checkpoint folder or a GGUF file, with a memory estimate."""
    info = inspect_model(app.settings, req)
    app.show(info)


@click.command("merge")
@from_model(MergeRequest, positional=("models",), aliases={**OUT, "weight": ["-t"]})
def merge_cmd(app: App, req: MergeRequest) -> None:
    """Merge a LoRA adapter into its 16-bit base (peft, logit-checked), or with --method slerp|ties|dare_ties|linear|task_arithmetic
    several fine-tunes of one base through mergekit, measured against each input; writes a normal checkpoint."""
    result = app.run("merge", lambda p: merge_adapter(app.settings, req, p))
    app.show(result)


@click.command("export")
@from_model(ExportRequest, positional=("source",), aliases=OUT)
def export_cmd(app: App, req: ExportRequest) -> None:
    """Convert a Hugging Face checkpoint (folder or Hub repo id) to GGUF with llama.cpp's converter."""
    result = app.run("export", lambda p: export_gguf(app.settings, req, p))
    app.show(result)


@click.command("quantize")
@from_model(QuantizeRequest, positional=("input_path", "qtype"), aliases=OUT)
def quantize_cmd(app: App, req: QuantizeRequest) -> None:
    """Quantize a GGUF (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, ...) and check it against its source; or, with --format
    awq|gptq|w8a8-int8|fp8, compress a checkpoint folder for vLLM (llm-compressor) and check it on vLLM."""
    result = app.run("quantize", lambda p: quantize_gguf(app.settings, req, p))
    app.show(result)


@click.group("serve")
def serve_group() -> None:
    """Run models on the embedded llama.cpp server (127.0.0.1 only)."""


@serve_group.command("start")
@from_model(ServeStartRequest, positional=("gguf_path",))
def serve_start(app: App, req: ServeStartRequest) -> None:
    """Start serving a GGUF under a name."""
    model = app.run("serve", lambda p: verbs.serve_start(app.settings, req))
    app.show(model)


@serve_group.command("stop")
@from_model(NameRequest, positional=("name",))
def serve_stop(app: App, req: NameRequest) -> None:
    """Stop a served model and free its memory."""
    model = verbs.serve_stop(app.settings, req)
    app.show(model)


@serve_group.command("list")
@from_model(NoInput)
def serve_list(app: App, req: NoInput) -> None:
    """List models served by the embedded engine."""
    models = verbs.serve_list(app.settings, req)
    app.show(models)


@serve_group.command("gateway")
@from_model(GatewayRequest, positional=("action",))
def serve_gateway(app: App, req: GatewayRequest) -> None:
    """One base URL for every embedded model, picked by the model field: start, stop or show it (ACTION: start|stop|status).

    \b
    --port P              127.0.0.1 port (default 8090; refused when in use)
    --keep-alive S        an idle model sleeps after S seconds (default 300)
    --memory-budget-gb G  models loaded at once = G / the largest model's estimate (default: memory available)
    """
    result = app.run("gateway", lambda p: verbs.serve_gateway(app.settings, req)) if req.action == "start" else verbs.serve_gateway(app.settings, req)
    app.show(result)


@click.command("register")
@from_model(RegisterRequest, positional=("gguf_path",))
def register_cmd(app: App, req: RegisterRequest) -> None:
    """Make a GGUF servable under a name, then prove it answers and stops."""
    result = app.run("register", lambda p: register_model(app.settings, req, p))
    app.show(result)


@click.command("status")
@click.option("--watch", is_flag=True, help="Redraw each engine's own metrics until Ctrl-C (display only).")
@click.option("--interval", type=click.FloatRange(0.5, 3600), default=2.0, show_default=True, help="Seconds between redraws.")
@from_model(NoInput)
def status_cmd(app: App, req: NoInput, watch: bool, interval: float) -> None:
    """What is served: embedded engine models (health, slots, memory) and Ollama; --watch: live metrics."""
    if watch:
        _watch(app, interval)
        return
    status = serving_status(app.settings, req)
    app.show(status)


def _watch(app: App, interval: float) -> None:
    from model_serving.serve.metrics import watch

    try:
        for view in watch(app.settings, interval_s=interval):
            if app.json:
                click.echo(json.dumps(view.model_dump(mode="json")), nl=True)  # one frame per line
                continue
            click.clear()
            click.echo(f"every {interval:g} s, Ctrl-C to stop")
            app.show(view)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends


@click.command("metrics")
@from_model(NoInput)
def metrics_cmd(app: App, req: NoInput) -> None:
    """Each served engine's own /metrics, read twice 1 s apart: queue, TTFT/e2e p50/p95, tokens/s, KV cache."""
    view = serving_metrics(app.settings, req)
    app.show(view)


@click.command("deploy")
@from_model(DeployRequest, positional=("source",), aliases=OUT)
def deploy_cmd(app: App, req: DeployRequest) -> None:
    """Export, quantize, register, probe and benchmark in one resumable run (default model: SmolLM2-135M)."""
    result = app.run("deploy", lambda p: deploy_model(app.settings, req, p))
    app.show(result)


def register(group: click.Group) -> None:
    for command in (inspect_cmd, merge_cmd, export_cmd, quantize_cmd, serve_group, register_cmd, status_cmd, metrics_cmd, deploy_cmd, clean_cmd, publish_cmd):
        group.add_command(command)


@click.command("clean")
@from_model(CleanRequest, positional=("directory",))
def clean_cmd(app: App, req: CleanRequest) -> None:
    """Remove partial files left by killed runs, and sidecars whose output is gone (never a live writer's file)."""
    result = clean_partials(app.settings, req)
    app.show(result)


# --- publish (issue 12) ---
@click.command("publish")
@from_model(PublishRequest, positional=("source",))
def publish_cmd(app: App, req: PublishRequest) -> None:
    """Publish a deploy's GGUFs, Ollama side files, manifest and model card to the Hugging Face Hub, then verify."""
    result = app.run("publish", lambda p: publish_model(app.settings, req, p))
    app.show(result)
# --- end publish ---
