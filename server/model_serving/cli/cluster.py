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


@click.command("cost")
@from_model(CostRequest)
def cost_cmd(app: App, req: CostRequest) -> None:
    """Self-hosted $/1M tokens from a bench result's measured throughput, and the daily volume where it beats an API."""
    result = verbs.cost_estimate(app.settings, req)
    app.show(result)


@click.command("plan-production")
@from_model(PlanProductionRequest, positional=("source",), aliases={"output": ("-o",)})
def plan_production_cmd(app: App, req: PlanProductionRequest) -> None:
    """Size a model (config.json) for --gpu (H100-80GB, L4-24GB, ..., cpu) and write its Kubernetes bundle to -o.

    --model-id is the Hub repo the pods pull (for llama.cpp: a GGUF repo[:QUANT]); --lora NAME=HUB_REPO,...;
    --gpu-memory-gb: GiB per GPU, for a GPU the table lacks. --format auto|bf16|fp8|awq|gptq|w8a8-int8: the weight
    format vLLM serves (auto: FP8 on compute capability >= 8.9, AWQ on memory-bound GPUs, INT8 W8A8 on older ones).
    --canary DIR [--canary-model-id REPO] [--canary-share 10]: a second version beside it, weighted by an HTTPRoute.
    --bench RESULT.json (that format measured on that GPU) and --gpu-hourly USD price a replica's output tokens.
    """
    plan = verbs.plan_production(app.settings, req)
    app.show(plan)
