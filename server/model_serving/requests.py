"""The request contract: every verb's input model, with its bounds and defaults, defined once.

Each reusable quantity is an `Annotated` type carrying its range, default and description; each verb
has one input model built from them. The CLI turns a model's fields into options and the MCP server
publishes the model's JSON schema as the tool's input schema and validates with the same model, so a
bound cannot differ between the faces (tests/faces/test_parity.py). How a refusal is worded lives in
`failures.py`, beside every other failure a face can meet.

One spelling per idea across verbs: `plan` (show, do nothing), `replace` (overwrite what exists) and
`output` (where to write). An older spelling is listed in a model's `renamed` for one release: it is
still accepted, the call is told it is deprecated, and both faces say so in their help.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

# A name clients use for a model: lower case, and safe as a file name and as an Ollama tag.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,63}$"
# A served name: a model name, or version N >= 2 of one served beside it as NAME@N (version 1 keeps the plain name).
SERVED_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,63}(@[1-9][0-9]{0,5})?$"
# What the version verbs take: NAME, NAME@N, or NAME@live / NAME@previous, resolved through the version store.
VERSIONED_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,63}(@([1-9][0-9]{0,5}|live|previous))?$"
# llama.cpp and Ollama type names: Q4_K_M, IQ2_XS, F16, TQ1_0 ... (case-insensitive; never flag-like).
QUANT_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,15}$"

# No leading '-': a value that reaches a child's argv must never read as an option.
NOT_FLAG = r"^[^-]"
OLLAMA_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
JOB_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"
LABEL_PATTERN = r"^[A-Za-z0-9._-]+$"
HUB_REPO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
PathArg = Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
ServedName = Annotated[str, Field(pattern=SERVED_NAME_PATTERN)]
VersionedName = Annotated[str, Field(pattern=VERSIONED_NAME_PATTERN)]
QuantType = Annotated[str, Field(pattern=QUANT_PATTERN, description="e.g. Q4_K_M, Q8_0; F16 keeps the export")]
CtxSize = Annotated[int, Field(ge=64, le=1 << 20)]
Parallel = Annotated[int, Field(ge=1, le=64)]
Threads = Annotated[int, Field(ge=1, le=512, description="Default: all cores")]
Port = Annotated[int, Field(ge=1024, le=65535, description="Default: a free one")]
# The bench input's bounds, defined once: the faces' BenchLoad/BenchRequest and the core's bench.schema.BenchConfig
# (what deploy and the benchmark scripts build directly) both use these types.
MAX_REQUESTS = 10_000  # per run (per sweep level)
MAX_CONCURRENCY = 1024
Requests = Annotated[int, Field(ge=1, le=MAX_REQUESTS)]
Concurrency = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]
MaxTokens = Annotated[int, Field(ge=1, le=32_768)]
Warmup = Annotated[int, Field(ge=0, le=100)]  # per stream, unmeasured
InputTokens = Annotated[int, Field(ge=1, le=131_072)]
Share = Annotated[float, Field(ge=0, le=1)]
# Where a model is served, defined once here for the faces and the core (serve/ imports these): register
# reaches the two engines that take a GGUF by name, a deploy also vLLM, and a request may leave it to `auto`.
RegisterTarget = Literal["embedded", "ollama"]
DeployTarget = Literal[RegisterTarget, "vllm"]
TargetChoice = Literal["auto", DeployTarget]
OutType = Literal["f16", "bf16", "q8_0", "f32", "auto"]
# llm-compressor's formats for vLLM (quantize/formats.py holds their recipes)
CompressedFormat = Literal["awq", "gptq", "w8a8-int8", "fp8"]
Api = Literal["openai", "ollama"]
Route = Literal["chat", "completions"]
Statistic = Literal["mean", "median", "p90", "p95", "p99"]
# Bench workloads: unique prompts by default (random tokens, or varied chat questions); the repeated ones
# (fixed, text) are served from the prompt cache and are labelled so in every result.
Profile = Literal["random", "chat", "fixed", "jsonl", "text"]
Positive = Annotated[float, Field(gt=0)]
Millis = Annotated[float, Field(gt=0)]
Source = Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG, description="Checkpoint folder or Hub repo id")]
OllamaName = Annotated[str, Field(min_length=1, max_length=300, pattern=OLLAMA_NAME_PATTERN)]
# One definition for deploy, serve start and register, so both faces offer the same option with the same bounds.
ChatTemplate = PathArg  # a Jinja file; the name says it all (tools/list is at its budget)
Completions = bool
JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=JOB_ID_PATTERN)]

DEFAULT_CTX_SIZE = 2048
DEFAULT_PARALLEL = 4
DEFAULT_QUANT = "Q8_0"


class Request(BaseModel):
    """An input model: unknown fields are refused, so a misspelt option is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # Old spelling -> the one it became; accepted for one release (RENAMED_UNTIL), and each use is reported.
    renamed: ClassVar[dict[str, str]] = {}
    _renamed_used: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _old_spellings(cls, data: Any, handler: Any) -> Any:
        used = [old for old in cls.renamed if isinstance(data, dict) and old in data]
        if used:
            data = dict(data)
            for old in used:
                new = cls.renamed[old]
                if new in data:
                    raise ValueError(f"{old} is the old name of {new}; give {new} only")
                data[new] = data.pop(old)
        request = handler(data)
        if used:
            request._renamed_used = used
            warnings.warn("; ".join(request.deprecations()), DeprecationWarning, stacklevel=2)
        return request

    def deprecations(self) -> list[str]:
        """One line per old spelling this request used: what to write instead."""
        return [deprecation(old, self.renamed[old]) for old in self._renamed_used]


RENAMED_UNTIL = "0.2"


def deprecation(old: str, new: str) -> str:
    return f"'{old}' is deprecated (removed in {RENAMED_UNTIL}): use '{new}'"


T = TypeVar("T", bound=BaseModel)
LIST_LIMIT = 50


class Listing(BaseModel, Generic[T]):
    """A bounded list result: at most LIST_LIMIT items, and how many there are."""

    items: list[T]
    total: int
    truncated: bool = False

    @classmethod
    def of(cls, items: Sequence[T]) -> Listing[T]:
        return cls(items=list(items[:LIST_LIMIT]), total=len(items), truncated=len(items) > LIST_LIMIT)


class DeployRequest(Request):
    source: Annotated[str | None, Field(min_length=1, max_length=4096, description="Checkpoint, .gguf, merge .yaml or Hub id; default SmolLM2")] = None
    base: Annotated[PathArg | None, Field(description="LoRA: base folder")] = None
    name: ModelName | None = None
    quant: Annotated[QuantType | None, Field(description="Default Q8_0 (GGUF: its own); repo: the file")] = None
    target: Annotated[TargetChoice, Field(description="auto: Ollama if up, else embedded")] = "auto"
    output: Annotated[PathArg | None, Field(description="Default: deployments/<name>")] = None
    ctx_size: CtxSize = DEFAULT_CTX_SIZE
    parallel: Parallel = DEFAULT_PARALLEL
    bench: bool = True
    bench_requests: Requests = 32  # per sweep level: at 16 the interval of ~11 req/s straddled the 10 req/s target
    concurrency: Annotated[Concurrency | None, Field(description="Top sweep level; default 8")] = None
    verify_quality: bool = True
    allow_requantize: Annotated[bool, Field(description="Quantize a quantized input")] = False
    allow_broken: Annotated[bool, Field(description="Serve a broken quant")] = False
    calibration: Annotated[PathArg | None, Field(description="Imatrix text (IQ/K)")] = None
    format: CompressedFormat | None = None  # target vllm: serve this format, made from the checkpoint first
    chat_template: ChatTemplate | None = None
    completions: Completions = False
    replace: Annotated[bool, Field(description="Replace a same-name model")] = False
    plan: bool = False

    renamed: ClassVar[dict[str, str]] = {"out_dir": "output", "plan_only": "plan"}


def flat_schema(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON schema with an optional's `anyOf [X, null]` folded into X (`nullable`), titles dropped.

    One reading of a model for everything that derives from it: CLI options, tool parameters, the parity test.
    """
    schema = model.model_json_schema()
    flat: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        arms = prop.pop("anyOf", None)
        if arms:
            real = [a for a in arms if a.get("type") != "null"]
            prop = {**(real[0] if len(real) == 1 else {"anyOf": real}), **prop, "nullable": len(real) < len(arms)}
        prop["required"] = name in schema.get("required", [])
        flat[name] = prop
    return flat


class InspectRequest(Request):
    path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
    ctx_size: CtxSize | None = None
    parallel: Parallel = 1
    base: Annotated[PathArg | None, Field(description="LoRA: base folder")] = None


class ExportRequest(Request):
    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace"}
    source: Source
    output: PathArg | None = None
    outtype: OutType = "f16"
    replace: bool = False
    base: Annotated[PathArg | None, Field(description="LoRA: base folder")] = None
    as_lora_gguf: Annotated[bool, Field(description="LoRA source: a GGUF adapter")] = False


MergeMethod = Literal["lora", "slerp", "ties", "dare_ties", "linear", "task_arithmetic"]
MAX_MERGE_MODELS = 8
Fraction = Annotated[float, Field(ge=0, le=1)]


class MergeRequest(Request):
    """One verb for both merges: `lora` (peft, an adapter into its base) and mergekit's methods over several fine-tunes."""

    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace"}
    models: Annotated[list[PathArg] | None, Field(max_length=MAX_MERGE_MODELS)] = None  # lora: the adapter; else the fine-tunes
    adapter: PathArg | None = None  # lora's own spelling, kept for the tool's callers
    method: MergeMethod = "lora"
    base: PathArg | None = None
    output: PathArg | None = None
    # One per model, or one for all; slerp: its t (0 = the base or first model, 1 = the other), the CLI's -t
    weight: Annotated[list[float] | None, Field(max_length=MAX_MERGE_MODELS)] = None
    density: Annotated[list[Fraction] | None, Field(max_length=MAX_MERGE_MODELS)] = None  # ties/dare_ties: the share kept
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    verify: bool = True  # mergekit: measure the merge against each input
    eval_set: Annotated[PathArg | None, Field(description="EVALS.jsonl")] = None
    replace: bool = False

    @model_validator(mode="after")
    def _one_adapter(self) -> MergeRequest:
        if self.method == "lora":
            given = [*(self.models or []), *([self.adapter] if self.adapter else [])]
            if len(given) != 1:
                raise ValueError("method lora merges one adapter: give the adapter folder once")
            self.adapter, self.models = given[0], None
        elif self.adapter is not None:
            raise ValueError(f"adapter is for method lora; method {self.method} takes the fine-tunes as models")
        elif not self.models:
            raise ValueError(f"method {self.method} needs the fine-tunes to merge (models)")
        return self


class QuantizeRequest(Request):
    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace"}
    input_path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
    qtype: QuantType | None = None
    format: CompressedFormat | None = None  # instead of qtype: a vLLM format made from a checkpoint folder
    output: Annotated[PathArg | None, Field(description="Default: <stem>-<QTYPE>.gguf")] = None
    allow_requantize: Annotated[bool, Field(description="Quantize a quantized input")] = False
    replace: bool = False
    verify: bool = True
    calibration: Annotated[PathArg | None, Field(description="Imatrix text (IQ/K)")] = None

    @model_validator(mode="after")
    def _one_kind(self) -> QuantizeRequest:
        if (self.qtype is None) == (self.format is None):
            raise ValueError("give either qtype (a GGUF type) or format (awq, gptq, w8a8-int8, fp8), not both or neither")
        if self.format is not None and self.allow_requantize:
            raise ValueError("allow_requantize is for GGUF types; a format refuses an already-quantized checkpoint")
        return self


class ServeStartRequest(Request):
    gguf_path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
    name: ModelName
    ctx_size: CtxSize = DEFAULT_CTX_SIZE
    parallel: Parallel = DEFAULT_PARALLEL
    threads: Threads | None = None
    port: Port | None = None
    replace: Annotated[bool, Field(description="Replace a same-name model")] = False
    engine: Literal["embedded", "vllm"] = "embedded"  # vllm: gguf_path is an HF checkpoint folder (the verb's description says so)
    lora: Annotated[list[Annotated[str, Field(min_length=3, max_length=4200, pattern=NOT_FLAG)]] | None,
                    Field(max_length=8, description="Adapters NAME=PATH")] = None
    replicas: Annotated[int | None, Field(ge=1, le=8, description="Engines behind vllm-router")] = None
    policy: Literal["round_robin", "power_of_two", "cache_aware"] | None = None
    chat_template: ChatTemplate | None = None
    completions: Completions = False


class NameRequest(Request):
    name: ServedName


class NoInput(Request):
    """A verb without parameters."""


class RegisterRequest(Request):
    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace"}
    gguf_path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
    name: ModelName
    target: RegisterTarget = "embedded"
    source_dir: Annotated[PathArg | None, Field(description="Ollama: its checkpoint")] = None
    quantize: Annotated[QuantType | None, Field(description="Ollama: quantize to")] = None
    ctx_size: CtxSize = DEFAULT_CTX_SIZE
    parallel: Parallel = DEFAULT_PARALLEL
    system: Annotated[str | None, Field(max_length=20_000, description="Ollama: system message")] = None
    template: Annotated[Literal["auto", "go", "gguf"], Field(description="Ollama TEMPLATE")] = "auto"
    adapter: Annotated[PathArg | None, Field(description="Ollama: LoRA GGUF")] = None
    chat_template: ChatTemplate | None = None
    replace: Annotated[bool, Field(description="Replace a same-name model")] = False


class BenchTargets(Request):
    ttft_ms: Millis = 200.0
    e2e_ms: Millis = 500.0


class BenchLoad(BenchTargets):
    """Where to send, what to send, and the targets."""

    renamed: ClassVar[dict[str, str]] = {"output_dir": "output"}
    model: Annotated[str, Field(min_length=1, max_length=300, pattern=NOT_FLAG)]
    endpoint: Annotated[str | None, Field(max_length=2048, description="Name or loopback URL")] = None
    api: Api | None = None
    route: Route = "chat"
    n_requests: Requests = 20  # per sweep level
    max_tokens: MaxTokens = 32
    warmup: Warmup = 1
    prompt: Annotated[str | None, Field(min_length=1, max_length=100_000)] = None
    prompts_file: Annotated[PathArg | None, Field(description="JSONL")] = None
    profile: Profile = "random"
    input_tokens: InputTokens = 128
    error_rate: Share = 0.0
    seed: Annotated[int, Field(ge=0)] = 0
    rps: Positive = 10.0
    memory_gb: Positive = 8.0
    statistic: Statistic = "p95"
    gguf: Annotated[PathArg | None, Field(description="For the roofline")] = None
    bandwidth_gbs: Positive | None = None  # default: measured
    output: PathArg | None = None
    label: Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)] = "bench"


class BenchRequest(BenchLoad):
    concurrency: Concurrency = 1
    rate: Positive | None = None
    levels: Annotated[list[Concurrency] | None, Field(min_length=1, max_length=16)] = None
    cold_start: Annotated[bool, Field(description="Ollama: measure a cold load")] = False


class RooflineRequest(Request):
    gguf: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
    tok_s: Annotated[Positive | None, Field(description="Measured decode tok/s")] = None
    context: Annotated[float, Field(ge=0, le=1 << 20, description="Tokens in the KV cache")] = 0.0
    bandwidth_gbs: Annotated[Positive | None, Field(description="Default: measured")] = None


class QuantABRequest(BenchTargets):
    renamed: ClassVar[dict[str, str]] = {"output_dir": "output"}
    ggufs: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]], Field(min_length=2, max_length=8, description="GGUFs of one model")]
    n_requests: Annotated[int, Field(ge=1, le=1000)] = 8
    concurrency: Concurrency = 1
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = 16
    quality_floor: Annotated[float, Field(ge=0, le=1, description="Least greedy agreement")] = 0.5
    max_ppl_ratio: Annotated[float, Field(ge=1, le=100, description="Largest perplexity ratio")] = 1.10
    output: PathArg | None = None
    adapter: Annotated[PathArg | None, Field(description="LoRA GGUF; ggufs = merged, base")] = None


class OllamaNameRequest(Request):
    name: OllamaName


class OllamaCopyRequest(Request):
    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace"}
    source: OllamaName
    destination: OllamaName
    replace: bool = False


class OllamaManageRequest(Request):
    """The MCP face of `ollama cp`, `rm`, `unload` and `pull`: one tool, the action named."""

    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace"}
    action: Literal["copy", "delete", "unload", "pull"]
    name: OllamaName
    destination: Annotated[OllamaName | None, Field(description="copy: the new name")] = None
    replace: Annotated[bool, Field(description="copy: replace the destination")] = False


class OllamaProbeRequest(Request):
    name: OllamaName
    num_predict: Annotated[int, Field(ge=1, le=4096)] = 256


class ModelfileRequest(Request):
    gguf_path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG)]
    source_dir: Annotated[PathArg | None, Field(description="Checkpoint it came from")] = None
    system: Annotated[str | None, Field(max_length=20_000)] = None
    num_ctx: Annotated[CtxSize | None, Field(description="Default: trained, capped by memory")] = None


class CheckModelfileRequest(Request):
    path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NOT_FLAG, description="Modelfile")]


class JobStatusRequest(Request):
    job_id: JobId | None = None
    wait_s: Annotated[float, Field(ge=0, le=30)] = 0.0


class JobCancelRequest(Request):
    job_id: JobId


# --- publish (issue 12) ---


class PublishRequest(Request):
    renamed: ClassVar[dict[str, str]] = {"overwrite": "replace", "plan_only": "plan"}
    source: Annotated[PathArg, Field(description="Deploy folder or .gguf")]
    repo: Annotated[str, Field(min_length=3, max_length=200, pattern=HUB_REPO_PATTERN, description="USER/NAME")]
    private: bool = False
    revision: Annotated[str, Field(min_length=1, max_length=100, pattern=LABEL_PATTERN)] = "main"
    license: Annotated[str | None, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN, description="If the GGUF has none")] = None
    replace: Annotated[bool, Field(description="Replace changed files")] = False
    allow_broken: bool = False
    plan: bool = False
    include: Annotated[Literal["merged", "adapter"] | None, Field(description="Adapter deploy: also its merged checkpoint or LoRA")] = None
# --- end publish ---


class CleanRequest(Request):
    directory: PathArg = "."
    plan: bool = False


# --- production bundle (issue 11) ---
PlanFormat = Literal["auto", "bf16", "fp8", "awq", "gptq", "w8a8-int8"]


class PlanProductionRequest(Request):
    # No parameter descriptions: the tool's line names the GPUs, and tools/list has a size budget.
    source: PathArg
    gpu: Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)]
    output: PathArg
    model_id: Annotated[str | None, Field(max_length=220, pattern=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:\w+)?$")] = None
    gpu_memory_gb: Annotated[float | None, Field(gt=0)] = None
    max_model_len: Annotated[int | None, Field(ge=256)] = None  # past the model's context: refused with the limit
    target_concurrency: Concurrency = 8
    lora: list[Annotated[str, Field(max_length=200, pattern=NOT_FLAG)]] | None = None
    format: PlanFormat = "auto"  # the weight format vLLM serves (cluster/formats.py); auto: the GPU's
    canary: PathArg | None = None  # a second version's model folder: its own Deployment + Service, weighted by an HTTPRoute
    canary_model_id: Annotated[str | None, Field(max_length=220, pattern=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:\w+)?$")] = None
    canary_share: Annotated[int, Field(ge=1, le=99)] = 10  # percent of requests to the canary
    bench: PathArg | None = None  # a bench result of the plan's format on that GPU: measured throughput instead of the estimate
    gpu_hourly: Positive | None = None  # USD per GPU-hour, for the cost per 1M output tokens
# --- end production bundle ---


# --- monitoring and cost (issue 11) ---
# No parameter descriptions: the tool's one line says the units, and tools/list has a size budget.


class CostRequest(Request):
    bench: PathArg
    gpu_hourly: Positive
    api_input: Positive | None = None
    api_output: Positive | None = None
    gpu: Annotated[str | None, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)] = None
    checkpoint: PathArg | None = None
# --- end monitoring and cost ---


# --- vLLM engine and bench compare (issue 14) ---


class EngineInstallRequest(Request):
    engine: Literal["vllm", "mergekit", "llmcompressor"]
    python: Annotated[PathArg | None, Field(description="vllm: an interpreter that has it, instead of a managed venv")] = None


class BenchCompareRequest(Request):
    renamed: ClassVar[dict[str, str]] = {"output_dir": "output"}
    source: PathArg
    quant: Annotated[str, Field(pattern=QUANT_PATTERN)] = DEFAULT_QUANT
    levels: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1, max_length=8)] = [1, 2, 4, 8]
    output: PathArg | None = None
    formats: Annotated[list[CompressedFormat] | None, Field(max_length=4)] = None  # a vLLM row per format, quality-gated
# --- end vLLM engine and bench compare ---


# --- one endpoint: the gateway (issue 15) ---


def _within(low: float, high: float) -> AfterValidator:
    """A range checked, not published: the tool has a small tools/list budget, and the refusal names the range."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be {low:g} to {high:g}")
        return value

    return AfterValidator(check)


class GatewayRequest(Request):
    action: Literal["start", "stop", "status"] = "status"
    port: Annotated[int, _within(1024, 65535)] | None = None
    keep_alive: Annotated[int, _within(1, 86_400)] | None = None  # seconds
    memory_budget_gb: Annotated[float, _within(0.01, 4096)] | None = None
# --- end one endpoint ---


# --- versions (issue 23) ---
# One pattern for every version verb's name (NAME, NAME@N, NAME@live, NAME@previous): the CLI verbs are actions of one tool.
VersionAction = Literal["history", "promote", "rollback", "canary", "prune"]
CanaryShare = Annotated[int, Field(ge=0, le=100)]  # percent of the public name's requests; 0 ends the canary
KeepVersions = Annotated[int, Field(ge=1, le=100)]


class VersionsRequest(Request):
    action: VersionAction
    name: VersionedName
    share: CanaryShare | None = None  # canary
    keep: KeepVersions | None = None  # prune
    plan: bool = False  # prune


class HistoryRequest(Request):
    name: VersionedName


class PromoteRequest(Request):
    name: VersionedName


class RollbackRequest(Request):
    name: VersionedName


class CanaryRequest(Request):
    name: VersionedName
    share: CanaryShare


class PruneRequest(Request):
    name: VersionedName
    keep: KeepVersions | None = None
    plan: bool = False
# --- end versions ---


# --- eval against another version (issue 23) ---


class EvalRequest(Request):
    # No parameter descriptions beyond the essential: tools/list has a size budget, and the tool's line says the rest.
    name: VersionedName
    against: VersionedName
    set: Annotated[PathArg | None, Field(description="EVALS.jsonl (default: built-in)")] = None
    text: Annotated[PathArg | None, Field(description="Text for perplexity")] = None
    max_tokens: Annotated[int, Field(ge=1, le=1024)] = 64
    bench_requests: Annotated[int, Field(ge=0, le=200, description="Per version; 0: no bench")] = 16
    concurrency: Annotated[int, Field(ge=1, le=64)] = 1
# --- end eval ---
