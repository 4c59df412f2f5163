"""`model-serving ollama ...`: manage models on the Ollama server at OLLAMA_HOST (the verbs of verbs.py)."""

from __future__ import annotations

import click

from model_serving import verbs
from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.errors import InputError
from model_serving.requests import CheckModelfileRequest, ModelfileRequest, NoInput, OllamaCopyRequest, OllamaNameRequest, OllamaProbeRequest


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
    app.show(status)


@ollama.command("list")
@from_model(NoInput)
def list_cmd(app: App, req: NoInput) -> None:
    """Models on the server."""
    models = verbs.ollama_list(app.settings, req)
    app.show(models)


@ollama.command("show")
@click.option("--modelfile", "only_modelfile", is_flag=True, help="Print only the Modelfile Ollama reports (display only).")
@from_model(OllamaNameRequest, positional=("name",))
def show_cmd(app: App, req: OllamaNameRequest, only_modelfile: bool) -> None:
    """What Ollama stored for a model: template, parameters, details, capabilities."""
    info = verbs.ollama_show(app.settings, req)
    if only_modelfile and not app.json:
        click.echo(info.modelfile)
        return
    app.show(info)


@ollama.command("ps")
@from_model(NoInput)
def ps_cmd(app: App, req: NoInput) -> None:
    """Loaded models: memory, GPU/CPU split, context and expiry."""
    running = verbs.ollama_ps(app.settings, req)
    app.show(running)


@ollama.command("cp")
@from_model(OllamaCopyRequest, positional=("source", "destination"))
def cp_cmd(app: App, req: OllamaCopyRequest) -> None:
    """Copy a model under another name (tag a version)."""
    result = verbs.ollama_copy(app.settings, req)
    app.show(result)


@ollama.command("rm")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (the MCP tool never asks).")
@from_model(OllamaNameRequest, positional=("name",))
def rm_cmd(app: App, req: OllamaNameRequest, yes: bool) -> None:
    """Delete a model from the server."""
    if not yes and not app.json:
        click.confirm(f"Delete {req.name} from Ollama?", abort=True)
    result = verbs.ollama_delete(app.settings, req)
    app.show(result)


@ollama.command("unload")
@from_model(OllamaNameRequest, positional=("name",))
def unload_cmd(app: App, req: OllamaNameRequest) -> None:
    """Unload a model from memory now (keep_alive 0)."""
    result = verbs.ollama_unload(app.settings, req)
    app.show(result)


@ollama.command("pull")
@from_model(OllamaNameRequest, positional=("name",))
def pull_cmd(app: App, req: OllamaNameRequest) -> None:
    """Pull a model from the server's registry."""
    result = app.run(f"pull {req.name}", lambda progress: verbs.ollama_pull(app.settings, req, progress))
    app.show(result)


@ollama.command("probe")
@from_model(OllamaProbeRequest, positional=("name",))
def probe_cmd(app: App, req: OllamaProbeRequest) -> None:
    """Chat once with a model: it must stop by itself (done_reason stop)."""
    result = verbs.ollama_probe(app.settings, req)
    app.show(result)


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
    app.show(report)
    if not report.valid:
        raise InputError(f"{report.path} is not a valid Modelfile ({len(report.problems)} problem(s)).", "Fix the lines listed above and check again.")
