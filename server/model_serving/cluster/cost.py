"""Self-hosting cost from measured throughput, and the daily volume where it beats an API's prices.

The model: a replica is a fixed hourly cost (GPU price x GPUs per replica) that runs all day and
serves at most the throughput the bench measured (the sweep's knee); volume beyond one replica adds
a whole replica. The API costs its per-token prices, input and output at the bench's mix. Every
price is the user's input: nothing here carries a default price.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from model_serving.cluster.sizing import Sizing, size_for
from model_serving.errors import InputError
from model_serving.requests import CostRequest
from model_serving.settings import Settings
from model_serving.util.paths import confine

# Imported inside functions: bench.plots (the bench floor loads numpy), only when the cost plot is drawn.

MILLION = 1_000_000
COST_MODEL = ("Each replica costs gpu_hourly x GPUs per replica, all day, and serves at most the measured throughput; volume past "
              "one replica's capacity adds a whole replica. API: its prices per 1M tokens, input and output at the bench's mix.")


class Throughput(BaseModel):
    input_tok_s: float
    output_tok_s: float
    concurrency: int | None
    source: str = Field(description="Where in the bench result the throughput came from")


class CostEstimate(BaseModel):
    bench: str
    throughput: Throughput
    input_share: float = Field(description="Input tokens as a fraction of all tokens, as in the bench")
    gpus_per_replica: int
    replica_hourly_usd: float
    self_usd_per_m_input: float | None = Field(description="The replica's cost spread over input tokens only")
    self_usd_per_m_output: float = Field(description="The replica's cost spread over output tokens only")
    self_usd_per_m_blended: float = Field(description="Per 1M tokens of either kind at the bench's mix, at full load")
    replica_tokens_per_day: float
    api_usd_per_m_blended: float | None = None
    crossover_tokens_per_day: float | None = Field(default=None, description="Least daily volume where self-hosting is cheaper")
    cheaper_from_tokens_per_day: float | None = Field(default=None, description="From here on self-hosting stays cheaper")
    sizing: Sizing | None = None
    cost_model: str = COST_MODEL
    plot: str | None = None
    notes: list[str] = Field(default_factory=list)
    summary: str = ""


def _no_throughput(path: Path, why: str) -> InputError:
    return InputError(f"{path} has no usable throughput: {why}.",
                      "Give the JSON that `model-serving bench sweep ... --output DIR` (or vLLM's `bench serve`) wrote.")


def read_throughput(path: Path) -> Throughput:
    """Input and output tokens/s from our bench JSON (the run at the knee) or vLLM's `bench serve` JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _no_throughput(path, f"not readable as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _no_throughput(path, "not a JSON object")
    ours = data.get("model_serving") if isinstance(data.get("model_serving"), dict) else None
    summary: Any = ours.get("summary") if ours else data
    if not isinstance(summary, dict):
        raise _no_throughput(path, "no summary")
    out: Any = summary.get("output_throughput")
    tokens_in: Any = summary.get("total_input_tokens")
    duration: Any = summary.get("duration")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (out, tokens_in, duration)) or out <= 0 or duration <= 0:
        raise _no_throughput(path, "no positive output_throughput, total_input_tokens and duration")
    concurrency = (ours.get("config") or {}).get("concurrency") if ours else data.get("max_concurrency")
    knee = (ours or {}).get("knee") or {}
    if knee.get("concurrency"):
        source = f"the sweep's knee at concurrency {knee['concurrency']}"
    elif ours and ours.get("sweep"):
        source = f"the sweep's best level, concurrency {concurrency} (no knee: throughput still rose)"
    else:
        source = f"a single run at concurrency {concurrency} (not a sweep: a sweep's knee is the capacity to cost)"
    return Throughput(input_tok_s=tokens_in / duration, output_tok_s=float(out), concurrency=concurrency if isinstance(concurrency, int) else None,
                      source=source)


def per_million(hourly: float, tok_s: float) -> float:
    """USD per 1M tokens for a fixed hourly cost at a token rate: hourly / (tok/s x 3600) x 1e6."""
    return hourly / (tok_s * 3600) * MILLION


def crossover(daily_usd: float, capacity_per_day: float, api_usd_per_token: float) -> tuple[float | None, float | None]:
    """(first volume where self-hosting is cheaper, volume from which it stays cheaper), tokens/day; None: never.

    Self-hosting costs ceil(V / capacity) x daily_usd (at least one replica), the API V x price. With
    k = capacity x price / daily_usd (the API's price of one full replica's tokens over its cost),
    self-hosting wins first at V = daily_usd / price, inside the first replica when k > 1. Right
    after the n-th replica fills, the next one costs (n+1) x daily_usd against about n x k x daily_usd
    at the API, so the API wins again there while n < 1 / (k - 1); it stays cheaper from
    (N + 1) x daily_usd / price on, N the largest such n.
    """
    k = capacity_per_day * api_usd_per_token / daily_usd
    if k <= 1:
        return None, None
    first = daily_usd / api_usd_per_token
    last_window = math.ceil(1 / (k - 1)) - 1
    return first, (last_window + 1) * first


def estimate(settings: Settings, req: CostRequest) -> CostEstimate:
    if (req.api_input is None) != (req.api_output is None):
        raise InputError("An API price needs both sides: --api-input and --api-output (USD per 1M tokens).",
                         "Give both from the provider's price page, or neither for the self-hosted cost alone.")
    if (req.gpu is None) != (req.checkpoint is None):
        raise InputError("Sizing a replica needs both --gpu and --checkpoint (the model folder or its config.json).",
                         "Give both, or neither to cost one GPU per replica.")
    path = confine(req.bench, settings.roots, what="bench result")
    tp = read_throughput(path)
    sizing = size_for(confine(req.checkpoint, settings.roots, what="checkpoint"), req.gpu) if req.gpu and req.checkpoint else None
    gpus = sizing.tensor_parallel_size if sizing else 1
    hourly = req.gpu_hourly * gpus
    total = tp.input_tok_s + tp.output_tok_s
    share = tp.input_tok_s / total
    result = CostEstimate(bench=str(path), throughput=tp, input_share=share, gpus_per_replica=gpus, replica_hourly_usd=hourly,
                          self_usd_per_m_input=per_million(hourly, tp.input_tok_s) if tp.input_tok_s > 0 else None,
                          self_usd_per_m_output=per_million(hourly, tp.output_tok_s), self_usd_per_m_blended=per_million(hourly, total),
                          replica_tokens_per_day=total * 86_400, sizing=sizing)
    if sizing:
        result.notes.append(f"{req.gpu}: {gpus} GPU(s) per replica (tensor-parallel {gpus}); the throughput is the bench's own hardware, "
                            "so bench on that GPU for its real capacity.")
    if req.api_input is not None and req.api_output is not None:
        result.api_usd_per_m_blended = share * req.api_input + (1 - share) * req.api_output
        result.crossover_tokens_per_day, result.cheaper_from_tokens_per_day = crossover(
            hourly * 24, result.replica_tokens_per_day, result.api_usd_per_m_blended / MILLION)
    result.summary = _summary(result)
    result.plot = write_plot(result, path.with_name(path.stem + ".cost.png"))
    return result


def _summary(r: CostEstimate) -> str:
    text = (f"self-hosted ${r.self_usd_per_m_blended:.3g}/1M tokens at full load ({r.throughput.input_tok_s + r.throughput.output_tok_s:.4g} tok/s, "
            f"{r.throughput.source})")
    if r.api_usd_per_m_blended is None:
        return text + "; no API prices given, so no crossover"
    if r.crossover_tokens_per_day is None:
        return text + f"; the API at ${r.api_usd_per_m_blended:.3g}/1M stays cheaper at every volume"
    return (text + f"; cheaper than the API (${r.api_usd_per_m_blended:.3g}/1M) from {r.crossover_tokens_per_day:.4g} tokens/day, "
            f"and at every volume from {r.cheaper_from_tokens_per_day:.4g}")


def write_plot(r: CostEstimate, path: Path) -> str | None:
    """Daily cost of both against daily volume: the API's line and self-hosting's replica steps."""
    from model_serving.bench.plots import _pyplot, _save

    plt = _pyplot()
    if plt is None:
        return None
    top = max(3 * (r.cheaper_from_tokens_per_day or 0), 3 * r.replica_tokens_per_day)
    volumes = [top * i / 600 for i in range(601)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(volumes, [max(1, math.ceil(v / r.replica_tokens_per_day)) * r.replica_hourly_usd * 24 for v in volumes],
            label=f"self-hosted ({r.gpus_per_replica} GPU/replica, ${r.replica_hourly_usd:g}/h)")
    if r.api_usd_per_m_blended is not None:
        ax.plot(volumes, [v * r.api_usd_per_m_blended / MILLION for v in volumes], label=f"API (${r.api_usd_per_m_blended:.3g}/1M blended)")
    if r.crossover_tokens_per_day:
        ax.axvline(r.crossover_tokens_per_day, color="grey", linestyle=":", label=f"crossover {r.crossover_tokens_per_day:.3g} tok/day")
    ax.set_xlabel("tokens per day")
    ax.set_ylabel("USD per day")
    ax.set_title("Cost against daily volume (prices as given)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path)
