"""What an engine is: the `Engine` protocol every serving engine implements, and the names engines go by.

An engine turns a source (a GGUF, a checkpoint folder) into a served name: the argv it runs, start (on the
process layer, serve/processes.py, recorded in serve/registry.py), stop, health (one request), readiness (what a
client can do now), probe (a chat that must answer and stop), and metrics (its /metrics, normalised). The
implementations live beside their engine (serve/embedded, serve/vllm, serve/replicas, serve/gateway,
serve/ollama); serve/engines.py is the one table that maps a name to its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import BaseModel

from model_serving.jobs import Progress
from model_serving.requests import DeployTarget
from model_serving.serve.engine_names import EngineName, ServedEngine
from model_serving.serve.metrics import ModelMetrics
from model_serving.serve.probe_checks import ProbeResult
from model_serving.settings import Settings

__all__ = ["DeployTarget", "Engine", "EngineName", "ServedEngine", "StartOptions"]

@dataclass(frozen=True)
class StartOptions:
    """What a start asks of any engine; an engine refuses what it cannot do (with cause and next step)."""

    source: Path
    name: str
    ctx_size: int = 2048
    parallel: int = 4
    threads: int | None = None
    port: int | None = None
    replace: bool = False
    lora: list[str] = field(default_factory=list)
    replicas: int | None = None
    policy: str | None = None
    engine: str = "embedded"  # the engine the request named: replicas refuse one they cannot run behind the router
    chat_template: Path | None = None  # a Jinja file replacing the model's template
    completions: bool = False  # serve for /v1/completions only (no chat template needed)


class Engine(Protocol):
    """One serving engine. `name` is its registration name; every call names the served thing by its name.

    `start` and `stop` return the engine's own record (a `ServedModel` for the engines we run and record, the gateway's
    `Gateway`, Ollama's `OllamaRegistration`); where a verb does not fit an engine, it refuses with cause and next step.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    def argv(self, settings: Settings, options: StartOptions, port: int) -> list[str]:
        """The command line it runs for `options` on `port`, without starting anything ([] where we run no process)."""
        ...

    def start(self, settings: Settings, options: StartOptions, progress: Progress) -> BaseModel:
        """Start, wait until healthy, record; a recorded name is claimed for the whole start (serve/registry.claim)."""
        ...

    def stop(self, settings: Settings, name: str) -> BaseModel:
        """Stop what serves `name` and remove its record."""
        ...

    def health(self, settings: Settings, name: str) -> bool:
        """One health request: does it answer now."""
        ...

    def readiness(self, settings: Settings, name: str) -> str:
        """What a client can do now, in one word: ready, loading, dead, or the engine's own state."""
        ...

    def probe(self, settings: Settings, name: str) -> ProbeResult:
        """The chat probe: it answers, stops by itself, and sees its whole prompt."""
        ...

    def metrics(self, settings: Settings, name: str) -> ModelMetrics:
        """Its /metrics, in the one shape every engine's figures share."""
        ...
