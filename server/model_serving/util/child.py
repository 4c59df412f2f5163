"""The one line protocol our child processes speak to their parents: JSON lines on stdout.

A child writes `emit(kind, **fields)`; a parent iterates `read(stream)` (or calls `parse(line)` in a loop of
its own, e.g. one with a deadline). A message is one JSON object on one line whose `@child` key names its kind:

    {"@child": "progress", "fraction": 0.25, "message": "Evaluating m.gguf"}
    {"@child": "ready", "url": "http://127.0.0.1:8080"}
    {"@child": "result", ...the result's own fields...}
    {"@child": "error", "cause": "...", "next_step": "..."}

Any other line (a library's log, a traceback) is passed on as kind "log" with the raw text in `line`, so a parent
that keeps a log tail reads one stream. The module imports only the standard library: the short-lived quantize
worker may load it by path without paying for the package.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

KEY = "@child"
KINDS = frozenset({"progress", "ready", "result", "error"})
LOG = "log"  # the kind `read`/`parse` give a line that is not a message


@dataclass(frozen=True)
class Message:
    """One line from a child: `kind` is one of KINDS, or "log" with the raw text in `fields["line"]`."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def emit(kind: str, /, *, stream: IO[str] | None = None, **fields: Any) -> None:
    """In a child: write one message (kind one of KINDS; fields must be JSON-serialisable) and flush at once."""
    if kind not in KINDS:
        raise ValueError(f"unknown child message kind {kind!r}; expected one of {sorted(KINDS)}")
    if KEY in fields:
        raise ValueError(f"{KEY!r} is reserved for the message kind")
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps({KEY: kind, **fields}, separators=(",", ":"), default=str) + "\n")
    out.flush()


def parse(line: str | bytes) -> Message:
    """One line read from a child: a message, or kind "log" carrying the line's text (trailing newline dropped)."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.rstrip("\r\n")
    if text.startswith("{") and KEY in text:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get(KEY) in KINDS:
            kind = data.pop(KEY)
            return Message(kind, data)
    return Message(LOG, {"line": text})


def read(stream: Iterable[str] | Iterable[bytes]) -> Iterator[Message]:
    """In a parent: every line of a child's stream as a `Message`, until the stream ends."""
    for line in stream:
        yield parse(line)


__all__ = ["KEY", "KINDS", "LOG", "Message", "emit", "parse", "read"]
