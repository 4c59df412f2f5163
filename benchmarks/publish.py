"""Write docs/benchmarks.md, and the README's generated blocks, from benchmarks/results/*.json: the only way a figure is published.

Every number on the page is read from a result file and cites it (the file and the key), with the commit,
the model, the workload and whether the run was comparable under the quiet-machine rule
(`model_serving.bench.quiet`). A result file that no script here writes is an error, and so is a plot no
script writes. A result recorded before the quiet rule carries no per-process samples, so it cannot show
that the machine was quiet: it is published as not comparable (`--mark` writes that verdict into the file,
keeping what it had recorded under `comparable_recorded`; no number is touched).

    python benchmarks/publish.py            # rewrite docs/benchmarks.md and the README's generated blocks
    python benchmarks/publish.py --check    # exit 1 when either differs from what the results give
    python benchmarks/publish.py --mark     # write the quiet verdict into results recorded before the rule
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- figures:begin -->\n)(.*?)(<!-- figures:end -->)", re.DOTALL)
LEGACY_NOTE = ("recorded before the quiet-machine rule: it holds no per-process CPU samples, so it cannot show that other processes "
               "stayed under 0.2 cores; not comparable and never a baseline until `{script}` is rerun")

# result file stem -> the command that writes it (a file not listed here has no script behind it)
SCRIPTS = {
    "engine_capacity": "python benchmarks/engine_capacity.py",
    "deploy_stages": "python benchmarks/deploy_stages.py",
    "quantize_overhead": "python benchmarks/quantize_overhead.py",
    "imatrix_types": "python benchmarks/imatrix_types.py",
    "gateway": "python benchmarks/gateway.py",
    "replicas": "python benchmarks/replicas.py",
    "replicas-threads1": "python benchmarks/replicas.py --threads 1 --out benchmarks/results/replicas-threads1.json",
    "adapter_ab": "python benchmarks/adapter_ab.py",
    "agent_deploy": "python benchmarks/agent_deploy.py",
    "soak": "python benchmarks/soak.py",
    "small_batch_kernels": "python benchmarks/small_batch_kernels.py --baseline DIR --gguf Q8_0.gguf",
    "decode_agreement": "python benchmarks/bench_decode_agreement.py",
    "client_overhead": "python benchmarks/bench_client_overhead.py",
    "template_corpus": "python benchmarks/template_corpus.py",
    "engine_compare": "python benchmarks/engine_compare.py",
    "formats": "python benchmarks/formats.py",
    "install_time": "python benchmarks/install_time.py",
    "install_time.empty-pip-cache": "python benchmarks/install_time.py --empty-pip-cache",
    "peer_agreement": "python benchmarks/peer_agreement.py",
    "bandwidth": "python benchmarks/bandwidth.py",
    "bandwidth_ttft": "python benchmarks/bandwidth.py --model smollm2",
    "bandwidth_c8": "python benchmarks/bandwidth.py --levels 8 --turns 9 --quants Q4_K_M --no-vllm --out benchmarks/results/bandwidth_c8.json",
    "model_zoo": "python benchmarks/model_zoo.py",
    "lifecycle": "python benchmarks/lifecycle.py",
}
PLOTS = {"deploy_stages.sweep.png": "deploy_stages"}  # plot -> the result whose script writes it


def get(data: Any, path: str) -> Any:  # noqa: ANN401
    """`a.b.0.c` into nested dicts and lists; None where the result has no such key."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def fmt(value: Any, spec: str = "") -> str:  # noqa: ANN401
    if value is None:
        return "not in the result"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int) and spec:
        return format(value, spec)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value) or "none"
    return str(value)


def status(stem: str, data: dict[str, Any]) -> tuple[bool, str]:
    """Comparable or not, and why: the result's own verdict when the quiet rule wrote it, else not comparable."""
    if "quiet_rule" in data or "comparable_recorded" in data:
        return bool(data.get("comparable")), str(data.get("comparable_note", ""))
    return False, LEGACY_NOTE.format(script=SCRIPTS[stem])


def mark(stem: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The result with the quiet verdict written in, when it was recorded before the rule; None when it needs nothing."""
    if "quiet_rule" in data or "comparable_recorded" in data:
        return None
    ok, note = status(stem, data)
    return {**data, "comparable_recorded": {"comparable": data.get("comparable"), "note": data.get("comparable_note")},
            "comparable": ok, "comparable_note": note}


def load_results(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    found = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}
    orphans = sorted(set(found) - set(SCRIPTS))
    if orphans:
        raise SystemExit(f"no script in benchmarks/ writes {', '.join(o + '.json' for o in orphans)}: delete it or list its script in SCRIPTS")
    plots = sorted(p.name for p in folder.glob("*.png") if p.name not in PLOTS)
    if plots:
        raise SystemExit(f"no script in benchmarks/ writes {', '.join(plots)}: delete it or list it in PLOTS")
    return found


def cite(stem: str, key: str) -> str:
    return f"`{stem}.json` `{key}`"


def header(stem: str, title: str, data: dict[str, Any]) -> list[str]:
    ok, note = status(stem, data)
    model = data.get("model") or data.get("gguf") or "not in the result"
    workload = data.get("workload")
    said = (f"{workload.get('profile')}; prompts {workload.get('prompts')}" + "".join(
            f", {label} {fmt(workload[key])}" for key, label in (("input_tokens", "input tokens"), ("output_tokens", "output tokens"),
                                                                 ("ignore_eos", "ignore_eos")) if workload.get(key) is not None)
            if isinstance(workload, dict) else "not recorded (a result from before the workload was recorded)")
    engine = get(data, "engine.describe") or get(data, "engine.kind") or "not recorded"
    return [f"## {title}", "", f"From [`benchmarks/results/{stem}.json`](../benchmarks/results/{stem}.json), written by `{SCRIPTS[stem]}`.", "",
            f"- commit `{data.get('commit', '?')}`{' (uncommitted changes)' if data.get('dirty') else ''}, {data.get('date') or data.get('written_at') or 'date not recorded'}",
            f"- model: {model}; engine: {engine}", f"- workload: {said}",
            f"- machine: {get(data, 'machine.cpu_model') or 'CPU model not recorded'}, {fmt(get(data, 'machine.cpus'))} cores",
            f"- **{'comparable' if ok else 'not comparable'}**: {note}", ""]


def figures(stem: str, data: dict[str, Any], rows: list[tuple[str, str, str]]) -> list[str]:
    """A table of (label, key, format) figures, each citing its key."""
    out = ["| figure | value | from |", "|---|---|---|"]
    out += [f"| {label} | {fmt(get(data, key), spec)} | {cite(stem, key)} |" for label, key, spec in rows]
    return [*out, ""]


def table(stem: str, columns: list[tuple[str, str, str]], items: list[Any], prefix: str) -> list[str]:
    """One row per item of a list in the result; the header cites the list's key."""
    if not isinstance(items, list) or not items:
        return [f"(`{stem}.json` has no `{prefix}`)", ""]
    out = [f"From {cite(stem, prefix)}:", "", "| " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(get(item, key), spec) for _, key, spec in columns) + " |" for item in items]
    return [*out, ""]


def engine_capacity(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Engine capacity: the native build", d)
    cols = [("concurrency", "concurrency", ""), ("req/s", "req_s", ".2f"), ("TTFT p95 ms", "ttft_p95_ms", ".0f"),
            ("e2e p95 ms", "e2e_p95_ms", ".0f"), ("lost connections", "connection_errors", ""), ("targets met", "targets_met", "")]
    for build in [b for b in d.get("builds", {}) if b == "native"]:  # the one engine served; a result may still hold a removed build
        out += [f"**{build}** ({fmt(get(d, f'builds.{build}.best.settings'))} settings, {fmt(get(d, f'builds.{build}.best.slots'))} slots):", ""]
        sweep = get(d, f"builds.{build}.best.sweep") or []
        out += table(stem, cols, sweep, f"builds.{build}.best.sweep")
        lost = [p for p in sweep if isinstance(p, dict) and p.get("connection_errors") and p.get("targets_met")]
        if lost:  # a level that lost requests met no target, whatever its figures say: every request counts
            out += [f"At concurrency {fmt([p['concurrency'] for p in lost])} the {build} build lost requests, so the targets listed there "
                    "are not met: the figures count only the requests that completed.", ""]
    out += figures(stem, d, [("native: single-stream decode tok/s", "builds.native.bounds.decode.measured_tok_s", ".0f"),
                             ("native: bandwidth ceiling tok/s", "builds.native.bounds.decode.bandwidth_ceiling_tok_s", ".0f"),
                             ("native: what bounds decode", "builds.native.bounds.decode.bound", ""),
                             ("uncached prompt tokens per request", "builds.native.bounds.prompt_tokens", ""),
                             ("llama-bench prefill tok/s at 64 tokens", "llama_bench.prefill_tok_s_64", ".0f"),
                             ("llama-bench prefill tok/s at 512 tokens", "llama_bench.prefill_tok_s_512", ".0f"), ("llama-bench decode tok/s", "llama_bench.decode_tok_s_32", ".0f")])
    return out


def deploy_stages(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Deploy stages, and our export and quantize against the bare tools", d)
    stages = [(f"first deploy: {k} s", f"stages_s.{k}", ".1f") for k in d.get("stages_s", {})]
    cached = [(f"checkpoint cached: {k} s", f"stages_s_cached.{k}", ".1f") for k in d.get("stages_s_cached", {})]
    out += figures(stem, d, [*stages, ("first deploy: total s", "total_s", ".1f"), *cached, ("checkpoint cached: total s", "total_s_cached", ".1f"),
                             ("export against convert_hf_to_gguf.py (median of pairs)", "export_vs_converter.ratio_pairs_median", ".2f"),
                             ("quantize against llama-quantize as a process", "quantize_vs_llama_quantize_process.ratio_pairs_median", ".2f"),
                             ("quantize against llama_model_quantize in-process", "quantize_vs_llama_model_quantize.ratio_pairs_median", ".2f"),
                             ("quantizer used", "quantizer", ""),
                             ("first deploy's capacity line", "bench_capacity.first.capacity", ""),
                             ("cached deploy's capacity line", "bench_capacity.cached.capacity", "")])
    return [*out, "The cached deploy's sweep: ![req/s and p95 latency against concurrency](../benchmarks/results/deploy_stages.sweep.png)", ""]


def quantize_overhead(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Our quantize and export commands against the bare tools", d)
    out += table(stem, [("type", "qtype", ""), ("ours s (median)", "median_ours_s", ".2f"), ("in-process call s", "median_direct_s", ".2f"),
                        ("ratio", "ratio", ".2f")], d.get("results"), "results")
    return out + figures(stem, d, [("`model-serving quantize --no-verify` / `llama-quantize` (median of pairs)", "commands.quantize.ratio_pairs_median", ".2f"),
                                   ("`model-serving export` / `convert_hf_to_gguf.py` (median of pairs)", "commands.export.ratio_pairs_median", ".2f"),
                                   ("quantize floor from fixed costs", "bounds.quantize_floor_ratio", ".2f"),
                                   ("export floor from fixed costs", "bounds.export_floor_ratio", ".2f"),
                                   ("CLI start s", "bounds.cli_start_s", ".2f"), ("target ratio", "target_ratio", "")])


def imatrix_types(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Importance matrices on a small model", d)
    return out + table(stem, [("type", "qtype", ""), ("matrix", "imatrix", ""), ("bits/weight", "bits_per_weight", ".2f"),
                              ("ppl ratio", "ppl_ratio", ".3f"), ("answers lost", "answers_lost", ""), ("verdict", "verdict", "")],
                       d.get("results"), "results")


def gateway(stem: str, d: dict[str, Any]) -> list[str]:
    return header(stem, "The gateway: what one base URL costs", d) + figures(stem, d, [
        ("added latency ms, median of paired requests", "added_ms_median", ""), ("added latency ms, p90", "added_ms_p90", ""),
        ("e2e p50 ms within the pairs, direct", "pair_direct_p50_ms", ""), ("e2e p50 ms within the pairs, gateway", "pair_gateway_p50_ms", ""),
        ("first request through the gateway (cold load) s", "cold_load_s", ""), ("model swap at models-max 1, p50 ms", "swap_p50_ms", ""),
        ("the front's hop ms: by name, median of rounds paired with the router's own port", "front_added_ms_median", ""),
        ("the front's hop ms: through a weighted route, median of the same rounds", "routed_added_ms_median", "")])


def replicas(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, f"Replicas behind a router ({stem})", d)
    for i, setup in enumerate(d.get("setups", [])):
        out += [f"**{setup.get('setup')}** (threads per engine: {fmt(setup.get('threads_per_engine'))}):", ""]
        out += table(stem, [("concurrency", "concurrency", ""), ("req/s", "request_throughput", ".2f"), ("TTFT p95 ms", "p95_ttft_ms", ".0f"),
                            ("e2e p95 ms", "p95_e2el_ms", ".0f"), ("failed", "failed", ""), ("lost connections", "connection_errors", "")],
                     setup.get("levels"), f"setups.{i}.levels")
    keep = {k: v for k, v in (d.get("keepalive_client") or {}).items() if isinstance(v, dict)}
    out += table(stem, [("client reusing connections", "where", ""), ("requests", "requests", ""), ("ok", "ok", ""), ("lost", "lost", "")],
                 [{"where": k, **v} for k, v in keep.items()], "keepalive_client") if keep else []
    return out


def adapter_ab(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Merged LoRA against base + adapter", d)
    out += table(stem, [("side", "label", ""), ("req/s", "request_throughput", ".2f"), ("TTFT p95 ms", "p95_ttft_ms", ".0f"),
                        ("e2e p95 ms", "p95_e2el_ms", ".0f"), ("greedy agreement", "agreement_rate", ".2f"), ("size bytes", "size_bytes", "")],
                 get(d, "result.variants"), "result.variants")
    return out + figures(stem, d, [("recommended", "result.recommended", ""), ("explanation", "result.explanation", "")])


def agent_deploy(stem: str, d: dict[str, Any]) -> list[str]:
    return header(stem, "An agent deploys through the MCP server", d) + figures(stem, d, [
        ("tool calls to finish", "calls_to_finish", ""), ("call budget", "call_budget", ""), ("within budget", "within_budget", ""),
        ("wall s", "wall_s", ".1f"), ("any call blocked past its wait", "any_call_blocked_too_long", ""),
        ("tools/list characters", "tools_list_chars", ""), ("deployed", "deployed", "")])


def soak(stem: str, d: dict[str, Any]) -> list[str]:
    return header(stem, "Soak", d) + figures(stem, d, [
        ("duration s", "duration_s", ""), ("concurrency", "concurrency", ""), ("requests", "requests", ""),
        ("completed", "requests_completed", ""), ("errors", "errors", ""), ("errors by kind", "errors_by_kind", ""),
        ("req/s", "request_throughput", ".2f"), ("e2e p95 ms", "p95_e2el_ms", ".0f"), ("RSS growth %", "rss.growth_percent", "")])


def install_time(stem: str, d: dict[str, Any]) -> list[str]:
    title = "The first install, pip's cache empty too" if d.get("pip_cache") == "empty" else "The first install, from an empty cache"
    return header(stem, title, d) + figures(stem, d, [
        ("exit code", "exit_code", ""), ("minutes, whole install", "minutes", ".2f"), ("seconds of it compiling llama.cpp", "compile_seconds", ".0f"),
        ("pip cache", "pip_cache", "")])


def small_batch_kernels(stem: str, d: dict[str, Any]) -> list[str]:
    ratios = d.get("ratio_patched_over_baseline", {})
    return header(stem, "The small-batch kernel patch", d) + figures(stem, d, [
        (f"patched / unpatched at {n} rows", f"ratio_patched_over_baseline.{n}", "") for n in ratios])


def decode_agreement(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Decode speed: our client against the server and in-process", d) + figures(stem, d, [
        ("client decode tok/s", "client_decode_tok_s", ".0f"), ("server timings decode tok/s", "server_timings_decode_tok_s", ".0f"),
        ("llama-cpp-python in-process tok/s", "llama_cpp_python_decode_tok_s", ".0f"),
        ("client / server", "ratio_client_to_server", ".2f"), ("client / in-process", "ratio_client_to_in_process", ".2f"), ("target", "target", "")])
    bounds = d.get("target_range") or [float(x) for x in re.findall(r"\d+\.\d+", str(d.get("target", "")))[:2]]
    if len(bounds) == 2:  # a ratio outside its own target is said so, not left for the reader to spot
        missed = [k for k in ("ratio_client_to_server", "ratio_client_to_in_process")
                  if isinstance(d.get(k), float | int) and not bounds[0] <= d[k] <= bounds[1]]
        out += [f"Outside the target: {', '.join(f'`{k}`' for k in missed)}." if missed else "Both ratios are within the target.", ""]
    return out


def client_overhead(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Is our client ever the bottleneck?", d)
    out += table(stem, [("concurrency", "concurrency", ""), ("req/s against an instant server", "request_throughput", ".0f"),
                        ("client CPU ms per request", "client_cpu_ms_per_request", ".2f")], d.get("client_against_instant_server"),
                 "client_against_instant_server")
    return out + figures(stem, d, [("engine req/s with the same client", "engine_smollm2.request_throughput", ".2f"),
                                   ("headroom (client / engine)", "headroom_ratio", ".0f"), ("target", "target", "")])


def engine_compare(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "llama.cpp against vLLM on one checkpoint", d)
    cols = [("concurrency", "concurrency", ""), ("req/s", "request_throughput", ".2f"), ("output tok/s", "output_throughput", ".1f"),
            ("TTFT median ms", "median_ttft_ms", ".0f"), ("TPOT median ms", "median_tpot_ms", ".1f"), ("e2e p95 ms", "p95_e2el_ms", ".0f"),
            ("completed", "completed", "")]
    for i, run in enumerate(d.get("runs", [])):
        rss = run.get("peak_rss_bytes")
        out += [f"**{run.get('engine')}** (peak RSS {fmt(rss / 2**20 if rss else None, '.0f')} MiB, start-up {fmt(run.get('start_s'))} s, "
                f"from `runs.{i}`):", ""]
        out += table(stem, cols, run.get("points"), f"runs.{i}.points")
    return out + figures(stem, d, [("summary", "summary", "")])


def formats(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Every format of one checkpoint: GGUF on llama.cpp, bf16 and llm-compressor's formats on vLLM", d)
    cols = [("engine", "engine", ""), ("format", "format", ""), ("hardware", "hardware", ""), ("make s", "make_s", ".0f"),
            ("size MiB", "size_mib", ".1f"), ("quality", "verdict", ""), ("ppl ratio", "ppl_ratio", ".3f"),
            ("95% interval", "ppl_ratio_interval", ""), ("early agreement", "early_agreement", ".2f"), ("concurrency", "concurrency", ""),
            ("TTFT median ms", "median_ttft_ms", ".0f"), ("TPOT median ms", "median_tpot_ms", ".1f"), ("req/s", "request_throughput", ".2f"),
            ("peak RSS MiB", "peak_rss_mib", "")]
    # The bf16 reference is what the others are judged against: it has no ratio, agreement or making time of its own
    rows = [{k: "n/a" if v is None and r.get("verdict") == "reference" else v for k, v in r.items()} for r in d.get("rows") or []]
    return out + table(stem, cols, rows, "rows") + figures(stem, d, [("summary", "summary", "")])


def template_corpus(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Chat templates converted to Ollama's Go templates", d) + figures(stem, d, [
        ("templates", "summary.templates", ""), ("exact on every conversation", "summary.counts.exact", ""),
        ("exact but for tool key order", "summary.counts.key order", ""), ("refused", "summary.counts.refused", "")])
    rows = [{"name": r.get("name"), "family": r.get("family"), "status": r.get("status"), "reason": r.get("reason") or "",
             "equal": sum(v == "equal" for v in (r.get("conversations") or {}).values())} for r in d.get("results", [])]
    return out + ["<details><summary>Template by template</summary>", ""] + table(
        stem, [("template", "name", ""), ("family", "family", ""), ("result", "status", ""), ("conversations equal", "equal", ""),
               ("reason", "reason", "")], rows, "results") + ["</details>", ""]


def peer_agreement(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "Peers agree with us: our bench against vllm bench serve and GuideLLM", d) + figures(stem, d, [
        ("every ratio within 5%", "agree", ""), ("tolerance", "tolerance", "")])
    out += table(stem, [("engine", "engine", ""), ("peer", "peer", ""), ("metric", "metric", ""), ("ours", "ours", ".2f"),
                        ("theirs", "theirs", ".2f"), ("peer / ours", "ratio", ".3f"), ("within 5%", "within_5_percent", ""),
                        ("sampling noise", "noise_tolerance", ".3f")], d.get("rows"), "rows")
    if d.get("client_rows"):  # the same workload for every client, and the server's own clock, per client
        out += table(stem, [("engine", "engine", ""), ("client", "client", ""), ("prompt tokens (usage)", "prompt_tokens", ".1f"),
                            ("of them template", "template_tokens", ".1f"), ("prefilled", "prefilled_share", ".0%"),
                            ("client cores", "client_cores", ".2f"), ("server cores", "server_cores", ".2f"),
                            ("server TTFT ms", "server_ttft_ms", ".1f"), ("server TPOT ms", "server_tpot_ms", ".1f")],
                     [{**r, "server_ttft_ms": r.get("server_ttft_ms") if r.get("server_ttft_ms") is not None else "none kept by this engine"}
                      for r in d["client_rows"]], "client_rows")
    notes = d.get("who_is_wrong") or []
    return out + ([f"Who is wrong, from {cite(stem, 'who_is_wrong')}:", "", *[f"- {n}" for n in notes], ""] if notes else [])


def interval(stat: dict[str, Any] | None) -> str:
    return f"{stat['ci95'][0]:.3f}-{stat['ci95'][1]:.3f}" if stat and stat.get("ci95") else "n/a"


def level_table(stem: str, serving: dict[str, Any], levels: list[str], key: str, judged_on: str) -> list[str]:
    """Ours against stock at each level, judged over the paired turns, beside stock against itself."""
    judged = [{"concurrency": lv, "verdict": get(serving, f"{key}.{lv}.verdict"),
               **{f"{k}_{part}": interval(get(serving, f"{key}.{lv}.{k}")) if part == "ci" else get(serving, f"{key}.{lv}.{k}.geomean")
                  for k in ("ours_over_stock", "stock_over_stock") for part in ("mean", "ci")}} for lv in levels if get(serving, f"{key}.{lv}")]
    if not judged:
        return []
    margin = next(iter(serving[key].values())).get("margin", 0)
    return [f"Ours against stock on {judged_on}, each level judged over its paired turns (geometric mean, 95% t-interval), beside "
            f"stock against itself (A/A, the method's own spread). \"At least level\": the interval's low end within {margin:.0%} of 1.", ""] + table(
        stem, [("concurrency", "concurrency", ""), ("ours / stock", "ours_over_stock_mean", ".3f"), ("95% interval", "ours_over_stock_ci", ""),
               ("stock / stock (A/A)", "stock_over_stock_mean", ".3f"), ("A/A 95% interval", "stock_over_stock_ci", ""),
               ("verdict", "verdict", "")], judged, f"serving.{key}")


def bandwidth(stem: str, d: dict[str, Any]) -> list[str]:
    ttft = stem == "bandwidth_ttft"
    titles = {"bandwidth_ttft": "SmolLM2-135M Q8_0: TTFT at one stream and the prefill settings",
              "bandwidth_c8": "The 1.1B at eight streams, ours against stock over more paired turns"}
    out = header(stem, titles.get(stem, "A 1.1B model at the bandwidth limit"), d)
    if ttft:
        out += [f"Target: TTFT p95 under 200 ms for a unique 128-token prompt at one stream; ours at one stream: "
                f"{fmt(get(d, 'serving.ours.1.p95_ttft_ms'), '.0f')} ms ({cite(stem, 'serving.ours.1.p95_ttft_ms')}).", ""]
    out += figures(stem, d, [("STREAM triad GB/s (every core)", "limits.bandwidth.triad_gbs", ".1f"),
                             ("numpy read probe GB/s", "limits.bandwidth.numpy_read_gbs", ".1f"),
                             ("matmul peak GFLOP/s (best of f32 numpy, bf16 torch)", "limits.matmul.peak_gflops", ".0f")])
    rows = [{"quant": q, "build": b, **{f"{part}_{k}": v for part in ("decode", "prefill", "prefill_cpu") for k, v in (r.get(b, {}).get(part) or {}).items()}}
            for q, r in (d.get("kernels") or {}).items() for b in ("ours", "stock") if b in r]
    for row in rows:  # the CPU-time split is measured on our build only
        if row["build"] == "stock":
            row.update({"prefill_cpu_tok_s_if_never_waiting": "n/a", "prefill_cpu_sleeps_per_prompt": "n/a"})
    out += ["llama-bench, single stream, the median of the rounds:", ""] + table(stem, [
        ("quant", "quant", ""), ("build", "build", ""), ("decode tok/s", "decode_measured_tok_s", ".1f"), ("roofline tok/s", "decode_ceiling_tok_s", ".1f"),
        ("share of roofline", "decode_fraction", ".2f"), ("prefill tok/s", "prefill_tok_s", ".0f"), ("prefill GFLOP/s", "prefill_gflops", ".0f"),
        ("share of matmul peak", "prefill_fraction_of_matmul_peak", ".2f"), ("prefill tok/s if no thread waited (CPU time)", "prefill_cpu_tok_s_if_never_waiting", ".0f"),
        ("barrier sleeps per prompt", "prefill_cpu_sleeps_per_prompt", "")], rows, "kernels")
    serving = d.get("serving") or {}
    levels = [str(n) for n in d.get("levels") or []]
    served = [{"concurrency": lv, **{f"{e}_{k}": get(serving, f"{e}.{lv}.{k}") for e in ("ours", "stock", "vllm")
                                     for k in ("output_tok_s", "p95_ttft_ms", "failed", "server_decode_tok_s")},
               **{r: get(serving, f"ratios.{r}.{lv}") for r in ("ours_over_stock", "ours_over_vllm")}} for lv in levels]
    for row in served:  # older results kept no server-side decode rate
        row.update({k: "n/a" for k in ("ours_server_decode_tok_s", "stock_server_decode_tok_s") if row[k] is None})
    vllm = "vllm" in serving
    out += [f"Served ({d.get('serve_quant')}{'; vLLM on the bf16 checkpoint' if vllm else ''}): requests that failed (every round), output tok/s, "
            f"the server's own decode tok/s and TTFT p95 ms by concurrency; connections: {serving.get('connections', 'reused')}. "
            "A ratio against an engine that failed requests compares only what it completed.", ""]
    columns = [("concurrency", "concurrency", ""), ("ours failed", "ours_failed", ""), ("stock failed", "stock_failed", ""),
               ("vLLM failed", "vllm_failed", ""), ("ours tok/s", "ours_output_tok_s", ".1f"), ("stock tok/s", "stock_output_tok_s", ".1f"),
               ("vLLM tok/s", "vllm_output_tok_s", ".1f"), ("ours / stock", "ours_over_stock", ".2f"),
               ("ours / vLLM", "ours_over_vllm", ".2f"), ("ours server decode tok/s", "ours_server_decode_tok_s", ".1f"),
               ("stock server decode tok/s", "stock_server_decode_tok_s", ".1f"),
               ("ours TTFT p95", "ours_p95_ttft_ms", ".0f"), ("stock TTFT p95", "stock_p95_ttft_ms", ".0f")]
    out += table(stem, [c for c in columns if vllm or "vllm" not in c[1]], served, "serving")
    for key, judged_on in (("level", "output tok/s"), ("level_server_decode", "the server's own decode tok/s")):
        out += level_table(stem, serving, levels, key, judged_on)
    kept = serving.get("keep_alive") or {}
    if kept:
        out += ["A connection-reusing client at one stream (" + cite(stem, "serving.keep_alive") + "): " +
                "; ".join(f"{name} completed {fmt(row.get('completed'), '')}, lost {fmt(row.get('failed'), '')}" for name, row in kept.items()) + ".", ""]
    fits = [{"build": b, **f} for b, f in (d.get("decode_fit") or {}).items() if f]
    if fits:
        out += ["Decode time per token against bytes read, fitted across the quants (slope: the rate the kernels read weights at; "
                "intercept: the per-token cost that does not grow with the weights):", ""] + table(stem, [
            ("build", "build", ""), ("effective GB/s", "effective_gbs", ".1f"), ("share of triad", "share_of_triad", ".2f"),
            ("fixed ms per token", "fixed_ms_per_token", ".1f"), ("quants", "points", "")], fits, "decode_fit")
    out += [f"What bounds it, from {cite(stem, 'bounds')}:", "", *[f"- {line}" for line in d.get("bounds") or []], ""]
    spins = [{"spin": spin, **row} for spin, row in (d.get("ttft_by_spin") or {}).items()]
    if spins:
        out += ["Our server at one stream under each OpenMP spin count (`GOMP_SPINCOUNT`):", ""] + table(stem, [
            ("GOMP_SPINCOUNT", "spin", ""), ("TTFT median ms", "median_ttft_ms", ".0f"), ("TTFT p95 ms", "p95_ttft_ms", ".0f"),
            ("TPOT median ms", "median_tpot_ms", ".1f"), ("output tok/s", "output_tok_s", ".1f")], spins, "ttft_by_spin")
    if d.get("prefill_settings"):
        out += ["<details><summary>pp128 by OpenMP spin count, threads, ubatch, flash attention</summary>", ""] + table(stem, [
            ("GOMP_SPINCOUNT", "gomp_spincount", ""), ("threads", "threads", ""), ("ubatch", "ubatch", ""), ("flash attn", "flash_attn", ""),
            ("pp128 tok/s", "pp_tok_s", ".0f"), ("stddev", "stddev", ".0f")], d["prefill_settings"], "prefill_settings") + ["</details>", ""]
    return out


# a step's name holds no dot: the table reads a dot in a key as a path
ZOO_STEPS = ("inspect", "export", "quantize", "serve+probe", "bench", "ollama (go)", "ollama (gguf)", "vllm", "taught (embedded)", "taught (vllm)")


def model_zoo(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "The model zoo: each family through every step", d) + figures(stem, d, [
        ("families", "summary.families", ""), ("families passing every step", "summary.families_passing_every_step", ""),
        ("steps passed", "summary.passed", ""), ("steps failed", "summary.failed", ""), ("steps not run", "summary.not_run", ""),
        ("vLLM", "vllm", "")])
    rows = d.get("rows") or []
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        mark_ = {"pass": "pass", "fail": "**fail**", "not run": "not run"}.get(r.get("status"), str(r.get("status")))
        cells.setdefault(str(r.get("family")), {"family": str(r.get("family"))})[str(r.get("step"))] = f"{mark_} {fmt(r.get('seconds'), '.1f')} s"
    steps = [step for step in ZOO_STEPS if any(step in c for c in cells.values())]  # a step the run left out (--no-vllm) has no column
    for c in cells.values():  # a family with neither tools nor reasoning has nothing to teach
        c.update({step: "n/a" for step in steps if step.startswith("taught") and step not in c})
    out += table(stem, [("family", "family", "")] + [(step, step, "") for step in steps], list(cells.values()), "rows")
    failures = [{**r, "cause": " ".join(str(r.get("cause") or "").split()).replace("|", "/")} for r in rows if r.get("status") != "pass"]
    return out + (table(stem, [("family", "family", ""), ("step", "step", ""), ("result", "status", ""), ("cause", "cause", "")],
                        failures, "rows") if failures else [])


def lifecycle(stem: str, d: dict[str, Any]) -> list[str]:
    out = header(stem, "The model lifecycle: merge, version 2 beside version 1, canary, promote and rollback", d) + figures(stem, d, [
        ("every step passed", "summary.complete", ""), ("canary share of version 2", "summary.canary_share", ".3f"),
        ("its 95% interval (Wilson)", "summary.canary_share_interval_95", ""), ("requests lost during promote", "summary.lost_promote", ""),
        ("requests lost during rollback", "summary.lost_rollback", ""), ("after the rollback, answers as version 1", "summary.rollback_answers_as_v1", ""),
        ("the two versions' probe answers differ", "summary.v1_v2_answers_differ", "")])
    rows = [{**r, "cause": " ".join(str(r.get("cause") or "").split()).replace("|", "/")} for r in d.get("rows") or []]
    return out + table(stem, [("step", "step", ""), ("result", "status", ""), ("seconds", "seconds", ".1f"), ("cause", "cause", "")], rows, "rows")


SECTIONS: dict[str, Callable[[str, dict[str, Any]], list[str]]] = {
    "engine_capacity": engine_capacity, "deploy_stages": deploy_stages, "quantize_overhead": quantize_overhead,
    "imatrix_types": imatrix_types, "gateway": gateway, "replicas": replicas, "replicas-threads1": replicas,
    "adapter_ab": adapter_ab, "agent_deploy": agent_deploy, "soak": soak,
    "small_batch_kernels": small_batch_kernels, "decode_agreement": decode_agreement, "client_overhead": client_overhead,
    "template_corpus": template_corpus, "engine_compare": engine_compare, "formats": formats, "install_time": install_time,
    "install_time.empty-pip-cache": install_time,
    "peer_agreement": peer_agreement, "bandwidth": bandwidth, "bandwidth_ttft": bandwidth, "bandwidth_c8": bandwidth, "model_zoo": model_zoo,
    "lifecycle": lifecycle,
}


def page(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Benchmark results", "", "<!-- generated by benchmarks/publish.py from benchmarks/results/*.json: do not edit -->", "",
             "Every figure below is read from the result file it cites; `python benchmarks/publish.py` rewrites this page.",
             "A result is comparable only when the quiet-machine rule held for each of its measurements: other processes used",
             "less than 0.2 cores before and during it (`model_serving.bench.quiet`). A result that is not comparable is never a",
             "baseline: read its figures as what that run saw, not as what the code does on a quiet machine.", "",
             "| result | comparable | commit |", "|---|---|---|"]
    lines += [f"| [{stem}](#{_anchor(stem, results[stem])}) | {'yes' if status(stem, results[stem])[0] else 'no'} | "
              f"`{results[stem].get('commit', '?')}` |" for stem in SECTIONS if stem in results]
    lines.append("")
    for stem, render in SECTIONS.items():
        if stem in results:
            lines += render(stem, results[stem])
    return "\n".join(lines).rstrip() + "\n"


def _anchor(stem: str, data: dict[str, Any]) -> str:
    title = SECTIONS[stem](stem, data)[0].removeprefix("## ")
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def readme_block(results: dict[str, dict[str, Any]]) -> str:
    """The README's figures: which results exist and whether they compare; the figures themselves stay on the page."""
    rows = ["| result | comparable | written by |", "|---|---|---|"]
    rows += [f"| [{stem}](docs/benchmarks.md#{_anchor(stem, results[stem])}) | {'yes' if status(stem, results[stem])[0] else 'no'} | "
             f"`{SCRIPTS[stem]}` |" for stem in SECTIONS if stem in results]
    return "\n".join(rows) + "\n"


def render_readme(text: str, results: dict[str, dict[str, Any]]) -> str:
    return BLOCK.sub(lambda m: m.group(1) + readme_block(results) + m.group(3), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the page or the README's blocks are out of date")
    parser.add_argument("--mark", action="store_true", help="write the quiet verdict into results recorded before the rule")
    args = parser.parse_args()
    results = load_results()
    if args.mark:
        for stem, data in results.items():
            if (marked := mark(stem, data)) is not None:
                (RESULTS / f"{stem}.json").write_text(json.dumps(marked, indent=2) + "\n", encoding="utf-8")
                print(f"marked {stem}.json: not comparable (recorded before the quiet rule)")
        results = load_results()
    want_page, readme = page(results), README.read_text(encoding="utf-8")
    want_readme = render_readme(readme, results)
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, want in ((PAGE, want_page), (README, want_readme))
                 if not p.is_file() or p.read_text(encoding="utf-8") != want]
        print("out of date: " + ", ".join(stale) + " (run python benchmarks/publish.py)" if stale else "up to date")
        return 1 if stale else 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(want_page, encoding="utf-8")
    README.write_text(want_readme, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
