"""A 1.1B model at the memory-bandwidth limit: decode against the roofline, prefill against the matmul peak, three engines.

Measures the machine first: a STREAM triad (a = b + s*c over arrays far larger than the caches, every core, best of
--triad-reps) compiled at run time with gcc -O3 -fopenmp -march=native, and an f32 matrix product through numpy's BLAS
and a bf16 one through torch (all cores) as the matmul peak. The triad is C, not numpy: numpy's `b + s * c` runs on one thread and writes a
temporary, so it reads about half the figure on two cores; the read-only numpy probe the bench uses
(bench/roofline.measure_bandwidth) is recorded beside it for comparison.

The model (--model 1b, the default) is a random-weight Llama of TinyLlama's shape (hidden 2048, 22 layers, 32 heads,
4 KV heads, intermediate 5632) carrying SmolLM2-135M's tokenizer and chat template (49,152 tokens, not TinyLlama's
32,000: about 1.2B parameters with untied embeddings). It is built at run time, exported to GGUF and quantized to
Q4_K_M, Q6_K and Q8_0 with the project's own export and quantize, and cached under the state dir (never committed).
The three sizes give the decode fit: time per token against bytes read, whose slope is the rate the kernels read
weights at and whose intercept is the per-token cost that does not grow with the weights (`decode_fit`).
--model smollm2 runs the same measurements on SmolLM2-135M-Instruct at Q8_0: the TTFT target (a unique 128-token prompt
at one stream, TTFT p95 under 200 ms), with a llama-bench sweep of the prefill settings (threads, ubatch, flash
attention, OpenMP spin) beside it.

Then, alternating which goes first in each of --rounds rounds:
  * llama-bench pp128 / tg64 from our build and from stock llama.cpp of the same revision (no patches; compile it once
    with `python -m model_serving.toolchain build-stock SDIST`, or name a folder with --stock): prefill tok/s as GFLOP/s
    against the matmul peak, single-stream decode tok/s against the roofline (weight bytes read per token / triad GB/s);
  * each engine served and swept at --levels (a unique --input-tokens prompt on /v1/completions, --max-tokens answer) with our bench:
    our llama-server with the product's argv, stock llama-server with the same argv, then vLLM CPU on the bf16
    checkpoint (last and alone: its idle worker keeps a core busy). Each request opens its own connection (stock
    llama-server drops kept-alive ones, see `serving`); `paired_turns` holds each turn's ours/stock ratio, `level` the verdict, and
    `keep_alive` what a connection-reusing client loses from each build at one stream.

    python benchmarks/bandwidth.py [--model 1b|smollm2|tiny] [--rounds 4] [--levels 1,4,8] [--no-vllm] [--stock DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402

from model_serving.bench.roofline import ModelBytes, measure_bandwidth, model_bytes, roofline  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

TRIAD_C = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]); int reps = atoi(argv[2]); double s = 3.0, best = 0.0;
    double *a = aligned_alloc(64, n * sizeof(double)), *b = aligned_alloc(64, n * sizeof(double)), *c = aligned_alloc(64, n * sizeof(double));
    if (!a || !b || !c) { fprintf(stderr, "out of memory\n"); return 1; }
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) { a[i] = 0.0; b[i] = 1.0; c[i] = 2.0; }
    for (int r = 0; r < reps; r++) {
        double t = omp_get_wtime();
        #pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        t = omp_get_wtime() - t;
        double gbs = 3.0 * sizeof(double) * (double)n / t / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("threads %d\narray_bytes %ld\ntriad_best_gbs %.4f\ncheck %.1f\n", omp_get_max_threads(), (long)(n * sizeof(double)), best, a[n / 2]);
    return 0;
}
"""

# TinyLlama-1.1B's shape with SmolLM2's vocabulary; "tiny" only smoke-tests the script.
SHAPES: dict[str, dict[str, int]] = {
    "1b": {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "intermediate_size": 5632},
    "tiny": {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512},
}
KERNEL_PROMPT, KERNEL_GEN = 128, 64
DECODE_BOUND = 0.8  # at this share of the roofline or above, weight reads bound decode (the bar)
PREFILL_THREADS, PREFILL_SWEEP = "1,2", ("-ub", "64,128,512", "-fa", "0,1")
SPIN_COUNTS = ("1000", "30000", "300000")


def parse_triad(text: str) -> float:
    """GB/s from the triad's output (STREAM's count: 24 bytes per element, two reads and a write)."""
    found = re.search(r"^triad_best_gbs\s+([0-9.]+)\s*$", text, re.MULTILINE)
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"no triad figure in the output: {text[-200:]!r}")
    return float(found.group(1))


def stream_triad(threads: int, array_mb: int, reps: int) -> dict[str, Any]:
    """Compile and run the triad; three arrays of `array_mb` each (far above any cache)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("gcc is needed to compile the triad (apt-get install gcc)")
    with tempfile.TemporaryDirectory(prefix="triad-") as tmp:
        src, exe = Path(tmp) / "triad.c", Path(tmp) / "triad"
        src.write_text(TRIAD_C, encoding="utf-8")
        subprocess.run([gcc, "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe)], check=True, capture_output=True, text=True)
        n = array_mb * (1 << 20) // 8
        done = subprocess.run([str(exe), str(n), str(reps)], check=True, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_PROC_BIND": "spread"})
    return {"triad_gbs": round(parse_triad(done.stdout), 2), "threads": threads, "array_mb": array_mb, "reps": reps,
            "numpy_read_gbs": round(measure_bandwidth(size_mb=max(64, array_mb), threads=threads), 2)}


def matmul_peak(threads: int, n: int = 2048, reps: int = 5) -> dict[str, Any]:
    """GFLOP/s of an n x n product on every core, best of `reps`: f32 through numpy's BLAS, bf16 through torch (oneDNN,
    which uses AVX512-BF16 where the CPU has it). The higher is the peak prefill is set against; llama.cpp's int8 dot
    products (Q8_0, the K-quants) can in principle exceed both."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    a, b = np.random.default_rng(0).standard_normal((2, n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a).to(torch.bfloat16), torch.from_numpy(b).to(torch.bfloat16)
    figures = {}
    for name, product in (("f32_numpy", lambda: a @ b), ("bf16_torch", lambda: ta @ tb)):
        product()  # the library's threads start
        figures[name] = round(2 * n**3 / min(_timed(product) for _ in range(reps)) / 1e9, 1)
    return {**figures, "peak_gflops": max(figures.values()), "n": n, "numpy": np.__version__, "torch": torch.__version__}


def _timed(fn: Any) -> float:  # noqa: ANN401
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def decode_roofline(mb: ModelBytes, tok_s: float, bandwidth_gbs: float, context: float) -> dict[str, Any]:
    """The batch-1 ceiling (weights plus the KV cache at `context`) and the measured share of it."""
    roof = roofline(mb, tok_s, context, bandwidth_gbs=bandwidth_gbs)
    return {"ceiling_tok_s": round(roof.ceiling_tok_s, 2), "measured_tok_s": round(tok_s, 2),
            "fraction": round(tok_s / roof.ceiling_tok_s, 3), "context_tokens": context}


def matmul_weights(gguf: Path) -> int:
    """Weights each prompt token multiplies: all but the embedding table (only indexed) and the output matrix (one row
    of logits per prompt, not per token); a tied table counts once."""
    from model_serving.gguf.header import read_header

    header = read_header(gguf)
    shape = header.token_embedding_shape or [0]
    table = 1
    for dim in shape:
        table *= dim
    return header.parameter_count - table * (2 if "output.weight" in header.tensor_sizes else 1)


def prefill_compute(tok_s: float, n_params: int, peak_gflops: float) -> dict[str, Any]:
    """Prefill as GFLOP/s (2 flops per multiplied weight per token; attention left out, small at 128 tokens) and its share of the peak."""
    gflops = 2.0 * n_params * tok_s / 1e9
    return {"tok_s": round(tok_s, 1), "gflops": round(gflops, 1), "fraction_of_matmul_peak": round(gflops / peak_gflops, 3)}


def llama_bench(folder: Path, gguf: Path, threads: int | str, *, extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """llama-bench's JSON rows, run with the engine's OpenMP settings (then `env`); `threads` may list several ("1,2")."""
    from model_serving.serve.embedded import native

    argv = [str(folder / "llama-bench"), "-m", str(gguf), "-t", str(threads), "-r", "3", "-o", "json", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=True, env={**os.environ, **native.env(), **(env or {})})
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def prefill_cpu(folder: Path, gguf: Path, threads: int) -> dict[str, Any]:
    """CPU time and barrier sleeps per pp128, from the difference of two llama-bench runs (12 and 2 repetitions, so loading
    cancels): CPU time hardly moves with other processes' load, so `threads` x 128 / CPU s is what prefill would reach
    if no thread ever waited for another; the wall-clock pp128 beside it shows what the waits cost."""
    import resource

    def spent(reps: int) -> tuple[float, int]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        llama_bench(folder, gguf, threads, extra=("-p", str(KERNEL_PROMPT), "-n", "0", "-r", str(reps)))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, after.ru_nvcsw - before.ru_nvcsw

    (cpu_hi, sleeps_hi), (cpu_lo, sleeps_lo) = spent(12), spent(2)
    per = (cpu_hi - cpu_lo) / 10
    return {"threads": threads, "cpu_ms_per_prompt": round(per * 1000, 1), "tok_s_if_never_waiting": round(threads * KERNEL_PROMPT / per, 1),
            "sleeps_per_prompt": round((sleeps_hi - sleeps_lo) / 10)}


def kernels(folder: Path, gguf: Path, threads: int) -> dict[str, Any]:
    """pp128 and tg64 tok/s of one build on one GGUF, and the parameter count llama-bench read."""
    rows = llama_bench(folder, gguf, threads, extra=("-p", str(KERNEL_PROMPT), "-n", str(KERNEL_GEN)))
    pp = next(r for r in rows if r["n_prompt"] and not r["n_gen"])
    tg = next(r for r in rows if r["n_gen"] and not r["n_prompt"])
    return {"pp_tok_s": pp["avg_ts"], "tg_tok_s": tg["avg_ts"], "n_params": pp["model_n_params"]}


def prefill_settings(folder: Path, gguf: Path) -> list[dict[str, Any]]:
    """pp128 of our build over threads x ubatch x flash attention, at each OpenMP spin count: what the defaults should be."""
    out = []
    for spin in SPIN_COUNTS:
        for row in llama_bench(folder, gguf, PREFILL_THREADS, extra=("-p", str(KERNEL_PROMPT), "-n", "0", *PREFILL_SWEEP),
                               env={"GOMP_SPINCOUNT": spin}):
            out.append({"gomp_spincount": spin, "threads": row["n_threads"], "ubatch": row["n_ubatch"],
                        "flash_attn": row["flash_attn"], "pp_tok_s": round(row["avg_ts"], 1), "stddev": round(row["stddev_ts"], 1)})
    return out


def random_checkpoint(out: Path, shape: dict[str, int], seed: int = 0) -> Path:
    """A random-weight Llama of `shape` with SmolLM2's tokenizer and chat template, bf16, written once."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from model_serving.checkpoint.rebuild import finish_checkpoint, smollm2_gguf_path

    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, torch_dtype="bfloat16", **shape)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.config.architectures = ["LlamaForCausalLM"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": [tokenizer.eos_token_id], "bos_token_id": tokenizer.bos_token_id}), encoding="utf-8")
        return finish_checkpoint(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepared(settings: Settings, model: str, quants: list[str]) -> tuple[Path, dict[str, Path]]:
    """The checkpoint and its GGUFs at `quants`, through the project's export and quantize (each reused when identical)."""
    from model_serving.checkpoint.export import export_gguf
    from model_serving.checkpoint.rebuild import warm_default
    from model_serving.quantize.quantizer import quantize_gguf
    from model_serving.serve.embedded.native import tool

    cache = settings.state_dir / "bench-models"
    ckpt = warm_default(settings.state_dir) if model == "smollm2" else random_checkpoint(cache / f"llama-{model}-random", SHAPES[model])
    folder = cache / f"{ckpt.name}-gguf"
    folder.mkdir(parents=True, exist_ok=True)
    f16 = Path(export_gguf(settings, str(ckpt), str(folder / "F16.gguf"), overwrite=True).output_path)
    ggufs = {q: Path(quantize_gguf(settings, f16, folder / f"{q}.gguf", q, overwrite=True, verify=False,
                                   quantizer=tool(settings, "llama-quantize")).output_path) for q in quants}
    return ckpt, ggufs


@contextmanager
def native_server(server: Path, gguf: Path, slots: int, threads: int, log: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """llama-server with the product's argv (serve/embedded/native.server_argv) and OpenMP settings (then `env`); (base URL, pid)."""
    from model_serving.bench.probe import get_json
    from model_serving.serve.embedded import native
    from model_serving.serve.processes import free_port

    port = free_port()
    argv = native.server_argv(native.Build("native", server, str(server.parent)), gguf, alias="bandwidth", port=port,
                              ctx_size=max(2048, 512 * slots), parallel=slots, threads=threads)
    with log.open("ab") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **native.env(), **(env or {})})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while get_json(base, "/health", 2.0) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{server} did not become healthy (log: {log})")
            time.sleep(0.3)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sweep(base_url: str, model: str, pid: int, args: argparse.Namespace, label: str, *, keep_alive: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our bench at each level: per level throughput, TTFT, TPOT, the server's own decode rate; and the quiet rule's samples around it."""
    from model_serving.bench.runner import run_sweep
    from model_serving.bench.schema import BenchConfig

    # /v1/completions: the prompt is exactly --input-tokens long, no chat template on top (vllm bench serve's random dataset)
    config = BenchConfig(base_url=base_url, model=model, route="completions", n_requests=args.requests, max_tokens=args.max_tokens,
                         input_tokens=args.input_tokens, server_pid=pid, label=f"bandwidth-{label}", keep_alive=keep_alive)
    with LoadWatch(label) as watch:
        result = run_sweep(config, args.levels)
    points = {str(p.concurrency): {"output_tok_s": round(p.output_throughput, 2), "median_ttft_ms": p.median_ttft_ms, "p95_ttft_ms": p.p95_ttft_ms,
                                   "median_tpot_ms": p.median_tpot_ms, "server_decode_tok_s": p.median_server_decode_tok_s,
                                   "completed": p.completed, "failed": p.failed, "errors_by_cause": p.errors_by_cause} for p in result.sweep}
    return points, watch.as_dict()


def serve_vllm(settings: Settings, ckpt: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """vLLM CPU on the bf16 checkpoint, started without the deploy's probe: random weights answer nonsense and never
    stop, which the probe rightly refuses, and the sweep asks for a fixed answer length anyway."""
    from model_serving.serve.embedded.engine import stop_model
    from model_serving.serve.vllm.engine import start_vllm

    served = start_vllm(settings, ckpt, "bandwidth-vllm", ctx_size=2048, parallel=max(args.levels), threads=args.threads, replace=True)
    try:
        whole = argparse.Namespace(**{**vars(args), "requests": unpaired(args)})
        return sweep(served.base_url, served.name, served.pid, whole, "vllm", keep_alive=False)
    finally:
        stop_model(settings, "bandwidth-vllm")


def builds(settings: Settings, stock: Path | None) -> dict[str, Path]:
    """Our build and the stock one (no patches, same revision): a missing stock build stops the run with the command that makes it."""
    from model_serving.toolchain import lookup

    ours = lookup.installed(settings)
    if isinstance(ours, str):
        raise SystemExit(ours)
    if stock is None:
        found = lookup.installed(settings, [])
        if isinstance(found, str):
            raise SystemExit(f"stock llama.cpp: {found}")
        stock = found.folder
    return {"ours": ours.folder, "stock": stock}


def measure_kernels(folders: dict[str, Path], ggufs: dict[str, Path], args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {q: {name: [] for name in folders} for q in ggufs}
    watches = []
    for i in range(args.rounds):
        order = list(folders.items())
        for name, folder in order if i % 2 == 0 else order[::-1]:
            with LoadWatch(f"llama-bench {name} round {i + 1}") as watch:
                for q, gguf in ggufs.items():
                    runs[q][name].append(kernels(folder, gguf, args.threads))
            watches.append(watch.as_dict())
    med = {q: {name: {k: statistics.median(r[k] for r in rounds) for k in ("pp_tok_s", "tg_tok_s", "n_params")} for name, rounds in by.items()}
           for q, by in runs.items()}
    return med, watches


def kernel_report(med: dict[str, Any], ggufs: dict[str, Path], machine: dict[str, Any]) -> dict[str, Any]:
    """Per quant and build: decode against the roofline, prefill against the matmul peak, ours over stock."""
    out: dict[str, Any] = {}
    for q, by in med.items():
        mb, weights = model_bytes(ggufs[q]), matmul_weights(ggufs[q])
        # tg64 decodes from an empty cache: the mean context over its tokens is half of them.
        rows = {name: {"decode": decode_roofline(mb, m["tg_tok_s"], machine["bandwidth"]["triad_gbs"], KERNEL_GEN / 2),
                       "prefill": prefill_compute(m["pp_tok_s"], weights, machine["matmul"]["peak_gflops"])} for name, m in by.items()}
        ratios = {k: round(by["ours"][k] / by["stock"][k], 3) for k in ("pp_tok_s", "tg_tok_s")} if "stock" in by else {}
        out[q] = {"weight_bytes_per_token": mb.weight_bytes_per_token, "kv_bytes_per_context_token": mb.kv_bytes_per_context_token, "n_params": int(by["ours"]["n_params"]), "matmul_weights": weights,
                  **rows, "ours_over_stock": ratios}
    return out


def decode_fit(kern: dict[str, Any], build: str, triad_gbs: float) -> dict[str, Any] | None:
    """Time per decoded token against the bytes it reads, over the quants: t = bytes / B + c (least squares).

    B is the rate the dot-product kernels actually read weights at; c is the per-token cost that does not grow with the
    weights (thread barriers, norms, sampling, attention at this context). With two quants the line is exact."""
    pts = [(row["weight_bytes_per_token"] + row.get("kv_bytes_per_context_token", 0) * row[build]["decode"]["context_tokens"],
            1.0 / row[build]["decode"]["measured_tok_s"]) for row in kern.values() if build in row]
    if len(pts) < 2 or len({b for b, _ in pts}) < 2:
        return None
    mean_b, mean_t = statistics.fmean(b for b, _ in pts), statistics.fmean(t for _, t in pts)
    slope = sum((b - mean_b) * (t - mean_t) for b, t in pts) / sum((b - mean_b) ** 2 for b, _ in pts)
    if slope <= 0:
        return None
    fixed_s = mean_t - slope * mean_b
    gbs = 1.0 / slope / 1e9
    return {"effective_gbs": round(gbs, 2), "share_of_triad": round(gbs / triad_gbs, 3), "fixed_ms_per_token": round(fixed_s * 1e3, 2),
            "points": len(pts), "exact": len(pts) == 2}


def bounds(kern: dict[str, Any], fit: dict[str, Any] | None = None) -> list[str]:
    """One sentence per quant saying what bounds single-stream decode and prefill, then the fit across quants.

    Without a fit the share of the roofline decides alone. With one, each token's time splits into weight reads at the
    fitted rate and the fixed part, and the same rule names the bound: reads taking at least DECODE_BOUND of the time
    at a rate near memory's is bandwidth; a larger fixed part is per-token work; a slow rate is the kernels."""
    lines = []
    for q, row in kern.items():
        share, comp = row["ours"]["decode"]["fraction"], row["ours"]["prefill"]["fraction_of_matmul_peak"]
        token_ms = 1e3 / row["ours"]["decode"]["measured_tok_s"] if fit else 0.0
        fixed = fit["fixed_ms_per_token"] / token_ms if fit else 0.0
        if share > 1.0:
            decode = "nothing the roofline knows: it is above it, so the weights were read from the CPU caches, not memory"
        elif fit is None:
            decode = "memory bandwidth (weight reads)" if share >= DECODE_BOUND else \
                "per-token work other than weight reads (compute, dequantization, thread barriers), not bandwidth"
        elif 1.0 - fixed >= DECODE_BOUND and fit["share_of_triad"] >= DECODE_BOUND:
            decode = f"memory bandwidth: weight reads take {1.0 - fixed:.0%} of its {token_ms:.1f} ms per token, the fixed part {fixed:.0%}"
        elif 1.0 - fixed < DECODE_BOUND:
            decode = f"per-token work that does not grow with the weights: {fit['fixed_ms_per_token']:.1f} ms of its {token_ms:.1f} ms ({fixed:.0%})"
        else:
            decode = f"the kernels' read rate ({fit['share_of_triad']:.0%} of the triad), below what memory gives"
        lines.append(f"{q}: decode at {share:.0%} of the roofline is bound by {decode}; prefill runs at {comp:.0%} of the matmul peak")
    if fit:
        lines.append(f"decode time against bytes read across the quants: the kernels read weights at {fit['effective_gbs']:.1f} GB/s "
                     f"({fit['share_of_triad']:.0%} of the STREAM triad), plus {fit['fixed_ms_per_token']:.1f} ms per token that does not "
                     "grow with the weights (barriers, norms, sampling, attention at this context)")
    return lines


def serving(settings: Settings, folders: dict[str, Path], ckpt: Path, gguf: Path, args: argparse.Namespace, log: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each engine swept at the levels: ours, stock and stock again (the A/A control) side by side, then vLLM once.

    In each of --rounds rounds the three servers start together and idle between turns; at each level each takes
    --turns short turns of --requests requests (at least two per stream), the order rotating every turn, so a drift of
    the machine's memory rate lands on all three within seconds, not on whichever ran later: each turn gives one paired
    ratio. Stock against itself is the method's own noise, shown beside `level`'s verdict on ours/stock. The verdict is
    given twice: on output tok/s (what a client sees: prefill, decode and HTTP) and on the server's own decode rate
    (`level_server_decode`: the engine alone, without the client's share of the two cores).
    The engines are compared on one connection per request: stock llama-server closes a kept-alive connection after every
    stream, so a reusing client loses about every second request there (our 0001 patch fixes that), and a level that
    loses requests is not the same load. `keep_alive` then shows what a reusing client sees from each build."""
    servers = dict(folders) | ({"stock_aa": folders["stock"]} if "stock" in folders else {})
    levels = [str(n) for n in args.levels]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {lv: [] for lv in levels} for name in servers}
    watches = []
    for i in range(args.rounds):
        points, turns = serving_round(servers, gguf, args, log, i)
        for name in servers:
            for lv in levels:
                runs[name][lv] += points[name][lv]
        watches += turns
    out: dict[str, Any] = {name: {lv: _median_point(turns) for lv, turns in by.items()} for name, by in runs.items()}
    out["connections"] = "one per request (keep-alive off) for ours and stock"
    if "stock" in runs:
        for key, suffix in (("output_tok_s", ""), ("server_decode_tok_s", "_server_decode")):
            paired = {lv: [_ratio(o, s, key) for o, s in zip(runs["ours"][lv], runs["stock"][lv], strict=True)] for lv in levels}
            aa = {lv: [_ratio(a, s, key) for a, s in zip(runs["stock_aa"][lv], runs["stock"][lv], strict=True)] for lv in levels}
            out[f"paired_turns{suffix}"], out[f"aa_turns{suffix}"] = paired, aa
            out[f"level{suffix}"] = {lv: level_verdict(paired[lv], aa[lv]) for lv in levels}
        out["keep_alive"], kept = keep_alive_check(folders, gguf, args, log)
        watches += kept
    if not args.no_vllm:
        out["vllm"], watch = serve_vllm(settings, ckpt, args)
        watches.append(watch)
    out["ratios"] = {f"ours_over_{other}": {lv: _ratio(out["ours"][lv], out[other].get(lv)) for lv in levels}
                     for other in ("stock", "vllm") if other in out}
    return out, watches


def serving_round(servers: dict[str, Path], gguf: Path, args: argparse.Namespace, log: Path, i: int) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Round i: every server up at once; at each level each takes --turns short turns, the order rotating every turn."""
    points: dict[str, dict[str, list[dict[str, Any]]]] = {name: {str(lv): [] for lv in args.levels} for name in servers}
    watches = []
    one = {lv: argparse.Namespace(**{**vars(args), "levels": [lv]}) for lv in args.levels}
    with ExitStack() as stack:
        up = {name: stack.enter_context(native_server(folder / "llama-server", gguf, max(args.levels), args.threads, log)) for name, folder in servers.items()}
        names = list(servers)
        for j, lv in enumerate(args.levels):
            for t in range(args.turns):
                shift = (i + j + t) % len(names)
                for name in names[shift:] + names[:shift]:
                    base, pid = up[name]
                    got, watch = sweep(base, "bandwidth", pid, one[lv], f"{name} round {i + 1} level {lv} turn {t + 1}", keep_alive=False)
                    points[name][str(lv)].append(got[str(lv)])
                    watches.append(watch)
    return points, watches


# two-sided 95% Student t quantiles by degrees of freedom: a handful of rounds is far from the normal's 1.96
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}
LEVEL_MARGIN = 0.05  # "at least level": ours/stock no more than 5% below 1, declared before any run


def mean_ratio(ratios: list[float | None]) -> dict[str, Any] | None:
    """The geometric mean of paired ratios with its 95% t-interval (ratios multiply, so their logs are averaged)."""
    logs = [math.log(r) for r in ratios if r]
    if len(logs) < 2:
        return None
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = T95[max(d for d in T95 if d <= len(logs) - 1)] * sd / math.sqrt(len(logs))
    return {"geomean": round(math.exp(mean), 3), "ci95": [round(math.exp(mean - half), 3), round(math.exp(mean + half), 3)], "pairs": len(logs)}


def level_verdict(paired: list[float | None], aa: list[float | None], margin: float = LEVEL_MARGIN) -> dict[str, Any]:
    """Ours against stock at one level, beside stock against itself.

    "ahead": the interval lies above 1; "at least level": its low end is within the margin of 1 (non-inferiority);
    "behind": it lies below 1 - margin; otherwise "not resolved" (the rounds are too noisy to say). The A/A interval is the
    method's own spread: an A/A interval wider than the margin says this machine cannot resolve a gap that small."""
    ours, control = mean_ratio(paired), mean_ratio(aa)
    if ours is None:
        return {"verdict": "not resolved", "ours_over_stock": None, "stock_over_stock": control, "margin": margin}
    low, high = ours["ci95"]
    verdict = ("ahead" if low > 1.0 else "at least level" if low >= 1.0 - margin else "behind" if high < 1.0 - margin else "not resolved")
    return {"verdict": verdict, "ours_over_stock": ours, "stock_over_stock": control, "margin": margin}


def keep_alive_check(folders: dict[str, Path], gguf: Path, args: argparse.Namespace, log: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One stream through a connection-reusing client against each build: the requests each one loses."""
    one = argparse.Namespace(**{**vars(args), "levels": [1], "requests": unpaired(args)})
    out, watches = {}, []
    for name, folder in folders.items():
        with native_server(folder / "llama-server", gguf, 1, args.threads, log) as (base, pid):
            points, watch = sweep(base, "bandwidth", pid, one, f"{name} keep-alive", keep_alive=True)
        point = points["1"]
        out[name] = {"completed": point["completed"], "failed": point["failed"], "errors_by_cause": point["errors_by_cause"]}
        watches.append(watch)
    return out, watches


def ttft_by_spin(server: Path, gguf: Path, args: argparse.Namespace, log: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Our server at one stream under each OpenMP spin count, alternating: what a barrier's sleep and wake-up cost the prompt.

    The threads meet at a barrier after every node of the graph (hundreds per prompt); a thread that waits longer than
    the spin sleeps, and waking it costs the next node its start. util/process.openmp_env says why the default is short."""
    runs: dict[str, list[dict[str, Any]]] = {spin: [] for spin in SPIN_COUNTS}
    watches = []
    one = argparse.Namespace(**{**vars(args), "levels": [1], "requests": unpaired(args)})
    for i in range(args.rounds):
        for spin in SPIN_COUNTS if i % 2 == 0 else SPIN_COUNTS[::-1]:
            with native_server(server, gguf, 1, args.threads, log, env={"GOMP_SPINCOUNT": spin}) as (base, pid):
                points, watch = sweep(base, "bandwidth", pid, one, f"spin {spin} round {i + 1}")
            runs[spin].append(points["1"])
            watches.append(watch)
    return {spin: _median_point(points) for spin, points in runs.items()}, watches


def unpaired(args: argparse.Namespace) -> int:
    """Requests per level for a sweep that is not taken in turns (vLLM, keep-alive, spin counts): one round's worth."""
    return args.requests * args.turns


def _median_point(points: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("output_tok_s", "median_ttft_ms", "p95_ttft_ms", "median_tpot_ms", "server_decode_tok_s")
    merged = {k: round(statistics.median(p[k] for p in points if p.get(k) is not None), 2) if any(p.get(k) is not None for p in points) else None
              for k in keys}
    return {**merged, "failed": sum(p.get("failed", 0) for p in points), "rounds": len(points)}


def _ratio(ours: dict[str, Any], other: dict[str, Any] | None, key: str = "output_tok_s") -> float | None:
    if not other or not other.get(key) or ours.get(key) is None:
        return None
    return round(ours[key] / other[key], 3)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["1b", "smollm2", "tiny"], default="1b", help="tiny: a few-million-parameter smoke test")
    parser.add_argument("--quants", help="default: Q4_K_M,Q6_K,Q8_0 (1b, tiny: three sizes for the decode fit), Q8_0 (smollm2)")
    parser.add_argument("--serve-quant", help="the GGUF the engines serve; default Q4_K_M (1b, tiny), Q8_0 (smollm2)")
    parser.add_argument("--levels", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=4, help="llama-bench rounds (ours and stock alternate) and server starts")
    parser.add_argument("--turns", type=int, default=3, help="per level and round: each served build's short turns, taken in rotation")
    parser.add_argument("--requests", type=int, default=4, help="per turn (at least two per stream); an unpaired sweep sends --requests x --turns")
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--triad-mb", type=int, default=512, help="each of the three arrays")
    parser.add_argument("--triad-reps", type=int, default=10)
    parser.add_argument("--stock", type=Path, help="a stock llama.cpp build folder (default: the toolchain's build-stock cache folder)")
    parser.add_argument("--no-vllm", action="store_true")
    parser.add_argument("--no-serve", action="store_true", help="the machine and llama-bench parts only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    smol = args.model == "smollm2"
    args.quants = (args.quants or ("Q8_0" if smol else "Q4_K_M,Q6_K,Q8_0")).split(",")
    args.serve_quant = args.serve_quant or ("Q8_0" if smol else "Q4_K_M")
    args.levels = [int(x) for x in args.levels.split(",")]
    args.out = args.out or (ROOT / "benchmarks" / "results" / "bandwidth_ttft.json" if smol else ROOT / "benchmarks" / "results" / "bandwidth.json")
    return args


def main() -> None:
    args = parse_args()
    settings = Settings.from_env()
    folders = builds(settings, args.stock)
    with LoadWatch("machine") as machine_watch:
        machine = {"bandwidth": stream_triad(args.threads, args.triad_mb, args.triad_reps), "matmul": matmul_peak(args.threads)}
    ckpt, ggufs = prepared(settings, args.model, sorted(set(args.quants) | {args.serve_quant}))
    med, watches = measure_kernels(folders, {q: ggufs[q] for q in args.quants}, args)
    kern = kernel_report(med, ggufs, machine)
    with LoadWatch("prefill CPU time") as cpu_watch:
        for q in args.quants:
            kern[q]["ours"]["prefill_cpu"] = prefill_cpu(folders["ours"], ggufs[q], args.threads)
    watches.append(cpu_watch.as_dict())
    report: dict[str, Any] = {"benchmark": "bandwidth", "model": args.model, "shape": SHAPES.get(args.model), "threads": args.threads,
                              "rounds": args.rounds, "limits": machine, "kernels": kern}
    report["decode_fit"] = {name: decode_fit(kern, name, machine["bandwidth"]["triad_gbs"]) for name in folders}
    report["bounds"] = bounds(kern, report["decode_fit"]["ours"])
    log = settings.state_dir / "bench-models" / "bandwidth-servers.log"
    if args.model == "smollm2":
        report["prefill_settings"] = prefill_settings(folders["ours"], ggufs[args.serve_quant])
        if not args.no_serve:
            report["ttft_by_spin"], spun = ttft_by_spin(folders["ours"] / "llama-server", ggufs[args.serve_quant], args, log)
            watches += spun
    if not args.no_serve:
        report["serving"], served = serving(settings, folders, ckpt, ggufs[args.serve_quant], args, log)
        report["serve_quant"], report["levels"] = args.serve_quant, args.levels
        watches += served
    made = "SmolLM2-135M-Instruct rebuilt from the packaged GGUF" if args.model == "smollm2" else \
        f"random weights, TinyLlama's shape ({args.model}), SmolLM2-135M's tokenizer and chat template (49,152 tokens)"
    write_report(args.out, report, [machine_watch, *watches], model=f"{ckpt.name} ({made}); GGUFs {', '.join(sorted(ggufs))}",
                 workload=workload(f"llama-bench pp{KERNEL_PROMPT}/tg{KERNEL_GEN}; serving: a unique {args.input_tokens}-token prompt on /v1/completions, "
                                   f"{args.max_tokens} tokens out, at {args.levels} streams: ours, stock and stock again in {args.rounds} rounds of "
                                   f"{args.turns} turns of {args.requests} requests (at least two per stream) each"
                                   + ("" if args.no_vllm else f"; vLLM {unpaired(args)} per level"),
                                   prompts="unique", input_tokens=args.input_tokens, output_tokens=args.max_tokens),
                 engine={"kind": "native", "ours": folders["ours"].name, "stock": folders["stock"].name, "vllm": not args.no_vllm})
    print(json.dumps({"limits": machine, "bounds": report["bounds"], "serving_ratios": report.get("serving", {}).get("ratios")}, indent=1))


if __name__ == "__main__":
    main()
