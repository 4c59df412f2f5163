"""The core Kubernetes objects: a Deployment with GPUs, probes and the model cache, its Service, and the cache's PVC."""

from __future__ import annotations

from typing import Any

from model_serving.cluster.spec import CACHE_MOUNT, PROBE_PERIOD_S, BundleSpec, gib_ceil

# Pulls the weights into the cache before the engine starts, so the start-up probe times a load, not a download.
DOWNLOAD = "import sys\nfrom huggingface_hub import snapshot_download\nfor repo in sys.argv[1:]:\n    snapshot_download(repo)\n"


# vLLM's workers (and NCCL between tensor-parallel GPUs) exchange tensors through shared memory; the
# container runtime's default /dev/shm of 64 MB is too small.
SHM_VOLUME = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
SHM_MOUNT = {"name": "shm", "mountPath": "/dev/shm"}


def _meta(s: BundleSpec, suffix: str = "") -> dict[str, Any]:
    return {"name": s.name + suffix, "labels": dict(s.labels)}


def _probe(s: BundleSpec, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 5}


def _env(s: BundleSpec) -> list[dict[str, Any]]:
    # The token comes from a Secret the user creates (optional: public models need none); never a literal.
    token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}}}
    cache = {"name": "HF_HOME" if s.engine == "vllm" else "LLAMA_CACHE", "value": CACHE_MOUNT}
    return [cache, token]


def _container(s: BundleSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "4", "memory": gib_ceil(s.memory_request_bytes)}}
    resources["limits"] = {"memory": gib_ceil(s.memory_request_bytes)}
    if s.gpus:
        resources["limits"]["nvidia.com/gpu"] = str(s.gpus)
        resources["requests"]["nvidia.com/gpu"] = str(s.gpus)
    container = {"name": s.engine, "image": s.image, "args": list(s.args), "env": _env(s),
                 "ports": [{"name": "http", "containerPort": s.port, "protocol": "TCP"}], "resources": resources,
                 "volumeMounts": [{"name": "model-cache", "mountPath": CACHE_MOUNT}] + ([SHM_MOUNT] if s.engine == "vllm" else []),
                 "startupProbe": _probe(s, PROBE_PERIOD_S, s.startup_failure_threshold),
                 "readinessProbe": _probe(s, 5, 3), "livenessProbe": _probe(s, PROBE_PERIOD_S, 6)}
    if s.command:
        container["command"] = list(s.command)
    return container


def _init(s: BundleSpec) -> list[dict[str, Any]]:
    if not s.downloads:
        return []
    return [{"name": "download", "image": s.image, "command": ["python3", "-c", DOWNLOAD, *s.downloads], "env": _env(s),
             "volumeMounts": [{"name": "model-cache", "mountPath": CACHE_MOUNT}]}]


def deployment(s: BundleSpec) -> dict[str, Any]:
    volumes = [{"name": "model-cache", "persistentVolumeClaim": {"claimName": s.name + "-cache"}}]
    pod: dict[str, Any] = {"containers": [_container(s)], "initContainers": _init(s),
                           "volumes": volumes + ([SHM_VOLUME] if s.engine == "vllm" else []), "terminationGracePeriodSeconds": 60}
    if s.gpus:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if not pod["initContainers"]:
        del pod["initContainers"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(s),
            # no `replicas`: KEDA's autoscaler owns the count, and a re-apply must not reset it
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": s.name}},
                     "template": {"metadata": {"labels": dict(s.labels)}, "spec": pod}}}


def service(s: BundleSpec) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(s),
            "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": s.name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def pvc(s: BundleSpec) -> dict[str, Any]:
    # ReadWriteMany: every replica the autoscaler adds mounts the same cache instead of downloading again
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(s, "-cache"),
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": gib_ceil(int(s.cache_bytes * 1.2))}}}}
