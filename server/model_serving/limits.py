"""Bounds and defaults, defined once: the core validates with them and both faces derive from them.

Each reusable quantity is an `Annotated` type carrying its range, default and description; each verb
has one input model built from them. The CLI turns a model's fields into options and the MCP server
into tool parameters, so a bound cannot differ between the faces (tests/faces/test_parity.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# A name clients use for a model: lower case, and safe as a file name and as an Ollama tag.
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,63}$"
# llama.cpp and Ollama type names: Q4_K_M, IQ2_XS, F16, TQ1_0 ... (case-insensitive; never flag-like).
QUANT_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,15}$"

PathArg = Annotated[str, Field(min_length=1, max_length=4096, description="A path under the allowed roots")]
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN, description="Model name clients use (lower case, digits, . _ : -)")]
QuantType = Annotated[str, Field(pattern=QUANT_PATTERN, description="Quantization type: Q4_K_M, Q5_K_M, Q6_K, Q8_0, ... or F16 to keep the export")]
CtxSize = Annotated[int, Field(ge=64, le=1 << 20, description="Context length in tokens")]
Parallel = Annotated[int, Field(ge=1, le=64, description="Parallel sequences (server slots, continuous batching)")]
Threads = Annotated[int, Field(ge=1, le=512, description="CPU threads (default: all cores)")]
Port = Annotated[int, Field(ge=1024, le=65535, description="Port on 127.0.0.1 (default: a free one)")]
Requests = Annotated[int, Field(ge=1, le=10_000, description="Measured requests")]
Concurrency = Annotated[int, Field(ge=1, le=1024, description="Requests in flight")]
MaxTokens = Annotated[int, Field(ge=1, le=32_768, description="Tokens generated per request")]
Target = Literal["auto", "embedded", "ollama"]

DEFAULT_CTX_SIZE = 2048
DEFAULT_PARALLEL = 4
DEFAULT_QUANT = "Q8_0"


class Request(BaseModel):
    """An input model: unknown fields are refused, so a misspelt option is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class DeployRequest(Request):
    source: Annotated[str | None, Field(min_length=1, max_length=4096, description="Checkpoint folder, .gguf file or Hub repo id; omit for the default SmolLM2-135M")] = None
    name: ModelName | None = None
    quant: QuantType = DEFAULT_QUANT
    target: Annotated[Target, Field(description="auto: Ollama when it answers, else the embedded engine")] = "auto"
    out_dir: PathArg | None = None
    ctx_size: CtxSize = DEFAULT_CTX_SIZE
    parallel: Parallel = DEFAULT_PARALLEL
    bench: Annotated[bool, Field(description="Benchmark the served model")] = True
    bench_requests: Requests = 16
    concurrency: Annotated[Concurrency | None, Field(description="Bench concurrency (default: the engine's parallel slots)")] = None
    verify_quality: Annotated[bool, Field(description="Compare the quantized model with its source")] = True
    allow_requantize: Annotated[bool, Field(description="Quantize an already-quantized input (quality suffers)")] = False
    allow_broken: Annotated[bool, Field(description="Serve even when the quality check calls the quantized model broken")] = False
    replace: Annotated[bool, Field(description="Replace a model already served or registered under this name")] = False
    plan_only: Annotated[bool, Field(description="Return the plan and do nothing")] = False
