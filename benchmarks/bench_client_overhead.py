"""Is our client ever the bottleneck? Its request rate against an instant server, next to the engine's.

1. The scripted loopback server answers at once (first token after 0 ms, no gap between tokens,
   16 tokens per answer, in its own process); our client runs closed loops at several concurrencies
   and reports the request rate it sustains and its CPU time per request.
2. The embedded engine (the natively built llama-server) serves SmolLM2-135M 16-token answers at
   4 concurrent streams; its request rate is measured with the same client.
The ratio of the two is the headroom (issue target: at least 20x).
3. Accuracy: the scripted server sends its first token after a known 50 ms and one every 10 ms after it, so
   TTFT is 50 ms and e2e 200 ms by construction; our client's medians at concurrency 1 and 4 must be within
   2 ms of those. The server is Python sleeping to absolute deadlines in its own process: on a busy machine
   its wake-ups are late too, so only a quiet run judges the client.
Writes JSON comparable across commits.

    python benchmarks/bench_client_overhead.py [--out benchmarks/results/client_overhead.json] [--skip-engine]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402
from scripted_server import spawned  # noqa: E402

from model_serving.bench import BenchConfig, run_benchmark  # noqa: E402

TOKENS = 16


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_rate(url: str, concurrency: int, n: int) -> dict[str, float]:
    config = BenchConfig(base_url=url, model="scripted", n_requests=n, concurrency=concurrency, max_tokens=TOKENS, warmup=1,
                         targets={"memory_gb": None})
    cpu = _cpu_seconds()
    result = run_benchmark(config)
    cpu = _cpu_seconds() - cpu
    s = result.summary
    return {
        "concurrency": concurrency,
        "requests": s.completed,
        "request_throughput": s.request_throughput,
        "client_cpu_ms_per_request": cpu * 1000.0 / max(s.completed, 1),
        "median_e2el_ms": s.median_e2el_ms or 0.0,
        "median_ttft_ms": s.median_ttft_ms or 0.0,
        "loop_lag_max_ms": result.client_overhead.get("loop_lag_max_ms", 0.0),
    }


KNOWN = {"ttft_ms": 50.0, "tpot_ms": 10.0}
TOLERANCE_MS = 2.0


def client_accuracy(url: str, concurrency: int, n: int) -> dict[str, float | bool]:
    """Medians against the scripted server's known timing: the error is what our client adds or misses."""
    config = BenchConfig(base_url=url, model="scripted", n_requests=n, concurrency=concurrency, max_tokens=TOKENS, warmup=1,
                         targets={"memory_gb": None})
    s = run_benchmark(config).summary
    want_e2e = KNOWN["ttft_ms"] + (TOKENS - 1) * KNOWN["tpot_ms"]
    ttft_err, e2e_err = (s.median_ttft_ms or 0.0) - KNOWN["ttft_ms"], (s.median_e2el_ms or 0.0) - want_e2e
    return {"concurrency": concurrency, "requests": s.completed, "median_ttft_ms": s.median_ttft_ms or 0.0, "known_ttft_ms": KNOWN["ttft_ms"],
            "median_e2el_ms": s.median_e2el_ms or 0.0, "known_e2el_ms": want_e2e, "ttft_error_ms": round(ttft_err, 3),
            "e2el_error_ms": round(e2e_err, 3), "within_2ms": abs(ttft_err) <= TOLERANCE_MS and abs(e2e_err) <= TOLERANCE_MS}


def engine_rate(requests: int) -> dict[str, float] | None:
    gguf = smollm2_path()
    if gguf is None:
        return None
    from model_serving.serve.embedded import engine
    from model_serving.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), roots=[Path(tmp), gguf.parent])
        served = engine.start_model(settings, gguf, "smollm2-overhead", ctx_size=2048, parallel=4)
        try:
            config = BenchConfig(base_url=served.base_url, model=served.name, n_requests=requests, concurrency=4, max_tokens=TOKENS,
                                 prompt_source="synthetic", input_tokens=32, targets={"memory_gb": None})
            s = run_benchmark(config).summary
        finally:
            engine.stop_model(settings, served.name)
    return {"concurrency": 4, "requests": s.completed, "request_throughput": s.request_throughput, "median_e2el_ms": s.median_e2el_ms or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "client_overhead.json")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--skip-engine", action="store_true", help="Only measure the client")
    args = parser.parse_args()
    watches = [LoadWatch(f"client at concurrency {c}") for c in (1, 4, 16)]
    with spawned(ttft_ms=0, tpot_ms=0, tokens=TOKENS) as url:
        client = []
        for c, watch in zip((1, 4, 16), watches, strict=True):
            with watch:
                client.append(client_rate(url, c, args.requests))
    accuracy = []
    with spawned(tokens=TOKENS, slots=8, **KNOWN) as url:
        for c in (1, 4):
            with LoadWatch(f"accuracy at concurrency {c}") as watch:
                accuracy.append(client_accuracy(url, c, 80))
            watches.append(watch)
    engine = None
    if not args.skip_engine:
        with LoadWatch("engine") as watch:
            engine = engine_rate(requests=16)
        watches.append(watch)
    best = max(c["request_throughput"] for c in client)
    report = {
        "benchmark": "client_overhead",
        "tokens_per_answer": TOKENS,
        "client_against_instant_server": client,
        "engine_smollm2": engine,
        "client_max_request_throughput": best,
        "accuracy_against_known_timing": accuracy,
        "accuracy_target": f"medians within {TOLERANCE_MS} ms of the scripted timing at concurrency 1 and 4",
        "headroom_ratio": best / engine["request_throughput"] if engine and engine["request_throughput"] else None,
        "target": "headroom_ratio >= 20",
        "note": "The instant server is Python in its own process, so the client rate is a lower bound on what the client can do.",
    }
    write_report(args.out, report, watches, model="a scripted instant server; SmolLM2-135M (packaged Q4_1 GGUF) for the engine rate",
                 workload=workload("closed loops against the scripted server; the engine with synthetic prompts", prompts="unique",
                                   input_tokens=32, output_tokens=TOKENS, ignore_eos=True))


if __name__ == "__main__":
    main()
