"""The `model-serving` command line: a thin face over the core functions.

Every verb prints a human summary, or with --json the same pydantic result the MCP tools return.
Failures print their cause and next step and exit non-zero; Ctrl-C cancels cleanly.
"""

from __future__ import annotations

import importlib
import json
import sys
from _collections_abc import dict_items, dict_keys, dict_values
from collections.abc import Iterator

import click

from model_serving.cli.app import App
from model_serving.errors import Cancelled, InputError, ServingError
from model_serving.failures import failure
from model_serving.settings import Settings

# Modules that register verbs, in the order a command name is looked for.
VERB_MODULES = ("core", "skill", "bench", "ollama", "cluster", "engines", "versions", "evals")


class _LazyVerbs(dict[str, click.Command]):
    """The group's commands, importing a verb module only when a command is looked up that earlier ones lack.

    `export` and `quantize` live in the first module, so they start without the skill tools' HTTP and
    HTML parsers (about 0.5 s of a 1.5 s quantize); listing or iterating loads them all.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending = list(VERB_MODULES)

    def _load_next(self) -> bool:
        if not self._pending:
            return False

        importlib.import_module(f"model_serving.cli.{self._pending.pop(0)}").register(main_group)
        return True

    def _load_all(self) -> None:
        while self._load_next():
            pass

    def get(self, name: str, default: click.Command | None = None) -> click.Command | None:  # type: ignore[override]
        while not super().__contains__(name) and self._load_next():
            pass
        return super().get(name, default)

    def __getitem__(self, name: str) -> click.Command:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return super().__iter__()

    def __len__(self) -> int:
        self._load_all()
        return super().__len__()

    def keys(self) -> dict_keys[str, click.Command]:
        self._load_all()
        return super().keys()

    def values(self) -> dict_values[str, click.Command]:
        self._load_all()
        return super().values()

    def items(self) -> dict_items[str, click.Command]:
        self._load_all()
        return super().items()


@click.group(commands=_LazyVerbs(), context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON results.")
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False), help="Allowed root for file paths (repeatable; default: the current directory). Env: MODEL_SERVING_ROOTS.")
@click.option("--home", type=click.Path(file_okay=False), help="State and cache directory. Env: MODEL_SERVING_HOME.")
@click.option("--ollama-host", help="Ollama base URL. Env: OLLAMA_HOST.")
@click.version_option(package_name="model-serving")
@click.pass_context
def main_group(ctx: click.Context, as_json: bool, roots: tuple[str, ...], home: str | None, ollama_host: str | None) -> None:
    """Export, quantize, serve, register and benchmark local LLMs."""
    ctx.obj = App(Settings.from_env(roots=list(roots) or None, home=home, ollama_host=ollama_host), as_json)



def _report(exc: ServingError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(exc.to_dict(), indent=2))
    click.secho(f"error: {exc.cause}", fg="red", err=True)
    if exc.next_step:
        click.echo(f"next step: {exc.next_step}", err=True)
    if exc.detail:
        click.echo(exc.detail, err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure the table knows leaves as a cause and a next step, with `ServingError.exit_code`."""
    args = argv if argv is not None else sys.argv[1:]
    try:
        try:
            main_group.main(args=argv, standalone_mode=False, prog_name="model-serving")
        except click.exceptions.Abort:
            raise Cancelled("The command") from None
        except click.UsageError as exc:  # click's own checks (ranges, choices, missing arguments) are input errors too
            hint = f" See `{exc.ctx.command_path} --help`." if exc.ctx else ""
            raise InputError(exc.format_message(), f"Fix the value and run again.{hint}") from None
        except click.ClickException as exc:
            raise InputError(exc.format_message(), "Fix the value and run again.") from None
    except click.exceptions.Exit as exc:  # --help and --version
        sys.exit(exc.exit_code)
    except Exception as exc:  # the one table (failures.py) words it; what it does not know is a bug and keeps its traceback
        known = failure(exc)
        if known is None:
            raise
        _report(known, "--json" in args)
        sys.exit(known.exit_code)
