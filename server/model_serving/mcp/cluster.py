"""Cluster MCP tools: the production bundle, and the cost of self-hosting against an API (verbs.py), one row each."""

from __future__ import annotations

from model_serving import verbs
from model_serving.cluster.bundle import Bundle
from model_serving.cluster.cost import CostEstimate
from model_serving.mcp.runtime import ToolSpec, writes
from model_serving.requests import CostRequest, PlanProductionRequest

TOOLS = [
    ToolSpec(verbs.plan_production, "plan_production", PlanProductionRequest, Bundle, writes(idempotent=False)),
    ToolSpec(verbs.cost_estimate, "cost_estimate", CostRequest, CostEstimate, writes()),  # writes the plot PNG
]
