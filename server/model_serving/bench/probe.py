"""What the benchmark asks the server before and around a run: is it there, which models and slots
does it have, how much memory does it hold, and how long does a cold load take (Ollama)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from model_serving.bench.models import BenchConfig, LoadTimes, ServerInfo
from model_serving.errors import InputError


def _get(client: httpx.Client, url: str) -> Any | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _ollama_names(tags: Any) -> list[str]:
    return [m.get("name") or m.get("model") for m in (tags or {}).get("models", []) if isinstance(m, dict)]


def ollama_knows(name: str, names: list[str]) -> bool:
    return name in names or (":" not in name and f"{name}:latest" in names)


def preflight(config: BenchConfig) -> ServerInfo:
    """Check the server answers and knows the model; read its slots and context where it says."""
    base = config.base_url
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        try:
            client.get(base + ("/api/version" if config.api == "ollama" else "/v1/models"))
        except httpx.HTTPError as exc:
            raise InputError(
                f"No server answers at {base} ({type(exc).__name__}: {exc or 'connection failed'}).",
                "Start it (model-serving serve start, or `ollama serve`) or pass the right endpoint.",
            ) from None
        info = ServerInfo()
        if config.api == "ollama":
            info.kind = "ollama"
            version = _get(client, base + "/api/version")
            info.version = (version or {}).get("version")
            info.models = _ollama_names(_get(client, base + "/api/tags"))
            if not ollama_knows(config.model, info.models):
                shown = ", ".join(info.models) or "none"
                raise InputError(f"Ollama at {base} has no model named {config.model!r} (it has: {shown}).",
                                 "Register it first (model-serving register) or pass one of the names listed.")
            parallel = os.environ.get("OLLAMA_NUM_PARALLEL")
            info.total_slots = int(parallel) if parallel and parallel.isdigit() else None
            return info
        models = _get(client, base + "/v1/models") or {}
        info.models = [m.get("id") for m in models.get("data", []) if isinstance(m, dict) and m.get("id")]
        props = _get(client, base + "/props")
        if isinstance(props, dict) and "total_slots" in props:
            info.kind = "llama.cpp"
            info.total_slots = props.get("total_slots")
            info.n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
            info.version = props.get("build_info")
        elif _get(client, base + "/version") is not None:
            info.kind = "vllm"
    return info


def _rss_bytes(pid: int) -> int:
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
                self.peak = max(self.peak, _rss_bytes(self.pid))
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
            self.peak = max(self.peak, _rss_bytes(self.pid))


def after_run(config: BenchConfig, info: ServerInfo, sampler: MemorySampler | None) -> ServerInfo:
    if sampler is not None and sampler.peak:
        info.memory_bytes, info.memory_source = sampler.peak, f"resident memory of pid {sampler.pid} and its children"
    if config.api == "ollama":
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            running = _get(client, config.base_url + "/api/ps") or {}
        for entry in running.get("models", []):
            if entry.get("name") in (config.model, f"{config.model}:latest") or entry.get("model") in (config.model, f"{config.model}:latest"):
                size, vram = entry.get("size"), entry.get("size_vram")
                if info.memory_bytes is None and size:
                    info.memory_bytes, info.memory_source = int(size), "model size reported by Ollama /api/ps"
                if size and vram is not None:
                    info.vram_fraction = vram / size
    return info


def ollama_cold_load(config: BenchConfig) -> LoadTimes:
    """Unload the model (keep_alive 0), then time a cold request and a warm one."""
    import asyncio

    from model_serving.bench.clients import stream_one
    from model_serving.bench.http_client import Pool
    from model_serving.bench.metrics import derive
    from model_serving.bench.models import RequestRecord
    from model_serving.bench.prompts import fixed_prompts

    base = config.base_url
    with httpx.Client(timeout=60.0, trust_env=False) as client:
        client.post(base + "/api/generate", json={"model": config.model, "keep_alive": 0})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            running = _get(client, base + "/api/ps") or {}
            if not any(config.model in (m.get("name"), m.get("model")) or f"{config.model}:latest" in (m.get("name"), m.get("model"))
                       for m in running.get("models", [])):
                break
            time.sleep(0.2)
    spec = fixed_prompts()[0]

    async def twice() -> list[RequestRecord]:
        out = []
        pool = Pool(config.base_url, 1)
        try:
            for i in range(2):
                record = RequestRecord(index=i, prompt_id=spec.id, scheduled_ms=0.0, max_tokens=config.max_tokens)
                await stream_one(pool, config, spec, record, time.perf_counter_ns())
                out.append(derive(record))
        finally:
            pool.close()
        return out

    cold, warm = asyncio.run(twice())
    return LoadTimes(
        cold_ttft_ms=cold.ttft_ms, warm_ttft_ms=warm.ttft_ms,
        server_load_ms=cold.server.load_ms if cold.server else None,
        note="Ollama unloaded the model (keep_alive 0) first; the OS page cache still held the file, so disk reads are not included.",
    )
