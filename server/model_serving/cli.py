"""The `model-serving` command line: a thin face over the core functions.

Every verb prints a human summary, or with --json the same pydantic result the MCP tools return.
Failures print their cause and next step and exit non-zero; Ctrl-C cancels cleanly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from model_serving.config import Settings
from model_serving.errors import Cancelled, ServingError
from model_serving.jobs import Progress

T = TypeVar("T", bound=BaseModel)


@dataclass
class App:
    settings: Settings
    json: bool

    def emit(self, result: BaseModel | list[BaseModel] | dict[str, Any], human: Callable[[], None] | None = None) -> None:
        if self.json or human is None:
            if isinstance(result, list):
                payload: Any = [r.model_dump(mode="json") for r in result]
            elif isinstance(result, BaseModel):
                payload = result.model_dump(mode="json")
            else:
                payload = result
            click.echo(json.dumps(payload, indent=2, default=str))
        else:
            human()

    def run(self, label: str, fn: Callable[[Progress], T]) -> T:
        """Run a long core function with a progress bar (stderr, so --json stdout stays clean)."""
        progress = Progress()
        if self.json or not sys.stderr.isatty():
            last = [-1.0]

            def note(fraction: float, message: str) -> None:
                if fraction - last[0] >= 0.1 or fraction >= 1.0:
                    last[0] = fraction
                    click.echo(f"[{fraction * 100:5.1f}%] {label}: {message}", err=True)

            progress.subscribe(note)
            return _cancellable(progress, fn)
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        with Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                 TextColumn("{task.fields[note]}"), console=None, transient=False) as bar:
            task = bar.add_task(label, total=1.0, note="")
            progress.subscribe(lambda f, m: bar.update(task, completed=f, note=m[:60]))
            return _cancellable(progress, fn)


def _cancellable(progress: Progress, fn: Callable[[Progress], T]) -> T:
    try:
        return fn(progress)
    except KeyboardInterrupt:
        progress.cancel()
        raise Cancelled() from None


pass_app = click.make_pass_decorator(App)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON results.")
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False), help="Allowed root for file paths (repeatable; default: the current directory). Env: MODEL_SERVING_ROOTS.")
@click.option("--home", type=click.Path(file_okay=False), help="State and cache directory. Env: MODEL_SERVING_HOME.")
@click.option("--ollama-host", help="Ollama base URL. Env: OLLAMA_HOST.")
@click.version_option(package_name="model-serving")
@click.pass_context
def main_group(ctx: click.Context, as_json: bool, roots: tuple[str, ...], home: str | None, ollama_host: str | None) -> None:
    """Export, quantize, serve, register and benchmark local LLMs."""
    ctx.obj = App(Settings.from_env(roots=list(roots) or None, home=home, ollama_host=ollama_host), as_json)


def _register_commands() -> None:
    # Each capability module owns its verbs; this block only wires them in.
    from model_serving import cli_core

    cli_core.register(main_group)
    # --- capability command groups (one line each) ---
    __import__("model_serving.skill.cli", fromlist=["register"]).register(main_group)
    __import__("model_serving.bench.cli", fromlist=["register"]).register(main_group)
    __import__("model_serving.ollama.cli", fromlist=["register"]).register(main_group)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    try:
        main_group.main(args=argv, standalone_mode=False, prog_name="model-serving")
    except ServingError as exc:
        as_json = "--json" in (argv if argv is not None else sys.argv[1:])
        if as_json:
            click.echo(json.dumps(exc.to_dict(), indent=2))
        click.secho(f"error: {exc.cause}", fg="red", err=True)
        if exc.next_step:
            click.echo(f"next step: {exc.next_step}", err=True)
        if exc.detail:
            click.echo(exc.detail, err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cancelled", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
