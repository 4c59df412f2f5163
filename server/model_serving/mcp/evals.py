"""The eval MCP tool: two served versions compared on the user's evals, as a job (verbs.eval_versions)."""

from __future__ import annotations

from model_serving import verbs
from model_serving.lifecycle.eval_report import EvalReport
from model_serving.mcp.runtime import ToolSpec, writes
from model_serving.requests import EvalRequest

TOOLS = [
    ToolSpec(verbs.eval_versions, "eval_versions", EvalRequest, EvalReport, writes(idempotent=False), long=True),
]
