"""The gateway: the natively built llama-server in router mode, one base URL for every registered model.

The gateway process is our front (front.py, run by worker.py) on the public port, with the router as its child
on a loopback port (`engine_url` in the record): the front passes every request through, except one whose
model is a weighted route's public name (routes.py), which it sends on to a version chosen by weight.

Started without a model and with our preset (`preset.py`), llama.cpp's router routes a POST by the
body's `model` field and a GET by `?model=`, lists every preset model in `/models` and `/v1/models`
(loaded or not), starts a model's instance on its first request (`--models-autoload`), unloads the
least recently used one when `--models-max` are loaded, and puts an instance to sleep (its weights
and KV cache freed, the process kept) after `sleep-idle-seconds` without a request: our keep-alive.

`--models-max` is a count derived from memory: the budget (default: the memory available at start)
divided by the largest registered model's estimate (gguf/memory.py). It is fixed when the router
starts, so a model added or removed that changes the count restarts the gateway.

A name served by replicas (serve/replicas) is not a gateway model: the router proxies only to instances it
spawned (server-models.cpp has no remote model), so `status` names it with its own URL (preset.entries).

Starts, restarts and stops are serialised by the gateway's lock (registry.gateway_lock): two deploys that finish at
once resize it one after the other, never start two routers.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import httpx
from pydantic import BaseModel, Field

from model_serving.checkpoint.inspect import inspect_gguf
from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress
from model_serving.serve import registry
from model_serving.serve.embedded import native
from model_serving.serve.engine_protocol import StartOptions
from model_serving.serve.gateway import preset
from model_serving.serve.gateway.preset import PresetEntry
from model_serving.serve.gateway.routes import RouteCounters, load_routes, route_counters, routes_path, table_lock
from model_serving.serve.metrics import ModelMetrics
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.processes import available_bytes, free_port, healthy, launch, port_free, terminate, wait_healthy
from model_serving.serve.registry import GatewayRecord
from model_serving.settings import Settings
from model_serving.util.process import python_argv

DEFAULT_PORT = 8090
DEFAULT_KEEP_ALIVE_S = 300  # Ollama's default keep-alive: five minutes
START_TIMEOUT_S = 60.0  # the router loads no model at start
STATUS_TIMEOUT_S = 3.0
OFF_ENV = "MODEL_SERVING_GATEWAY"  # "off": serve start / register leave the gateway alone
log = logging.getLogger(__name__)
LLAMA_DEFAULT_MODELS_MAX = 4  # llama.cpp's own, used while no model is registered to size it by


class GatewayModel(BaseModel):
    name: str = Field(description="What a request's model field names (the router upper-cases a tag after ':')")
    registered_as: str | None = Field(None, description="Our name, where the router's id differs")
    state: str = Field(description="The router's: unloaded, loading, loaded or sleeping")
    adapter_of: str | None = Field(None, description="An adapter: its base model, loaded as an instance of its own")


class Gateway(BaseModel):
    """The one endpoint: where it is, how it was sized, and each registered model's state in the router."""

    running: bool
    base_url: str | None = Field(None, description="OpenAI-compatible base for every model: POST {base_url}/v1/chat/completions")
    models: list[GatewayModel] = Field(default_factory=list)
    models_max: int | None = Field(None, description="Models loaded at once: memory budget / largest model's estimate")
    keep_alive_s: int | None = Field(None, description="An idle model sleeps (memory freed) after this")
    memory_budget_bytes: int | None = None
    largest_model_bytes: int | None = None
    on_demand: bool = Field(True, description="serve start / register start the gateway")
    pid: int | None = None
    log_path: str | None = None
    preset_path: str | None = None
    skipped: list[str] = Field(default_factory=list, description="Registered models the preset cannot carry, and why")
    routes: list[RouteCounters] = Field(default_factory=list, description="Public names spread over versions by weight, with per-backend counters")
    note: str = ""


def require_native(settings: Settings) -> native.Build:
    return native.require(settings, "The gateway needs llama.cpp's router mode, which only the natively built llama-server has")


def estimate(entry: PresetEntry) -> int:
    info = inspect_gguf(Path(entry.gguf_path), ctx_size=entry.ctx_size, parallel=entry.parallel)
    total = info.memory.total_bytes if info.memory else info.size_bytes
    return total + (Path(entry.lora).stat().st_size if entry.lora else 0)


def sizing(items: list[PresetEntry], budget_bytes: int) -> tuple[int, int | None]:
    """(models-max, the largest estimate): how many of the largest model fit the budget, at least one."""
    sizes = []
    for entry in items:
        try:
            sizes.append(estimate(entry))
        except (OSError, ServingError):
            continue  # a GGUF gone from disk: the router reports that model's failed load
    if not sizes:
        return LLAMA_DEFAULT_MODELS_MAX, None
    return max(1, budget_bytes // max(sizes)), max(sizes)


def _router_argv(build: native.Build, record: GatewayRecord, port: int) -> list[str]:
    assert build.server is not None
    return [str(build.server), "--models-preset", record.preset_path, "--models-max", str(record.models_max), "--models-autoload",
            "--host", "127.0.0.1", "--port", str(port), "--no-webui"]


def _argv(settings: Settings, build: native.Build, record: GatewayRecord, engine_port: int) -> list[str]:
    """The gateway process: our front on the public port (worker.py), the router as its child on `engine_port`."""
    return python_argv("model_serving.serve.gateway.worker", "--port", str(record.port), "--engine-port", str(engine_port),
                       "--routes", str(routes_path(settings)), "--", *_router_argv(build, record, engine_port))


def _port(settings: Settings, port: int | None, previous: GatewayRecord | None, on_demand: bool) -> int:
    chosen = port or (previous.port if previous else DEFAULT_PORT)
    if port_free(chosen) or (previous is not None and chosen == previous.port and previous.state == "running"):
        return chosen  # our own router just stopped there: its closed connections may hold the port a while, its successor binds with SO_REUSEPORT (cpp-httplib)
    if port is None and on_demand:
        return free_port()  # a start on demand never fails a register for a taken default port; status shows the URL
    raise InputError(f"Port {chosen} on 127.0.0.1 is already in use, so the gateway cannot listen there.",
                     "Choose another with `serve gateway start --port P`, or stop what listens there.")


def start_gateway(settings: Settings, *, port: int | None = None, keep_alive_s: int | None = None, memory_budget_gb: float | None = None,
                  on_demand: bool = False, progress: Progress | None = None) -> Gateway:
    """Start (or restart with new settings) the router on 127.0.0.1 and wait until it answers /health."""
    with registry.gateway_lock(settings):
        return _start_gateway(settings, port=port, keep_alive_s=keep_alive_s, memory_budget_gb=memory_budget_gb, on_demand=on_demand,
                              progress=progress)


def _start_gateway(settings: Settings, *, port: int | None, keep_alive_s: int | None, memory_budget_gb: float | None,
                   on_demand: bool, progress: Progress | None) -> Gateway:
    progress = progress or Progress()
    build = require_native(settings)
    previous = registry.load_gateway(settings)
    port = _port(settings, port, previous, on_demand)  # before a running gateway stops: a refused port leaves it up
    if previous is not None and previous.state == "running":
        _stop_gateway(settings, keep_on_demand=True)
    keep_alive_s = keep_alive_s or (previous.keep_alive_s if previous else DEFAULT_KEEP_ALIVE_S)
    budget = int(memory_budget_gb * 2**30) if memory_budget_gb else (previous.memory_budget_bytes if previous and previous.memory_budget_bytes
                                                                     else available_bytes() or 8 * 2**30)
    items, _ = preset.write(settings, keep_alive_s)
    models_max, largest = sizing(items, budget)
    log_path = registry.gateway_path(settings, ".log")
    engine_port = free_port()
    record = GatewayRecord(base_url=f"http://127.0.0.1:{port}", port=port, pid=0, log_path=str(log_path), engine_url=f"http://127.0.0.1:{engine_port}",
                           preset_path=str(registry.gateway_path(settings, ".ini")), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                           keep_alive_s=keep_alive_s, models_max=models_max, memory_budget_bytes=budget, largest_model_bytes=largest)
    progress.update(0.1, f"starting the gateway on 127.0.0.1:{port} (our front; llama.cpp's router behind it on port {engine_port})")
    registry.gateway_path(settings, "-cache").mkdir(exist_ok=True)
    # Its own group, the scrubbed environment; an empty model cache, so it lists only our preset's models, not llama.cpp's downloads.
    # The instances it starts inherit its OpenMP settings, the same as a per-model engine (util/process.openmp_env).
    with table_lock(settings):  # a route set meanwhile waits for this record, then makes the new front take it
        proc = launch(_argv(settings, build, record, engine_port), log_path, env={"LLAMA_CACHE": str(registry.gateway_path(settings, "-cache")), **native.env()})
        wait_healthy(proc, "the gateway", record.base_url, log_path, progress, timeout_s=START_TIMEOUT_S, what="llama.cpp router",
                     hint="a port taken between the check and the start, or an unreadable preset, are the usual causes")
        record.pid = proc.pid
        registry.save_gateway(settings, record)
    progress.update(1.0, f"the gateway serves {len(items)} model(s) at {record.base_url}")
    return gateway_status(settings)


def stop_gateway(settings: Settings, *, keep_on_demand: bool = False) -> Gateway:
    """Stop the router and its model instances; unless restarting, serve start / register no longer start it."""
    with registry.gateway_lock(settings):
        return _stop_gateway(settings, keep_on_demand=keep_on_demand)


def _stop_gateway(settings: Settings, *, keep_on_demand: bool) -> Gateway:
    record = registry.load_gateway(settings)
    if record is None:
        return Gateway(running=False, on_demand=keep_on_demand, note="no gateway was started")
    if record.state == "running":
        terminate(record.pid)
    record.state, record.on_demand = "stopped", keep_on_demand or False
    registry.save_gateway(settings, record)
    return gateway_status(settings)


def ensure_gateway(settings: Settings) -> Gateway | None:
    """After a model was added or removed: rewrite the preset, and start (or resize) the gateway when it is on demand.

    A removal resizes like an addition: the largest model gone, more fit the budget, and the router restarts with that count.

    Never fails the serve or register that called it: without the native build, or turned off, it does nothing.
    """
    if os.environ.get(OFF_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    if native.find(settings).kind != "native":
        return None
    with registry.gateway_lock(settings):
        return _ensure(settings)


def _ensure(settings: Settings) -> Gateway | None:
    record = registry.load_gateway(settings)
    if record is not None and not record.on_demand:
        return None
    if not preset.entries(registry.list_models(settings))[0] and (record is None or record.state != "running"):
        return None  # nothing the gateway could serve (the last one removed, or only replicas): it starts with the next model
    try:
        if record is not None and record.state == "running":
            items, _ = preset.write(settings, record.keep_alive_s)
            if sizing(items, record.memory_budget_bytes)[0] == record.models_max:
                preset.reload(record.base_url)
                return gateway_status(settings)
        return _start_gateway(settings, port=None, keep_alive_s=None, memory_budget_gb=None, on_demand=True, progress=None)
    except ServingError as exc:  # the model is served on its own port either way; status shows the gateway down
        log.warning("the gateway did not start on demand: %s %s", exc.cause, exc.next_step)
        return None


def _router_models(base_url: str, timeout_s: float) -> dict[str | None, str] | None:
    try:
        body = httpx.get(f"{base_url}/models", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return None
    return {m.get("id"): (m.get("status") or {}).get("value", "?") for m in body.get("data", []) if isinstance(m, dict)}


def gateway_status(settings: Settings, *, timeout_s: float = STATUS_TIMEOUT_S) -> Gateway:
    """The gateway's record, and each registered model as the router lists it (loaded or not)."""
    record = registry.load_gateway(settings)
    items, skipped = preset.entries(registry.list_models(settings))
    if record is None:
        return Gateway(running=False, skipped=skipped, note="not started: `model-serving serve gateway start`, or serve a model")
    listed = _router_models(record.base_url, timeout_s) if record.state == "running" else None
    ids = [(preset.router_id(e.name), e) for e in items]
    models = [GatewayModel(name=rid, registered_as=e.name if rid != e.name else None, adapter_of=e.adapter_of,
                           state=(listed or {}).get(rid, "not listed" if listed is not None else "gateway down")) for rid, e in ids]
    loaded = sum(1 for m in models if m.state == "loaded")
    note = (f"{loaded} of {len(models)} registered loaded; one endpoint for every model: {record.base_url}/v1 (pick one with the model field); "
            "the per-model ports stay for one release" if listed is not None else f"the gateway is {record.state}; its log: {record.log_path}")
    return Gateway(running=listed is not None, base_url=record.base_url, models=models, models_max=record.models_max, routes=_routes(settings, timeout_s),
                   keep_alive_s=record.keep_alive_s, memory_budget_bytes=record.memory_budget_bytes, largest_model_bytes=record.largest_model_bytes,
                   on_demand=record.on_demand, pid=record.pid if record.state == "running" else None, log_path=record.log_path,
                   preset_path=record.preset_path, skipped=skipped, note=note)


def _routes(settings: Settings, timeout_s: float) -> list[RouteCounters]:
    """Each weighted route with its counters; a damaged table is named in the log, and the gateway routes by name."""
    try:
        return [route_counters(settings, public, timeout_s=timeout_s) for public in load_routes(settings).routes]
    except ServingError as exc:
        log.warning("%s %s", exc.cause, exc.next_step)
        return []


class GatewayEngine:
    """llama.cpp's router mode: one URL for every registered GGUF model, each loaded on its first request."""

    name: ClassVar[str] = "gateway"
    description: ClassVar[str] = "the gateway: llama.cpp's router mode, one URL for every model, loaded on demand (native build)"

    def argv(self, settings: Settings, options: StartOptions, port: int) -> list[str]:
        record = GatewayRecord(base_url=f"http://127.0.0.1:{port}", port=port, pid=0, log_path="", preset_path=str(registry.gateway_path(settings, ".ini")),
                               started_at="", keep_alive_s=DEFAULT_KEEP_ALIVE_S, models_max=LLAMA_DEFAULT_MODELS_MAX, memory_budget_bytes=0)
        return _argv(settings, require_native(settings), record, free_port())

    def start(self, settings: Settings, options: StartOptions, progress: Progress) -> Gateway:
        return start_gateway(settings, port=options.port, progress=progress)

    def stop(self, settings: Settings, name: str) -> Gateway:
        return stop_gateway(settings)

    def health(self, settings: Settings, name: str) -> bool:
        record = registry.load_gateway(settings)
        return record is not None and record.state == "running" and healthy(record.base_url)

    def readiness(self, settings: Settings, name: str) -> str:
        """The router's own state of the model `name` (unloaded, loading, loaded, sleeping), or the gateway's."""
        status = gateway_status(settings)
        found = [m.state for m in status.models if name in (m.name, m.registered_as)]
        return found[0] if found else ("ready" if status.running else "dead")

    def probe(self, settings: Settings, name: str) -> ProbeResult:
        raise InputError("The gateway is probed through each model's own engine, not as a whole.",
                         f"Probe the model on its engine: `model-serving register` proves {name} when it starts.")

    def metrics(self, settings: Settings, name: str) -> ModelMetrics:
        record = registry.load_gateway(settings)
        url = record.base_url if record else ""
        return ModelMetrics(name=name, engine="gateway", base_url=url, available=False,
                            reason="llama.cpp's router mode keeps each model's metrics in its instance; read the model's own engine")
