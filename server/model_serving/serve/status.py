"""What is being served right now: embedded engine processes, and Ollama when it answers."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from model_serving.serve.embedded.registry import ServedModel, list_models
from model_serving.serve.ollama.manage import ServerStatus, server_status
from model_serving.settings import Settings

STATUS_TIMEOUT_S = 3.0  # per request: a hung engine is reported unhealthy, not waited for


class EngineModelStatus(BaseModel):
    model: ServedModel
    healthy: bool
    slots_busy: int | None = None
    slots_total: int | None = None
    requests_processed: int | None = None
    tokens_predicted: int | None = None


class ServingStatus(BaseModel):
    engine: list[EngineModelStatus]
    ollama: ServerStatus
    total_engine_rss_bytes: int


def _metric(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(f"llamacpp:{name} ") or line.startswith(f"llamacpp:{name}{{"):
            try:
                return int(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                return None
    return None


def engine_status(model: ServedModel, *, timeout_s: float = STATUS_TIMEOUT_S) -> EngineModelStatus:
    status = EngineModelStatus(model=model, healthy=False)
    if model.state != "running":
        return status
    try:
        with httpx.Client(base_url=model.base_url, timeout=timeout_s) as client:
            status.healthy = client.get("/health").status_code == 200
            slots = client.get("/slots")
            if slots.status_code == 200 and isinstance(slots.json(), list):
                status.slots_total = len(slots.json())
                status.slots_busy = sum(1 for s in slots.json() if s.get("is_processing"))
            metrics = client.get("/metrics")
            if metrics.status_code == 200:
                status.requests_processed = _metric(metrics.text, "n_decode_total")
                status.tokens_predicted = _metric(metrics.text, "tokens_predicted_total")
    except httpx.HTTPError:
        status.healthy = False
    return status


def serving_status(settings: Settings, *, timeout_s: float = STATUS_TIMEOUT_S) -> ServingStatus:
    engine = [engine_status(m, timeout_s=timeout_s) for m in list_models(settings)]
    return ServingStatus(engine=engine, ollama=server_status(settings, details=True),
                         total_engine_rss_bytes=sum(e.model.rss_bytes or 0 for e in engine))
