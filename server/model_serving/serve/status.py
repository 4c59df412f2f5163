"""What is being served right now: embedded engine processes, and Ollama when it answers."""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field

from model_serving.serve.embedded import native
from model_serving.serve.gateway.llama_router import Gateway, gateway_status
from model_serving.serve.metrics import Scrape, fetch
from model_serving.serve.ollama.manage import ServerStatus, server_status
from model_serving.serve.registry import ServedModel, list_models
from model_serving.serve.replicas.vllm_router import ReplicaStatus, replica_status
from model_serving.serve.vllm.env import VllmEnvironment
from model_serving.serve.vllm.env import find as find_vllm
from model_serving.settings import Settings

STATUS_TIMEOUT_S = 3.0  # per request: a hung engine is reported unhealthy, not waited for


class EngineModelStatus(BaseModel):
    model: ServedModel
    healthy: bool
    slots_busy: int | None = None
    slots_total: int | None = None
    requests_processed: int | None = None
    tokens_predicted: int | None = None
    replicas: list[ReplicaStatus] = Field(default_factory=list, description="Behind vllm-router: each engine, and whether it is routed")


class ServingStatus(BaseModel):
    engine: list[EngineModelStatus]
    ollama: ServerStatus
    total_engine_rss_bytes: int
    vllm: VllmEnvironment | None = Field(None, description="Which vLLM serves --engine vllm, and where; or how to install it")
    engine_build: str | None = Field(None, description="The llama.cpp build a new embedded start uses, and why")
    gateway: Gateway | None = Field(None, description="The one endpoint for every model: its URL, each model loaded or not")


def _metric(scrape: Scrape, name: str) -> int | None:
    value = scrape.values.get(name if ":" in name else f"llamacpp:{name}")
    return None if value is None else int(value)


def engine_status(model: ServedModel, *, timeout_s: float = STATUS_TIMEOUT_S) -> EngineModelStatus:
    status = EngineModelStatus(model=model, healthy=False)
    if model.router:  # replicas behind vllm-router: healthy while the router answers and routes to one at least
        answers, status.replicas = replica_status(model, timeout_s=timeout_s)
        status.healthy = answers and any(r.routed for r in status.replicas)
        return status
    if model.state != "running":
        return status
    try:
        with httpx.Client(base_url=model.base_url, timeout=timeout_s) as client:
            status.healthy = client.get("/health").status_code == 200
            slots = client.get("/slots")
            if slots.status_code == 200 and isinstance(slots.json(), list):
                status.slots_total = len(slots.json())
                status.slots_busy = sum(1 for s in slots.json() if s.get("is_processing"))
        scrape = fetch(model.base_url, timeout_s=timeout_s)
        status.requests_processed = _metric(scrape, "n_decode_total")
        status.tokens_predicted = _metric(scrape, "tokens_predicted_total")
        if model.engine == "vllm":  # vLLM's own metric names; its sequences are the slots
            status.slots_total, status.slots_busy = model.parallel, _metric(scrape, "vllm:num_requests_running")
            status.requests_processed = _metric(scrape, "vllm:request_success_total")
            status.tokens_predicted = _metric(scrape, "vllm:generation_tokens_total")
    except httpx.HTTPError:
        status.healthy = False
    return status


def serving_status(settings: Settings, *, timeout_s: float = STATUS_TIMEOUT_S) -> ServingStatus:
    engine = [engine_status(m, timeout_s=timeout_s) for m in list_models(settings)]
    return ServingStatus(engine=engine, ollama=server_status(settings, details=True),
                         total_engine_rss_bytes=sum(m.rss_bytes or 0 for e in engine for m in e.model.processes()),
                         vllm=find_vllm(settings), engine_build=_engine_build(settings), gateway=gateway_status(settings, timeout_s=timeout_s))


def engine_build_at(settings: Settings, base_url: str) -> str | None:
    """The llama.cpp build (revision and patches) of the engine we run at `base_url`; None if not ours."""
    wanted = base_url.rstrip("/").removesuffix("/v1")
    return next((m.engine_build for m in list_models(settings) if m.base_url.rstrip("/") == wanted), None)


def _engine_build(settings: Settings) -> str:
    return native.find(settings).describe

