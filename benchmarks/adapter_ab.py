"""Merged LoRA vs base + adapter served by name, on SmolLM2-135M-Instruct: speed and greedy agreement.

Builds, under a work folder: SmolLM2 as an HF checkpoint (from the packaged GGUF), a peft LoRA with
random non-zero weights (the test fixture's, gentle enough that the model still answers), the merge
(`merge`), and three GGUFs: base f16, merged f16, adapter f16 (`export`, `export --as-lora-gguf`). Then
`bench quant-ab MERGED BASE --adapter ADAPTER` (bench/adapter_ab.py) and writes its result with the
load average around it.

    python benchmarks/adapter_ab.py [--work DIR (default: the temp folder/adapter-ab)] [--n-requests 8] [--out benchmarks/results/adapter_ab.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use
from lora_fixtures import tiny_lora_adapter  # noqa: E402

from model_serving.bench.adapter_ab import run_adapter_ab  # noqa: E402
from model_serving.bench.schema import SLO  # noqa: E402
from model_serving.checkpoint.export import export_gguf  # noqa: E402
from model_serving.checkpoint.lora import merge_adapter  # noqa: E402
from model_serving.checkpoint.lora_gguf import export_lora_gguf  # noqa: E402
from model_serving.checkpoint.rebuild import checkpoint_from_gguf  # noqa: E402
from model_serving.settings import Settings  # noqa: E402


def build(work: Path, settings: Settings) -> tuple[Path, Path, Path]:
    """The merged, base and adapter GGUFs (reused when present)."""
    base_dir = checkpoint_from_gguf(smollm2_path(), work / "smollm2-hf")
    adapter = tiny_lora_adapter(work / "smollm2-lora", base_dir, seed=4, scale=0.3)  # changes the answer, still stops
    merged_dir = work / "smollm2-merged"
    if not merged_dir.exists():
        merge_adapter(settings, str(adapter), str(base_dir), str(merged_dir))
    out = {"merged": work / "merged-f16.gguf", "base": work / "base-f16.gguf", "adapter": work / "adapter-f16.gguf"}
    for key, source in (("merged", merged_dir), ("base", base_dir)):
        if not out[key].exists():
            export_gguf(settings, str(source), str(out[key]))
    if not out["adapter"].exists():
        export_lora_gguf(settings, str(adapter), str(base_dir), str(out["adapter"]))
    return out["merged"], out["base"], out["adapter"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "adapter-ab")
    parser.add_argument("--n-requests", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "adapter_ab.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(roots=[str(args.work)], home=str(args.work / "home"))
    merged, base, adapter = build(args.work, settings)
    with LoadWatch("adapter A/B") as watch:
        result = run_adapter_ab(settings, merged, base, adapter, n_requests=args.n_requests, concurrency=args.concurrency, max_tokens=32,
                                targets=SLO(request_throughput=None, memory_gb=None), output_dir=args.work / "ab")
    write_report(args.out, {"benchmark": "adapter_ab", "n_requests": args.n_requests, "concurrency": args.concurrency,
                            "result": relative(result.model_dump(mode="json"), args.work)}, [watch],
                 model="SmolLM2-135M-Instruct (f16), LoRA r4 on q/v/o",
                 workload=workload("bench quant-ab: the bench's default prompts, then the fixed quality prompts", prompts="repeated",
                                   output_tokens=32, n_requests=args.n_requests, concurrency=args.concurrency))


def relative(value: object, work: Path) -> object:
    """The result with the work folder's paths written as <work>/...: a committed result names no machine's folders."""
    if isinstance(value, dict):
        return {k: relative(v, work) for k, v in value.items()}
    if isinstance(value, list):
        return [relative(v, work) for v in value]
    return value.replace(str(work), "<work>") if isinstance(value, str) else value


if __name__ == "__main__":
    main()
