"""Ollama model names: `[host/][namespace/]model[:tag]`, checked before anything is sent."""

from __future__ import annotations

import re

from model_serving.errors import InputError

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,340}(:[0-9]{1,5})?$")


def canonical(name: str) -> str:
    """Return the name with its tag (`latest` when none), or raise InputError saying what is wrong."""
    problem = _problem(name)
    if problem:
        raise InputError(
            f"{name!r} is not a valid Ollama model name: {problem}.",
            "Use letters, digits, '_', '-' and '.', as in my-model or my-model:v1 (namespace/model:tag also works).",
        )
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _problem(name: str) -> str:
    if not name or name != name.strip():
        return "it is empty or has surrounding spaces"
    path, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    if ":" in name.rsplit("/", 1)[-1] and not _TAG.match(tag):
        return f"the tag {tag!r} must start with a letter, digit or '_' and be at most 80 characters"
    parts = path.split("/")
    if len(parts) > 3:
        return "it has more than host/namespace/model parts"
    if len(parts) == 3 and not _HOST.match(parts[0]):
        return f"the host {parts[0]!r} is malformed"
    for part in parts[-2:] if len(parts) >= 2 else parts:
        if not _PART.match(part):
            return f"{part!r} must start with a letter or digit and use only letters, digits, '_', '-' and '.' (at most 80)"
    return ""


def same(a: str, b: str) -> bool:
    """Ollama compares names case-insensitively, with the default tag filled in."""
    return canonical(a).lower() == canonical(b).lower()
