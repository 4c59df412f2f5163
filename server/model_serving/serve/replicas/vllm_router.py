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
from model_serving.serve import processes, registry
from model_serving.serve.embedded import engine as embedded
from model_serving.serve.embedded.llamacpp_probe import probe_served
from model_serving.serve.engine_base import RecordedEngine
from model_serving.serve.engine_protocol import StartOptions
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.registry import Replica, ServedModel
from model_serving.settings import Settings
from model_serving.util.process import python_argv
from model_serving.util.units import human_size

POLICIES = ("round_robin", "power_of_two", "cache_aware")
# Round robin by default: the replicas are identical processes on one host, llama.cpp exposes no load
# figure the router can read (its /get_loads reports -1), and cache_aware would pin a repeated prompt
# (a benchmark's, a system prompt) to one replica and leave the others idle.
DEFAULT_POLICY = "round_robin"
HEALTH_INTERVAL_S = 2  # the router's default is 60 s: a dead replica would take minutes to drop
HEALTH_FAILURES = 2    # consecutive failed checks before a replica leaves the rotation
ROUTER_START_TIMEOUT_S = 90.0
ROUTER_MODULE = "model_serving.serve.replicas.router_worker"
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


def check_fits(info: GGUFInfo, replicas: int, ctx_size: int) -> None:
    """Refuse N replicas whose estimate (gguf/memory.py, per engine: weights, KV, allowance) exceeds available RAM.

    Counted in full per replica: llama.cpp may repack weights into its own buffers, so a shared mmap is not promised.
    """
    available = processes.available_bytes()
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
                       "--prometheus-port", str(processes.free_port()),  # the default 29000 would collide between two routers
                       "--health-check-interval-secs", str(HEALTH_INTERVAL_S), "--health-failure-threshold", str(HEALTH_FAILURES),
                       "--worker-startup-check-interval", "1", "--worker-startup-timeout-secs", "60")


def _start_router(settings: Settings, name: str, port: int, workers: list[ServedModel], policy: str, progress: Progress) -> int:
    log_path = registry.log_path(settings, name)
    progress.update(None, f"starting vllm-router ({policy}) for {name} on 127.0.0.1:{port}")
    proc = processes.launch(_router_argv(port, workers, policy), log_path, env={"NO_COLOR": "1"})
    processes.wait_healthy(proc, name, f"http://127.0.0.1:{port}", log_path, progress, timeout_s=ROUTER_START_TIMEOUT_S, what="vllm-router",
                           hint="a port taken between the check and the start, or a replica that stopped answering, are the usual causes")
    return proc.pid


def _start_replica(settings: Settings, gguf_path: str | Path, name: str, index: int, replicas: int, progress: Progress,
                   *, ctx_size: int, parallel: int, threads: int | None) -> ServedModel:
    try:
        return embedded.start_model(settings, gguf_path, name, replica=index, progress=progress, ctx_size=ctx_size, parallel=parallel, threads=threads)
    except Cancelled:
        raise
    except ServingError as exc:
        if not exc.detail and not isinstance(exc, InputError):
            exc.detail = processes.log_tail(registry.replica_log_path(settings, name, index))
        kind = InputError if isinstance(exc, InputError) else ServingError
        raise kind(f"Replica {index + 1} of {replicas} for {name} failed to start: {exc.cause}",
                        f"{exc.next_step} Nothing of {name} was left running.", detail=exc.detail) from exc


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
    path, info = embedded.checked_gguf(settings, gguf_path, name, ctx_size, parallel)  # confined, name and numbers checked
    check_fits(info, replicas, ctx_size)
    # The cores are shared: N engines each using every core would thrash, so each gets its share.
    threads = threads or max(1, (os.cpu_count() or 2) // replicas)
    with registry.claim(settings, name):
        port = registry.make_room(settings, name, port, replace)
        started: list[ServedModel] = []
        try:
            for i in range(replicas):
                span = progress.span(i / (replicas + 1), (i + 1) / (replicas + 1))
                started.append(_start_replica(settings, path, name, i, replicas, span, ctx_size=ctx_size, parallel=parallel, threads=threads))
            pid = _start_router(settings, name, port, started, policy, progress)
        except BaseException:
            for replica in started:
                processes.terminate(replica.pid, grace_s=5.0)
            raise
        rows = [Replica(**r.model_dump(include=set(Replica.model_fields))) for r in started]
        model = started[0].model_copy(update={"base_url": f"http://127.0.0.1:{port}", "port": port, "pid": pid, "router": policy,
                                              "replicas": rows, "engine": "replicas", "log_path": str(registry.log_path(settings, name)),
                                              "rss_bytes": processes.rss(pid), "started_at": datetime.now(UTC).isoformat(timespec="seconds")})
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
        healthy = replica.state == "running" and processes.healthy(replica.base_url, timeout_s)
        rows.append(ReplicaStatus(index=i, base_url=replica.base_url, pid=replica.pid, state=replica.state, healthy=healthy,
                                  routed=bool(routed and routed.get(replica.base_url)), log_path=replica.log_path))
    return routed is not None, rows


class ReplicasEngine(RecordedEngine):
    """N llama.cpp engines of one GGUF behind vllm-router, one URL under one name."""

    name = "replicas"
    description = "llama.cpp replicas behind vllm-router: one GGUF, N processes, one URL (`--replicas N`, the scale extra)"

    def argv(self, settings: Settings, options: StartOptions, port: int) -> list[str]:
        """The router's argv; each replica runs the embedded engine's own."""
        return _router_argv(port, [], options.policy or DEFAULT_POLICY)

    def start(self, settings: Settings, options: StartOptions, progress: Progress) -> ServedModel:
        return start_replicas(settings, options.source, options.name, replicas=options.replicas, policy=options.policy,
                              ctx_size=options.ctx_size, parallel=options.parallel, threads=options.threads, port=options.port,
                              replace=options.replace, engine=options.engine, lora=options.lora or None, progress=progress)

    def health(self, settings: Settings, name: str) -> bool:
        answers, rows = replica_status(registry.get_model(settings, name))
        return answers and any(r.routed for r in rows)

    def probe(self, settings: Settings, name: str) -> ProbeResult:
        """The first replica's llama.cpp (the router forwards only the OpenAI routes, not /apply-template or /tokenize)."""
        model = registry.get_model(settings, name)
        if not model.replicas:
            raise ServingError(f"{name} is not served by replicas.", "Probe it with its own engine (`model-serving serve list` names it).")
        return probe_served(model.model_copy(update={"base_url": model.replicas[0].base_url}))
