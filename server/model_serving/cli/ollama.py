"""`model-serving ollama ...`: manage models on the Ollama server at OLLAMA_HOST (the verbs of verbs.py)."""

from __future__ import annotations

import click

from model_serving import verbs
from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.errors import InputError
from model_serving.requests import CheckModelfileRequest, ModelfileRequest, NoInput, OllamaCopyRequest, OllamaNameRequest, OllamaProbeRequest
from model_serving.util.units import human_size


def register(group: click.Group) -> None:
    group.add_command(ollama)


@click.group()
def ollama() -> None:
    """Manage models on the Ollama server (OLLAMA_HOST / --ollama-host)."""


@ollama.command("version")
@from_model(NoInput)
def version_cmd(app: App, req: NoInput) -> None:
    """Server version, and the features model-serving uses that it lacks."""
    status = verbs.ollama_version(app.settings, req)

    def human() -> None:
        if not status.reachable:
            click.echo(f"Ollama is not reachable at {status.host}. {status.next_step}")
            return
        click.echo(f"Ollama {status.version} at {status.host}")
        for warning in status.warnings:
            click.secho(f"warning: {warning}", fg="yellow")

    app.emit(status, human)


@ollama.command("list")
@from_model(NoInput)
def list_cmd(app: App, req: NoInput) -> None:
    """Models on the server."""
    models = verbs.ollama_list(app.settings, req)

    def human() -> None:
        if not models.items:
            click.echo("No models.")
        for m in models.items:
            click.echo(f"{m.name:40} {human_size(m.size):>10}  {m.details.family:10} {m.details.parameter_size:>8} {m.details.quantization_level:8} {m.modified_at[:19]}")

    app.emit(models, human)


@ollama.command("show")
@click.option("--modelfile", "only_modelfile", is_flag=True, help="Print only the Modelfile Ollama reports (display only).")
@from_model(OllamaNameRequest, positional=("name",))
def show_cmd(app: App, req: OllamaNameRequest, only_modelfile: bool) -> None:
    """What Ollama stored for a model: template, parameters, details, capabilities."""
    info = verbs.ollama_show(app.settings, req)

    def human() -> None:
        if only_modelfile:
            click.echo(info.modelfile)
            return
        d = info.details
        click.echo(f"{info.name}: {d.family} {d.parameter_size} {d.quantization_level} ({d.format})")
        click.echo(f"capabilities: {', '.join(info.capabilities) or '-'}")
        click.echo("parameters:\n  " + "\n  ".join(info.parameters.splitlines()) if info.parameters else "parameters: -")
        if info.system:
            click.echo(f"system: {info.system}")
        click.echo("template:\n" + info.template)

    app.emit(info, human)


@ollama.command("ps")
@from_model(NoInput)
def ps_cmd(app: App, req: NoInput) -> None:
    """Loaded models: memory, GPU/CPU split, context and expiry."""
    running = verbs.ollama_ps(app.settings, req)

    def human() -> None:
        if not running.items:
            click.echo("No models loaded.")
        for m in running.items:
            expiry = "forever" if m.expires_in_s is not None and m.expires_in_s > 10**8 else (f"in {m.expires_in_s:.0f} s" if m.expires_in_s is not None else "?")
            click.echo(f"{m.name:40} {human_size(m.size):>10}  {m.processor:16} ctx {m.context_length or '-':>6}  expires {expiry}")

    app.emit(running, human)


@ollama.command("cp")
@from_model(OllamaCopyRequest, positional=("source", "destination"))
def cp_cmd(app: App, req: OllamaCopyRequest) -> None:
    """Copy a model under another name (tag a version)."""
    result = verbs.ollama_copy(app.settings, req)
    app.emit(result, lambda: click.echo(f"{result.model}: {result.detail}"))


@ollama.command("rm")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (the MCP tool never asks).")
@from_model(OllamaNameRequest, positional=("name",))
def rm_cmd(app: App, req: OllamaNameRequest, yes: bool) -> None:
    """Delete a model from the server."""
    if not yes and not app.json:
        click.confirm(f"Delete {req.name} from Ollama?", abort=True)
    result = verbs.ollama_delete(app.settings, req)
    app.emit(result, lambda: click.echo(f"deleted {result.model}"))


@ollama.command("unload")
@from_model(OllamaNameRequest, positional=("name",))
def unload_cmd(app: App, req: OllamaNameRequest) -> None:
    """Unload a model from memory now (keep_alive 0)."""
    result = verbs.ollama_unload(app.settings, req)
    app.emit(result, lambda: click.echo(f"unloaded {result.model}"))


@ollama.command("pull")
@from_model(OllamaNameRequest, positional=("name",))
def pull_cmd(app: App, req: OllamaNameRequest) -> None:
    """Pull a model from the server's registry."""
    result = app.run(f"pull {req.name}", lambda progress: verbs.ollama_pull(app.settings, req, progress))
    app.emit(result, lambda: click.echo(f"pulled {result.model}"))


@ollama.command("probe")
@from_model(OllamaProbeRequest, positional=("name",))
def probe_cmd(app: App, req: OllamaProbeRequest) -> None:
    """Chat once with a model: it must stop by itself (done_reason stop)."""
    result = verbs.ollama_probe(app.settings, req)

    def human() -> None:
        click.secho(f"{'PASS' if result.ok else 'FAIL'} {req.name}: finish_reason={result.finish_reason} prompt tokens={result.prompt_tokens}",
                    fg="green" if result.ok else "red")
        click.echo(f"reply: {result.answer}")
        for problem in result.problems:
            click.echo(f"problem: {problem}")

    app.emit(result, human)


@ollama.command("modelfile")
@from_model(ModelfileRequest, positional=("gguf_path",))
def modelfile_cmd(app: App, req: ModelfileRequest) -> None:
    """Print the Modelfile registration would use for a GGUF."""
    result = verbs.ollama_modelfile(app.settings, req)

    def human() -> None:
        click.echo(result.modelfile, nl=False)
        for note in result.template.notes:
            click.echo(f"# note: {note}", err=True)

    app.emit(result, human)


@ollama.command("check-modelfile")
@from_model(CheckModelfileRequest, positional=("path",))
def check_modelfile_cmd(app: App, req: CheckModelfileRequest) -> None:
    """Validate a Modelfile: unknown instructions, bad parameters, unclosed quotes, by line."""
    report = verbs.ollama_check_modelfile(app.settings, req)

    def human() -> None:
        if report.valid:
            click.echo(f"{report.path}: valid ({', '.join(f'{k} x{v}' for k, v in report.instructions.items())})")
        for problem in report.problems:
            click.echo(f"{report.path}: {problem}")

    app.emit(report, human)
    if not report.valid:
        raise InputError(f"{report.path} is not a valid Modelfile ({len(report.problems)} problem(s)).", "Fix the lines listed above and check again.")
