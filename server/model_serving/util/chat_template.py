"""Render Hugging Face chat templates the way transformers does (shared by the engine probe and Ollama checks).

transformers compiles chat templates in a sandboxed Jinja environment with trim_blocks and
lstrip_blocks, the loop-control extension, its own `tojson` (no HTML escaping, optional indent),
the globals `raise_exception` and `strftime_now`, and the `{% generation %}` block (it marks the
assistant's tokens for training masks and leaves the text unchanged). This module reproduces that
setup so the reference prompt we compare against is the one the checkpoint was trained to see.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRejected(Exception):
    """The template itself refused the conversation (its raise_exception was called)."""


def _raise(message: str) -> None:
    raise TemplateRejected(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: the body, unchanged, as transformers renders it."""

    tags = {"generation"}

    def parse(self, parser: Any) -> list[Any]:
        next(parser.stream)  # the tag name
        # The body's own nodes take the block's place, so the parse tree shows no trace of the tag.
        return list(parser.parse_statements(("name:endgeneration",), drop_needle=True))


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=32)
def _compiled(source: str) -> jinja2.Template:
    return environment().from_string(source)


def render(source: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool, bos_token: str = "", eos_token: str = "",
           tools: list[dict[str, Any]] | None = None, **extra: Any) -> str:
    """The prompt text the template produces; TemplateRejected if the template raises."""
    return _compiled(source).render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                     bos_token=bos_token, eos_token=eos_token, **extra)
