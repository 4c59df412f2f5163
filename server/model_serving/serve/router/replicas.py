"""N embedded engines of one GGUF behind vllm-router, served as one OpenAI base URL under one name.

vllm-router (PyPI `vllm-router`, the `scale` extra) is a Rust router with health checks, retries and
round-robin, power-of-two and cache-aware policies. We start the replicas with the embedded engine's
own `start_model` (free ports, logs `NAME@rI.log`), then the router on the name's port, and record
one registry entry: the router's pid and URL, with the replicas inside it. `serve stop` ends the
router first, then the replicas. The router's health check drops a dead replica from routing
(retries cover the requests in flight); `replica_status` reports what the router sees.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from model_serving.checkpoint.inspect import GGUFInfo
from model_serving.errors import Cancelled, InputError, ServingError
from model_serving.jobs import Progress
from model_serving.serve.embedded import engine as embedded
from model_serving.serve.embedded import registry
from model_serving.serve.embedded.registry import Replica, ServedModel
from model_serving.settings import Settings
from model_serving.util.process import python_argv, spawn
from model_serving.util.units import human_size

POLICIES = ("round_robin", "power_of_two", "cache_aware")
# Round robin by default: the replicas are identical processes on one host, llama.cpp exposes no load
# figure the router can read (its /get_loads reports -1), and cache_aware would pin a repeated prompt
# (a benchmark's, a system prompt) to one replica and leave the others idle.
DEFAULT_POLICY = "round_robin"
HEALTH_INTERVAL_S = 2  # the router's default is 60 s: a dead replica would take minutes to drop
HEALTH_FAILURES = 2    # consecutive failed checks before a replica leaves the rotation
ROUTER_START_TIMEOUT_S = 90.0
ROUTER_MODULE = "model_serving.serve.router.worker"
INSTALL_HINT = "Install the scale extra: pip install 'model-serving[scale]' (or EXTRAS=scale scripts/install.sh)."


class ReplicaStatus(BaseModel):
    index: int
    base_url: str
    pid: int
    state: str
    healthy: bool = Field(description="Answers its own /health")
    routed: bool = Field(description="The router's health check keeps it in rotation")
    log_path: str


def router_installed() -> bool:
    return importlib.util.find_spec("vllm_router") is not None and importlib.util.find_spec("vllm_router_rs") is not None


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(info: GGUFInfo, replicas: int, ctx_size: int) -> None:
    """Refuse N replicas whose estimate (gguf/memory.py, per engine: weights, KV, allowance) exceeds available RAM.

    Counted in full per replica: llama.cpp may repack weights into its own buffers, so a shared mmap is not promised.
    """
    available = _available_bytes()
    if info.memory is None or available is None:
        return
    need = replicas * info.memory.total_bytes
    if need > available:
        fit = available // info.memory.total_bytes
        raise InputError(f"{replicas} replicas need about {human_size(need)} ({human_size(info.memory.total_bytes)} each at ctx {ctx_size}), "
                         f"but {human_size(available)} is available.",
                         f"Use --replicas {fit} or fewer, or a smaller --ctx-size." if fit else "Use a smaller --ctx-size or a smaller quantization.")


def _router_argv(port: int, workers: list[ServedModel], policy: str) -> list[str]:
    return python_argv(ROUTER_MODULE, "--port", str(port), "--worker-urls", *(w.base_url for w in workers), "--policy", policy,
                       "--prometheus-port", str(embedded.free_port()),  # the default 29000 would collide between two routers
                       "--health-check-interval-secs", str(HEALTH_INTERVAL_S), "--health-failure-threshold", str(HEALTH_FAILURES),
                       "--worker-startup-check-interval", "1", "--worker-startup-timeout-secs", "60")


def _start_router(settings: Settings, name: str, port: int, workers: list[ServedModel], policy: str, progress: Progress) -> int:
    log_path = registry.log_path(settings, name)
    progress.update(None, f"starting vllm-router ({policy}) for {name} on 127.0.0.1:{port}")
    with log_path.open("wb") as log:
        proc = spawn(_router_argv(port, workers, policy), stdout=log, text=False, env={"NO_COLOR": "1"})
    embedded.wait_healthy(proc, name, f"http://127.0.0.1:{port}", log_path, progress, timeout_s=ROUTER_START_TIMEOUT_S, what="vllm-router",
                        hint="a port taken between the check and the start, or a replica that stopped answering, are the usual causes")
    return proc.pid


def _start_replica(settings: Settings, gguf_path: str | Path, name: str, index: int, replicas: int, progress: Progress,
                   **options: object) -> ServedModel:
    try:
        return embedded.start_model(settings, gguf_path, name, replica=index, progress=progress, **options)  # type: ignore[arg-type]
    except Cancelled:
        raise
    except ServingError as exc:
        if not exc.detail and not isinstance(exc, InputError):
            exc.detail = _tail(registry.replica_log_path(settings, name, index))
        kind = InputError if isinstance(exc, InputError) else ServingError
        raise kind(f"Replica {index + 1} of {replicas} for {name} failed to start: {exc.cause}",
                        f"{exc.next_step} Nothing of {name} was left running.", detail=exc.detail) from exc


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _check_request(replicas: int | None, policy: str, engine_name: str, lora: list[str] | None) -> int:
    if replicas is None:
        raise InputError("A router policy was given without --replicas.", "Add --replicas N (1 to 8), or leave out --policy.")
    if policy not in POLICIES:
        raise InputError(f"Unknown router policy {policy!r}.", f"Use one of {', '.join(POLICIES)}.")
    if engine_name != "embedded" or lora:
        raise InputError("Replicas run the embedded llama.cpp engine, without adapters.",
                         "Leave out --engine vllm and --lora with --replicas; vLLM batches one process's requests itself.")
    if not router_installed():
        raise InputError("vllm-router is not installed, and --replicas needs it in front of the engines.", INSTALL_HINT)
    return replicas


def start_replicas(settings: Settings, gguf_path: str | Path, name: str, *, replicas: int | None, policy: str | None = None,
                   ctx_size: int = 2048, parallel: int = 4, threads: int | None = None, port: int | None = None,
                   replace: bool = False, engine: str = "embedded", lora: list[str] | None = None,
                   progress: Progress | None = None) -> ServedModel:
    """Serve `name` from `replicas` engines behind one vllm-router; on any failure nothing is left running."""
    progress = progress or Progress()
    policy = policy or DEFAULT_POLICY
    replicas = _check_request(replicas, policy, engine, lora)
    path, info = embedded._checked_gguf(settings, gguf_path, name, ctx_size, parallel)  # confined, name and numbers checked
    check_fits(info, replicas, ctx_size)
    port = embedded._make_room(settings, name, port, replace)
    # The cores are shared: N engines each using every core would thrash, so each gets its share.
    threads = threads or max(1, (os.cpu_count() or 2) // replicas)
    started: list[ServedModel] = []
    try:
        for i in range(replicas):
            span = progress.span(i / (replicas + 1), (i + 1) / (replicas + 1))
            started.append(_start_replica(settings, path, name, i, replicas, span, ctx_size=ctx_size, parallel=parallel, threads=threads))
        pid = _start_router(settings, name, port, started, policy, progress)
    except BaseException:
        for replica in started:
            embedded.terminate(replica.pid, grace_s=5.0)
        raise
    first = started[0]
    rows = [Replica(**r.model_dump(include=set(Replica.model_fields))) for r in started]
    model = first.model_copy(update={"base_url": f"http://127.0.0.1:{port}", "port": port, "pid": pid, "router": policy, "replicas": rows,
                                     "log_path": str(registry.log_path(settings, name)), "rss_bytes": registry.rss(pid),
                                     "started_at": datetime.now(UTC).isoformat(timespec="seconds")})
    registry.save(settings, model)
    progress.update(1.0, f"{name} is served by {replicas} replicas behind vllm-router at {model.base_url}")
    return model


def routed_workers(base_url: str, *, timeout_s: float = 3.0) -> dict[str, bool] | None:
    """The router's own view: worker URL -> in rotation; None when the router does not answer."""
    try:
        response = httpx.get(f"{base_url}/workers", timeout=timeout_s)
        response.raise_for_status()
        return {w["url"]: bool(w.get("is_healthy")) for w in response.json().get("workers", [])}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def replica_status(model: ServedModel, *, timeout_s: float = 3.0) -> tuple[bool, list[ReplicaStatus]]:
    """Whether the router answers, and each replica: alive, healthy on its own, and kept in rotation by the router."""
    routed = routed_workers(model.base_url, timeout_s=timeout_s) if model.state == "running" else None
    rows = []
    for i, replica in enumerate(model.replicas):
        healthy = False
        if replica.state == "running":
            try:
                healthy = httpx.get(f"{replica.base_url}/health", timeout=timeout_s).status_code == 200
            except httpx.HTTPError:
                healthy = False
        rows.append(ReplicaStatus(index=i, base_url=replica.base_url, pid=replica.pid, state=replica.state, healthy=healthy,
                                  routed=bool(routed and routed.get(replica.base_url)), log_path=replica.log_path))
    return routed is not None, rows
