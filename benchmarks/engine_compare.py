"""llama.cpp against vLLM on one checkpoint: `bench compare` run as a benchmark, its result written with the quiet samples.

SmolLM2-135M-Instruct rebuilt from the packaged GGUF (or --source, a Hugging Face folder) is exported and quantized to
--quant for llama.cpp and served as the checkpoint itself on vLLM, one engine after the other: the first is stopped before
the second starts, since vLLM's idle worker keeps a core partly busy. Each is swept at --levels with the same seeded
load (`model_serving.bench.compare`). Whether the result compares is the quiet rule's, from the samples `bench compare`
records around each engine's sweep. Needs vLLM's environment (`model-serving engines install vllm`).

    python benchmarks/engine_compare.py [--source HF_DIR] [--quant Q8_0] [--levels 1,2,4,8] [--out benchmarks/results/engine_compare.json]
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

from model_serving.bench import compare  # noqa: E402
from model_serving.bench.schema import BenchConfig  # noqa: E402
from model_serving.checkpoint.rebuild import checkpoint_from_gguf, smollm2_gguf_path  # noqa: E402
from model_serving.requests import BenchCompareRequest  # noqa: E402
from model_serving.serve.vllm import env as vllm_env  # noqa: E402
from model_serving.settings import Settings  # noqa: E402


def relative(value: Any, work: Path) -> Any:  # noqa: ANN401
    """The result with the work folder written as <work>: a committed result names no machine's folders."""
    if isinstance(value, dict):
        return {k: relative(v, work) for k, v in value.items()}
    if isinstance(value, list):
        return [relative(v, work) for v in value]
    return value.replace(str(work), "<work>") if isinstance(value, str) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="a Hugging Face checkpoint folder (default: SmolLM2-135M-Instruct rebuilt from the packaged GGUF)")
    parser.add_argument("--quant", default="Q8_0")
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine_compare.json")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    # The run's own home keeps its state apart; vLLM's environment is the machine's, found in the default home.
    found = vllm_env.find(Settings.from_env())
    if found.installed and found.python:
        os.environ.setdefault("MODEL_SERVING_VLLM_PYTHON", str(found.python))
    with tempfile.TemporaryDirectory(prefix="engine-compare-") as tmp:
        work = Path(tmp).resolve()
        source = args.source.resolve() if args.source else checkpoint_from_gguf(smollm2_gguf_path(), work / "smollm2-135m-instruct-hf")
        settings = Settings.from_env(roots=[str(work), str(source.parent)], home=str(work / "home"))
        request = BenchCompareRequest(source=str(source), quant=args.quant, levels=levels, output=str(work / "compare"))
        result = relative(compare.run_compare(settings, request).model_dump(mode="json"), work)
    source_prompts = str(BenchConfig.model_fields["prompt_source"].default)
    write_report(args.out, {"benchmark": "engine_compare", **result}, result.get("quiet", []),
                 model=f"{source.name if args.source else 'SmolLM2-135M-Instruct (rebuilt from the packaged GGUF)'}: "
                       f"{args.quant} GGUF on llama.cpp, the checkpoint on vLLM",
                 workload=workload("bench compare: the same sweep on each engine, one engine at a time", prompts=prompts_of(source_prompts),
                                   prompt_source=source_prompts, output_tokens=compare.MAX_TOKENS, requests_per_level=compare.N_REQUESTS,
                                   levels=levels))


if __name__ == "__main__":
    main()
