"""The engine at the limit of the machine: the native llama.cpp build (the one engine the install builds), one GGUF, one load.

With the native build present (scripts/install.sh compiles it; without it the script says so and exits 1):
1. a settings grid screened at concurrency 4 with 16-token answers (threads for decode and batch,
   n_batch/n_ubatch, flash attention, KV-cache type, slots, prompt-cache reuse);
2. the best settings swept at concurrency 1, 2, 4, 8: req/s, TTFT p95, e2e p95, lost connections;
3. single-stream decode tok/s against the bandwidth roofline (bench/roofline.py), from the concurrency-1 run;
4. 64 requests at concurrency 4 through one aiohttp session and one `openai` client (connections reused);
5. llama-bench prefill (64 and 512 tokens) and decode tok/s;
6. what bounds req/s: the cores the engine and client keep busy at concurrency 4, our client's
   CPU per request against an instant server (its share of the 2 cores), llama-bench at the batch sizes
   continuous batching runs (an estimate per concurrency), and decode against both the bandwidth roofline
   and the one-token kernel rate.
Every measurement runs inside a LoadWatch; a busy machine marks the result not comparable.

    python benchmarks/engine_capacity.py [--gguf MODEL.gguf] [--out benchmarks/results/engine_capacity.json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in ("server", "tests", "tests/support", "tests/bench", "benchmarks"):
    sys.path.insert(0, str(ROOT / extra))

from _bench_meta import LoadWatch, bench_workload, write_report  # noqa: E402
from bench_client_overhead import client_rate  # noqa: E402  (one definition of the client's CPU per request)
from conftest import smollm2_path  # noqa: E402
from scripted_server import spawned  # noqa: E402
from test_connections import _aiohttp_load, _openai_load  # noqa: E402  (one definition of the reuse load)

from model_serving.bench import BenchConfig, run_benchmark, run_sweep  # noqa: E402
from model_serving.serve import processes, registry  # noqa: E402
from model_serving.serve.embedded import engine, native  # noqa: E402
from model_serving.settings import Settings  # noqa: E402
from model_serving.util.process import spawn  # noqa: E402

WORKLOAD: dict[str, Any] = {}  # what the bench runs sent, recorded once

CTX = 2048
THREADS = 2
# name -> (llama-server arguments beyond the worker's settings, slots); "base" is what the worker runs.
GRID: dict[str, tuple[tuple[str, ...], int]] = {
    "base": ((), 4),
    "fa-on": (("--flash-attn", "on"), 4),
    "fa-off": (("--flash-attn", "off"), 4),
    "kv-q8_0": (("--flash-attn", "on", "--cache-type-k", "q8_0", "--cache-type-v", "q8_0"), 4),
    "batch-512-ubatch-128": (("--batch-size", "512", "--ubatch-size", "128"), 4),
    "decode-threads-1": (("--threads", "1"), 4),
    "prompt-cache-reuse": (("--cache-reuse", "64"), 4),
    "slots-8": ((), 8),
}


class Server:
    """One engine for a measurement: the native llama-server with extra arguments."""

    def __init__(self, settings: Settings, gguf: Path, build: str, extra: tuple[str, ...], slots: int) -> None:
        self.settings, self.gguf, self.build, self.extra, self.slots = settings, gguf, build, extra, slots
        self.proc: subprocess.Popen | None = None
        self.base_url = self.name = ""
        self.pid = 0

    def __enter__(self) -> Server:
        found = engine.require_native(self.settings)
        port = processes.free_port()
        argv = native.server_argv(found, self.gguf, alias="capacity", port=port, ctx_size=CTX, parallel=self.slots, threads=THREADS)
        argv += list(self.extra)  # a later --threads wins in llama.cpp's parser
        log = registry.log_path(self.settings, "capacity")
        with log.open("wb") as out:
            self.proc = spawn(argv, stdout=out, text=False, env=native.env())
        self.base_url, self.name, self.pid = f"http://127.0.0.1:{port}", "capacity", self.proc.pid
        from model_serving.jobs import Progress

        processes.wait_healthy(self.proc, "capacity", self.base_url, log, Progress(), timeout_s=120)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _config(server: Server, gguf: Path, n: int, concurrency: int, out: Path) -> BenchConfig:
    config = BenchConfig.build(base_url=server.base_url, model=server.name, api="openai", n_requests=n, concurrency=concurrency,
                               max_tokens=16, server_pid=server.pid, gguf_path=gguf, output_dir=out, label="capacity")
    WORKLOAD.update(bench_workload(config))
    return config


def screen(settings: Settings, gguf: Path, build: str, names: list[str], n: int, out: Path, watches: list[LoadWatch]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        extra, slots = GRID[name]
        with Server(settings, gguf, build, extra, slots) as server, LoadWatch(f"{build} screen {name}", [server.pid]) as watch:
            result = run_benchmark(_config(server, gguf, n, 4, out / f"{build}-{name}"))
        watches.append(watch)
        s = result.summary
        rows.append({"name": name, "args": list(extra), "slots": slots, "req_s": round(s.request_throughput, 2),
                     "ttft_p95_ms": s.p95_ttft_ms, "e2e_p95_ms": s.p95_e2el_ms, "connection_errors": s.connection_errors,
                     "load": watch.as_dict()})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_best(settings: Settings, gguf: Path, build: str, best: dict[str, Any], n: int, out: Path, watches: list[LoadWatch],
                 reuse: int) -> dict[str, Any]:
    extra, slots = GRID[best["name"]]
    with Server(settings, gguf, build, extra, slots) as server:
        with LoadWatch(f"{build} sweep", [server.pid]) as watch:
            swept = run_sweep(_config(server, gguf, n, 8, out / f"{build}-sweep"), [1, 2, 4, 8])
        watches.append(watch)
        with LoadWatch(f"{build} single stream", [server.pid]) as watch:
            single = run_benchmark(_config(server, gguf, min(n, 12), 1, out / f"{build}-single"))
        watches.append(watch)
        with LoadWatch(f"{build} concurrency 4 prompts", [server.pid]) as watch:  # how many prompt tokens the cache leaves
            at4 = run_benchmark(_config(server, gguf, n, 4, out / f"{build}-at4"))
        watches.append(watch)
        cores_at4 = watch.samples[-1].own_cores  # engine + client CPU over the run's wall time: both cores busy means compute is spent
        with LoadWatch(f"{build} reuse clients", [server.pid]) as watch:
            dropped = {"aiohttp": asyncio.run(_aiohttp_load(server.base_url, server.name, reuse, 4)),
                       "openai": asyncio.run(_openai_load(server.base_url, server.name, reuse, 4))}
        watches.append(watch)
    roof = single.roofline
    return {
        "settings": best["name"], "args": list(extra), "slots": slots,
        "sweep": [{"concurrency": p.concurrency, "req_s": round(p.request_throughput, 2), "ttft_p95_ms": p.p95_ttft_ms,
                   "e2e_p95_ms": p.p95_e2el_ms, "connection_errors": p.connection_errors, "targets_met": p.targets_met} for p in swept.sweep],
        "knee": swept.knee.model_dump(mode="json") if swept.knee else None, "target_levels": swept.target_levels,
        "decode_tok_s_single_stream": single.metrics["decode_tok_s"].median,
        "roofline": roof.model_dump(mode="json") if roof else None,
        "connection_errors": {k: len(v) for k, v in dropped.items()} | {"bench_sweep": swept.summary.connection_errors},
        "connection_error_samples": {k: v[:2] for k, v in dropped.items()},
        "memory_bytes": swept.server.memory_bytes,
        "cores_used_at_4": round(cores_at4, 2), "uncached_prompt_tokens": _median_prompt(at4.records), "output_tokens": at4.metrics["output_tokens"].median,
    }


def _median_prompt(records: list) -> float | None:
    counted = [r.server.prompt_tokens for r in records if r.server and r.server.prompt_tokens is not None]
    return statistics.median(counted) if counted else None


def bounds(settings: Settings, gguf: Path, best: dict[str, Any], watches: list[LoadWatch]) -> dict[str, Any] | None:
    """What bounds req/s at each concurrency, from the engine's kernels measured alone.

    Continuous batching decodes one token for each of the c running requests per step, so a step costs about what
    llama-bench measures for a c-token batch; each request also prefills its uncached prompt tokens. That predicts
    1 / (output tokens / rate(c) + prompt tokens / rate(prompt)) req/s: an estimate, not a ceiling (llama-bench's batch is
    one sequence's prompt, whose per-call cost is higher than a decode step's). The bound itself is read from the cores:
    at concurrency 4 the engine and the client together keep both cores busy, and the client's share is measured apart.
    """
    tool, prompt, output = native.tool(settings, "llama-bench"), best.get("uncached_prompt_tokens"), best.get("output_tokens")
    if tool is None or not prompt or not output:
        return None
    sizes = sorted({1, 2, 4, 8, max(1, round(prompt))})
    with LoadWatch("llama-bench batch sizes", []) as watch:
        done = subprocess.run([str(tool), "-m", str(gguf), "-t", str(THREADS), "-p", ",".join(map(str, sizes)), "-n", "0", "-r", "3",
                               "-o", "json"], capture_output=True, text=True, timeout=900, check=False, env={**os.environ, **native.env()})
    watches.append(watch)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    rate = {r["n_prompt"]: r["avg_ts"] for r in json.loads(done.stdout)}
    levels = []
    for point in best["sweep"]:
        batch = min(point["concurrency"], best["slots"], 8)
        ceiling = 1.0 / (output / rate[batch] + prompt / rate[max(1, round(prompt))])
        levels.append({"concurrency": point["concurrency"], "batch_tok_s": round(rate[batch], 1), "kernel_estimate_req_s": round(ceiling, 2),
                       "measured_req_s": point["req_s"], "measured_over_estimate": round(point["req_s"] / ceiling, 3)})
    at4 = next(lv for lv in levels if lv["concurrency"] == 4)
    with spawned(ttft_ms=0, tpot_ms=0, tokens=round(output)) as url, LoadWatch("client against an instant server") as watch:
        client = client_rate(url, 4, 200)  # our client's own CPU per request, with no engine to wait for
    watches.append(watch)
    client_share = client["client_cpu_ms_per_request"] * at4["measured_req_s"] / 1e3 / (os.cpu_count() or 1)
    cores = os.cpu_count() or 1
    engine_cores = best["cores_used_at_4"] - client_share * cores
    bound = ("client" if client_share > 0.15 else "compute" if best["cores_used_at_4"] >= 0.9 * cores
             else "engine overhead (the cores are not full: HTTP, scheduling, waiting)")
    roof = best.get("roofline") or {}
    decode = {"measured_tok_s": best["decode_tok_s_single_stream"], "bandwidth_ceiling_tok_s": roof.get("ceiling_tok_s"),
              "kernel_tok_s": round(rate[1], 1),
              "bound": "compute" if roof.get("ceiling_tok_s") and rate[1] < 0.9 * roof["ceiling_tok_s"] else "bandwidth",
              "note": "kernel_tok_s is llama-bench's one-token forward pass: decode cannot beat it, so when it is under 90% of the "
                      "bandwidth ceiling the kernels, not memory, bound decode on this CPU."}
    return {"llama_bench_tok_s": {str(k): round(v, 1) for k, v in sorted(rate.items())}, "prompt_tokens": prompt, "output_tokens": output,
            "decode": decode,
            "levels": levels, "client_cpu_ms_per_request": round(client["client_cpu_ms_per_request"], 2),
            "client_cpu_share_at_4": round(client_share, 3), "bound_at_4": bound,
            "engine_cores_at_4": round(engine_cores, 2),
            "explanation": (f"At concurrency 4 the engine served {at4['measured_req_s']:.1f} req/s on {engine_cores:.2f} of {cores} cores "
                            f"while our client used {client_share:.1%} of them; llama-bench's {at4['batch_tok_s']:.0f} tok/s for 4-token "
                            f"batches predicts {at4['kernel_estimate_req_s']:.1f} req/s for {output:.0f}-token answers with "
                            f"{prompt:.0f} uncached prompt tokens each.")}


def llama_bench(settings: Settings, gguf: Path, watches: list[LoadWatch]) -> dict[str, Any] | None:
    tool = native.tool(settings, "llama-bench")
    if tool is None:
        return None
    with LoadWatch("llama-bench", []) as watch:
        done = subprocess.run([str(tool), "-m", str(gguf), "-t", str(THREADS), "-p", "64,512", "-n", "32", "-r", "2", "-o", "json"],
                              capture_output=True, text=True, timeout=900, check=False, env={**os.environ, **native.env()})
    watches.append(watch)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    rows = json.loads(done.stdout)
    return {("prefill_tok_s_" + str(r["n_prompt"])) if r["n_prompt"] else f"decode_tok_s_{r['n_gen']}": round(r["avg_ts"], 1) for r in rows}


def table(report: dict[str, Any]) -> str:
    """The README's engine table: per build at its best settings, req/s / TTFT p95 / e2e p95 at each concurrency."""
    lines = ["| build (best settings) | concurrency | req/s | TTFT p95 ms | e2e p95 ms | lost connections |", "|---|---|---|---|---|---|"]
    for build, entry in report["builds"].items():
        best = entry["best"]
        for p in best["sweep"]:
            lines.append(f"| {build} ({best['settings']}) | {p['concurrency']} | {p['req_s']:.1f} | {p['ttft_p95_ms'] or 0:.0f} | "
                         f"{p['e2e_p95_ms'] or 0:.0f} | {p['connection_errors']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", type=Path, help="default: the SmolLM2-135M fixture GGUF")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine_capacity.json")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="screen only base and fa-on")
    parser.add_argument("--reuse-requests", type=int, default=64, help="requests per connection-reusing client")
    parser.add_argument("--table", action="store_true", help="print the README table from --out and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text(encoding="utf-8"))))
        return
    gguf = (args.gguf or smollm2_path()).resolve()
    work = Path(tempfile.mkdtemp(prefix="engine-capacity-"))
    settings = Settings.from_env(roots=[str(gguf.parent), str(work)], home=str(work / "home"))
    names = ["base", "fa-on"] if args.quick else list(GRID)
    watches: list[LoadWatch] = []
    found = native.find(settings)
    if found.kind != "native":
        sys.exit(f"engine_capacity: no engine to measure ({found.describe})")
    rows = screen(settings, gguf, "native", names, args.requests, work, watches)
    best = max(rows, key=lambda r: r["req_s"])
    measured = {"describe": found.describe, "screen": rows,
                "best": measure_best(settings, gguf, "native", best, args.requests, work, watches, args.reuse_requests)}
    measured["bounds"] = bounds(settings, gguf, measured["best"], watches)
    report = {"gguf": gguf.name, "requests_per_level": args.requests, "reuse_requests": args.reuse_requests, "ctx": CTX, "threads": THREADS,
              "max_tokens": 16, "builds": {"native": measured}, "llama_bench": llama_bench(settings, gguf, watches)}
    merged = write_report(args.out, report, watches, echo=False, model=f"{gguf.name} (packaged SmolLM2-135M)", workload=WORKLOAD)
    print(table(merged))


if __name__ == "__main__":
    main()
