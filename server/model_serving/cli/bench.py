"""`model-serving bench run|sweep|roofline`: thin click commands over the bench core."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from model_serving.bench.models import BenchResult, Roofline
from model_serving.cli.app import App, pass_app
from model_serving.errors import InputError


def _load_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("model"),
        click.option("--endpoint", help="Configured endpoint name or loopback URL (default: the embedded engine serving MODEL, or OLLAMA_HOST with --api ollama)."),
        click.option("--api", type=click.Choice(["openai", "ollama"]), help="Wire protocol (default: from the endpoint)."),
        click.option("--route", type=click.Choice(["chat", "completions"]), default="chat", show_default=True),
        click.option("-n", "--requests", "n_requests", type=int, default=20, show_default=True, help="Measured requests (per level in a sweep)."),
        click.option("--max-tokens", type=int, default=32, show_default=True),
        click.option("--warmup", type=int, default=1, show_default=True, help="Warmup requests per stream, left out of the statistics."),
        click.option("--prompt", help="Send this one prompt."),
        click.option("--prompts-file", type=click.Path(dir_okay=False), help="JSONL: {\"prompt\": ...} or {\"messages\": [...]} per line."),
        click.option("--synthetic-input", "input_tokens", type=int, help="Synthetic prompts of about this many tokens, random prefix each."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--ttft-ms", type=float, default=200.0, show_default=True, help="Target: time to first token."),
        click.option("--e2e-ms", type=float, default=500.0, show_default=True, help="Target: end-to-end latency."),
        click.option("--rps", type=float, default=10.0, show_default=True, help="Target: completed requests per second."),
        click.option("--memory-gb", type=float, default=8.0, show_default=True, help="Target: server memory."),
        click.option("--statistic", type=click.Choice(["mean", "median", "p90", "p95", "p99"]), default="p95", show_default=True),
        click.option("--gguf", type=click.Path(dir_okay=False), help="The served GGUF, for the roofline (found automatically for the embedded engine)."),
        click.option("--bandwidth-gbs", type=float, help="Memory bandwidth for the roofline (default: measured)."),
        click.option("--out", "output_dir", type=click.Path(file_okay=False), help="Write JSON, JSONL, Markdown and PNG reports here."),
        click.option("--label", default="bench", show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _config(app: App, kw: dict[str, Any], **extra: Any):  # noqa: ANN202
    from model_serving.bench.options import make_config

    targets = {"ttft_ms": kw.pop("ttft_ms"), "e2e_ms": kw.pop("e2e_ms"), "request_throughput": kw.pop("rps"),
               "memory_gb": kw.pop("memory_gb"), "statistic": kw.pop("statistic")}
    if kw.get("input_tokens") is not None:
        kw["prompt_source"] = "synthetic"
    return make_config(app.settings, targets=targets, **kw, **extra)


def _print(result: BenchResult) -> None:
    s = result.summary
    click.echo(f"{result.config.model} at {result.config.base_url}: {s.completed} completed, {s.failed} failed in {s.duration:.2f} s"
               + ("  [INCOMPLETE" + (f": {result.stopped_reason}" if result.stopped_reason else "") + "]" if result.incomplete else ""))

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    click.echo(f"  TTFT ms   median {fmt(s.median_ttft_ms)}  p95 {fmt(s.p95_ttft_ms)}  p99 {fmt(s.p99_ttft_ms)}")
    click.echo(f"  TPOT ms   median {fmt(s.median_tpot_ms)}  p95 {fmt(s.p95_tpot_ms)}")
    click.echo(f"  E2E ms    median {fmt(s.median_e2el_ms)}  p95 {fmt(s.p95_e2el_ms)}  p99 {fmt(s.p99_e2el_ms)}")
    click.echo(f"  {s.request_throughput:.2f} req/s, {s.output_throughput:.1f} output tok/s; decode per stream "
               f"{fmt(result.metrics['decode_tok_s'].median)} tok/s (server says {fmt(s.median_server_decode_tok_s)})")
    if result.knee:
        click.echo(f"  knee: {result.knee.explanation}")
    if result.roofline and result.roofline.percent_of_ceiling is not None:
        r = result.roofline
        click.echo(f"  roofline: {r.percent_of_ceiling:.0f}% of {r.ceiling_tok_s:.0f} tok/s at {r.bandwidth_gbs:.1f} GB/s ({r.flag})")
    for v in result.verdicts:
        color = {"PASS": "green", "FAIL": "red"}.get(v.state, "yellow")
        measured = "-" if v.measured is None else f"{v.measured:.2f}"
        click.echo(f"  {click.style(v.state, fg=color):>4} {v.target} {v.statistic} {measured} (threshold {v.threshold:g}) {v.note}")
        for cause in v.likely_causes:
            click.echo(f"       - {cause}")
    for f in result.findings:
        click.echo(f"  [{f.severity}] {f.message}")
    for kind, path in result.files.items():
        click.echo(f"  {kind}: {path}")


def register(group: click.Group) -> None:
    @group.group("bench")
    def bench() -> None:
        """Measure latency and throughput of a served model and judge them against targets."""

    @bench.command("run")
    @_load_options
    @click.option("-c", "--concurrency", type=int, default=1, show_default=True, help="Streams in flight (cap for --rate).")
    @click.option("--rate", type=float, help="Poisson arrivals at this many requests/s instead of a closed loop.")
    @click.option("--cold-start", is_flag=True, help="Ollama: unload the model first and measure the cold load.")
    @pass_app
    def run(app: App, **kw: Any) -> None:
        """Benchmark MODEL: one at a time (default), at fixed --concurrency, or with Poisson --rate arrivals."""
        from model_serving.bench.runner import run_benchmark

        config = _config(app, kw)
        result = app.run(f"bench {config.model}", lambda p: run_benchmark(config, p))
        app.emit(result, lambda: _print(result))

    @bench.command("sweep")
    @_load_options
    @click.option("--levels", default="1,2,4,8", show_default=True, help="Concurrency levels, comma-separated.")
    @pass_app
    def sweep(app: App, levels: str, **kw: Any) -> None:
        """Closed-loop runs at rising concurrency; finds the knee and says whether slots or compute cause it."""
        from model_serving.bench.runner import run_sweep

        try:
            level_list = [int(x) for x in levels.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--levels {levels!r} is not a comma-separated list of integers.", "Pass e.g. --levels 1,2,4,8.") from None
        config = _config(app, kw)
        result = app.run(f"sweep {config.model}", lambda p: run_sweep(config, level_list, p))
        app.emit(result, lambda: _print(result))

    @bench.command("roofline")
    @click.argument("gguf", type=click.Path(dir_okay=False))
    @click.option("--tok-s", type=float, help="Measured decode tokens/s at batch 1 to compare with the ceiling.")
    @click.option("--context", type=float, default=0.0, show_default=True, help="Context tokens already in the KV cache.")
    @click.option("--bandwidth-gbs", type=float, help="Memory bandwidth (default: measured by a quick probe).")
    @pass_app
    def roofline_cmd(app: App, gguf: str, tok_s: float | None, context: float, bandwidth_gbs: float | None) -> None:
        """Decode ceiling of a GGUF from memory bandwidth: weight bytes plus KV bytes per token."""
        from model_serving.bench.roofline import roofline
        from model_serving.util.paths import confine

        path = confine(gguf, app.settings.roots, what="GGUF path")
        result: Roofline = roofline(Path(path), tok_s, context, bandwidth_gbs=bandwidth_gbs)

        def human() -> None:
            click.echo(f"weights {result.weight_bytes_per_token / 1e6:.1f} MB per token, KV {result.kv_bytes_per_context_token} B per context token")
            click.echo(f"bandwidth {result.bandwidth_gbs:.1f} GB/s ({result.bandwidth_source}): ceiling {result.ceiling_tok_s:.0f} tok/s")
            if result.percent_of_ceiling is not None:
                click.echo(f"measured {result.measured_tok_s:.1f} tok/s = {result.percent_of_ceiling:.0f}% ({result.flag}). {result.note}")

        app.emit(result, human)

    @bench.command("quant-ab")
    @click.argument("ggufs", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("-n", "--requests", "n_requests", type=int, default=8, show_default=True)
    @click.option("-c", "--concurrency", type=int, default=1, show_default=True)
    @click.option("--max-tokens", type=int, default=16, show_default=True)
    @click.option("--ttft-ms", type=float, default=200.0, show_default=True)
    @click.option("--e2e-ms", type=float, default=500.0, show_default=True)
    @click.option("--floor", "quality_floor", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                  help="Least share of greedy answers identical to the reference's.")
    @click.option("--max-ppl-ratio", type=float, default=1.10, show_default=True, help="Largest perplexity ratio to the reference.")
    @click.option("--out", "output_dir", type=click.Path(file_okay=False))
    @pass_app
    def quant_ab(app: App, ggufs: tuple[str, ...], n_requests: int, concurrency: int, max_tokens: int, ttft_ms: float, e2e_ms: float,
                 quality_floor: float, max_ppl_ratio: float, output_dir: str | None) -> None:
        """Serve each GGUF in turn with the same prompts: speed beside quality, and the smallest that meets both."""
        from model_serving.bench.models import Targets
        from model_serving.bench.quant_ab import markdown, run_quant_ab

        targets = Targets(ttft_ms=ttft_ms, e2e_ms=e2e_ms, request_throughput=None, memory_gb=None)
        result = app.run("quantization A/B", lambda p: run_quant_ab(
            app.settings, list(ggufs), n_requests=n_requests, concurrency=concurrency, max_tokens=max_tokens, targets=targets,
            quality_floor=quality_floor, max_ppl_ratio=max_ppl_ratio, output_dir=output_dir, progress=p))
        app.emit(result, lambda: click.echo(markdown(result)))
