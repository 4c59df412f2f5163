"""What is being served right now: embedded engine processes, and Ollama when it answers."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field

from model_serving.serve.embedded.engine import ServedModel, list_models
from model_serving.settings import Settings


class EngineModelStatus(BaseModel):
    model: ServedModel
    healthy: bool
    slots_busy: int | None = None
    slots_total: int | None = None
    requests_processed: int | None = None
    tokens_predicted: int | None = None


class OllamaStatus(BaseModel):
    host: str
    reachable: bool
    version: str | None = None
    models: list[str] = []
    running: list[dict[str, object]] = Field(default_factory=list, description="name, size, size_vram, processor, expires_at")
    error: str | None = None


class ServingStatus(BaseModel):
    engine: list[EngineModelStatus]
    ollama: OllamaStatus
    total_engine_rss_bytes: int


def _metric(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(f"llamacpp:{name} ") or line.startswith(f"llamacpp:{name}{{"):
            try:
                return int(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                return None
    return None


def engine_status(model: ServedModel) -> EngineModelStatus:
    status = EngineModelStatus(model=model, healthy=False)
    if model.state != "running":
        return status
    try:
        with httpx.Client(base_url=model.base_url, timeout=3) as client:
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


def ollama_status(settings: Settings) -> OllamaStatus:
    from model_serving.errors import ServingError
    from model_serving.serve.ollama.client import OllamaClient

    status = OllamaStatus(host=settings.ollama_host, reachable=False)
    with OllamaClient(settings, timeout=5) as client:
        if not client.is_up():
            status.error = f"Nothing answers at {settings.ollama_host}. Start it with `ollama serve`, or set OLLAMA_HOST."
            return status
        try:
            status.version = client.version()
            status.models = [m.name for m in client.list()]
            status.running = [{"name": r.name, "size": r.size, "size_vram": r.size_vram, "processor": r.processor,
                               "expires_at": str(r.expires_at)} for r in client.ps()]
            status.reachable = True
        except ServingError as exc:
            status.error = exc.cause
    return status


def serving_status(settings: Settings) -> ServingStatus:
    engine = [engine_status(m) for m in list_models(settings)]
    return ServingStatus(engine=engine, ollama=ollama_status(settings),
                         total_engine_rss_bytes=sum(e.model.rss_bytes or 0 for e in engine))
