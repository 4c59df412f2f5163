"""Values for the vLLM production-stack Helm chart (vllm-project/production-stack, helm/): the same sizing, its keys."""

from __future__ import annotations

from typing import Any

from model_serving.cluster.engines import VLLM_IMAGE
from model_serving.cluster.sizing import Sizing
from model_serving.cluster.spec import PROBE_PERIOD_S, BundleSpec, gib_ceil


def _probe(s: BundleSpec, failures: int) -> dict[str, Any]:
    return {"initialDelaySeconds": 0, "periodSeconds": PROBE_PERIOD_S, "failureThreshold": failures,
            "httpGet": {"path": "/health", "port": s.port}}


def production_stack_values(s: BundleSpec, sizing: Sizing, model_id: str, lora: list[str], quantization: list[str] | None = None) -> dict[str, Any]:
    repository, _, tag = VLLM_IMAGE.partition(":")
    extra = [*(quantization or []), *(["--enable-lora", "--max-lora-rank", "64", "--lora-modules", *lora] if lora else [])]
    model = {"name": s.name, "repository": repository, "tag": tag, "modelURL": model_id, "replicaCount": 1,
             "requestCPU": 4, "requestMemory": gib_ceil(s.memory_request_bytes), "requestGPU": s.gpus,
             "pvcStorage": gib_ceil(int(s.cache_bytes * 1.2)), "pvcAccessMode": ["ReadWriteMany"],
             "enableLoRA": bool(lora),
             "vllmConfig": {"tensorParallelSize": sizing.tensor_parallel_size, "maxModelLen": sizing.max_model_len,
                            "maxNumSeqs": sizing.max_num_seqs, "gpuMemoryUtilization": sizing.gpu_memory_utilization,
                            **({"maxLoras": len(lora)} if lora else {}), "extraArgs": extra},
             "hf_token": {"secretName": "hf-token", "secretKey": "token"}}
    return {"servingEngineSpec": {"modelSpec": [model], "containerPort": s.port,
                                  "startupProbe": _probe(s, s.startup_failure_threshold), "readinessProbe": _probe(s, 3),
                                  "livenessProbe": _probe(s, 6)}}
