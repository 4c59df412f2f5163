"""What the benchmark asks the server before and around a run: is it there, which models and slots
does it have, how much memory does it hold, and how long does a cold load take (Ollama)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from model_serving.bench.clients import stream_one
from model_serving.bench.http_client import Pool, StreamClosed, fetch_json
from model_serving.bench.metrics import derive
from model_serving.bench.prompts import fixed_prompts
from model_serving.bench.schema import BenchConfig, LoadTimes, RequestRecord, ServerInfo
from model_serving.errors import InputError, ServingError

# Each limit bounds a whole exchange (connect, send, headers and body), not one read: a server that
# trickles bytes cannot hold a probe past it. None waits longer than the run's request limit either.
PROBE_TIMEOUT_S = 5.0  # a server-info request (models, props, version, tags, ps, show)
UNLOAD_TIMEOUT_S = 60.0  # Ollama's unload request, which may first wait for a load in progress
UNLOAD_WAIT_S = 30.0  # until /api/ps no longer lists the unloaded model


def probe_limit(config: BenchConfig, limit_s: float = PROBE_TIMEOUT_S) -> float:
    return min(limit_s, config.timeout_s)


async def _get(base: str, path: str, limit_s: float, body: dict[str, Any] | None = None) -> Any | None:
    """The JSON a server-info request answers with, or None when it fails, times out or is not a 200."""
    try:
        status, data = await fetch_json(base, "POST" if body is not None else "GET", path, body, limit_s=limit_s)
    except (TimeoutError, OSError, StreamClosed, ValueError):
        return None
    return data if status == 200 else None


def get_json(base: str, path: str, limit_s: float, body: dict[str, Any] | None = None) -> Any | None:
    """`_get` for synchronous callers (the CLI, the MCP face's job threads); never inside an event loop."""
    return asyncio.run(_get(base, path, limit_s, body))


def _ollama_names(tags: Any) -> list[str]:
    # an entry without a name is skipped, as the OpenAI listing below skips one without an id (the names are joined into messages)
    return [name for m in (tags or {}).get("models", []) if isinstance(m, dict) and (name := m.get("name") or m.get("model"))]


def ollama_knows(name: str, names: list[str]) -> bool:
    return name in names or (":" not in name and f"{name}:latest" in names)


def preflight(config: BenchConfig) -> ServerInfo:
    """Check the server answers and knows the model; read its slots and context where it says."""
    return asyncio.run(_preflight(config, probe_limit(config)))


async def _first_answer(base: str, path: str, limit_s: float) -> Any | None:
    try:
        status, data = await fetch_json(base, "GET", path, limit_s=limit_s)
    except TimeoutError:
        raise InputError(f"No server answers at {base} (GET {path} got no answer within {limit_s:g} s).",
                         "Check that the server is up and not stuck, or pass the right endpoint.") from None
    except (OSError, StreamClosed, ValueError) as exc:
        raise InputError(
            f"No server answers at {base} ({type(exc).__name__}: {exc or 'connection failed'}).",
            "Start it (model-serving serve start, or `ollama serve`) or pass the right endpoint.",
        ) from None
    return data if status == 200 else None


async def _preflight(config: BenchConfig, limit_s: float) -> ServerInfo:
    base = config.base_url
    first = await _first_answer(base, "/api/version" if config.api == "ollama" else "/v1/models", limit_s)
    info = ServerInfo(engine_build=config.engine_build)
    if config.api == "ollama":
        info.kind = "ollama"
        info.version = (first or {}).get("version") if isinstance(first, dict) else None
        info.models = _ollama_names(await _get(base, "/api/tags", limit_s))
        if not ollama_knows(config.model, info.models):
            shown = ", ".join(info.models) or "none"
            raise InputError(f"Ollama at {base} has no model named {config.model!r} (it has: {shown}).",
                             "Register it first (model-serving register) or pass one of the names listed.")
        parallel = os.environ.get("OLLAMA_NUM_PARALLEL")
        info.total_slots = int(parallel) if parallel and parallel.isdigit() else None
        return info
    models = first if isinstance(first, dict) else {}
    info.models = [mid for m in models.get("data", []) if isinstance(m, dict) and (mid := m.get("id"))]
    props = await _get(base, "/props", limit_s)
    if isinstance(props, dict) and "total_slots" in props:
        info.kind = "llama.cpp"
        info.total_slots = props.get("total_slots")
        info.n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
        info.version = props.get("build_info")
    elif await _get(base, "/version", limit_s) is not None:
        info.kind = "vllm"
    return info


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (Linux /proc)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


class MemorySampler:
    """Samples a server process's resident memory on a thread during the run and keeps the peak."""

    def __init__(self, pid: int | None, period_s: float = 0.1) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period_s,), daemon=True, name="bench-memory")

    def _loop(self, period_s: float) -> None:
        while not self._stop.is_set():
            if self.pid is not None:
                self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(period_s)

    def __enter__(self) -> MemorySampler:
        if self.pid is not None and Path(f"/proc/{self.pid}").exists():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.pid is not None:
            self.peak = max(self.peak, rss_bytes(self.pid))


def after_run(config: BenchConfig, info: ServerInfo, sampler: MemorySampler | None) -> ServerInfo:
    if sampler is not None and sampler.peak:
        info.memory_bytes, info.memory_source = sampler.peak, f"resident memory of pid {sampler.pid} and its children"
    if config.api == "ollama":
        running = get_json(config.base_url, "/api/ps", probe_limit(config)) or {}
        for entry in running.get("models", []):
            if _is(entry, config.model):
                size, vram = entry.get("size"), entry.get("size_vram")
                if info.memory_bytes is None and size:
                    info.memory_bytes, info.memory_source = int(size), "model size reported by Ollama /api/ps"
                if size and vram is not None:
                    info.vram_fraction = vram / size
    return info


def _is(entry: Any, model: str) -> bool:
    names = (model, f"{model}:latest")
    return isinstance(entry, dict) and (entry.get("name") in names or entry.get("model") in names)


async def _unload(config: BenchConfig) -> float | None:
    """Ask Ollama to unload the model, then wait until /api/ps stops listing it.

    Returns None once it is gone, or the seconds waited when it was still listed (or /api/ps never
    answered) at the end of the wait.
    """
    base, limit = config.base_url, probe_limit(config, UNLOAD_TIMEOUT_S)
    try:
        await fetch_json(base, "POST", "/api/generate", {"model": config.model, "keep_alive": 0}, limit_s=limit)
    except TimeoutError:
        raise ServingError(f"Ollama at {base} did not answer the request to unload {config.model!r} within {limit:g} s.",
                           "Check Ollama's log for a stuck load, or measure without the cold start.") from None
    except (OSError, StreamClosed) as exc:
        raise ServingError(f"Ollama at {base} dropped the request to unload {config.model!r} ({type(exc).__name__}).",
                           "Check that Ollama is still running, or measure without the cold start.") from None
    wait = probe_limit(config, UNLOAD_WAIT_S)
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        running = await _get(base, "/api/ps", min(PROBE_TIMEOUT_S, left))
        if isinstance(running, dict) and not any(_is(m, config.model) for m in running.get("models", [])):
            return None
        await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))
    return wait


async def _cold_then_warm(config: BenchConfig) -> tuple[RequestRecord, RequestRecord, float | None]:
    still_loaded = await _unload(config)
    spec, out = fixed_prompts()[0], []
    pool = Pool(config.base_url, 1)
    try:
        for i in range(2):
            record = RequestRecord(index=i, prompt_id=spec.id, scheduled_ms=0.0, max_tokens=config.max_tokens)
            await stream_one(pool, config, spec, record, time.perf_counter_ns())
            out.append(derive(record))
    finally:
        pool.close()
    return out[0], out[1], still_loaded


def ollama_cold_load(config: BenchConfig) -> LoadTimes:
    """Unload the model (keep_alive 0), then time a cold request and a warm one."""
    cold, warm, still_loaded = asyncio.run(_cold_then_warm(config))
    note = "Ollama unloaded the model (keep_alive 0) first; the OS page cache still held the file, so disk reads are not included."
    if still_loaded is not None:
        note = (f"Ollama still listed the model as loaded {still_loaded:g} s after the unload request (or /api/ps did not answer), "
                "so the cold figures may be those of a loaded model.")
    return LoadTimes(cold_ttft_ms=cold.ttft_ms, warm_ttft_ms=warm.ttft_ms,
                     server_load_ms=cold.server.load_ms if cold.server else None, note=note)
