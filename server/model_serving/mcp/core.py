"""Core MCP tools: inspect, export, quantize, serve, register, status, deploy, clean.

Each tool is one row of TOOLS: the verb function both faces call (verbs.py), its input model
(requests.py), its result model and hints; the result renders itself (results.py). Long steps run as
jobs (ToolSpec.long).
"""

from __future__ import annotations

from mcp.types import ToolAnnotations

from model_serving import verbs
from model_serving.checkpoint.export import ExportResult
from model_serving.checkpoint.inspect import CheckpointInfo, GGUFInfo
from model_serving.checkpoint.lora import MergeResult
from model_serving.checkpoint.mergekit_merge import MergekitResult
from model_serving.deploy.context import DeployResult
from model_serving.mcp.runtime import READ_ONLY, ToolSpec, writes
from model_serving.publish.outcome import PublishResult
from model_serving.quantize.compress import CompressResult
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
from model_serving.serve.gateway.llama_router import Gateway
from model_serving.serve.metrics import MetricsView
from model_serving.serve.register import RegisterResult
from model_serving.serve.status import ServingStatus
from model_serving.util.paths import CleanResult

TOOLS = [
    ToolSpec(verbs.inspect_model, "inspect_model", InspectRequest, (CheckpointInfo, GGUFInfo), READ_ONLY),
    ToolSpec(verbs.export_gguf, "export_gguf", ExportRequest, ExportResult, writes(), long=True),
    ToolSpec(verbs.merge_adapter, "merge_adapter", MergeRequest, (MergeResult, MergekitResult), writes(), long=True),
    ToolSpec(verbs.quantize_gguf, "quantize_gguf", QuantizeRequest, (QuantizeResult, CompressResult), writes(), long=True),
    ToolSpec(verbs.serve_start, "serve_start", ServeStartRequest, ServedModel, writes(idempotent=False)),
    ToolSpec(verbs.serve_stop, "serve_stop", NameRequest, ServedModel, writes(destructive=True)),
    ToolSpec(verbs.register_model, "register_model", RegisterRequest, RegisterResult, writes(destructive=True, idempotent=False), long=True),
    ToolSpec(verbs.serving_status, "serving_status", NoInput, ServingStatus, READ_ONLY),
    ToolSpec(verbs.serving_metrics, "serving_metrics", NoInput, MetricsView, READ_ONLY),
    ToolSpec(verbs.deploy_model, "deploy_model", DeployRequest, DeployResult, writes(destructive=True, idempotent=False), long=True),
    ToolSpec(verbs.serve_gateway, "serve_gateway", GatewayRequest, Gateway, ToolAnnotations()),  # the spec's defaults (issue 15)
    ToolSpec(verbs.clean_partials, "clean_partials", CleanRequest, CleanResult, writes(destructive=True)),
    ToolSpec(verbs.publish_model, "publish_model", PublishRequest, PublishResult, writes(idempotent=False), long=True),  # publish (issue 12)
]
