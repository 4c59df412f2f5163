"""`model-serving bench run|sweep|roofline|quant-ab`: click commands over the bench verbs (verbs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import BenchCompareRequest, BenchRequest, QuantABRequest, RooflineRequest

if TYPE_CHECKING:
    from model_serving.bench.models import BenchResult

LOAD = {"n_requests": ["-n", "--requests"], "concurrency": ["-c"], "output": ["--out"], "max_tokens": ["--output-tokens"]}


def _print(result: BenchResult) -> None:
    from model_serving.bench.capacity import capacity_text
    from model_serving.bench.report import failure_lines, headline, workload_text

    s = result.summary
    for line in failure_lines(result):  # failures first
        click.secho(line, fg="red" if line.startswith(("FAILED", "first error")) else None)
    click.echo(f"{result.config.model} at {result.config.base_url}: {s.completed} completed, {s.failed} failed in {s.duration:.2f} s"
               + ("  [INCOMPLETE" + (f": {result.stopped_reason}" if result.stopped_reason else "") + "]" if result.incomplete else ""))
    click.echo(f"  workload: {workload_text(result.workload)}")
    click.echo(f"  {headline(result)}")
    if result.capacity:
        click.echo(f"  capacity: {capacity_text(result.capacity)}. {result.capacity.explanation}")

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


@click.group("bench")
def bench_group() -> None:
    """Measure latency and throughput of a served model and judge them against targets."""


@bench_group.command("run")
@from_model(BenchRequest, positional=("model",), aliases=LOAD)
def run_cmd(app: App, req: BenchRequest) -> None:
    """Benchmark MODEL: closed loop at --concurrency, Poisson --rate arrivals, or a sweep over --levels."""
    from model_serving.verbs import bench

    result = app.run(f"bench {req.model}", lambda p: bench(app.settings, req, p))
    app.emit(result, lambda: _print(result))


@bench_group.command("sweep")
@from_model(BenchRequest, positional=("model",), aliases=LOAD)
def sweep_cmd(app: App, req: BenchRequest) -> None:
    """`bench run` over rising concurrency (--levels, default 1,2,4,8): finds the knee and whether slots or compute cause it."""
    from model_serving.verbs import bench

    req = req if req.levels else req.model_copy(update={"levels": [1, 2, 4, 8]})
    result = app.run(f"sweep {req.model}", lambda p: bench(app.settings, req, p))
    app.emit(result, lambda: _print(result))


@bench_group.command("roofline")
@from_model(RooflineRequest, positional=("gguf",))
def roofline_cmd(app: App, req: RooflineRequest) -> None:
    """Decode ceiling of a GGUF from memory bandwidth: weight bytes plus KV bytes per token."""
    from model_serving.verbs import bench_roofline

    result = bench_roofline(app.settings, req)

    def human() -> None:
        click.echo(f"weights {result.weight_bytes_per_token / 1e6:.1f} MB per token, KV {result.kv_bytes_per_context_token} B per context token")
        click.echo(f"bandwidth {result.bandwidth_gbs:.1f} GB/s ({result.bandwidth_source}): ceiling {result.ceiling_tok_s:.0f} tok/s")
        if result.percent_of_ceiling is not None:
            click.echo(f"measured {result.measured_tok_s:.1f} tok/s = {result.percent_of_ceiling:.0f}% ({result.flag}). {result.note}")

    app.emit(result, human)


@bench_group.command("quant-ab")
@from_model(QuantABRequest, positional=("ggufs",), aliases={**LOAD, "quality_floor": ["--floor"]})
def quant_ab_cmd(app: App, req: QuantABRequest) -> None:
    """Serve each GGUF in turn with the same prompts: speed beside quality, and the smallest that meets both."""
    from model_serving.bench.quant_ab import markdown
    from model_serving.verbs import bench_quant_ab

    result = app.run("quantization A/B", lambda p: bench_quant_ab(app.settings, req, p))
    app.emit(result, lambda: click.echo(markdown(result)))


@bench_group.command("compare")
@from_model(BenchCompareRequest, positional=("source",), aliases={"output": ["--out"]})
def compare_cmd(app: App, req: BenchCompareRequest) -> None:
    """Serve one checkpoint on llama.cpp (GGUF at --quant) and on vLLM in turn, sweep --levels on each: one JSON/Markdown/PNG report."""
    from model_serving.bench.compare import markdown
    from model_serving.verbs import bench_compare

    result = app.run("engine comparison", lambda p: bench_compare(app.settings, req, p))
    app.emit(result, lambda: click.echo(markdown(result) + "".join(f"  {kind}: {path}\n" for kind, path in result.files.items())))


def register(group: click.Group) -> None:
    group.add_command(bench_group)
