"""The versions tool: history, promote, rollback, canary and prune of a deployed name, one tool with the action named."""

from __future__ import annotations

from model_serving import verbs
from model_serving.lifecycle.history import PruneResult, VersionHistory
from model_serving.lifecycle.switch import SwitchResult
from model_serving.mcp.runtime import ToolSpec, writes
from model_serving.requests import VersionsRequest

TOOLS = [
    # destructive: prune removes versions, promote/rollback/canary move live traffic
    ToolSpec(verbs.model_versions, "model_versions", VersionsRequest, (VersionHistory, PruneResult, SwitchResult),
             writes(destructive=True, idempotent=False)),
]
