"""`plan-production`: size a model for a GPU and write what a cluster runs, all files or none.

The bundle is written into a temporary folder beside the output and renamed into place at the end,
so a failure (or a cancelled call) never leaves a half bundle under the output name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from model_serving.cluster import k8s, monitoring
from model_serving.cluster.engines import (
    LLAMACPP_IMAGE,
    PORT,
    VLLM_IMAGE,
    LlamaCppSizing,
    ServerRuntime,
    check_lora,
    choose_engine,
    llamacpp_argv,
    size_llamacpp,
    vllm_argv,
)
from model_serving.cluster.gpus import GpuSpec, resolve_gpu
from model_serving.cluster.helm import production_stack_values
from model_serving.cluster.kserve import llm_inference_service
from model_serving.cluster.shape import ModelShape, read_shape
from model_serving.cluster.sizing import Sizing, size_model
from model_serving.cluster.spec import BundleSpec
from model_serving.errors import InputError
from model_serving.requests import HUB_REPO_PATTERN, PlanProductionRequest
from model_serving.settings import Settings
from model_serving.util.paths import confine, partial_path

MANIFESTS = "manifests"
ADAPTER_CACHE_BYTES = 1 << 30  # room per LoRA adapter in the cache volume (most are tens to hundreds of MB)
HEADERS = {
    "deployment.yaml": "The engine, its GPUs and probes on /health. startupProbe allows {budget} s (twice the estimated load).",
    "service.yaml": "ClusterIP on port 80; put your ingress or gateway in front of it.",
    "pvc.yaml": "The model cache, shared by every replica (ReadWriteMany). Without RWX storage: ReadWriteOnce and maxReplicaCount 1.",
    "scaledobject.yaml": "KEDA scales on the engine's queue. minReplicaCount 1: scale-to-zero is off because a cold start takes "
                         "about {budget} s, which the first request after a quiet spell would wait out.",
    "podmonitor.yaml": "prometheus-operator scrapes /metrics of every pod of this bundle.",
    "kserve-llminferenceservice.yaml": "For a cluster with KServe (v0.16+, Gateway API): kubectl apply this instead of manifests/deployment.yaml.",
    "production-stack-values.yaml": "Values for the vLLM production-stack chart: helm install with these instead of manifests/deployment.yaml.",
    "prometheusrule.yaml": "Alerts on queue depth (and TTFT p95 where the engine exports its histogram). The thresholds are examples.",
}


class Bundle(BaseModel):
    output: str
    name: str
    engine: ServerRuntime
    engine_why: str
    model_id: str
    image: str
    gpu: str
    gpus_per_replica: int
    sizing: Sizing | None = None
    llamacpp: LlamaCppSizing | None = None
    argv: list[str]
    startup_budget_s: int
    files: list[str]
    notes: list[str] = []


def _model_id(req: PlanProductionRequest, shape: ModelShape, engine: ServerRuntime) -> str:
    """The Hub repo the pods pull: the checkpoint for vLLM, a GGUF repo[:QUANT] for llama.cpp."""
    if engine == "llamacpp":
        if not req.model_id:
            raise InputError("On this node the bundle runs llama.cpp, which pulls a GGUF from the Hub.",
                             "Pass --model-id owner/repo-GGUF[:Q4_K_M] (`model-serving publish` uploads yours).")
        return req.model_id
    if req.model_id and ":" in req.model_id:
        raise InputError(f"{req.model_id} names a GGUF type; vLLM serves the checkpoint's own repo.", "Pass --model-id owner/name without ':TYPE'.")
    if req.model_id:
        return req.model_id
    if shape.name_or_path and re.match(HUB_REPO_PATTERN, shape.name_or_path):
        return shape.name_or_path
    raise InputError("The bundle needs the Hub repo the pods download; the config does not name one.",
                     "Pass --model-id owner/name (e.g. meta-llama/Llama-3.1-8B-Instruct).")


def _k8s_name(model_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", model_id.partition(":")[0].rpartition("/")[2].lower()).strip("-")
    return name[:40].rstrip("-") or "model"


def _vllm(req: PlanProductionRequest, shape: ModelShape, gpu: GpuSpec, model_id: str, name: str) -> tuple[BundleSpec, Sizing]:
    lora = [] if req.lora is None else check_lora(req.lora)
    sizing = size_model(shape, gpu, max_model_len=req.max_model_len, target_concurrency=req.target_concurrency, max_loras=len(lora))
    argv = vllm_argv(model_id, name, sizing, lora)
    # Host memory: vLLM streams the weights to the GPUs through the page cache; half their size (16 GiB at
    # least) covers the loader, the tokenizer and the API server.
    spec = BundleSpec(name=name, engine="vllm", image=VLLM_IMAGE, command=argv[:2], args=argv[2:], port=PORT["vllm"],
                      gpus=sizing.tensor_parallel_size, memory_request_bytes=max(16 << 30, shape.weights_bytes // 2),
                      cache_bytes=shape.weights_bytes + len(lora) * ADAPTER_CACHE_BYTES, load_seconds=sizing.load_seconds,
                      downloads=[model_id, *(item.partition("=")[2] for item in lora)])
    if sizing.tensor_parallel_size > 1:
        spec.notes.append(f"Each replica needs {sizing.tensor_parallel_size} GPUs on one node: tensor parallelism runs inside the pod.")
    spec.notes.append("The first pod downloads the weights into the cache volume (init container), outside the start-up budget.")
    return spec, sizing


def _llamacpp(req: PlanProductionRequest, shape: ModelShape, gpu: GpuSpec, gguf: str, name: str) -> tuple[BundleSpec, LlamaCppSizing]:
    if req.lora is not None:
        raise InputError("LoRA adapters in the bundle are served by vLLM only.", "Choose a datacenter GPU, or merge the adapter first (`model-serving merge`).")
    s = size_llamacpp(shape, gpu, gguf, max_model_len=req.max_model_len, target_concurrency=req.target_concurrency,
                      gpu_memory_utilization=0.9)
    image = LLAMACPP_IMAGE["cpu" if gpu.kind == "cpu" else "gpu"]
    # On a GPU the weights live in GPU memory; the pod's own memory is what the host side needs.
    host = s.memory.total_bytes if gpu.kind == "cpu" else s.memory.total_bytes // 4
    spec = BundleSpec(name=name, engine="llamacpp", image=image, command=[], args=llamacpp_argv(gguf, name, s, gpu),
                      port=PORT["llamacpp"], gpus=0 if gpu.kind == "cpu" else 1, memory_request_bytes=max(2 << 30, host),
                      cache_bytes=s.memory.weights_bytes, load_seconds=s.load_seconds, max_replicas=2)
    spec.notes += ["llama.cpp downloads the GGUF itself on first start; the start-up budget includes it at 100 MB/s.",
                   "llama.cpp exports no TTFT histogram: the rule alerts on its queue only, and the dashboard shows no latency panels."]
    return spec, s


def _documents(spec: BundleSpec) -> dict[str, Any]:
    """The Kubernetes objects, in their own folder so that `kubectl apply -f DIR/manifests` takes them all and nothing else."""
    docs = {"deployment.yaml": k8s.deployment(spec), "service.yaml": k8s.service(spec), "pvc.yaml": k8s.pvc(spec),
            "scaledobject.yaml": monitoring.scaled_object(spec), "podmonitor.yaml": monitoring.pod_monitor(spec),
            "prometheusrule.yaml": monitoring.prometheus_rule(spec)}
    return {f"{MANIFESTS}/{name}": doc for name, doc in docs.items()}


def _render(files: dict[str, Any], spec: BundleSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, doc in files.items():
        if name.endswith(".json"):
            out[name] = json.dumps(doc, indent=2) + "\n"
            continue
        header = HEADERS.get(name.rpartition("/")[2], "").format(budget=spec.startup_budget_s)
        comment = "".join(f"# {line}\n" for line in [header] if line)
        out[name] = comment + yaml.safe_dump(doc, sort_keys=False, width=200)
    return out


def _write(output: Path, texts: dict[str, str]) -> None:
    if output.exists():
        raise InputError(f"{output} already exists.", "Choose a new folder for the bundle (or remove the old one).")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = partial_path(output, folder=True)  # named for this writer: `clean` removes it if the writer is killed
    try:
        (staging / MANIFESTS).mkdir()
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        os.rename(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def plan_production(settings: Settings, req: PlanProductionRequest) -> Bundle:
    source = confine(req.source, settings.roots, what="model")
    output = confine(req.output, settings.roots, must_exist=False, what="output folder")
    shape, gpu = read_shape(source), resolve_gpu(req.gpu, req.gpu_memory_gb)
    engine, why = choose_engine(gpu)
    model_id = _model_id(req, shape, engine)
    name = _k8s_name(model_id)
    sizing = llama = None
    if engine == "vllm":
        spec, sizing = _vllm(req, shape, gpu, model_id, name)
    else:
        spec, llama = _llamacpp(req, shape, gpu, model_id, name)
    files: dict[str, Any] = _documents(spec)
    files["grafana-dashboard.json"] = monitoring.dashboard(spec)
    argv = spec.command + spec.args if engine == "vllm" else ["llama-server", *spec.args]
    files["vllm-args.json" if engine == "vllm" else "llama-server-args.json"] = argv
    if sizing is not None:  # both run vLLM only; the user applies one of them instead of manifests/
        files["production-stack-values.yaml"] = production_stack_values(spec, sizing, model_id, req.lora or [])
        files["kserve-llminferenceservice.yaml"] = llm_inference_service(spec, sizing, model_id, req.lora or [])
    plan = Bundle(output=str(output), name=name, engine=engine, engine_why=why, model_id=model_id, image=spec.image,
                          gpu=gpu.name, gpus_per_replica=spec.gpus, sizing=sizing, llamacpp=llama, argv=argv,
                          startup_budget_s=spec.startup_budget_s, files=sorted([*files, "plan.json"]), notes=spec.notes)
    files["plan.json"] = plan.model_dump(mode="json")
    _write(output, _render(files, spec))
    return plan
