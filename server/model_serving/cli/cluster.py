"""`model-serving plan-production` and `cost`: what a cluster runs, and what it costs (the verbs of verbs.py)."""

from __future__ import annotations

import click

from model_serving import verbs
from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import CostRequest, PlanProductionRequest


def register(group: click.Group) -> None:
    group.add_command(cost_cmd)
    group.add_command(plan_production_cmd)


def _per_day(tokens: float | None) -> str:
    return "never" if tokens is None else f"{tokens:,.0f} tokens/day"


@click.command("cost")
@from_model(CostRequest)
def cost_cmd(app: App, req: CostRequest) -> None:
    """Self-hosted $/1M tokens from a bench result's measured throughput, and the daily volume where it beats an API."""
    result = verbs.cost_estimate(app.settings, req)

    def human() -> None:
        t = result.throughput
        click.secho(f"throughput: {t.input_tok_s:.4g} input + {t.output_tok_s:.4g} output tok/s ({t.source})", bold=True)
        click.echo(f"  replica: {result.gpus_per_replica} GPU(s), ${result.replica_hourly_usd:g}/h; {result.replica_tokens_per_day:,.0f} tokens/day at most")
        inp = "n/a" if result.self_usd_per_m_input is None else f"${result.self_usd_per_m_input:.4g}"
        click.echo(f"  self-hosted per 1M tokens: input {inp}, output ${result.self_usd_per_m_output:.4g}, "
                   f"blended ${result.self_usd_per_m_blended:.4g} (input share {result.input_share:.0%})")
        if result.api_usd_per_m_blended is not None and result.crossover_tokens_per_day is None:
            click.echo(f"  API blended ${result.api_usd_per_m_blended:.4g}/1M: cheaper at every volume (a full replica's tokens cost less there)")
        elif result.api_usd_per_m_blended is not None:
            click.echo(f"  API blended ${result.api_usd_per_m_blended:.4g}/1M; self-hosting cheaper from {_per_day(result.crossover_tokens_per_day)}, "
                       f"at every volume from {_per_day(result.cheaper_from_tokens_per_day)}")
        for note in result.notes:
            click.echo(f"  note: {note}")
        click.echo(f"  model: {result.cost_model}")
        if result.plot:
            click.echo(f"  plot: {result.plot}")
        click.secho(result.summary, fg="green")

    app.emit(result, human)


@click.command("plan-production")
@from_model(PlanProductionRequest, positional=("source",), aliases={"output": ("-o",)})
def plan_production_cmd(app: App, req: PlanProductionRequest) -> None:
    """Size a model (config.json) for --gpu (H100-80GB, L4-24GB, ..., cpu) and write its Kubernetes bundle to -o.

    --model-id is the Hub repo the pods pull (for llama.cpp: a GGUF repo[:QUANT]); --lora NAME=HUB_REPO,...;
    --gpu-memory-gb: GiB per GPU, for a GPU the table lacks.
    """
    plan = verbs.plan_production(app.settings, req)

    def human() -> None:
        click.secho(f"{plan.engine} on {plan.gpus_per_replica or 'no'} x {plan.gpu} per replica: {plan.engine_why}", bold=True)
        if plan.sizing:
            s = plan.sizing
            click.echo(f"  tensor_parallel_size {s.tensor_parallel_size}, max_model_len {s.max_model_len}, max_num_seqs {s.max_num_seqs} "
                       f"({s.kv_capacity_tokens:,} KV tokens; {s.parameter_count / 1e9:.2f}B parameters)")
            for t in s.tried:
                click.echo(f"  TP {t.tensor_parallel_size}: {t.why}")
            for a in s.assumptions:
                click.echo(f"  assumed: {a}")
        if plan.llamacpp:
            m = plan.llamacpp
            click.echo(f"  {m.quant}, {m.parallel} x {m.ctx_per_sequence} tokens: {m.memory.total_bytes / 2**30:.1f} GiB ({m.fits})")
        click.echo(f"  start-up budget {plan.startup_budget_s} s; argv: {' '.join(plan.argv)}")
        for note in plan.notes:
            click.echo(f"  note: {note}")
        click.secho(f"wrote {len(plan.files)} files to {plan.output}", fg="green")

    app.emit(plan, human)
