"""Our bench and `vllm bench serve` measure the same llama.cpp server under the same workload, taking turns, and agree.

Not a speed assertion: both clients measure one server in one run, alternating, and only their ratio is judged. The
tolerance is the larger of the 5% target and three combined standard errors of the two estimates (bootstrap of each
median over its requests; closed-loop throughput is concurrency / mean latency, so its error is the mean's), so a short
run is not failed for its sample size, and a client that clocks or counts differently still is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from peer_agreement import (  # noqa: E402
    METRICS,
    Workload,
    agreement,
    default_checkpoint,
    measure,
    pool,
    run_ours,
    run_vllm_bench,
    serving,
    summarise,
    tolerances,
    vllm_python,
    who_is_wrong,
)

from model_serving.checkpoint.rebuild import smollm2_gguf_path  # noqa: E402
from model_serving.errors import InputError  # noqa: E402
from model_serving.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture()
def peer_settings(tmp_path: Path) -> Settings:
    """The machine's own state (vLLM's managed venv and the rebuilt checkpoint live there), our roots for this run."""
    try:
        gguf = smollm2_gguf_path()
    except InputError as exc:
        pytest.skip(str(exc))
    base = Settings.from_env()
    if vllm_python(base) is None:
        pytest.skip("vLLM's environment is not installed (model-serving engines install vllm): no `vllm bench serve` to compare with")
    checkpoint = default_checkpoint(base)
    return Settings.from_env(roots=[str(checkpoint.parent), str(gguf.parent), str(tmp_path)])


def test_our_bench_agrees_with_vllm_bench_serve(peer_settings: Settings, tmp_path: Path) -> None:
    python = vllm_python(peer_settings)
    assert python is not None
    clients = {"ours": run_ours, "vllm": lambda s, w, o, seed: run_vllm_bench(python, s, w, o, seed)}
    # completions: on the chat route vLLM's client takes llama-server's role-only first chunk for the first token
    w = Workload(input_tokens=32, output_tokens=16, concurrency=2, requests=12, rounds=2, route="completions")
    with serving(peer_settings, "embedded", default_checkpoint(Settings.from_env()), slots=4) as served:
        runs = measure(served, clients, w, tmp_path, [])
    ours, peer = summarise(runs["ours"]), summarise(runs["vllm"])
    assert ours["failed"] == peer["failed"] == 0
    assert ours["completed"] == peer["completed"] == w.requests * w.rounds
    # ignore_eos is honoured: ours counts the server's usage, exactly what was asked; vLLM's client tokenizes the text
    # again, where pieces can merge, so its count may fall a little short
    assert ours["mean_output_tokens"] == w.output_tokens
    assert abs(peer["mean_output_tokens"] - w.output_tokens) <= 0.05 * w.output_tokens, peer["mean_output_tokens"]
    rows, limits = agreement(ours, peer), tolerances(pool(runs), "vllm")
    notes = who_is_wrong("vllm", ours, peer, rows, w)
    for metric in METRICS:
        ratio = rows[metric]["ratio"]
        assert ratio is not None and abs(ratio - 1) <= limits[metric], (metric, rows[metric], limits[metric], notes)
