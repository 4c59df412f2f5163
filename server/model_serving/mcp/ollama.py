"""MCP tools `ollama_*`: the same verbs as `model-serving ollama ...` (verbs.py), one row each.

`ollama version`, `ollama list` and `ollama ps` have no tool of their own: serving_status returns all three at once
(its `ollama` part). `ollama cp`, `rm`, `unload` and `pull` are one tool, ollama_manage, with the action named. Both
save an agent calls and tools/list characters.

The server address comes from the server's settings (OLLAMA_HOST / --ollama-host), never from a
tool argument, and file paths go through `confine` against the configured roots.
"""

from __future__ import annotations

from model_serving import verbs
from model_serving.mcp.runtime import READ_ONLY, ToolSpec, writes
from model_serving.requests import CheckModelfileRequest, ModelfileRequest, OllamaManageRequest, OllamaNameRequest, OllamaProbeRequest
from model_serving.serve.ollama import manage
from model_serving.serve.ollama.client import ShowInfo
from model_serving.serve.probe_checks import ProbeResult

TOOLS = [
    ToolSpec(verbs.ollama_show, "ollama_show", OllamaNameRequest, ShowInfo, READ_ONLY),
    ToolSpec(verbs.ollama_manage, "ollama_manage", OllamaManageRequest, manage.ActionResult, writes(destructive=True, idempotent=False),
             long=True),  # pull takes minutes; copy, delete and unload answer inline
    ToolSpec(verbs.ollama_probe, "ollama_probe", OllamaProbeRequest, ProbeResult, READ_ONLY),
    ToolSpec(verbs.ollama_modelfile, "ollama_modelfile", ModelfileRequest, manage.ModelfileResult, READ_ONLY),
    ToolSpec(verbs.ollama_check_modelfile, "ollama_check_modelfile", CheckModelfileRequest, manage.ModelfileCheck, READ_ONLY),
]
