"""The native build's small-batch patch, measured: llama-bench of two builds, alternating, at the batch sizes serving runs.

Continuous batching decodes one token for each running request per step, so a server at concurrency 2-8 runs
matrix products of 2-8 rows; prompts run hundreds. The native build sends quantized products under 8 rows to
ggml's dot products instead of llamafile's tinyBLAS (toolchain/patches/0002-ggml-cpu-small-batch-off-tinyblas.patch). This runs
llama-bench from the patched build and from a baseline build (one without the patch: an earlier cache folder,
or a build of the same source with the patch taken out) on the same GGUF, `--rounds` times each, alternating
which goes first, and writes the median tok/s per batch size and their ratio.

    python benchmarks/small_batch_kernels.py --baseline DIR [--patched DIR] [--gguf Q8_0.gguf] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in ("server", "tests", "tests/support", "benchmarks"):
    sys.path.insert(0, str(ROOT / extra))

from _bench_meta import LoadWatch, workload, write_report  # noqa: E402

from model_serving.serve.embedded import native  # noqa: E402
from model_serving.settings import Settings  # noqa: E402
from model_serving.toolchain import lookup  # noqa: E402
from model_serving.toolchain.recipe import patches  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 64, 512)


def bench(folder: Path, gguf: Path, threads: int) -> dict[int, float]:
    done = subprocess.run([str(folder / "llama-bench"), "-m", str(gguf), "-t", str(threads), "-p", ",".join(map(str, SIZES)),
                           "-n", "0", "-r", "3", "-o", "json"], capture_output=True, text=True, timeout=900, check=True,
                          env={**os.environ, **native.env()})
    return {row["n_prompt"]: row["avg_ts"] for row in json.loads(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a build folder without the patch (holds llama-bench)")
    parser.add_argument("--patched", type=Path, help="default: this install's native build")
    parser.add_argument("--gguf", type=Path, help="default: a Q8_0 GGUF given here (SmolLM2-135M Q8_0 in the README)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "small_batch_kernels.json")
    args = parser.parse_args()
    patched = args.patched or lookup.folder(Settings.from_env())
    if args.gguf is None:
        parser.error("--gguf is needed: a Q8_0 GGUF (deploy writes one: deployments/<name>/<name>-Q8_0.gguf)")
    runs: dict[str, list[dict[int, float]]] = {"patched": [], "baseline": []}
    watches = []
    for i in range(args.rounds):
        order = [("patched", patched), ("baseline", args.baseline)]
        for name, folder in order if i % 2 == 0 else order[::-1]:
            with LoadWatch(f"{name} round {i + 1}") as watch:
                runs[name].append(bench(folder, args.gguf, args.threads))
            watches.append(watch)
    median = {name: {n: round(statistics.median(r[n] for r in rounds), 1) for n in SIZES} for name, rounds in runs.items()}
    report = {"benchmark": "small_batch_kernels", "threads": args.threads, "rounds": args.rounds,
              "patch": next(p.record() for p in patches() if "small-batch" in p.name), "tok_s_median": {k: {str(n): v for n, v in m.items()} for k, m in median.items()},
              "ratio_patched_over_baseline": {str(n): round(median["patched"][n] / median["baseline"][n], 3) for n in SIZES}}
    write_report(args.out, report, watches, model=args.gguf.name,
                 workload=workload("llama-bench prompt processing at batch sizes " + ",".join(map(str, SIZES)), prompts="none"),
                 engine={"kind": "native", "patched": str(patched.name), "baseline": str(args.baseline.name)})
    print(json.dumps(report["ratio_patched_over_baseline"]))


if __name__ == "__main__":
    main()
