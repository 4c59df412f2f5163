"""`model-serving bench run|sweep|roofline|quant-ab`: click commands over the bench verbs (verbs.py)."""

from __future__ import annotations

import click

from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import BenchCompareRequest, BenchRequest, QuantABRequest, RooflineRequest
from model_serving.verbs import bench, bench_compare, bench_quant_ab, bench_roofline

LOAD = {"n_requests": ["-n", "--requests"], "concurrency": ["-c"], "output": ["--out"], "max_tokens": ["--output-tokens"]}


@click.group("bench")
def bench_group() -> None:
    """Measure latency and throughput of a served model and judge them against targets."""


@bench_group.command("run")
@from_model(BenchRequest, positional=("model",), aliases=LOAD)
def run_cmd(app: App, req: BenchRequest) -> None:
    """Benchmark MODEL: closed loop at --concurrency, Poisson --rate arrivals, or a sweep over --levels."""
    result = app.run(f"bench {req.model}", lambda p: bench(app.settings, req, p))
    app.show(result)


@bench_group.command("sweep")
@from_model(BenchRequest, positional=("model",), aliases=LOAD)
def sweep_cmd(app: App, req: BenchRequest) -> None:
    """`bench run` over rising concurrency (--levels, default 1,2,4,8): finds the knee and whether slots or compute cause it."""
    req = req if req.levels else req.model_copy(update={"levels": [1, 2, 4, 8]})
    result = app.run(f"sweep {req.model}", lambda p: bench(app.settings, req, p))
    app.show(result)


@bench_group.command("roofline")
@from_model(RooflineRequest, positional=("gguf",))
def roofline_cmd(app: App, req: RooflineRequest) -> None:
    """Decode ceiling of a GGUF from memory bandwidth: weight bytes plus KV bytes per token."""
    result = bench_roofline(app.settings, req)
    app.show(result)


@bench_group.command("quant-ab")
@from_model(QuantABRequest, positional=("ggufs",), aliases={**LOAD, "quality_floor": ["--floor"]})
def quant_ab_cmd(app: App, req: QuantABRequest) -> None:
    """Serve each GGUF in turn with the same prompts: speed beside quality, and the smallest that meets both."""
    result = app.run("quantization A/B", lambda p: bench_quant_ab(app.settings, req, p))
    app.show(result)


@bench_group.command("compare")
@from_model(BenchCompareRequest, positional=("source",), aliases={"output": ["--out"]})
def compare_cmd(app: App, req: BenchCompareRequest) -> None:
    """Serve one checkpoint on llama.cpp (GGUF at --quant) and on vLLM in turn, sweep --levels on each: one JSON/Markdown/PNG report."""
    result = app.run("engine comparison", lambda p: bench_compare(app.settings, req, p))
    app.show(result)


def register(group: click.Group) -> None:
    group.add_command(bench_group)
