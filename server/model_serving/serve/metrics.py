"""The engines' own Prometheus metrics (`GET /metrics`), read into one normalised view per model.

llama.cpp exports `llamacpp:*` gauges and counters but no latency histograms or KV-cache gauge (this
version); vLLM exports `vllm:*` with TTFT and end-to-end histograms and KV-cache use. Quantiles come
from the cumulative buckets by linear interpolation inside the bucket that holds the rank, as
Prometheus's `histogram_quantile` does; tokens/s come from the counters of two scrapes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from model_serving.serve.registry import ServedModel, get_model, list_models
from model_serving.settings import Settings

SCRAPE_TIMEOUT_S = 3.0
RATE_INTERVAL_S = 1.0  # the tool scrapes twice this far apart: tokens/s need two readings of the counters
MAX_METRICS_BYTES = 4 << 20  # a /metrics page larger than this is not an engine's
QUANTILE_METHOD = "p50/p95: linear interpolation inside the cumulative histogram bucket holding the rank (as Prometheus histogram_quantile)"


@dataclass(frozen=True)
class EngineNames:
    """Which of an engine's metric names carry each normalised quantity (several names: summed or first found)."""

    running: str
    waiting: str
    prompt_tokens: tuple[str, ...]
    generation_tokens: str
    kv_usage: tuple[str, ...] = ()
    requests: str | None = None
    ttft: str | None = None
    e2e: str | None = None
    missing: tuple[str, ...] = ()


ENGINES = {
    # llama.cpp counts cached prompt tokens apart; the two together are the prompt tokens requests carried
    "llamacpp": EngineNames(
        running="llamacpp:requests_processing", waiting="llamacpp:requests_deferred",
        prompt_tokens=("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total"),
        generation_tokens="llamacpp:tokens_predicted_total", kv_usage=("llamacpp:kv_cache_usage_ratio",),
        missing=("llama.cpp exports no latency histograms: bench measures TTFT and e2e from the client",)),
    # kv_cache_usage_perc since vLLM 0.10 (V1), gpu_cache_usage_perc before; both are fractions 0..1
    "vllm": EngineNames(
        running="vllm:num_requests_running", waiting="vllm:num_requests_waiting", prompt_tokens=("vllm:prompt_tokens_total",),
        generation_tokens="vllm:generation_tokens_total", kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        requests="vllm:request_success_total", ttft="vllm:time_to_first_token_seconds", e2e="vllm:e2e_request_latency_seconds"),
}
KIND_ALIASES = {"embedded": "llamacpp", "replicas": "llamacpp", "llama.cpp": "llamacpp", "llamacpp": "llamacpp", "vllm": "vllm"}


@dataclass
class Scrape:
    """One read of /metrics: every sample summed over its labels except a histogram's `le`."""

    values: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict, repr=False)  # label sets summed into each value
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    at: float = 0.0
    error: str | None = None


class Latency(BaseModel):
    p50_s: float | None
    p95_s: float | None
    mean_s: float | None
    count: int = Field(description="Observations the quantiles are over")
    window: str = Field(description="'since start' or the seconds between the two scrapes")


class ModelMetrics(BaseModel):
    name: str
    engine: str
    base_url: str
    available: bool = Field(description="Whether /metrics was read and understood")
    reason: str | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    requests_completed_total: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    prompt_tok_s: float | None = Field(default=None, description="Between two scrapes")
    generation_tok_s: float | None = Field(default=None, description="Between two scrapes")
    rate_window_s: float | None = Field(default=None, description="Seconds between the two scrapes the rates come from")
    ttft: Latency | None = None
    e2e: Latency | None = None
    kv_cache_usage: float | None = Field(default=None, description="Fraction 0..1 of the KV cache in use")
    notes: list[str] = Field(default_factory=list)


class MetricsView(BaseModel):
    models: list[ModelMetrics]
    interval_s: float | None = Field(default=None, description="Seconds between the two scrapes; None: one scrape, no rates")
    quantile_method: str = QUANTILE_METHOD


def parse(text: str) -> Scrape:
    """Prometheus text format to summed samples; histogram buckets kept by upper bound."""
    scrape = Scrape(at=time.monotonic())
    # the parser renames a counter written without `_total` (llamacpp:n_tokens_max) to NAME_total: keep the names as written
    written = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    for family in text_string_to_metric_families(text):
        for raw in family.samples:
            sample = raw._replace(name=raw.name[:-6]) if raw.name not in written and raw.name[:-6] in written else raw
            if sample.name.endswith("_bucket") and "le" in sample.labels:
                bounds = scrape.buckets.setdefault(sample.name[: -len("_bucket")], {})
                le = float(sample.labels["le"])
                bounds[le] = bounds.get(le, 0.0) + sample.value
            elif not math.isnan(sample.value):
                scrape.values[sample.name] = scrape.values.get(sample.name, 0.0) + sample.value
                scrape.counts[sample.name] = scrape.counts.get(sample.name, 0) + 1
    return scrape


def fetch(base_url: str, *, timeout_s: float = SCRAPE_TIMEOUT_S) -> Scrape:
    """GET {base_url}/metrics; an engine without one, or one that is down, gives a Scrape with the reason."""
    try:
        with httpx.Client(timeout=timeout_s) as client, client.stream("GET", f"{base_url.rstrip('/')}/metrics") as reply:
            if reply.status_code != 200:
                return Scrape(error=f"{base_url}/metrics answered HTTP {reply.status_code}: this server exports no Prometheus metrics")
            body = bytearray()
            for chunk in reply.iter_bytes():
                body += chunk
                if len(body) > MAX_METRICS_BYTES:
                    return Scrape(error=f"{base_url}/metrics is larger than {MAX_METRICS_BYTES >> 20} MiB: not an engine's metrics page")
    except httpx.HTTPError as exc:
        return Scrape(error=f"{base_url}/metrics could not be read ({type(exc).__name__}): is the engine running?")
    try:
        return parse(body.decode("utf-8", errors="replace"))
    except ValueError as exc:
        return Scrape(error=f"{base_url}/metrics is not Prometheus text format ({exc})")


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}; None without observations."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf or buckets[math.inf] <= 0:
        return None
    rank = q * buckets[math.inf]
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if upper == math.inf:
                return lower  # the rank lies past the last finite bound: that bound is all one can say
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return None


def engine_kind(model: ServedModel, scrape: Scrape) -> str:
    """The record's engine kind (when the registry has one), else what the metric names say."""
    recorded = getattr(model, "engine", None)
    if recorded:
        return KIND_ALIASES.get(str(recorded), str(recorded))
    for kind in ENGINES:
        if any(name.startswith(f"{kind}:") for name in scrape.values):
            return kind
    return "llamacpp"


def _mean_of_first(scrape: Scrape, names: Iterable[str]) -> float | None:
    """A fraction exported per engine core or replica: their mean, since a sum of fractions means nothing."""
    return next((scrape.values[n] / scrape.counts.get(n, 1) for n in names if n in scrape.values), None)


def _latency(before: Scrape | None, after: Scrape, name: str | None) -> Latency | None:
    if name is None or name not in after.buckets:
        return None
    buckets, total, count = after.buckets[name], after.values.get(f"{name}_sum"), after.values.get(f"{name}_count")
    window = "since start"
    if before is not None and name in before.buckets:
        delta = {le: n - before.buckets[name].get(le, 0.0) for le, n in buckets.items()}
        if delta.get(math.inf, 0.0) > 0:  # quantiles over the interval when it saw requests, else since start
            buckets, window = delta, f"{after.at - before.at:.1f} s"
            total = None if total is None else total - before.values.get(f"{name}_sum", 0.0)
            count = None if count is None else count - before.values.get(f"{name}_count", 0.0)
    n = buckets.get(math.inf, 0.0)
    mean = total / count if total is not None and count else None
    return Latency(p50_s=histogram_quantile(0.5, buckets), p95_s=histogram_quantile(0.95, buckets), mean_s=mean, count=int(n), window=window)


def normalise(model: ServedModel, after: Scrape, before: Scrape | None = None) -> ModelMetrics:
    """One model's view from its scrape(s); rates and window quantiles need `before`."""
    kind = engine_kind(model, after)
    view = ModelMetrics(name=model.name, engine=kind, base_url=model.base_url, available=False)
    if after.error:
        view.reason = after.error
        return view
    names = ENGINES.get(kind)
    if names is None:
        view.reason = f"Engine kind {kind!r} is not one the metrics reader knows ({', '.join(ENGINES)}): its /metrics is not read."
        return view
    v = after.values
    if not any(n in v for n in (names.running, names.generation_tokens)):
        view.reason = f"{model.base_url}/metrics has none of the {kind}: metrics (is this a {kind} engine?)"
        return view
    prompt = sum(v[n] for n in names.prompt_tokens if n in v) if any(n in v for n in names.prompt_tokens) else None
    view.available = True
    view.requests_running, view.requests_waiting = v.get(names.running), v.get(names.waiting)
    view.requests_completed_total = v.get(names.requests) if names.requests else None
    view.prompt_tokens_total, view.generation_tokens_total = prompt, v.get(names.generation_tokens)
    view.kv_cache_usage = _mean_of_first(after, names.kv_usage)
    view.ttft, view.e2e = _latency(before, after, names.ttft), _latency(before, after, names.e2e)
    view.notes = list(names.missing) + ([] if view.kv_cache_usage is not None or not names.kv_usage else [f"no KV-cache gauge ({' or '.join(names.kv_usage)}) exported"])
    replicas = getattr(model, "replicas", None) or []
    if replicas:
        view.notes.append(f"summed over the {sum(r.state == 'running' for r in replicas)} running of {len(replicas)} replicas")
    if before is not None and not before.error and after.at > before.at:
        _rates(view, before, names, after.at - before.at)
    return view


def _rates(view: ModelMetrics, before: Scrape, names: EngineNames, seconds: float) -> None:
    view.rate_window_s = seconds
    then = sum(before.values.get(n, 0.0) for n in names.prompt_tokens)
    if view.prompt_tokens_total is not None:
        view.prompt_tok_s = max(0.0, view.prompt_tokens_total - then) / seconds  # a restarted engine resets its counters
    if view.generation_tokens_total is not None:
        view.generation_tok_s = max(0.0, view.generation_tokens_total - before.values.get(names.generation_tokens, 0.0)) / seconds


def merge(scrapes: Sequence[Scrape]) -> Scrape:
    """Replicas of one model as one: counters, gauges and histogram buckets add up (Prometheus's sum by (le))."""
    read = [s for s in scrapes if not s.error]
    if not read:
        return Scrape(error="; ".join(s.error or "" for s in scrapes) or "no replica to read")
    total = Scrape(at=max(s.at for s in read))
    for s in read:
        for name, value in s.values.items():
            total.values[name] = total.values.get(name, 0.0) + value
            total.counts[name] = total.counts.get(name, 0) + s.counts.get(name, 1)
        for name, bounds in s.buckets.items():
            into = total.buckets.setdefault(name, {})
            for le, count in bounds.items():
                into[le] = into.get(le, 0.0) + count
    return total


def scrape_one(model: ServedModel, *, timeout_s: float = SCRAPE_TIMEOUT_S) -> Scrape:
    """The model's engine; behind a router, its replicas summed (the router's own page has no engine metrics)."""
    if model.state != "running":
        return Scrape(error=f"{model.name} is not running ({model.state})")
    replicas = getattr(model, "replicas", None) or []
    if replicas:
        return merge([scrape_one(r, timeout_s=timeout_s) for r in replicas])
    return fetch(model.base_url, timeout_s=timeout_s)


def scrape_all(models: Sequence[ServedModel], *, timeout_s: float = SCRAPE_TIMEOUT_S) -> list[Scrape]:
    return [scrape_one(m, timeout_s=timeout_s) for m in models]


def served(settings: Settings, name: str | None = None) -> list[ServedModel]:
    return [get_model(settings, name)] if name else list_models(settings)


def metrics_view(settings: Settings, *, interval_s: float = 0.0, name: str | None = None,
                 timeout_s: float = SCRAPE_TIMEOUT_S) -> MetricsView:
    """Every served model's metrics: one scrape, or two `interval_s` apart for rates."""
    models = served(settings, name)
    before = scrape_all(models, timeout_s=timeout_s) if interval_s > 0 else [None] * len(models)
    if interval_s > 0:
        time.sleep(interval_s)
    after = scrape_all(models, timeout_s=timeout_s)
    return MetricsView(models=[normalise(m, a, b) for m, a, b in zip(models, after, before, strict=True)],
                       interval_s=interval_s if interval_s > 0 else None)


def watch(settings: Settings, *, interval_s: float, name: str | None = None, timeout_s: float = SCRAPE_TIMEOUT_S) -> Iterator[MetricsView]:
    """A view every `interval_s`, each with the rates since the one before; models started meanwhile join on their second frame."""
    previous: dict[str, Scrape] = {}
    while True:
        models = served(settings, name)
        scrapes = scrape_all(models, timeout_s=timeout_s)
        yield MetricsView(models=[normalise(m, s, previous.get(m.name)) for m, s in zip(models, scrapes, strict=True)],
                          interval_s=interval_s if previous else None)
        previous = {m.name: s for m, s in zip(models, scrapes, strict=True)}
        time.sleep(interval_s)
