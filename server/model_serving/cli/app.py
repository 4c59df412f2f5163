"""What every verb shares: the settings, JSON or human output, and progress with Ctrl-C cancel."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from model_serving.errors import Cancelled
from model_serving.jobs import Progress
from model_serving.results import render
from model_serving.settings import Settings

# Imported inside functions: rich.progress, only when a long step draws its progress bar.

T = TypeVar("T", bound=BaseModel)
STYLES: dict[str, dict[str, Any]] = {"": {}, "ok": {"fg": "green"}, "bad": {"fg": "red"}, "warn": {"fg": "yellow"}, "bold": {"bold": True},
                                     "note": {"fg": "cyan"}}


@dataclass
class App:
    settings: Settings
    json: bool

    def show(self, result: BaseModel) -> None:
        """A verb's result: with --json the structured result, otherwise its one rendering (results.py), headline first."""
        if self.json:
            self.emit(result)
            return
        rendering = render(result)
        if rendering.cli_headline:
            click.secho(rendering.headline, **STYLES[rendering.style])
        for line in rendering.lines:
            click.secho(line.text, **STYLES[line.style])

    def emit(self, result: BaseModel | Sequence[BaseModel] | dict[str, Any], human: Callable[[], None] | None = None) -> None:
        if self.json or human is None:
            if isinstance(result, Sequence):
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
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        with Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                 TextColumn("{task.fields[note]}"), console=None, transient=False) as bar:
            task = bar.add_task(label, total=1.0, note="")
            progress.subscribe(lambda f, m: bar.update(task, completed=f, note=m[:60]))
            return _cancellable(progress, fn)


def _cancellable(progress: Progress, fn: Callable[[Progress], T]) -> T:
    terminated, previous = _cancel_on_sigterm(progress)
    try:
        return fn(progress)
    except KeyboardInterrupt:
        progress.cancel()
        raise Cancelled() from None
    except Cancelled as exc:
        if not terminated.is_set():
            raise
        click.echo(f"stopped by SIGTERM: {exc.cause}", err=True)  # one line: what stopped, what was cleaned or kept
        sys.exit(128 + signal.SIGTERM)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _cancel_on_sigterm(progress: Progress) -> tuple[threading.Event, Any]:
    """SIGTERM cancels the running step like Ctrl-C: its children are killed and its partial output removed."""
    terminated = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return terminated, None

    def handler(signum: int, frame: Any) -> None:
        terminated.set()
        progress.cancel()

    return terminated, signal.signal(signal.SIGTERM, handler)


pass_app = click.make_pass_decorator(App)
