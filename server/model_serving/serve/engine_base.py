"""What every engine whose processes we run shares: stop, health, readiness and metrics over its registry record.

An engine class (serve/engines.py lists them) subclasses `RecordedEngine` and adds its own argv, start and probe;
Ollama, which runs its own server, implements the protocol on its own (serve/ollama/target.py).
"""

from __future__ import annotations

from typing import ClassVar

from model_serving.serve import metrics, processes, registry
from model_serving.serve.metrics import ModelMetrics
from model_serving.serve.registry import ServedModel
from model_serving.settings import Settings


class RecordedEngine:
    """The shared half of an engine whose process the registry records (embedded, vllm, replicas)."""

    name: ClassVar[str]
    description: ClassVar[str]

    def stop(self, settings: Settings, name: str) -> ServedModel:
        return registry.stop_model(settings, name)

    def health(self, settings: Settings, name: str) -> bool:
        model = registry.get_model(settings, name)
        return model.state == "running" and processes.healthy(model.base_url)

    def readiness(self, settings: Settings, name: str) -> str:
        model = registry.get_model(settings, name)
        if model.state != "running":
            return "dead"
        return "ready" if self.health(settings, name) else "loading"

    def metrics(self, settings: Settings, name: str) -> ModelMetrics:
        model = registry.get_model(settings, name)
        return metrics.normalise(model, metrics.scrape_one(model))
