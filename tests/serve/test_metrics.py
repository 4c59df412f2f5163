"""The engines' own /metrics read into one view: a live llama.cpp engine, histograms from a real Prometheus exporter."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from model_serving.serve.embedded.engine import start_model, stop_model
from model_serving.serve.metrics import Scrape, fetch, histogram_quantile, merge, metrics_view, normalise, parse, watch
from model_serving.serve.registry import ServedModel
from model_serving.settings import Settings


def chat(base_url: str, name: str, text: str) -> dict:
    reply = httpx.post(f"{base_url}/v1/chat/completions", timeout=120,
                       json={"model": name, "messages": [{"role": "user", "content": text}], "max_tokens": 6, "temperature": 0})
    reply.raise_for_status()
    return reply.json()["usage"]


@pytest.fixture(scope="module")
def served(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, ServedModel]]:
    """One engine for the module: each test reads differences of its counters, never their absolute values."""
    home = tmp_path_factory.mktemp("metrics-home")
    settings = Settings(home=home, roots=[home, smollm2_gguf.parent])
    model = start_model(settings, smollm2_gguf, "smol", ctx_size=512, parallel=2)
    try:
        yield settings, model
    finally:
        stop_model(settings, "smol")


@pytest.fixture
def engine(served: tuple[Settings, ServedModel]) -> ServedModel:
    return served[1]


def test_the_view_of_a_live_engine_counts_the_tokens_of_the_requests_sent(served: tuple[Settings, ServedModel]) -> None:
    settings, engine = served
    frames = watch(settings, interval_s=0.2)
    first = next(frames).models[0]
    assert first.available and first.engine == "llamacpp" and first.rate_window_s is None  # one scrape: no rates yet
    usages = [chat(engine.base_url, "smol", f"Name a colour, {i}.") for i in range(3)]
    second = next(frames).models[0]
    sent_prompt = sum(u["prompt_tokens"] for u in usages)
    sent_out = sum(u["completion_tokens"] for u in usages)
    assert second.generation_tokens_total - first.generation_tokens_total == sent_out
    assert second.prompt_tokens_total - first.prompt_tokens_total == sent_prompt  # processed + reused from the cache
    assert second.requests_running == 0 and second.requests_waiting == 0
    # the rate is the counters' difference over the measured time between the two scrapes
    assert second.generation_tok_s * second.rate_window_s == pytest.approx(sent_out)
    assert second.ttft is None and any("no latency histograms" in n for n in second.notes)
    view = metrics_view(settings)
    assert [m.name for m in view.models] == ["smol"] and view.interval_s is None and view.models[0].generation_tok_s is None


def test_the_parser_reads_every_sample_of_a_real_scrape(engine: ServedModel) -> None:
    chat(engine.base_url, "smol", "Say hi.")
    text = httpx.get(f"{engine.base_url}/metrics").text
    # independent reading: every non-comment line is `name value` for llama.cpp (no labels)
    expected = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert parse(text).values == expected
    assert expected["llamacpp:tokens_predicted_total"] > 0


def _vllm_like_page() -> tuple[str, list[float]]:
    """A page from prometheus_client (the exporter vLLM uses) with vLLM's metric names and labels."""
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    running = Gauge("vllm:num_requests_running", "running", labels, registry=registry)
    waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=registry)
    kv = Gauge("vllm:kv_cache_usage_perc", "kv", labels, registry=registry)
    prompt = Counter("vllm:prompt_tokens", "prompt", labels, registry=registry)
    gen = Counter("vllm:generation_tokens", "generation", labels, registry=registry)
    done = Counter("vllm:request_success", "done", [*labels, "finished_reason"], registry=registry)
    ttft = Histogram("vllm:time_to_first_token_seconds", "ttft", labels, buckets=(0.1, 0.5, 1.0), registry=registry)
    e2e = Histogram("vllm:e2e_request_latency_seconds", "e2e", labels, buckets=(1.0, 2.0), registry=registry)
    observed = [0.05, 0.2, 0.3, 0.7]
    for engine_index in ("0", "1"):  # two engine cores: the view sums over them
        running.labels("m", engine_index).set(2)
        waiting.labels("m", engine_index).set(3)
        kv.labels("m", engine_index).set(0.25)
        prompt.labels("m", engine_index).inc(100)
        gen.labels("m", engine_index).inc(40)
        done.labels("m", engine_index, "stop").inc(2)
        for value in observed[:2] if engine_index == "0" else observed[2:]:
            ttft.labels("m", engine_index).observe(value)
        e2e.labels("m", engine_index).observe(5.0)  # past the last finite bound
    return generate_latest(registry).decode(), observed


def test_quantiles_from_cumulative_buckets_by_linear_interpolation() -> None:
    text, _ = _vllm_like_page()
    view = normalise(ServedModel(name="m", gguf_path="/x", base_url="http://127.0.0.1:1", port=1, pid=1, ctx_size=1, parallel=1,
                                 threads=1, started_at="", log_path="", engine="vllm"), parse(text))
    assert view.available and view.engine == "vllm"
    assert (view.requests_running, view.requests_waiting, view.requests_completed_total) == (4, 6, 4)
    assert (view.prompt_tokens_total, view.generation_tokens_total) == (200, 80)
    assert view.kv_cache_usage == pytest.approx(0.25)  # 0.25 on each of two engine cores: a mean, a sum of fractions means nothing
    # buckets 0.1 | 0.5 | 1.0 | +Inf hold 1 | 3 | 4 | 4 of [0.05, 0.2, 0.3, 0.7] (cumulative)
    # p50: rank 0.5 x 4 = 2 lies in (0.1, 0.5] with 1 below and 3 at its top: 0.1 + 0.4 x (2 - 1) / (3 - 1) = 0.3
    # p95: rank 3.8 lies in (0.5, 1.0] with 3 below and 4 at its top: 0.5 + 0.5 x (3.8 - 3) / (4 - 3) = 0.9
    assert view.ttft.p50_s == pytest.approx(0.3) and view.ttft.p95_s == pytest.approx(0.9) and view.ttft.count == 4
    assert view.ttft.mean_s == pytest.approx(sum([0.05, 0.2, 0.3, 0.7]) / 4)
    assert view.e2e.p50_s == 2.0  # every observation past the last bound: the last finite bound is all one can say
    assert histogram_quantile(0.5, {math.inf: 0.0}) is None and histogram_quantile(0.5, {1.0: 3.0}) is None


def test_replicas_sum_and_an_unreachable_engine_says_why() -> None:
    text, _ = _vllm_like_page()
    one = parse(text)
    both = merge([one, parse(text), Scrape(error="down")])
    assert both.values["vllm:generation_tokens_total"] == 2 * one.values["vllm:generation_tokens_total"]
    assert both.buckets["vllm:time_to_first_token_seconds"][math.inf] == 8
    assert merge([Scrape(error="a"), Scrape(error="b")]).error == "a; b"
    gone = fetch("http://127.0.0.1:9")  # nothing listens on the discard port
    assert gone.error and "could not be read" in gone.error


def test_an_unknown_engine_kind_is_named_not_guessed() -> None:
    model = ServedModel.model_construct(name="x", base_url="http://127.0.0.1:1", engine="tgi", replicas=[], state="running")
    view = normalise(model, Scrape(values={"tgi_queue_size": 1.0}))
    assert not view.available and "'tgi' is not one the metrics reader knows" in view.reason


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python turns it into KeyboardInterrupt only when it is not ignored


def test_status_watch_redraws_until_ctrl_c(served: tuple[Settings, ServedModel], tmp_path: Path) -> None:
    settings, engine = served
    env = {**os.environ, "MODEL_SERVING_HOME": str(settings.home), "MODEL_SERVING_ROOTS": str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-m", "model_serving", "--json", "status", "--watch", "--interval", "0.5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                             preexec_fn=_default_sigint)  # a run started in the background would pass on SIGINT ignored
    try:
        frames = [json.loads(child.stdout.readline()) for _ in range(2)]
        sent = chat(engine.base_url, "smol", "One word.")["completion_tokens"]
        for _ in range(40):  # frames drawn before the answer may still be in the pipe: read on to the first that counts it
            frames.append(json.loads(child.stdout.readline()))
            if frames[-1]["models"][0]["generation_tokens_total"] - frames[0]["models"][0]["generation_tokens_total"] == sent:
                break
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert all(f["models"][0]["name"] == "smol" and f["models"][0]["available"] for f in frames)
    assert frames[0]["interval_s"] is None and frames[1]["interval_s"] == 0.5
    assert frames[-1]["models"][0]["generation_tokens_total"] - frames[0]["models"][0]["generation_tokens_total"] == sent


def test_bench_records_the_servers_own_counters_beside_the_clients(engine: ServedModel, tmp_path: Path) -> None:
    from model_serving.bench import BenchConfig, run_benchmark

    config = BenchConfig(base_url=engine.base_url, model="smol", n_requests=3, max_tokens=6, prompt_source="synthetic", input_tokens=16,
                         warmup=1, output_dir=tmp_path)
    result = run_benchmark(config)
    m = result.server_metrics
    assert m is not None and m.available and m.after.engine == "llamacpp"
    sent = [*result.records, *result.warmup_records]  # the server counts the warm-up too
    # a keep-alive connection the engine closed loses a request before its headers (bench counts it in connection_errors):
    # it never reached the engine, and the engine's own counters agree
    lost = [r for r in sent if r.status != "ok"]
    assert all(r.error_kind == "reset" and "before the response headers" in (r.error or "") for r in lost)
    answered = [r for r in sent if r.status == "ok"]
    assert answered and all(r.output_tokens_source == "server" for r in answered)
    assert m.delta["generation_tokens_total"] == sum(r.output_tokens for r in answered)
    assert m.delta["prompt_tokens_total"] == sum(r.prompt_tokens for r in answered)
    saved = json.loads(Path(result.files["json"]).read_text())["model_serving"]["server_metrics"]
    assert saved["delta"] == m.delta
    assert "## Server's own metrics (llamacpp" in Path(result.files["markdown"]).read_text()


def test_a_server_without_metrics_is_reported_not_available(httpserver) -> None:  # noqa: ANN001 - pytest-httpserver's fixture
    from model_serving.bench import BenchConfig
    from model_serving.bench.engine_metrics import compare, snapshot

    httpserver.expect_request("/metrics").respond_with_data("not found", status=404)  # as Ollama answers
    config = BenchConfig(base_url=httpserver.url_for("/").rstrip("/"), model="m")
    m = compare(config, snapshot(config))
    assert not m.available and "HTTP 404" in m.reason and "not available" in m.reason


def test_the_mcp_tool_reads_twice_for_rates(served: tuple[Settings, ServedModel]) -> None:
    import anyio
    from mcp import Client

    from model_serving.mcp.server import create_server

    async def call() -> dict:
        async with Client(create_server(served[0])) as client:
            result = await client.call_tool("serving_metrics", {})
            assert not result.is_error, result.content[0].text
            assert result.content[0].text.startswith("smol (llamacpp): 0 running, 0 waiting")
            return result.structured_content

    view = anyio.run(call)
    model = view["models"][0]
    assert view["interval_s"] == 1.0 and model["available"] and model["rate_window_s"] >= 1.0 and model["generation_tok_s"] == 0
