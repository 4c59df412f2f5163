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
from model_serving.bench.prompts import PromptSpec
from model_serving.bench.schema import BenchConfig, Finding, Knee, RequestRecord, SweepPoint, Workload
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
    workload: Workload | None = None


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
    warm_specs: Sequence[PromptSpec] = ()
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
            # Unique workloads warm up on prompts of their own: one shared with a measured request would be cached.
            pool = self.warm_specs or self.specs
            spec = pool[(stream * n + i) % len(pool)]
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
    warm_specs: Sequence[PromptSpec] = (),
) -> LoadOutcome:
    """Send `config.warmup` requests per stream (left out; from `warm_specs` when given), then `specs` under the chosen profile."""
    outcome = LoadOutcome([])
    client = Pool(config.base_url, concurrency, keep_alive=config.keep_alive)
    run = _Run(config, specs, concurrency, progress or Progress(), on_record, client, outcome, warm_specs=warm_specs)
    try:
        if config.warmup and not await run.warm():
            return outcome
        await run.measure(rate)
    finally:
        client.close()
    outcome.records.sort(key=lambda r: r.index)
    return outcome


def _plateau(ordered: Sequence[SweepPoint], min_gain: float) -> tuple[SweepPoint, list[SweepPoint]]:
    """The level where throughput last rose by `min_gain`, and the levels after it that failed to beat it by that much.

    Each level is compared with that anchor, not with the level before it: one slow request in a short run
    makes a dip, and the next level that beats the anchor ends the plateau the dip seemed to start.
    """
    anchor, flat = ordered[0], list[SweepPoint]()
    for point in ordered[1:]:
        if point.output_throughput >= anchor.output_throughput * (1.0 + min_gain):
            anchor, flat = point, []
        else:
            flat.append(point)
    return anchor, flat


def _gain(anchor: SweepPoint, point: SweepPoint) -> float:
    return point.output_throughput / anchor.output_throughput - 1.0 if anchor.output_throughput else 0.0


def sweep_can_stop(points: Sequence[SweepPoint], total_slots: int | None, *, min_gain: float = 0.10) -> bool:
    """Whether higher levels can only queue, so a sweep may end here.

    Never below the server's slot count (the levels it can serve at once); past it, when throughput failed to
    beat its anchor at two levels in a row, or at one when the anchor already fills every slot (more requests
    can only wait). Broken latency alone does not end it: a busy moment breaks latency and throughput at one
    level together, which is the noise this rule is there to ride out.
    """
    ordered = sorted(points, key=lambda p: p.concurrency)
    if not ordered or (total_slots is not None and ordered[-1].concurrency < total_slots):
        return False
    anchor, flat = _plateau(ordered, min_gain)
    slots_full = total_slots is not None and anchor.concurrency >= total_slots
    return len(flat) >= 2 or (bool(flat) and slots_full)


def find_knee(points: Sequence[SweepPoint], total_slots: int | None, *, min_gain: float = 0.10) -> Knee:
    """The knee: the last level where aggregate throughput rose by `min_gain`, once the levels after it confirm the plateau.

    Confirmed means two levels in a row that fail to beat it, or one when it already fills the server's slots.
    One flat level below the slot count is not a knee (it may be one slow request), and throughput that rises
    to the top level means no knee within the levels swept. Cause: past the knee, if time to first token grows
    more than time per output token, requests were waiting for a free slot (parallel slots); if time per token
    grows, the batched decode itself slowed (compute or memory bandwidth).
    """
    ordered = sorted(points, key=lambda p: p.concurrency)
    if len(ordered) < 2:
        return Knee(concurrency=None, cause="unknown", explanation="A sweep needs at least two concurrency levels.")
    swept = ", ".join(str(p.concurrency) for p in ordered)
    anchor, flat = _plateau(ordered, min_gain)
    if not flat:
        return Knee(concurrency=None, cause="none", explanation=(
            f"Throughput still rose at {ordered[-1].concurrency} concurrent requests: no knee within the levels swept ({swept}); "
            "sweep higher to find it."))
    cur, gain = flat[0], _gain(anchor, flat[0])
    slots_bound = total_slots is not None and anchor.concurrency >= total_slots
    if len(flat) < 2 and not slots_bound:
        return Knee(concurrency=None, cause="unknown", explanation=(
            f"Throughput did not rise from {anchor.concurrency} to {cur.concurrency} concurrent requests ({gain:+.0%}), but one level "
            f"is no plateau (one slow request moves a short run's rate): no knee confirmed within the levels swept ({swept}). "
            "Sweep higher or send more requests per level."))
    ttft_growth = (cur.median_ttft_ms or 0.0) - (anchor.median_ttft_ms or 0.0)
    tokens = cur.output_throughput / cur.request_throughput if cur.request_throughput > 0 else 1.0
    tpot_growth = ((cur.median_tpot_ms or 0.0) - (anchor.median_tpot_ms or 0.0)) * tokens
    levels = f"{anchor.concurrency} concurrent requests ({', '.join(f'{_gain(anchor, p):+.0%} at {p.concurrency}' for p in flat)})"
    if slots_bound or ttft_growth > tpot_growth:
        slots_text = f"the server has {total_slots} parallel slot(s)" if total_slots else "requests queue for a free slot"
        return Knee(concurrency=anchor.concurrency, cause="parallel_slots", explanation=(
            f"Throughput stops rising after {levels} while time to first token grows by {ttft_growth:.0f} ms: {slots_text}, "
            "so extra requests wait. More parallel slots (if memory allows) move the knee."))
    return Knee(concurrency=anchor.concurrency, cause="compute", explanation=(
        f"Throughput stops rising after {levels} while time per output token grows by "
        f"{(cur.median_tpot_ms or 0) - (anchor.median_tpot_ms or 0):.1f} ms: the batched decode is limited by compute or memory "
        "bandwidth, not by slots. A smaller quantization or faster hardware moves it."))
