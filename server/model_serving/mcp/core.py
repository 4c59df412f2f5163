"""Core MCP tools: inspect, export, quantize, serve, register, status, deploy, clean.

Each tool is one row of TOOLS: the verb function both faces call (verbs.py), its input model
(limits.py), its result model, hints and a one-line summary. Long steps run as jobs (ToolSpec.long).
"""

from __future__ import annotations

from mcp.types import ToolAnnotations

from model_serving import verbs
from model_serving.checkpoint.export import ExportResult
from model_serving.checkpoint.inspect import CheckpointInfo, GGUFInfo
from model_serving.checkpoint.lora import MergeResult
from model_serving.deploy.context import DeployResult
from model_serving.mcp.runtime import READ_ONLY, ToolSpec, writes
from model_serving.publish.outcome import PublishResult
from model_serving.quantize.quantizer import QuantizeResult
from model_serving.requests import (
    CleanRequest,
    DeployRequest,
    ExportRequest,
    GatewayRequest,
    InspectRequest,
    MergeRequest,
    NameRequest,
    NoInput,
    PublishRequest,
    QuantizeRequest,
    RegisterRequest,
    ServeStartRequest,
)
from model_serving.serve.embedded.engine import ServedModel
from model_serving.serve.gateway.router import Gateway
from model_serving.serve.metrics import MetricsView, ModelMetrics
from model_serving.serve.register import RegisterResult
from model_serving.serve.status import ServingStatus
from model_serving.util.paths import CleanResult
from model_serving.util.units import human_size


def _deploy_summary(r: DeployResult) -> str:
    if r.planned_only:
        return f"Plan for {r.name} on {r.target}: " + ", ".join(f"{s.step} {s.action}" for s in r.plan)
    verdicts = ", ".join(f"{v.get('target')} {v.get('state')}" for v in r.verdicts)
    return f"{r.name} serves on {r.target} at {r.endpoint}; answer {r.answer!r}; {verdicts or 'no bench'}; {r.total_seconds:.0f} s."



def _metrics_line(m: ModelMetrics) -> str:
    if not m.available:
        return f"{m.name}: {m.reason}"
    p95 = f", TTFT p95 {m.ttft.p95_s * 1000:.0f} ms" if m.ttft and m.ttft.p95_s is not None else ""
    rate = f", {m.generation_tok_s:.1f} gen tok/s" if m.generation_tok_s is not None else ""
    return f"{m.name} ({m.engine}): {m.requests_running or 0:g} running, {m.requests_waiting or 0:g} waiting{p95}{rate}"

TOOLS = [
    ToolSpec(verbs.inspect_model, "inspect_model", InspectRequest, (CheckpointInfo, GGUFInfo), READ_ONLY,
             lambda r: f"{r.kind} {getattr(r, 'architecture', None) or ','.join(getattr(r, 'architectures', []))}: {r.parameter_count or '?'} parameters"
                       + (f", needs {human_size(r.memory.total_bytes)} at ctx {r.memory.ctx_size}" if r.memory else "")
                       + (f"; {len(r.warnings)} warning(s)" if r.warnings else "")),
    ToolSpec(verbs.export_gguf, "export_gguf", ExportRequest, ExportResult, writes(), long=True,
             summary=lambda r: f"{'reused' if r.skipped else 'wrote'} {r.output_path} ({r.file_type}, {human_size(r.size_bytes)})"),
    ToolSpec(verbs.merge_adapter, "merge_adapter", MergeRequest, MergeResult, writes(), long=True,
             summary=lambda r: f"merged into {r.output_path} ({r.dtype}); logit check {'passed' if r.verification.passed else 'FAILED'}"),
    ToolSpec(verbs.quantize_gguf, "quantize_gguf", QuantizeRequest, QuantizeResult, writes(), long=True,
             summary=lambda r: f"{'reused' if r.skipped else 'wrote'} {r.output_path} ({r.qtype}, {r.bits_per_weight:.2f} bpw); quality {r.verdict}"),
    ToolSpec(verbs.serve_start, "serve_start", ServeStartRequest, ServedModel, writes(idempotent=False),
             lambda r: f"{r.name} serves at {r.base_url}/v1/chat/completions"
                       + (f" ({len(r.replicas)} replicas behind vllm-router, {r.router})" if r.replicas else "")
                       + (f"; adapters by model name: {', '.join(a.name for a in r.adapters)}" if r.adapters else "")),
    ToolSpec(verbs.serve_stop, "serve_stop", NameRequest, ServedModel, writes(destructive=True), lambda r: f"stopped {r.name}"),
    ToolSpec(verbs.register_model, "register_model", RegisterRequest, RegisterResult, writes(destructive=True, idempotent=False), long=True,
             summary=lambda r: f"{r.name} on {r.target} at {r.endpoint}; probe {'passed' if r.probe.ok else 'FAILED'}"),
    ToolSpec(verbs.serving_status, "serving_status", NoInput, ServingStatus, READ_ONLY,
             lambda r: f"embedded: {', '.join(f'{e.model.name} {e.model.state}' for e in r.engine) or 'none'}; Ollama at {r.ollama.host} "
                       + (f"{r.ollama.version}: {len(r.ollama.models)} model(s), {len(r.ollama.running)} loaded" if r.ollama.reachable else "not reachable")
                       + (f"; gateway {r.gateway.base_url}/v1: " + ", ".join(f"{m.name} {m.state}" for m in r.gateway.models) if r.gateway and r.gateway.running else "")),
    ToolSpec(verbs.serving_metrics, "serving_metrics", NoInput, MetricsView, READ_ONLY,
             lambda r: "; ".join(_metrics_line(m) for m in r.models) or "no models served"),
    ToolSpec(verbs.deploy_model, "deploy_model", DeployRequest, DeployResult, writes(destructive=True, idempotent=False), long=True,
             summary=_deploy_summary),
]



TOOLS.append(ToolSpec(verbs.serve_gateway, "serve_gateway", GatewayRequest, Gateway, ToolAnnotations(),  # the spec's defaults
                      lambda r: f"gateway {r.base_url or 'not running'}: " + ", ".join(f"{m.name} {m.state}" for m in r.models)))  # issue 15
TOOLS.append(ToolSpec(verbs.clean_partials, "clean_partials", CleanRequest, CleanResult, writes(destructive=True), lambda r: r.summary))
TOOLS.append(ToolSpec(verbs.publish_model, "publish_model", PublishRequest, PublishResult, writes(idempotent=False), long=True,
                      summary=lambda r: r.summary))  # publish (issue 12)
