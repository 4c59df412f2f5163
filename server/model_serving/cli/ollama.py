"""`model-serving ollama ...`: manage models on the Ollama server at OLLAMA_HOST."""

from __future__ import annotations

from pathlib import Path

import click

from model_serving.cli.app import App, pass_app
from model_serving.serve.ollama import manage
from model_serving.serve.ollama.probe import probe_model


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def register(group: click.Group) -> None:
    group.add_command(ollama)


@click.group()
def ollama() -> None:
    """Manage models on the Ollama server (OLLAMA_HOST / --ollama-host)."""


@ollama.command("version")
@pass_app
def version_cmd(app: App) -> None:
    """Server version, and the features model-serving uses that it lacks."""
    status = manage.server_status(app.settings)

    def human() -> None:
        if not status.up:
            click.echo(f"Ollama is not reachable at {status.host}. {status.next_step}")
            return
        click.echo(f"Ollama {status.version} at {status.host}")
        for warning in status.warnings:
            click.secho(f"warning: {warning}", fg="yellow")

    app.emit(status, human)


@ollama.command("list")
@pass_app
def list_cmd(app: App) -> None:
    """Models on the server."""
    models = manage.list_models(app.settings)

    def human() -> None:
        if not models:
            click.echo("No models.")
        for m in models:
            click.echo(f"{m.name:40} {_size(m.size):>10}  {m.details.family:10} {m.details.parameter_size:>8} {m.details.quantization_level:8} {m.modified_at[:19]}")

    app.emit(models, human)


@ollama.command("show")
@click.argument("name")
@click.option("--modelfile", "only_modelfile", is_flag=True, help="Print only the Modelfile Ollama reports.")
@pass_app
def show_cmd(app: App, name: str, only_modelfile: bool) -> None:
    """What Ollama stored for a model: template, parameters, details, capabilities."""
    info = manage.show_model(app.settings, name)

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
@pass_app
def ps_cmd(app: App) -> None:
    """Loaded models: memory, GPU/CPU split, context and expiry."""
    running = manage.running_models(app.settings)

    def human() -> None:
        if not running:
            click.echo("No models loaded.")
        for m in running:
            expiry = "forever" if m.expires_in_s is not None and m.expires_in_s > 10**8 else (f"in {m.expires_in_s:.0f} s" if m.expires_in_s is not None else "?")
            click.echo(f"{m.name:40} {_size(m.size):>10}  {m.processor:16} ctx {m.context_length or '-':>6}  expires {expiry}")

    app.emit(running, human)


@ollama.command("cp")
@click.argument("source")
@click.argument("destination")
@click.option("--overwrite", is_flag=True, help="Replace an existing destination.")
@pass_app
def cp_cmd(app: App, source: str, destination: str, overwrite: bool) -> None:
    """Copy a model under another name (tag a version)."""
    result = manage.copy_model(app.settings, source, destination, overwrite=overwrite)
    app.emit(result, lambda: click.echo(f"{result.model}: {result.detail}"))


@ollama.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def rm_cmd(app: App, name: str, yes: bool) -> None:
    """Delete a model from the server."""
    if not yes and not app.json:
        click.confirm(f"Delete {name} from Ollama?", abort=True)
    result = manage.delete_model(app.settings, name)
    app.emit(result, lambda: click.echo(f"deleted {result.model}"))


@ollama.command("unload")
@click.argument("name")
@pass_app
def unload_cmd(app: App, name: str) -> None:
    """Unload a model from memory now (keep_alive 0)."""
    result = manage.unload_model(app.settings, name)
    app.emit(result, lambda: click.echo(f"unloaded {result.model}"))


@ollama.command("pull")
@click.argument("name")
@pass_app
def pull_cmd(app: App, name: str) -> None:
    """Pull a model from the server's registry."""
    result = app.run(f"pull {name}", lambda progress: manage.pull_model(app.settings, name, progress))
    app.emit(result, lambda: click.echo(f"pulled {result.model}"))


@ollama.command("probe")
@click.argument("name")
@click.option("--num-predict", default=256, show_default=True, type=click.IntRange(1, 4096), help="Token budget for the probe answer.")
@pass_app
def probe_cmd(app: App, name: str, num_predict: int) -> None:
    """Chat once with a model: it must stop by itself (done_reason stop)."""
    result = probe_model(app.settings, name, num_predict=num_predict)

    def human() -> None:
        click.secho(f"{'PASS' if result.passed else 'FAIL'} {name}: done_reason={result.done_reason} prompt tokens={result.prompt_eval_count}",
                    fg="green" if result.passed else "red")
        click.echo(f"reply: {result.reply}")
        for problem in result.problems:
            click.echo(f"problem: {problem}")

    app.emit(result, human)


@ollama.command("modelfile")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Validate PATH as a Modelfile instead of generating one from a GGUF.")
@click.option("--source-dir", type=click.Path(file_okay=False), help="The Hugging Face checkpoint the GGUF came from (chat template, generation_config.json).")
@click.option("--system", help="Default system message.")
@click.option("--num-ctx", type=click.IntRange(1), help="Context length (default: trained context, capped by free memory).")
@pass_app
def modelfile_cmd(app: App, path: str, check: bool, source_dir: str | None, system: str | None, num_ctx: int | None) -> None:
    """Print the Modelfile registration would use for a GGUF, or --check a Modelfile."""
    if check:
        report = manage.check_modelfile(app.settings, Path(path))

        def human_check() -> None:
            if report.valid:
                click.echo(f"{report.path}: valid ({', '.join(f'{k} x{v}' for k, v in report.instructions.items())})")
            for problem in report.problems:
                click.echo(f"{report.path}: {problem}")

        app.emit(report, human_check)
        if not report.valid:
            raise SystemExit(2)
        return
    result = manage.generate_modelfile(app.settings, Path(path), source_dir=Path(source_dir) if source_dir else None, system=system, num_ctx=num_ctx)

    def human() -> None:
        click.echo(result.modelfile, nl=False)
        for note in result.template.notes:
            click.echo(f"# note: {note}", err=True)

    app.emit(result, human)
