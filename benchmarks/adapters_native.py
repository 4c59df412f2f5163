"""LoRA adapters served by name: the native llama-server behind the worker's front against the xllamacpp wheel in the worker.

SmolLM2-135M-Instruct (the packaged GGUF) with one LoRA (the test fixture's, converted with llama.cpp's
convert_lora_to_gguf.py), served with `serve start --lora` once per build. Then `--requests` (32)
chat requests at `--concurrency` (4), alternating the base's name and the adapter's, 16-token answers;
requests per second, e2e p50, and the requests that failed. Every request goes through the front,
so each pays `cache_prompt: false` (front.py) on both builds.

    python benchmarks/adapters_native.py [--work DIR] [--requests 32] [--concurrency 4] [--out benchmarks/results/adapters_native.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use
from lora_fixtures import tiny_lora_adapter  # noqa: E402

from model_serving.checkpoint.lora_gguf import export_lora_gguf  # noqa: E402
from model_serving.checkpoint.rebuild import checkpoint_from_gguf  # noqa: E402
from model_serving.serve.embedded import engine, native  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]


def adapter_gguf(work: Path, settings: Settings) -> Path:
    out = work / "adapter-f16.gguf"
    if not out.exists():
        base_dir = checkpoint_from_gguf(smollm2_path(), work / "smollm2-hf")
        adapter = tiny_lora_adapter(work / "smollm2-lora", base_dir, seed=4, scale=0.3)  # changes the answer, still stops
        export_lora_gguf(settings, str(adapter), str(base_dir), str(out))
    return out


def one(client: httpx.Client, url: str, model: str) -> float | None:
    began = time.perf_counter()
    try:
        reply = client.post(f"{url}/v1/chat/completions", json={"model": model, "messages": QUESTION, "max_tokens": 16, "temperature": 0})
    except httpx.HTTPError:
        return None
    return time.perf_counter() - began if reply.status_code == 200 else None


def measure(settings: Settings, base: Path, adapter: Path, requests: int, concurrency: int) -> tuple[dict[str, Any], LoadWatch]:
    model = engine.start_model(settings, base, "ab-base", ctx_size=2048, parallel=concurrency, lora=[f"ab-tuned={adapter}"])
    try:
        names = [("ab-base", "ab-tuned")[i % 2] for i in range(requests)]
        with httpx.Client(timeout=300) as client, LoadWatch(f"adapters on {model.engine_build}", [model.pid]) as watch:
            began = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                took = list(pool.map(lambda n: one(client, model.base_url, n), names))
            wall = time.perf_counter() - began
    finally:
        engine.stop_model(settings, "ab-base")
    done = [t for t in took if t is not None]
    return {"engine_build": model.engine_build, "req_s": round(len(done) / wall, 2), "e2e_p50_ms": round(statistics.median(done) * 1000, 1) if done else None,
            "failed": len(took) - len(done)}, watch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "adapter-ab")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adapters_native.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(roots=[str(args.work), str(smollm2_path().parent)], home=str(args.work / "home"))
    if native.find(settings).kind != "native":
        sys.exit(f"needs the natively built llama-server: {native.find(settings).describe}")
    adapter = adapter_gguf(args.work, settings)
    report: dict[str, Any] = {"benchmark": "adapters_native", "requests": args.requests, "concurrency": args.concurrency}
    watches = []
    for build in ("native", "xllamacpp"):
        report[build], watch = measure(dataclasses.replace(settings, engine_build=build), smollm2_path(), adapter, args.requests, args.concurrency)
        watches.append(watch)
    report["native_over_wheel"] = round(report["native"]["req_s"] / report["xllamacpp"]["req_s"], 2) if report["xllamacpp"]["req_s"] else None
    write_report(args.out, report, watches, model="SmolLM2-135M-Instruct (packaged Q4_1 GGUF), LoRA r4 on q/v/o",
                 workload=workload("one fixed chat question, alternating the base's name and the adapter's", prompts="repeated",
                                   output_tokens=16, ignore_eos=False, requests=args.requests, concurrency=args.concurrency))


if __name__ == "__main__":
    main()
