"""Load profiles: one at a time, fixed concurrency (closed loop), Poisson arrivals, and a concurrency sweep.

The client's own delays are measured, not assumed away: each request records when it was due and
when its bytes went out (client queue time), and a ticker measures event-loop lag during the run.
Each request is bounded by `config.timeout_s` (see clients.stream_one), so a stalled server ends a
run in bounded time rather than holding it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from model_serving.bench.clients import stream_one
from model_serving.bench.http_client import Pool
from model_serving.bench.models import BenchConfig, Finding, Knee, RequestRecord, SweepPoint
from model_serving.bench.prompts import PromptSpec
from model_serving.errors import Cancelled
from model_serving.jobs import Progress

# Stop a run once this many requests in a row failed outright: the server is gone, not slow.
_MAX_CONSECUTIVE_ERRORS = 5


@dataclass
class LoadOutcome:
    records: list[RequestRecord]
    warmups: list[RequestRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stopped_reason: str | None = None
    loop_lag_ms: list[float] = field(default_factory=list)


def poisson_offsets(n: int, rate: float, seed: int) -> list[float]:
    """Arrival times in seconds from the start: exponential gaps at `rate`, from the recorded seed."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


async def _lag_ticker(lags: list[float], stop: asyncio.Event, period_s: float = 0.01) -> None:
    while not stop.is_set():
        before = time.perf_counter_ns()
        await asyncio.sleep(period_s)
        lags.append(max(0.0, (time.perf_counter_ns() - before) / 1e6 - period_s * 1e3))


@dataclass
class _Run:
    """One load run's shared state: the pool, the outcome being filled, and the stop signal."""

    config: BenchConfig
    specs: Sequence[PromptSpec]
    concurrency: int
    progress: Progress
    on_record: Callable[[RequestRecord], None] | None
    client: Pool
    outcome: LoadOutcome
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    t0: int = 0
    consecutive_errors: int = 0
    done: int = 0

    def now_ms(self) -> float:
        return (time.perf_counter_ns() - self.t0) / 1e6

    async def warm(self) -> bool:
        """Each stream sends its warmup requests first, so every pooled connection is open before timing.

        False (with the reason recorded) when every stream's warmup failed to reach the server.
        """
        warm_t0 = time.perf_counter_ns()
        streams = min(self.concurrency, len(self.specs))
        warmed = await asyncio.gather(*(self._warm_stream(i, warm_t0) for i in range(streams)))
        self.progress.check()
        if all(w.status == "error" and w.first_byte_ms is None and not (w.error or "").startswith("HTTP") for w in warmed):
            self.outcome.stopped_reason = f"the warmup requests failed: {warmed[0].error}"
            return False
        return True

    async def _warm_stream(self, stream: int, warm_t0: int) -> RequestRecord:
        config, n = self.config, self.config.warmup
        record = RequestRecord(index=-1, prompt_id="", warmup=True, scheduled_ms=0.0, max_tokens=config.max_tokens)
        for i in range(n):
            spec = self.specs[(stream * n + i) % len(self.specs)]
            record = RequestRecord(index=-1 - stream * n - i, prompt_id=spec.id, warmup=True, scheduled_ms=0.0,
                                   max_tokens=spec.max_tokens or config.max_tokens)
            await stream_one(self.client, config, spec, record, warm_t0)
            self.outcome.warmups.append(record)
        return record

    async def one(self, index: int, spec: PromptSpec, scheduled_ms: float) -> None:
        record = RequestRecord(index=index, prompt_id=spec.id, scheduled_ms=scheduled_ms, max_tokens=spec.max_tokens or self.config.max_tokens)
        await stream_one(self.client, self.config, spec, record, self.t0)
        self.outcome.records.append(record)
        self.done += 1
        self._count_failure(record)
        if self.on_record:
            self.on_record(record)
        if not self.progress.cancel_event.is_set():
            self.progress.update(self.done / len(self.specs), f"{self.done}/{len(self.specs)} requests")

    def _count_failure(self, record: RequestRecord) -> None:
        if record.status != "error":
            self.consecutive_errors = 0
            return
        self.consecutive_errors += 1
        if self.consecutive_errors >= _MAX_CONSECUTIVE_ERRORS and not self.stop.is_set():
            self.outcome.stopped_reason = f"{_MAX_CONSECUTIVE_ERRORS} requests in a row failed (last: {record.error})"
            self.stop.set()

    async def closed_loop(self) -> None:
        queue: asyncio.Queue[tuple[int, PromptSpec]] = asyncio.Queue()
        for item in enumerate(self.specs):
            queue.put_nowait(item)

        async def worker() -> None:
            while not self.stop.is_set():
                try:
                    index, spec = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self.one(index, spec, self.now_ms())

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(self.specs)))))

    async def open_loop(self, arrival_rate: float) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        tasks = []

        async def gated(index: int, spec: PromptSpec, due_ms: float) -> None:
            async with gate:
                if not self.stop.is_set():
                    await self.one(index, spec, due_ms)

        offsets = poisson_offsets(len(self.specs), arrival_rate, self.config.seed)
        for index, (spec, offset) in enumerate(zip(self.specs, offsets, strict=True)):
            delay = offset - self.now_ms() / 1000.0
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
            if self.stop.is_set():
                break
            tasks.append(asyncio.create_task(gated(index, spec, offset * 1000.0)))
        await asyncio.gather(*tasks)

    async def watch_cancel(self, main: asyncio.Task[None]) -> None:
        while not main.done():
            if self.progress.cancel_event.is_set():
                main.cancel()
                return
            await asyncio.sleep(0.05)

    async def measure(self, rate: float | None) -> None:
        """The timed part: the chosen profile, with the lag ticker and the cancel watcher beside it."""
        self.t0 = time.perf_counter_ns()
        ticker = asyncio.create_task(_lag_ticker(self.outcome.loop_lag_ms, self.stop))
        main = asyncio.create_task(self.open_loop(rate) if rate else self.closed_loop())
        watcher = asyncio.create_task(self.watch_cancel(main))
        try:
            await main
        except asyncio.CancelledError:
            raise Cancelled("The benchmark") from None
        finally:
            self.stop.set()
            watcher.cancel()
            await asyncio.gather(ticker, watcher, return_exceptions=True)


async def run_load(
    config: BenchConfig,
    specs: Sequence[PromptSpec],
    *,
    concurrency: int,
    rate: float | None,
    progress: Progress | None = None,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> LoadOutcome:
    """Send `config.warmup` requests one by one (left out), then `specs` under the chosen profile."""
    outcome = LoadOutcome([])
    client = Pool(config.base_url, concurrency)
    run = _Run(config, specs, concurrency, progress or Progress(), on_record, client, outcome)
    try:
        if config.warmup and not await run.warm():
            return outcome
        await run.measure(rate)
    finally:
        client.close()
    outcome.records.sort(key=lambda r: r.index)
    return outcome


def find_knee(points: Sequence[SweepPoint], total_slots: int | None, *, min_gain: float = 0.10) -> Knee:
    """The knee: the last level before aggregate throughput stops rising (< min_gain) while p95 latency climbs.

    Cause: past the knee, if time to first token grows more than time per output token, requests were
    waiting for a free slot (parallel slots); if time per token grows, the batched decode itself slowed
    (compute or memory bandwidth).
    """
    ordered = sorted(points, key=lambda p: p.concurrency)
    if len(ordered) < 2:
        return Knee(concurrency=None, cause="unknown", explanation="A sweep needs at least two concurrency levels.")
    for prev, cur in zip(ordered, ordered[1:], strict=False):
        gain = cur.output_throughput / prev.output_throughput - 1.0 if prev.output_throughput else 0.0
        latency_up = (cur.p95_e2el_ms or 0.0) > (prev.p95_e2el_ms or 0.0) * 1.05
        if gain < min_gain and latency_up:
            ttft_growth = (cur.median_ttft_ms or 0.0) - (prev.median_ttft_ms or 0.0)
            tokens = cur.output_throughput / cur.request_throughput if cur.request_throughput > 0 else 1.0
            tpot_growth = ((cur.median_tpot_ms or 0.0) - (prev.median_tpot_ms or 0.0)) * tokens
            slots_bound = total_slots is not None and prev.concurrency >= total_slots
            if slots_bound or ttft_growth > tpot_growth:
                slots_text = f"the server has {total_slots} parallel slot(s)" if total_slots else "requests queue for a free slot"
                return Knee(concurrency=prev.concurrency, cause="parallel_slots", explanation=(
                    f"Throughput stops rising after {prev.concurrency} concurrent requests ({gain:+.0%} at {cur.concurrency}) "
                    f"while time to first token grows by {ttft_growth:.0f} ms: {slots_text}, so extra requests wait. "
                    "More parallel slots (if memory allows) move the knee."))
            return Knee(concurrency=prev.concurrency, cause="compute", explanation=(
                f"Throughput stops rising after {prev.concurrency} concurrent requests ({gain:+.0%} at {cur.concurrency}) "
                f"while time per output token grows by {(cur.median_tpot_ms or 0) - (prev.median_tpot_ms or 0):.1f} ms: "
                "the batched decode is limited by compute or memory bandwidth, not by slots. A smaller quantization or faster hardware moves it."))
    last = ordered[-1]
    return Knee(concurrency=None, cause="none", explanation=f"Throughput still rose up to {last.concurrency} concurrent requests; sweep higher to find the knee.")
