"""The benchmark's inputs and results as pydantic models, shared by the core, the CLI and the MCP tool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from model_serving.errors import InputError
from model_serving.requests import Concurrency, InputTokens, MaxTokens, Requests, Share, Warmup
from model_serving.serve.metrics import ModelMetrics

Api = Literal["openai", "ollama"]
# "chat": /v1/chat/completions or /api/chat; "completions": /v1/completions or /api/generate.
Route = Literal["chat", "completions"]
# random: random tokens of the model's vocabulary (unique words without a tokenizer); chat: varied chat questions;
# synthetic: the older name of random's word form; fixed and text repeat prompts (the prompt cache serves them).
PromptSource = Literal["random", "chat", "fixed", "synthetic", "jsonl", "text"]
# Where a unique prompt's opening goes on the chat route: its own system message (no template default system prompt, the same
# for every request, is sent), or the start of the one user message, as `vllm bench serve` and GuideLLM send theirs.
Opening = Literal["system", "user"]
UNIQUE_SOURCES = ("random", "chat", "synthetic")
Statistic = Literal["mean", "median", "p90", "p95", "p99"]
VerdictState = Literal["PASS", "FAIL", "INCONCLUSIVE"]
RequestStatus = Literal["ok", "incomplete", "empty", "error"]
# Why a request did not succeed: no connection, connection reset or closed mid-exchange, the request
# limit passed, an HTTP error status, an error inside the stream, a message that is not JSON, a stream
# cut before its final message, or a finished answer without any text.
ErrorKind = Literal["connect", "reset", "timeout", "http", "stream_error", "malformed", "truncated", "empty", "not_sent"]
CONNECTION_ERRORS = ("connect", "reset")  # the kinds a connection-reusing client sees as a dropped request


class SLO(BaseModel):
    """The service-level objective a run is judged against (results keep the field name `targets`); a target set to None
    is not judged."""

    ttft_ms: float | None = Field(default=200.0, gt=0, description="Time to first token must stay below this")
    e2e_ms: float | None = Field(default=500.0, gt=0, description="End-to-end latency of a short answer must stay below this")
    request_throughput: float | None = Field(default=10.0, gt=0, description="Completed requests per second must reach this")
    error_rate: Annotated[Share | None, Field(description="Share of requests that may fail; 0: any failure FAILs")] = 0.0
    memory_gb: float | None = Field(default=8.0, gt=0, description="Server memory in use must stay below this")
    statistic: Statistic = Field(default="p95", description="Which statistic of TTFT and end-to-end latency is judged")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Level of the bootstrap confidence intervals")


class BenchConfig(BaseModel):
    """One benchmark run against one served model."""

    base_url: str = Field(description="Server root, e.g. http://127.0.0.1:8080 (no /v1)")
    model: str = Field(min_length=1, description="Model name sent in each request")
    api: Api = "openai"
    route: Route = "chat"
    n_requests: Requests = 20
    concurrency: Annotated[Concurrency, Field(description="Streams in flight at once (cap for Poisson arrivals)")] = 1
    rate: float | None = Field(default=None, description="Poisson arrival rate in requests/s; None sends closed-loop at `concurrency`")
    warmup: Annotated[Warmup, Field(description="Requests sent first and left out of the statistics")] = 1
    max_tokens: MaxTokens = 32
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = 0
    prompt_source: PromptSource = "random"
    prompt: str | None = Field(default=None, description="The one prompt to send (prompt_source='text')")
    prompts_file: Path | None = Field(default=None, description="JSONL file of prompts (prompt_source='jsonl')")
    input_tokens: Annotated[InputTokens, Field(description="Prompt text length in tokens for random and chat prompts; the chat "
                                               "template's tokens come on top")] = 128
    opening: Opening = Field(default="system", description="random profile, chat route: each prompt's unique opening in its own "
                             "system message, or at the start of the user message (the template's default system prompt then "
                             "comes on top, as for `vllm bench serve` and GuideLLM)")
    ignore_eos: bool | None = Field(default=None, description="Ask the server to generate exactly max_tokens; default: for unique prompts (random, chat)")
    keep_alive: bool = Field(default=True, description="Reuse connections between requests, as most clients do; False opens one "
                             "per request, so a server that closes kept-alive connections (stock llama-server after a stream) "
                             "is measured on its engine rather than on the requests its connection handling loses")
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request limit on the whole exchange, connecting included; "
                             "server-info probes wait at most 5 s or this, whichever is shorter")
    targets: SLO = Field(default_factory=SLO)
    server_pid: int | None = Field(default=None, description="Process to sample for memory in use (the embedded engine)")
    engine_build: str | None = Field(default=None, description="Our embedded engine's llama.cpp build (revision, patches)")
    cold_start: bool = Field(default=False, description="Ollama only: unload the model first and measure the cold load")
    bandwidth_gbs: float | None = Field(default=None, gt=0, description="Memory bandwidth for the roofline; measured when absent")
    gguf_path: Path | None = Field(default=None, description="The served GGUF, for the roofline")
    output_dir: Path | None = None
    label: str = "bench"

    @model_validator(mode="after")
    def _check(self) -> BenchConfig:
        if self.ignore_eos is None:  # a fixed answer length for the unique workloads, which measure throughput
            self.ignore_eos = self.prompt_source in UNIQUE_SOURCES
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be a positive number of requests per second, got {self.rate}")
        if self.prompt_source == "text" and not self.prompt:
            raise ValueError("prompt_source 'text' needs a prompt")
        if self.prompt_source == "jsonl" and self.prompts_file is None:
            raise ValueError("prompt_source 'jsonl' needs prompts_file")
        return self

    @classmethod
    def build(cls, **values: object) -> BenchConfig:
        """Construct from user input, turning validation errors into a one-line InputError."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors())
            raise InputError(f"Invalid benchmark settings: {problems}.", "Fix the value(s) named above and run again.") from None


class ServerTimings(BaseModel):
    """What the server says it spent on one request, in milliseconds, whatever unit it used."""

    source: Literal["llama.cpp", "ollama"]
    load_ms: float | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None


class RequestRecord(BaseModel):
    """One request as the client saw it. Times are ms from the start of the run (monotonic clock)."""

    index: int
    prompt_id: str
    warmup: bool = False
    status: RequestStatus = "ok"
    error: str | None = None
    error_kind: ErrorKind | None = None
    scheduled_ms: float
    sent_ms: float | None = None
    sent_clock_ns: int | None = Field(default=None, description="perf_counter_ns at send: joins this request with other logs on this host")
    first_byte_ms: float | None = None
    first_token_ms: float | None = None
    last_token_ms: float | None = None
    end_ms: float | None = None
    chunk_ms: list[float] = Field(default_factory=list, description="Arrival time of every content-bearing chunk")
    role_chunk_before_content: bool = False
    first_answer_ms: float | None = Field(default=None, description="Arrival of the first answer chunk (content or a tool call), after any reasoning")
    reasoning_chunks: int = Field(default=0, description="Chunks that carried only reasoning: a reasoning model's thinking, one token each")
    text: str = ""
    finish_reason: str | None = None
    max_tokens: int
    prompt_tokens: int | None = None
    prompt_tokens_source: Literal["server", "estimate"] = "estimate"
    output_tokens: int = 0
    output_tokens_source: Literal["server", "tokenizer", "chunks"] = "chunks"
    client_output_tokens: int | None = Field(default=None, description="The model's tokenizer's count of the text, as a cross-check")
    server: ServerTimings | None = None

    # Derived per-request metrics (filled by metrics.derive); None where undefined.
    ttft_ms: float | None = None
    ttfat_ms: float | None = Field(default=None, description="Time to the first answer token: TTFT once the reasoning is done")
    reasoning_tokens: int | None = Field(default=None, description="Output tokens spent reasoning (reasoning chunks), when the model reasoned")
    answer_tokens: int | None = Field(default=None, description="Output tokens of the answer itself, when the model reasoned")
    tpot_ms: float | None = None
    e2el_ms: float | None = None
    queue_ms: float | None = None
    itl_ms: list[float] = Field(default_factory=list)
    output_tok_s: float | None = Field(default=None, description="Output tokens over end-to-end latency")
    decode_tok_s: float | None = Field(default=None, description="1000 / TPOT: decode speed after the first token")
    prefill_tok_s: float | None = None


class Stats(BaseModel):
    """Distribution of one metric over successful requests, with bootstrap confidence intervals."""

    n: int
    mean: float | None = None
    median: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    ci: dict[str, tuple[float, float]] = Field(default_factory=dict, description="statistic -> (low, high)")


class Verdict(BaseModel):
    target: str
    state: VerdictState
    threshold: float
    measured: float | None = None
    ci: tuple[float, float] | None = None
    statistic: str
    likely_causes: list[str] = Field(default_factory=list)
    note: str = ""


class Finding(BaseModel):
    """A measurement-integrity or diagnosis note, e.g. server and client disagree."""

    code: str
    message: str
    severity: Literal["info", "warning", "error"] = "warning"


class Roofline(BaseModel):
    weight_bytes_per_token: int
    kv_bytes_per_context_token: int
    context_tokens: float
    bandwidth_gbs: float
    bandwidth_source: Literal["measured", "given"]
    ceiling_tok_s: float
    measured_tok_s: float | None
    percent_of_ceiling: float | None
    flag: Literal["ok", "above_ceiling", "far_below"] | None = None
    note: str = ""


class LoadTimes(BaseModel):
    """Model load: cold (after a forced unload) and warm (already resident)."""

    cold_ttft_ms: float | None = None
    warm_ttft_ms: float | None = None
    server_load_ms: float | None = None
    cold_start_ms: float | None = Field(default=None, description="Embedded engine: process start until healthy, page cache evicted")
    warm_start_ms: float | None = Field(default=None, description="Embedded engine: the same with the file already in the page cache")
    page_cache_evicted: bool = False
    note: str = ""


class ServerInfo(BaseModel):
    kind: str = "unknown"
    version: str | None = None
    total_slots: int | None = None
    n_ctx: int | None = None
    models: list[str] = Field(default_factory=list)
    memory_bytes: int | None = Field(default=None, description="Peak resident memory of the server during the run")
    memory_source: str | None = None
    vram_fraction: float | None = Field(default=None, description="Ollama: share of the model in GPU memory")
    engine_build: str | None = Field(default=None, description="Our embedded engine: its llama.cpp build (revision, patches)")


class Summary(BaseModel):
    """Aggregate results; the names follow vLLM's `bench serve` JSON where they mean the same."""

    completed: int
    failed: int
    incomplete_requests: int = 0
    connection_errors: int = Field(default=0, description="Requests lost to a refused, reset or dropped connection (never resent)")
    errors_by_cause: dict[str, int] = Field(default_factory=dict, description="Failed requests by cause (connect, reset, timeout, http, ...)")
    not_sent: int = Field(default=0, description="Requests the run never sent because it stopped early (counted as failed)")
    good_requests: int = Field(default=0, description="Completed requests that met every latency target (TTFT and E2E)")
    good_fraction: float | None = Field(default=None, description="good_requests over every request of the run, failures included")
    request_goodput: float = Field(default=0.0, description="good_requests per second (vLLM --goodput, AIPerf goodput)")
    request_goodput_ci: tuple[float, float] | None = None
    prompt_tokens_sent: int | None = Field(default=None, description="Prompt tokens of the completed requests, as the server counted them")
    prompt_tokens_prefilled: int | None = Field(default=None, description="Of those, the tokens the server computed (not from its prompt cache)")
    prefilled_fraction: float | None = Field(default=None, description="prefilled / sent; near 1 means the workload measured prefill")
    prefill_source: Literal["timings", "metrics"] | None = None
    duration: float = Field(description="Seconds from the first send to the last response")
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    max_concurrent_requests: int
    mean_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    std_ttft_ms: float | None = None
    p90_ttft_ms: float | None = None
    p95_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    median_ttfat_ms: float | None = Field(default=None, description="Time to the first answer token (after the reasoning), when the model reasoned")
    p95_ttfat_ms: float | None = None
    total_reasoning_tokens: int | None = Field(default=None, description="Output tokens spent reasoning, beside total_answer_tokens")
    total_answer_tokens: int | None = None
    mean_tpot_ms: float | None = None
    median_tpot_ms: float | None = None
    std_tpot_ms: float | None = None
    p90_tpot_ms: float | None = None
    p95_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    mean_itl_ms: float | None = None
    median_itl_ms: float | None = None
    std_itl_ms: float | None = None
    p90_itl_ms: float | None = None
    p95_itl_ms: float | None = None
    p99_itl_ms: float | None = None
    mean_e2el_ms: float | None = None
    median_e2el_ms: float | None = None
    std_e2el_ms: float | None = None
    p90_e2el_ms: float | None = None
    p95_e2el_ms: float | None = None
    p99_e2el_ms: float | None = None
    mean_client_queue_ms: float | None = None
    p99_client_queue_ms: float | None = None
    median_output_tok_s_per_request: float | None = None
    median_prefill_tok_s: float | None = None
    median_server_decode_tok_s: float | None = None
    request_throughput_ci: tuple[float, float] | None = None


class SweepPoint(BaseModel):
    concurrency: int
    request_throughput: float
    output_throughput: float
    p95_e2el_ms: float | None
    median_ttft_ms: float | None
    median_tpot_ms: float | None
    completed: int
    p95_ttft_ms: float | None = None
    connection_errors: int = 0
    failed: int = 0
    errors_by_cause: dict[str, int] = Field(default_factory=dict)
    request_goodput: float = 0.0
    median_server_decode_tok_s: float | None = Field(default=None, description="The server's own decode rate (llama.cpp timings): "
                                                     "the engine's speed without the client and the network")
    holds_slo: bool = Field(default=False, description="No failed request and every latency target met: this level holds the SLO")
    targets_met: list[str] = Field(default_factory=list, description="The targets this level meets (point estimates of the judged statistic)")


class Knee(BaseModel):
    concurrency: int | None = Field(description="Last level where throughput still rose meaningfully; None if it never flattened")
    cause: Literal["parallel_slots", "compute", "none", "unknown"]
    explanation: str


class Capacity(BaseModel):
    """Max concurrency under SLO (AIPerf's max-concurrency-under-SLA): the highest swept level that holds the targets."""

    concurrency: int | None = Field(description="Highest level holding the SLO with every level below it; None if none holds")
    interval: tuple[int, int | None] | None = Field(default=None, description="[holds, breaks): the capacity lies in it; None above: not found")
    request_goodput: float | None = None
    request_goodput_ci: tuple[float, float] | None = None
    bound: Literal["slots", "compute", "bandwidth", "client", "failures", "not_reached", "unknown"]
    explanation: str


class Workload(BaseModel):
    """What was sent, so that a result says what it measured (and whether the prompt cache could serve it)."""

    profile: str
    prompts: Literal["unique", "repeated"]
    input_tokens: int | None = Field(description="Requested prompt tokens (random, chat); None for fixed, text, jsonl")
    output_tokens: int
    ignore_eos: bool
    seed: int
    run_nonce: str | None = Field(default=None, description="Per-run random prefix: no run shares a prompt with another")
    tokenizer: bool = Field(default=False, description="random: token ids drawn from the model's vocabulary (else random words)")
    label: str = Field(default="", description="'cached/repeated' when prompts repeat")


class ServerMetrics(BaseModel):
    """The server's own /metrics before and after the run (bench/engine_metrics.py)."""

    available: bool
    reason: str | None = None
    before: ModelMetrics | None = None
    after: ModelMetrics | None = Field(default=None, description="Its tokens/s and TTFT/e2e quantiles are over the run")
    delta: dict[str, float] = Field(default_factory=dict, description="Counters after minus before (warm-up included)")


class BenchResult(BaseModel):
    config: BenchConfig
    started_at: str
    summary: Summary
    metrics: dict[str, Stats] = Field(default_factory=dict)
    verdicts: list[Verdict] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    server: ServerInfo = Field(default_factory=ServerInfo)
    roofline: Roofline | None = None
    load: LoadTimes | None = None
    sweep: list[SweepPoint] = Field(default_factory=list)
    knee: Knee | None = None
    capacity: Capacity | None = None
    workload: Workload | None = None
    target_levels: dict[str, list[int]] = Field(default_factory=dict, description="Sweep: target -> the concurrency levels at which it holds")
    incomplete: bool = False
    stopped_reason: str | None = None
    client_overhead: dict[str, float] = Field(default_factory=dict, description="Event-loop lag and send delay, ms")
    server_metrics: ServerMetrics | None = Field(default=None, description="The server's own counters and histograms around the run")
    files: dict[str, str] = Field(default_factory=dict, description="kind -> path of each file written")
    records: list[RequestRecord] = Field(default_factory=list, exclude=True)
    warmup_records: list[RequestRecord] = Field(default_factory=list, exclude=True)
