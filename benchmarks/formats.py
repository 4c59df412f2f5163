"""Every format one checkpoint can ship in, made, judged and swept: GGUF on llama.cpp, bf16 and llm-compressor's formats on vLLM.

The model (--model smollm2, the default) is SmolLM2-135M-Instruct rebuilt from the packaged GGUF, so the quality
columns mean something; --model smollm2-random is a random-weight Llama of its shape (hidden 576, 30 layers, 9 heads)
with its tokenizer, --model 1b the TinyLlama-1.1B shape of benchmarks/bandwidth.py, --model tiny only smoke-tests the
script (random models never stop by themselves, so vLLM serves them without its chat probe). Through `bench compare` (model_serving.bench.compare), one engine at a time:

- GGUF Q4_K_M and Q8_0 on llama.cpp (our export and quantize; quality against the F16 GGUF on llama.cpp);
- the bf16 checkpoint on vLLM, then W8A8 INT8, AWQ and GPTQ made by `quantize --format` (llm-compressor, CPU) and
  judged against the bf16 checkpoint on vLLM by the GGUF gate's rule.

Each row records the time to make it (export and quantize, or the compression; 0 when an identical output was reused),
its size, the perplexity ratio with its 95% interval, greedy agreement, and TTFT, TPOT and req/s at each concurrency
level (default 1, 4, 8), with the engine, format and hardware it ran on. FP8 is not a row: vLLM's CPU backend has no
FP8 kernels (it is made and served on a GPU; the plan says so). On a random-weight model perplexities sit near the
vocabulary size, so its ratios say what a format changes in the arithmetic, not what a trained model loses; speed and
size hold as they are. Needs vLLM's and llm-compressor's environments (`model-serving engines install vllm`,
`model-serving engines install llmcompressor`).

    python benchmarks/formats.py [--model smollm2|smollm2-random|1b|tiny] [--levels 1,4,8] [--formats w8a8-int8,awq,gptq]
        [--out benchmarks/results/formats.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import prompts_of, workload, write_report  # noqa: E402
from bandwidth import SHAPES, random_checkpoint  # noqa: E402
from engine_compare import relative  # noqa: E402

from model_serving.bench import compare  # noqa: E402
from model_serving.bench.schema import BenchConfig  # noqa: E402
from model_serving.checkpoint.rebuild import checkpoint_from_gguf, smollm2_gguf_path  # noqa: E402
from model_serving.quantize import compressor_env  # noqa: E402
from model_serving.requests import BenchCompareRequest  # noqa: E402
from model_serving.serve.vllm import env as vllm_env  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

MODELS: dict[str, dict[str, int]] = {
    "smollm2-random": {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536},
    "1b": SHAPES["1b"],
    "tiny": SHAPES["tiny"],
}
GGUF_QUANTS = ("Q4_K_M", "Q8_0")


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per engine, format and concurrency level: what the README table shows."""
    out = []
    for run in result.get("runs", []):
        quality = run.get("quality") or {}
        for point in run.get("points", []):
            out.append({"engine": run.get("engine"), "format": run.get("format"), "hardware": run.get("hardware"),
                        "make_s": run.get("make_s"), "size_mib": round(run["size_bytes"] / 2**20, 1) if run.get("size_bytes") else None,
                        "verdict": quality.get("verdict"), "ppl_ratio": quality.get("ppl_ratio"), "ppl_ratio_interval": quality.get("ppl_ratio_interval"),
                        "early_agreement": quality.get("early_agreement_rate"), "agreement": quality.get("agreement_rate"),
                        "concurrency": point.get("concurrency"), "median_ttft_ms": point.get("median_ttft_ms"),
                        "median_tpot_ms": point.get("median_tpot_ms"), "request_throughput": point.get("request_throughput"),
                        "peak_rss_mib": round(run["peak_rss_bytes"] / 2**20) if run.get("peak_rss_bytes") else None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2", *sorted(MODELS)], default="smollm2")
    parser.add_argument("--levels", default="1,4,8")
    parser.add_argument("--formats", default="w8a8-int8,awq,gptq")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "formats.json")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    # The run's own home keeps its state apart; the tools' environments are the machine's, found in the default home.
    machine = Settings.from_env()
    found = vllm_env.find(machine)
    if found.installed and found.python:
        os.environ.setdefault(vllm_env.PYTHON_ENV, str(found.python))
    with tempfile.TemporaryDirectory(prefix="formats-") as tmp:
        work = Path(tmp).resolve()
        settings = Settings.from_env(roots=[str(work)], home=str(work / "home"))
        compressor_env.save(settings, compressor_env.require(machine))
        real = args.model == "smollm2"
        source = (checkpoint_from_gguf(smollm2_gguf_path(), work / "smollm2-135m-instruct-hf") if real
                  else random_checkpoint(work / f"llama-{args.model}-random", MODELS[args.model]))
        request = BenchCompareRequest(source=str(source), quant=GGUF_QUANTS[0], levels=levels, output=str(work / "compare"),
                                      formats=[f for f in args.formats.split(",") if f])
        # a random-weight model never stops by itself, so vLLM's chat probe is left out for it
        result = relative(compare.run_compare(settings, request, extra_quants=GGUF_QUANTS[1:], probe=real).model_dump(mode="json"), work)
    source_prompts = str(BenchConfig.model_fields["prompt_source"].default)
    write_report(args.out, {"benchmark": "formats", "model_shape": args.model, "rows": rows(result), **result}, result.get("quiet", []),
                 model=f"{'SmolLM2-135M-Instruct (rebuilt from the packaged GGUF)' if args.model == 'smollm2' else f'a random-weight Llama of the {args.model} shape with SmolLM2 tokenizer'}: GGUF {', '.join(GGUF_QUANTS)} on llama.cpp, "
                       f"bf16 and {args.formats} on vLLM (CPU)",
                 workload=workload("bench compare: the same sweep on each engine and format, one at a time", prompts=prompts_of(source_prompts),
                                   prompt_source=source_prompts, output_tokens=compare.MAX_TOKENS, requests_per_level=compare.N_REQUESTS,
                                   levels=levels))


if __name__ == "__main__":
    main()
