"""The server's own metrics around a run: its /metrics read before and after, beside the client's numbers.

The after-view's rates and histogram quantiles cover the run (warm-up requests included: the server
cannot tell them apart); a server without /metrics (Ollama) is reported as not available, never a failure.
"""

from __future__ import annotations

from model_serving.bench.schema import BenchConfig, ServerMetrics
from model_serving.serve.metrics import Scrape, fetch, normalise
from model_serving.serve.registry import ServedModel

COUNTERS = ("prompt_tokens_total", "generation_tokens_total", "requests_completed_total")


def snapshot(config: BenchConfig) -> Scrape:
    return fetch(config.base_url, timeout_s=min(5.0, config.timeout_s))


def _endpoint(config: BenchConfig) -> ServedModel:
    # known by its URL only: the engine kind comes from the metric names it exports. model_construct skips validation on
    # purpose (no pid, port or engine); the pydantic plugin types it as the validating constructor, every field required.
    return ServedModel.model_construct(name=config.model, base_url=config.base_url, engine=None, replicas=[], state="running")  # type: ignore[call-arg, arg-type]


def compare(config: BenchConfig, before: Scrape) -> ServerMetrics:
    after = snapshot(config)
    endpoint = _endpoint(config)
    then, now = normalise(endpoint, before), normalise(endpoint, after, before)
    if not (then.available and now.available):
        return ServerMetrics(available=False, reason=f"server metrics not available: {then.reason or now.reason}")
    delta = {key: getattr(now, key) - getattr(then, key) for key in COUNTERS if getattr(now, key) is not None and getattr(then, key) is not None}
    return ServerMetrics(available=True, before=then, after=now, delta=delta)
