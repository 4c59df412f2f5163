"""A KServe `LLMInferenceService` (serving.kserve.io/v1alpha2): the same vLLM sizing, for clusters that run KServe.

KServe's own preset picks the image and probes and downloads the model (its storage initializer
reads `hf://`); the bundle sets what sizing decided: tensor parallelism, GPUs and vLLM's limits.
"""

from __future__ import annotations

from typing import Any

from model_serving.cluster.sizing import LORA_MAX_RANK, Sizing
from model_serving.cluster.spec import BundleSpec


def llm_inference_service(s: BundleSpec, sizing: Sizing, model_id: str, lora: list[str], quantization: list[str] | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"uri": f"hf://{model_id}", "name": s.name}
    if lora:
        adapters = [{"name": name, "uri": f"hf://{repo}"} for name, _, repo in (item.partition("=") for item in lora)]
        model["lora"] = {"adapters": adapters, "maxRank": LORA_MAX_RANK, "maxAdapters": len(lora)}
    extra = " ".join([f"--max-model-len {sizing.max_model_len} --max-num-seqs {sizing.max_num_seqs} --gpu-memory-utilization "
                      f"{sizing.gpu_memory_utilization}", *(quantization or [])])
    gpus = {"nvidia.com/gpu": str(sizing.tensor_parallel_size)}
    container = {"name": "main", "env": [{"name": "VLLM_ADDITIONAL_ARGS", "value": extra},
                                         {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}}}],
                 "resources": {"limits": dict(gpus), "requests": dict(gpus)}}
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService", "metadata": {"name": s.name, "labels": dict(s.labels)},
            "spec": {"model": model, "replicas": 1, "parallelism": {"tensor": sizing.tensor_parallel_size},
                     "router": {"route": {}, "scheduler": {}}, "template": {"containers": [container]}}}
