"""Benchmark a served model: latency and throughput a user can trust, judged against deployment targets.

`run_benchmark(config, progress)` is the one entry point the CLI, the MCP tool and `deploy` share.
"""

from model_serving.bench.runner import run_benchmark, run_sweep
from model_serving.bench.schema import SLO, BenchConfig, BenchResult, Verdict

__all__ = ["BenchConfig", "BenchResult", "SLO", "Verdict", "run_benchmark", "run_sweep"]
