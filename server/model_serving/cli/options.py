"""Click parameters derived from a verb's input model (requests.py): name, default, range, choices and
help all come from the model, so the CLI cannot drift from the MCP tool built from the same model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import click

from model_serving.cli.app import pass_app
from model_serving.failures import validated
from model_serving.requests import RENAMED_UNTIL, Request, flat_schema


class CommaList(click.ParamType):
    """A list option written as `1,2,4`."""

    name = "list"

    def __init__(self, item: type) -> None:
        self.item = item

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[Any]:
        if isinstance(value, list | tuple):
            return list(value)
        try:
            return [self.item(x.strip()) for x in str(value).split(",") if x.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.item.__name__} values, e.g. 1,2,4", param, ctx)


def click_type(prop: Mapping[str, Any]) -> click.ParamType:
    kind = prop.get("type")
    if "enum" in prop:
        return click.Choice(prop["enum"])
    if kind == "integer":
        return click.IntRange(prop.get("minimum"), prop.get("maximum"))
    if kind == "number":
        low = prop.get("minimum", prop.get("exclusiveMinimum"))
        return click.FloatRange(low, prop.get("maximum"), min_open="exclusiveMinimum" in prop)
    if kind == "array":
        item = prop.get("items", {}).get("type")
        return CommaList(int if item == "integer" else float if item == "number" else str)
    return click.STRING


def click_param(name: str, prop: Mapping[str, Any], *, positional: bool, aliases: Sequence[str] = ()) -> Callable[[Any], Any]:
    help_text = prop.get("description")
    if positional:
        if prop.get("type") == "array":
            return click.argument(name, nargs=-1, required=prop["required"])
        return click.argument(name, required=prop["required"], type=click_type(prop), default=prop.get("default"))
    option = flag(name)
    if prop.get("type") == "boolean":
        if prop.get("default"):
            return click.option(f"{option}/--no-{option[2:]}", *aliases, name, default=True, show_default=True, help=help_text)
        return click.option(option, *aliases, name, is_flag=True, default=False, help=help_text)
    default = None if prop["required"] else prop.get("default")
    # A list option may be repeated (--lora a=x --lora b=y) as well as comma-separated: the last one never silently wins.
    return click.option(option, *aliases, name, type=click_type(prop), default=default, required=prop["required"],
                        show_default=default is not None, help=help_text, multiple=prop.get("type") == "array")


def _flat(value: tuple[Any, ...]) -> list[Any]:
    return [x for item in value for x in (item if isinstance(item, list) else [item])]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def renamed_param(old: str, new: str, prop: Mapping[str, Any]) -> Callable[[Any], Any]:
    """An old spelling kept one release: it says so in --help, and using it prints a warning (the model records the use)."""
    note = f"Deprecated (removed in {RENAMED_UNTIL}): use {flag(new)}."
    if prop.get("type") == "boolean":
        return click.option(flag(old), old, is_flag=True, default=False, help=note)
    return click.option(flag(old), old, type=click_type(prop), default=None, help=note)


def _given(value: Any) -> bool:
    return value not in (None, False, ())


def from_model(model: type[Request], *, positional: Sequence[str] = (), aliases: Mapping[str, Sequence[str]] | None = None,
               result: Any = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a verb the model's fields as parameters; the callback gets `(app, request, **cli_only_options)`."""
    props = flat_schema(model)

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def command(app: Any, **values: Any) -> None:
            fields = {k: _flat(v) if isinstance(v, tuple) else v for k, v in values.items() if k in props and v != ()}
            for old, new in model.renamed.items():
                if _given(values.get(old)):
                    fields[old] = values[old]
                    if not _given(fields.get(new)):
                        fields.pop(new, None)  # the new option left at its default: the old one carries the value
            request = validated(model, fields)
            for old in [o for o in model.renamed if _given(values.get(o))]:
                click.secho(f"warning: {flag(old)} is deprecated (removed in {RENAMED_UNTIL}): use {flag(model.renamed[old])}", fg="yellow", err=True)
            fn(app, request, **{k: v for k, v in values.items() if k not in props and k not in model.renamed})

        wrapped: Any = pass_app(command)
        for old, new in reversed(list(model.renamed.items())):
            wrapped = renamed_param(old, new, props[new])(wrapped)
        for name in reversed(list(props)):
            wrapped = click_param(name, props[name], positional=name in positional, aliases=(aliases or {}).get(name, ()))(wrapped)
        wrapped.request_model, wrapped.result_model = model, result  # read by the parity test
        return cast(Callable[..., None], wrapped)

    return decorate
