"""What every manifest of one bundle shares: names, image, argv, resources and the start-up budget."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from model_serving.serve.metrics import ENGINES, EngineNames

CACHE_MOUNT = "/models"
PROBE_PERIOD_S = 10
# Kubernetes gives up on a start after failureThreshold x periodSeconds; we allow twice the estimate.
STARTUP_MARGIN = 2.0
# Four requests waiting per replica is a queue the running batch does not absorb: add a replica.
QUEUE_PER_REPLICA = 4
TTFT_P95_ALERT_S = 2.0  # an example objective: edit to your own
PROMETHEUS_ADDRESS = "http://prometheus-operated.monitoring.svc:9090"  # prometheus-operator's default Service


@dataclass
class BundleSpec:
    name: str
    engine: str  # "vllm" | "llamacpp"
    image: str
    command: list[str]
    args: list[str]
    port: int
    gpus: int  # 0 on a CPU node
    memory_request_bytes: int
    cache_bytes: int
    load_seconds: float
    downloads: list[str] = field(default_factory=list)  # Hub repos an init container fetches into the cache
    max_replicas: int = 4
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/component": self.engine}

    @property
    def metrics(self) -> EngineNames:
        return ENGINES[self.engine]

    @property
    def selector(self) -> str:
        """The PromQL label match of this Deployment's pods (prometheus-operator adds `pod` to every sample).

        A Deployment's pods are named NAME-<template hash>-<suffix>: matching exactly those keeps a canary's pods
        (NAME-canary-<hash>-<suffix>) out of the live version's queue and alerts.
        """
        return f'pod=~"{self.name}-[a-z0-9]+-[a-z0-9]+"'

    @property
    def startup_failure_threshold(self) -> int:
        return max(3, math.ceil(STARTUP_MARGIN * self.load_seconds / PROBE_PERIOD_S))

    @property
    def startup_budget_s(self) -> int:
        return self.startup_failure_threshold * PROBE_PERIOD_S


def gib_ceil(n: int) -> str:
    return f"{max(1, math.ceil(n / 2**30))}Gi"
