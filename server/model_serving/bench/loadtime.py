"""Cold versus warm model load on the embedded engine.

Cold: the GGUF's pages are dropped from the OS page cache first (posix_fadvise DONTNEED needs no
root for clean pages of a file we can open), so the start reads the weights from disk. Warm: the
same start again with the file cached. Each is timed to a healthy server and to the first token
of one request, which is where a lazily mmap-ed model finishes paying for its reads.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from model_serving.bench.clients import stream_one
from model_serving.bench.http_client import Pool
from model_serving.bench.metrics import derive
from model_serving.bench.prompts import fixed_prompts
from model_serving.bench.schema import BenchConfig, LoadTimes, RequestRecord
from model_serving.jobs import Progress
from model_serving.serve.embedded import engine
from model_serving.settings import Settings


def evict_page_cache(path: Path) -> bool:
    """Ask the kernel to drop the file's cached pages; False where that is not possible."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _first_request(base_url: str, model: str) -> RequestRecord:
    config = BenchConfig(base_url=base_url, model=model, max_tokens=8)
    spec = fixed_prompts()[0]
    record = RequestRecord(index=0, prompt_id=spec.id, scheduled_ms=0.0, max_tokens=8)

    async def send() -> None:
        pool = Pool(base_url, 1)
        try:
            await stream_one(pool, config, spec, record, time.perf_counter_ns())
        finally:
            pool.close()

    asyncio.run(send())
    return derive(record)


def measure_engine_load(settings: Settings, gguf_path: Path, name: str, *, ctx_size: int = 2048, parallel: int = 1,
                        progress: Progress | None = None) -> LoadTimes:
    """Start the model cold, then warm, timing each to healthy and to its first token; leaves it stopped."""
    progress = progress or Progress()
    timings: dict[str, tuple[float, float | None]] = {}
    evicted = False
    for i, kind in enumerate(("cold", "warm")):
        if kind == "cold":
            evicted = evict_page_cache(gguf_path)
        progress.update(i / 2, f"{kind} start of {name}")
        start = time.perf_counter()
        served = engine.start_model(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, replace=True)
        started_ms = (time.perf_counter() - start) * 1000.0
        try:
            record = _first_request(served.base_url, name)
        finally:
            engine.stop_model(settings, name)
        timings[kind] = (started_ms, record.ttft_ms)
    note = ("Page cache evicted before the cold start." if evicted
            else "The page cache could not be evicted, so the cold start may have read a cached file.")
    return LoadTimes(cold_start_ms=timings["cold"][0], cold_ttft_ms=timings["cold"][1],
                     warm_start_ms=timings["warm"][0], warm_ttft_ms=timings["warm"][1], page_cache_evicted=evicted, note=note)
