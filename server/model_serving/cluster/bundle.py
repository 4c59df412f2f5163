"""`plan-production`: size a model for a GPU and write what a cluster runs, all files or none.

The bundle is written into a temporary folder beside the output and renamed into place at the end,
so a failure (or a cancelled call) never leaves a half bundle under the output name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from model_serving.cluster import k8s, monitoring
from model_serving.cluster.canary import check_route, http_route
from model_serving.cluster.engines import (
    DEFAULT_GGUF_QUANT,
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
from model_serving.cluster.formats import FORMATS, Choice, check_gpu, choose, vllm_args, weights_bytes
from model_serving.cluster.gpus import GpuSpec, resolve_gpu
from model_serving.cluster.helm import production_stack_values
from model_serving.cluster.kserve import llm_inference_service
from model_serving.cluster.shape import ModelShape, read_shape
from model_serving.cluster.sizing import Sizing, load_seconds, size_model
from model_serving.cluster.spec import BundleSpec
from model_serving.cluster.throughput import ReplicaThroughput, estimate, measured, priced
from model_serving.errors import InputError
from model_serving.requests import HUB_REPO_PATTERN, PlanProductionRequest
from model_serving.settings import Settings
from model_serving.util.paths import confine, partial_path

MANIFESTS = "manifests"
CANARY_PREFIX = "canary-"
MAX_CANARY_BASE = 39  # 39 + len("-canary") + 12 = 58  # the canary's files beside the live version's, in the same folders
# A version's (Kubernetes name, served model name); None: from the repo it pulls. A canary serves the live one's name.
Names = tuple[str | None, str | None]
# What the names of quantized repos say (…-AWQ, …-GPTQ-Int4, …-quantized.w4a16, …-W8A8): a name without it may be the 16-bit repo.
QUANTIZED_NAME = re.compile(r"awq|gptq|w4a16|w8a8|int4|int8|quantized|compressed", re.IGNORECASE)
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
    "httproute.yaml": "Gateway API v1: the weights split requests between the live version's Service and the canary's. parentRefs "
                      "names the Gateway inference-gateway: set yours. Promote: weights 0/100; roll back: 100/0. Long generations may "
                      "need the rule's timeouts.request (gateways default to seconds).",
}


class CanaryPlan(BaseModel):
    name: str
    model_id: str
    share: int
    format: str
    format_why: str
    gpus_per_replica: int
    sizing: Sizing | None = None
    llamacpp: LlamaCppSizing | None = None
    argv: list[str]


class Bundle(BaseModel):
    output: str
    name: str
    engine: ServerRuntime
    engine_why: str
    model_id: str
    image: str
    gpu: str
    gpus_per_replica: int
    format: str
    format_why: str
    sizing: Sizing | None = None
    llamacpp: LlamaCppSizing | None = None
    throughput: ReplicaThroughput | None = None
    canary: CanaryPlan | None = None
    argv: list[str]
    startup_budget_s: int
    files: list[str]
    notes: list[str] = []


@dataclass
class Version:
    """One version of the model in the bundle: its own Deployment, Service and sizing."""

    spec: BundleSpec
    model_id: str
    format: str
    format_why: str
    argv: list[str]
    sizing: Sizing | None = None
    llamacpp: LlamaCppSizing | None = None
    quantization: list[str] = field(default_factory=list)  # vLLM's --quantization argument, where it needs one


def _engine(req: PlanProductionRequest, shape: ModelShape, gpu: GpuSpec) -> tuple[ServerRuntime, str]:
    """The GPU's engine, except that a vLLM format (asked for, or the checkpoint's own) takes a consumer GPU to vLLM."""
    engine, why = choose_engine(gpu)
    wanted = f"--format {req.format}" if req.format != "auto" else "a compressed checkpoint" if shape.quantization else ""
    if engine == "vllm" or not wanted:
        return engine, why
    if gpu.kind == "cpu":
        raise InputError(f"A CPU node's bundle serves a GGUF on llama.cpp; {wanted} is for vLLM on a GPU.",
                         "Leave --format out and pass --model-id owner/repo-GGUF[:Q4_K_M], or name a GPU with --gpu.")
    return "vllm", f"{gpu.name} with {wanted}: vLLM serves that weight format on the card"


def _model_id(given: str | None, shape: ModelShape, engine: ServerRuntime, choice: Choice | None) -> str:
    """The Hub repo the pods pull: the checkpoint for vLLM, a GGUF repo[:QUANT] for llama.cpp."""
    if engine == "llamacpp":
        if not given:
            raise InputError("On this node the bundle runs llama.cpp, which pulls a GGUF from the Hub.",
                             "Pass --model-id owner/repo-GGUF[:Q4_K_M] (`model-serving publish` uploads yours).")
        return given
    if given and ":" in given:
        raise InputError(f"{given} names a GGUF type; vLLM serves the checkpoint's own repo.", "Pass --model-id owner/name without ':TYPE'.")
    if choice and not choice.detected and not FORMATS[choice.format].from_16bit and (not given or given == shape.name_or_path):
        label = FORMATS[choice.format].label
        raise InputError(f"The plan serves {label} ({choice.why}), but the checkpoint is 16-bit and vLLM makes {label} only from a "
                         "checkpoint quantized beforehand; the pods need that checkpoint's repo.",
                         f"Make it (`model-serving quantize --format {choice.format} SOURCE -o DIR`), publish DIR and pass its repo as "
                         "--model-id (or plan DIR itself); or choose --format fp8 (vLLM quantizes at load) or --format bf16.")
    if given:
        return given
    if shape.name_or_path and re.match(HUB_REPO_PATTERN, shape.name_or_path):
        return shape.name_or_path
    raise InputError("The bundle needs the Hub repo the pods download; the config does not name one.",
                     "Pass --model-id owner/name (e.g. meta-llama/Llama-3.1-8B-Instruct).")


def _k8s_name(model_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", model_id.partition(":")[0].rpartition("/")[2].lower()).strip("-")
    return name[:40].rstrip("-") or "model"


def _names(names: Names, model_id: str) -> tuple[str, str]:
    """(the Kubernetes name, the served model name): the live version's both come from the repo it pulls."""
    name = names[0] or _k8s_name(model_id)
    return name, names[1] or name


def _sized(req: PlanProductionRequest, shape: ModelShape, gpu: GpuSpec, choice: Choice, loras: int) -> tuple[Choice, Sizing]:
    """Sizing at the format's bytes per weight; `auto`'s INT8 gives way to W4A16 where INT8 does not fit."""
    fmt = FORMATS[choice.format]
    served = shape.model_copy(update={"weights_bytes": weights_bytes(shape, choice.format, choice.detected)})
    how = f"{fmt.label} ({'as the checkpoint holds them' if choice.detected else fmt.bits_rule})"
    try:
        return choice, size_model(served, gpu, max_model_len=req.max_model_len, target_concurrency=req.target_concurrency,
                                  max_loras=loras, served_as=how)
    except InputError as exc:
        if not choice.fallback:
            raise
        why = f"{choice.why}; but {FORMATS[choice.format].label} does not fit ({exc.cause}), so {FORMATS[choice.fallback].label}"
        return _sized(req, shape, gpu, Choice(choice.fallback, why, False), loras)


def _vllm(req: PlanProductionRequest, shape: ModelShape, gpu: GpuSpec, given_id: str | None, names: Names) -> Version:
    lora = [] if req.lora is None else check_lora(req.lora)
    choice, sizing = _sized(req, shape, gpu, choose(shape, gpu, req.format), len(lora))
    notes = check_gpu(choice.format, gpu)
    model_id = _model_id(given_id, shape, "vllm", choice)
    name, served = _names(names, model_id)
    fmt = FORMATS[choice.format]
    download = shape.weights_bytes if fmt.from_16bit and not choice.detected else sizing.weights_bytes
    sizing = sizing.model_copy(update={"load_seconds": load_seconds(download)})  # FP8 at load reads the 16-bit files
    quantization = vllm_args(choice.format, choice.detected)
    argv = vllm_argv(model_id, served, sizing, lora, quantization)
    # Host memory: vLLM streams the weights to the GPUs through the page cache; half their size (16 GiB at
    # least) covers the loader, the tokenizer and the API server.
    spec = BundleSpec(name=name, engine="vllm", image=VLLM_IMAGE, command=argv[:2], args=argv[2:], port=PORT["vllm"],
                      gpus=sizing.tensor_parallel_size, memory_request_bytes=max(16 << 30, download // 2),
                      cache_bytes=download + len(lora) * ADAPTER_CACHE_BYTES, load_seconds=sizing.load_seconds,
                      downloads=[model_id, *(item.partition("=")[2] for item in lora)], notes=notes)
    if sizing.tensor_parallel_size > 1:
        spec.notes.append(f"Each replica needs {sizing.tensor_parallel_size} GPUs on one node: tensor parallelism runs inside the pod.")
    spec.notes.append("The first pod downloads the weights into the cache volume (init container), outside the start-up budget.")
    if fmt.from_16bit and not choice.detected and choice.format != "bf16":
        spec.notes.append(f"vLLM quantizes the 16-bit weights of {model_id} to {fmt.label} as it loads them (--quantization fp8).")
    elif not choice.detected and not fmt.from_16bit:
        spec.notes.append(f"The pods pull {model_id}: it must hold the {fmt.label} checkpoint (`model-serving quantize --format {choice.format}`).")
        if not QUANTIZED_NAME.search(model_id):
            spec.notes.append(f"{model_id}'s name does not say it is quantized: if it is the 16-bit repo, vLLM loads 16-bit weights this "
                              "sizing did not budget for (plan it with --format bf16 or fp8 instead).")
    return Version(spec, model_id, choice.format, choice.why, argv, sizing=sizing, quantization=quantization)


def _llamacpp(req: PlanProductionRequest, shape: ModelShape, gpu: GpuSpec, given_id: str | None, names: Names) -> Version:
    if req.lora is not None:
        raise InputError("LoRA adapters in the bundle are served by vLLM only.", "Choose a datacenter GPU, or merge the adapter first (`model-serving merge`).")
    gguf = _model_id(given_id, shape, "llamacpp", None)
    name, served = _names(names, gguf)
    s = size_llamacpp(shape, gpu, gguf, max_model_len=req.max_model_len, target_concurrency=req.target_concurrency,
                      gpu_memory_utilization=0.9)
    image = LLAMACPP_IMAGE["cpu" if gpu.kind == "cpu" else "gpu"]
    # On a GPU the weights live in GPU memory; the pod's own memory is what the host side needs.
    host = s.memory.total_bytes if gpu.kind == "cpu" else s.memory.total_bytes // 4
    args = llamacpp_argv(gguf, served, s, gpu)
    spec = BundleSpec(name=name, engine="llamacpp", image=image, command=[], args=args,
                      port=PORT["llamacpp"], gpus=0 if gpu.kind == "cpu" else 1, memory_request_bytes=max(2 << 30, host),
                      cache_bytes=s.memory.weights_bytes, load_seconds=s.load_seconds, max_replicas=2)
    spec.notes += ["llama.cpp downloads the GGUF itself on first start; the start-up budget includes it at 100 MB/s.",
                   "llama.cpp exports no TTFT histogram: the rule alerts on its queue only, and the dashboard shows no latency panels."]
    why = f"llama.cpp serves a GGUF; {s.quant} is the --model-id's type (default {DEFAULT_GGUF_QUANT}, 4-bit, for a memory-bound node)"
    return Version(spec, gguf, f"gguf {s.quant}", why, ["llama-server", *args], llamacpp=s)


def _documents(spec: BundleSpec, prefix: str = "") -> dict[str, Any]:
    """The Kubernetes objects, in their own folder so that `kubectl apply -f DIR/manifests` takes them all and nothing else."""
    docs = {"deployment.yaml": k8s.deployment(spec), "service.yaml": k8s.service(spec), "pvc.yaml": k8s.pvc(spec),
            "scaledobject.yaml": monitoring.scaled_object(spec), "podmonitor.yaml": monitoring.pod_monitor(spec),
            "prometheusrule.yaml": monitoring.prometheus_rule(spec)}
    return {f"{MANIFESTS}/{prefix}{name}": doc for name, doc in docs.items()}


def _render(files: dict[str, Any], specs: dict[str, BundleSpec]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, doc in files.items():
        if name.endswith(".json"):
            out[name] = json.dumps(doc, indent=2) + "\n"
            continue
        base = name.rpartition("/")[2]
        spec = specs[CANARY_PREFIX if base.startswith(CANARY_PREFIX) else ""]
        header = HEADERS.get(base.removeprefix(CANARY_PREFIX), "").format(budget=spec.startup_budget_s)
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


def _version(settings: Settings, req: PlanProductionRequest, source: str, given_id: str | None, engine: ServerRuntime,
             gpu: GpuSpec, names: Names) -> Version:
    """One version sized and specified."""
    shape = read_shape(confine(source, settings.roots, what="model"))
    build = _vllm if engine == "vllm" else _llamacpp
    return build(req, shape, gpu, given_id, names)


def _canary(settings: Settings, req: PlanProductionRequest, live: Version, engine: ServerRuntime, gpu: GpuSpec) -> tuple[Version, dict[str, Any]]:
    """The second version beside the live one, and the HTTPRoute that weighs them (checked before anything is written)."""
    assert req.canary is not None
    if req.lora is not None:
        raise InputError("A weighted canary splits requests by share, so adapter requests would reach a version without the adapters.",
                         "Plan the canary without --lora, or merge the adapters into each version first.")
    # Kubernetes cuts a pod's generated name at 58 characters: NAME-canary-<hash of up to 10>- must fit, or the pods lose
    # the dashes the PromQL selector matches on
    name = live.spec.name[:MAX_CANARY_BASE].rstrip("-") + "-canary"
    version = _version(settings, req, req.canary, req.canary_model_id, engine, gpu, (name, live.spec.name))
    files = _documents(version.spec, CANARY_PREFIX)
    weights = {live.spec.name: 100 - req.canary_share, version.spec.name: req.canary_share}
    route = http_route(live.spec.name, live.spec.labels, weights)
    services = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in (k8s.service(live.spec), k8s.service(version.spec))}
    check_route(route, services)
    files[f"{MANIFESTS}/httproute.yaml"] = route
    files[f"{CANARY_PREFIX}grafana-dashboard.json"] = monitoring.dashboard(version.spec)
    files[f"{CANARY_PREFIX}{'vllm' if engine == 'vllm' else 'llama-server'}-args.json"] = version.argv
    return version, files


def _throughput(settings: Settings, req: PlanProductionRequest, live: Version, gpu: GpuSpec) -> ReplicaThroughput | None:
    if req.bench:
        t: ReplicaThroughput | None = measured(confine(req.bench, settings.roots, what="bench result"), live.format, gpu, max(1, live.spec.gpus))
    else:
        t = estimate(live.sizing, gpu, live.format) if live.sizing else None
    return priced(t, req.gpu_hourly) if t else None


def plan_production(settings: Settings, req: PlanProductionRequest) -> Bundle:
    output = confine(req.output, settings.roots, must_exist=False, what="output folder")
    if output.exists():  # before any work; _write checks again as it renames
        raise InputError(f"{output} already exists.", "Choose a new folder for the bundle (or remove the old one).")
    gpu = resolve_gpu(req.gpu, req.gpu_memory_gb)
    engine, why = _engine(req, read_shape(confine(req.source, settings.roots, what="model")), gpu)
    live = _version(settings, req, req.source, req.model_id, engine, gpu, (None, None))
    spec = live.spec
    specs = {"": spec}
    files: dict[str, Any] = _documents(spec)
    files["grafana-dashboard.json"] = monitoring.dashboard(spec)
    files["vllm-args.json" if engine == "vllm" else "llama-server-args.json"] = live.argv
    if live.sizing is not None:  # both run vLLM only; the user applies one of them instead of manifests/
        files["production-stack-values.yaml"] = production_stack_values(spec, live.sizing, live.model_id, req.lora or [], live.quantization)
        files["kserve-llminferenceservice.yaml"] = llm_inference_service(spec, live.sizing, live.model_id, req.lora or [], live.quantization)
    canary = None
    if req.canary:
        version, more = _canary(settings, req, live, engine, gpu)
        files.update(more)
        specs[CANARY_PREFIX] = version.spec
        canary = CanaryPlan(name=version.spec.name, model_id=version.model_id, share=req.canary_share, format=version.format,
                            format_why=version.format_why, gpus_per_replica=version.spec.gpus, sizing=version.sizing,
                            llamacpp=version.llamacpp, argv=version.argv)
        spec.notes += [f"Canary: {req.canary_share}% of requests go to {version.spec.name} through manifests/httproute.yaml (Gateway API); "
                       f"both serve the model name {spec.name}. Promote: weights 0/100; roll back: 100/0, then delete the canary-* objects.",
                       *[f"Canary: {n}" for n in version.spec.notes if n not in spec.notes]]
        if live.sizing is not None:
            spec.notes.append("production-stack-values.yaml and kserve-llminferenceservice.yaml describe the live version only; "
                              "the weighted split is in manifests/.")
    plan = Bundle(output=str(output), name=spec.name, engine=engine, engine_why=why, model_id=live.model_id, image=spec.image,
                  gpu=gpu.name, gpus_per_replica=spec.gpus, format=live.format, format_why=live.format_why, sizing=live.sizing,
                  llamacpp=live.llamacpp, throughput=_throughput(settings, req, live, gpu), canary=canary, argv=live.argv,
                  startup_budget_s=spec.startup_budget_s, files=sorted([*files, "plan.json"]), notes=spec.notes)
    files["plan.json"] = plan.model_dump(mode="json")
    _write(output, _render(files, specs))
    return plan
