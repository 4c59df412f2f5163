"""The `bench` MCP tool: runs as a job and hands back the summary, verdicts and report paths."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from pydantic import Field

from model_serving.jobs import JobInfo, Progress
from model_serving.mcp.runtime import AppState, reported, run_as_job, writes


def register_tools(mcp: Any, state: AppState) -> None:
    @mcp.tool(name="bench", title="Benchmark a served model against latency and throughput targets",
              annotations=writes(destructive=False, idempotent=False))
    async def bench(
        model: Annotated[str, Field(description="Model name the server knows (embedded engine name or Ollama tag)", min_length=1)],
        ctx: Context,
        endpoint: Annotated[str | None, Field(description="Configured endpoint name or loopback URL; default: the embedded engine serving `model`, or OLLAMA_HOST when api is ollama")] = None,
        api: Annotated[Literal["openai", "ollama"] | None, Field(description="Wire protocol; default: from the endpoint")] = None,
        route: Annotated[Literal["chat", "completions"], Field(description="Chat or plain completions")] = "chat",
        profile: Annotated[Literal["fixed", "poisson", "sweep"], Field(description="Closed loop at `concurrency`, Poisson arrivals at `rate`, or a concurrency sweep")] = "fixed",
        n_requests: Annotated[int, Field(ge=1, le=10_000, strict=True, description="Measured requests (per level in a sweep)")] = 20,
        concurrency: Annotated[int, Field(ge=1, le=1024, strict=True, description="Streams in flight; the cap for Poisson arrivals")] = 1,
        rate: Annotated[float | None, Field(gt=0, description="Poisson arrival rate, requests/s (profile poisson)")] = None,
        levels: Annotated[list[Annotated[int, Field(ge=1, le=1024)]] | None, Field(description="Concurrency levels for a sweep; default 1,2,4,8")] = None,
        max_tokens: Annotated[int, Field(ge=1, le=32_768, strict=True)] = 32,
        prompt: Annotated[str | None, Field(description="One prompt to send every time")] = None,
        prompts_file: Annotated[str | None, Field(description="JSONL prompt file inside the allowed roots")] = None,
        synthetic_input_tokens: Annotated[int | None, Field(ge=1, le=131_072, strict=True, description="Synthetic prompts of about this many tokens, each with a random prefix")] = None,
        seed: Annotated[int, Field(strict=True)] = 0,
        ttft_ms: Annotated[float, Field(gt=0, description="Target: time to first token, ms")] = 200.0,
        e2e_ms: Annotated[float, Field(gt=0, description="Target: end-to-end latency, ms")] = 500.0,
        requests_per_s: Annotated[float, Field(gt=0, description="Target: completed requests per second")] = 10.0,
        memory_gb: Annotated[float, Field(gt=0, description="Target: server memory, GB")] = 8.0,
        statistic: Annotated[Literal["mean", "median", "p90", "p95", "p99"], Field(description="Statistic judged for latency targets")] = "p95",
        cold_start: Annotated[bool, Field(description="Ollama: unload first and measure the cold load")] = False,
        output_dir: Annotated[str | None, Field(description="Directory inside the allowed roots for JSON, JSONL, Markdown and PNG reports")] = None,
        wait_s: Annotated[float, Field(ge=0, le=600, description="Seconds to wait for the result before returning a job handle")] = 20.0,
    ) -> JobInfo:
        """Stream requests to a served model and measure TTFT, TPOT, inter-token latency, end-to-end latency and
        throughput, with bootstrap confidence intervals, server-timing reconciliation and the roofline. Each target
        gets PASS, FAIL or INCONCLUSIVE with likely causes. Returns a job: its result holds the summary, verdicts,
        findings and the paths of the report files; poll job_status if it is still running."""
        from model_serving.bench.options import make_config
        from model_serving.bench.runner import run_benchmark, run_sweep

        with reported():
            config = make_config(
                state.settings, model=model, endpoint=endpoint, api=api, prompts_file=prompts_file, output_dir=output_dir,
                targets={"ttft_ms": ttft_ms, "e2e_ms": e2e_ms, "request_throughput": requests_per_s, "memory_gb": memory_gb, "statistic": statistic},
                route=route, n_requests=n_requests, concurrency=concurrency, rate=rate if profile == "poisson" else None,
                max_tokens=max_tokens, prompt=prompt, input_tokens=synthetic_input_tokens, seed=seed, cold_start=cold_start,
                prompt_source="synthetic" if synthetic_input_tokens else None,
            )
            if profile == "poisson" and rate is None:
                from model_serving.errors import InputError

                raise InputError("The poisson profile needs a rate in requests/s.", "Pass rate, e.g. 2.0.")

        def work(progress: Progress) -> Any:
            if profile == "sweep":
                return run_sweep(config, levels or [1, 2, 4, 8], progress)
            return run_benchmark(config, progress)

        return await run_as_job(state, ctx, "bench", work, wait_s)

    @mcp.tool(name="bench_quant_ab", title="Compare quantizations of one model on speed and quality",
              annotations=writes(destructive=False, idempotent=False))
    async def bench_quant_ab(
        ggufs: Annotated[list[str], Field(min_length=2, max_length=8, description="GGUF files (inside the allowed roots) of one model")],
        ctx: Context,
        n_requests: Annotated[int, Field(ge=1, le=1000, strict=True)] = 8,
        max_tokens: Annotated[int, Field(ge=1, le=4096, strict=True)] = 16,
        ttft_ms: Annotated[float, Field(gt=0)] = 200.0,
        e2e_ms: Annotated[float, Field(gt=0)] = 500.0,
        quality_floor: Annotated[float, Field(ge=0, le=1, description="Least share of greedy answers identical to the reference's")] = 0.5,
        max_ppl_ratio: Annotated[float, Field(ge=1.0, description="Largest perplexity ratio to the reference")] = 1.10,
        output_dir: Annotated[str | None, Field(description="Directory inside the allowed roots for the table and per-variant reports")] = None,
        wait_s: Annotated[float, Field(ge=0, le=600)] = 10.0,
    ) -> JobInfo:
        """Serve each quantization in turn on the embedded engine with the same prompts; report latency and decode speed
        beside greedy agreement and perplexity against the largest (highest-precision) file, and name the smallest
        variant that passes the latency targets and stays above the quality floor. Runs as a job."""
        from model_serving.bench.models import Targets
        from model_serving.bench.quant_ab import run_quant_ab

        targets = Targets(ttft_ms=ttft_ms, e2e_ms=e2e_ms, request_throughput=None, memory_gb=None)

        def work(progress: Progress) -> Any:
            return run_quant_ab(state.settings, ggufs, n_requests=n_requests, max_tokens=max_tokens, targets=targets,
                                quality_floor=quality_floor, max_ppl_ratio=max_ppl_ratio, output_dir=output_dir, progress=progress)

        return await run_as_job(state, ctx, "bench_quant_ab", work, wait_s)
