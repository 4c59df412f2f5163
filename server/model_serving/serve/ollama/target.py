"""Ollama as an engine of the same shape where it fits: it runs its own server, so we register into it, never start it.

`start` registers the GGUF (serve/ollama/register.py: Modelfile, upload, create, probe) and `stop` unloads the model
from memory (it stays stored: `model-serving ollama rm` deletes it). Ollama exports no Prometheus /metrics.
"""

from __future__ import annotations

from typing import ClassVar

from model_serving.jobs import Progress
from model_serving.serve.engine_protocol import StartOptions
from model_serving.serve.metrics import ModelMetrics
from model_serving.serve.ollama import manage
from model_serving.serve.ollama.ollama_probe import probe_model
from model_serving.serve.ollama.register import OllamaRegistration, register_gguf
from model_serving.serve.probe_checks import ProbeResult
from model_serving.settings import Settings


class OllamaTarget:
    """A GGUF registered into a running Ollama server under a name."""

    name: ClassVar[str] = "ollama"
    description: ClassVar[str] = "Ollama: a GGUF registered into the user's own Ollama server (its Modelfile made to chat as the checkpoint does)"

    def argv(self, settings: Settings, options: StartOptions, port: int) -> list[str]:
        return []  # Ollama's server is the user's: we run no process for it

    def start(self, settings: Settings, options: StartOptions, progress: Progress) -> OllamaRegistration:
        return register_gguf(settings, options.source, options.name, overwrite=options.replace, num_ctx=options.ctx_size, progress=progress)[0]

    def stop(self, settings: Settings, name: str) -> manage.ActionResult:
        return manage.unload_model(settings, name)

    def health(self, settings: Settings, name: str) -> bool:
        status = manage.server_status(settings, details=True)
        return status.reachable and any(m == name or m.split(":")[0] == name for m in status.models)

    def readiness(self, settings: Settings, name: str) -> str:
        status = manage.server_status(settings, details=True)
        if not status.reachable:
            return "dead"
        return "ready" if any(r.name == name for r in status.running) else "stored"

    def probe(self, settings: Settings, name: str) -> ProbeResult:
        return probe_model(settings, name)

    def metrics(self, settings: Settings, name: str) -> ModelMetrics:
        host = manage.server_status(settings).host
        return ModelMetrics(name=name, engine="ollama", base_url=host, available=False, reason="Ollama exports no Prometheus /metrics")
