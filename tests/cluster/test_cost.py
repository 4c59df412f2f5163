"""Cost: self-hosted $/1M tokens from a bench result's throughput, and the crossover with an API, worked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_runner import cli_in_process

from model_serving.cluster.cost import crossover, estimate, read_throughput
from model_serving.errors import InputError
from model_serving.failures import validated
from model_serving.requests import CostRequest
from model_serving.settings import Settings

SIZING_CONFIGS = Path(__file__).parent / "data" / "configs"


def bench_json(folder: Path, *, output_tok_s: float = 100.0, input_tokens: int = 60_000, duration: float = 200.0) -> Path:
    """A sweep's result as `bench sweep --output-dir` writes it: vLLM's keys on top, ours under model_serving."""
    summary = {"completed": 64, "failed": 0, "duration": duration, "total_input_tokens": input_tokens,
               "total_output_tokens": int(output_tok_s * duration), "request_throughput": 0.32, "output_throughput": output_tok_s}
    ours = {"config": {"concurrency": 4}, "summary": summary, "knee": {"concurrency": 4, "cause": "compute", "explanation": "..."},
            "sweep": [{"concurrency": c} for c in (1, 2, 4, 8)]}
    path = folder / "bench-m.json"
    path.write_text(json.dumps({**summary, "max_concurrency": 4, "model_serving": ours}), encoding="utf-8")
    return path


def test_the_crossover_on_a_hand_computed_case(settings: Settings, tmp_path: Path) -> None:
    # Bench: 100 output tok/s, and 60,000 input tokens over 200 s = 300 input tok/s: 400 tok/s in all, 75% input.
    path = bench_json(tmp_path)
    r = estimate(settings, CostRequest(bench=str(path), gpu_hourly=2.0, api_input=1.0, api_output=4.0))
    assert (r.throughput.input_tok_s, r.throughput.output_tok_s, r.input_share) == (300.0, 100.0, 0.75)
    assert "knee at concurrency 4" in r.throughput.source
    # $/1M = gpu_hourly / (tok/s x 3600) x 1e6
    assert r.self_usd_per_m_output == pytest.approx(2 / (100 * 3600) * 1e6)  # 5.5556
    assert r.self_usd_per_m_input == pytest.approx(2 / (300 * 3600) * 1e6)  # 1.8519
    assert r.self_usd_per_m_blended == pytest.approx(2 / (400 * 3600) * 1e6)  # 1.3889
    # one replica: 400 x 86,400 = 34,560,000 tokens/day for 2 x 24 = 48 USD/day
    assert r.replica_tokens_per_day == 34_560_000
    # API at the bench's mix: 0.75 x 1 + 0.25 x 4 = 1.75 USD/1M
    assert r.api_usd_per_m_blended == pytest.approx(1.75)
    # first crossover: 48 / 1.75e-6 = 27,428,571 tokens/day, inside the first replica (< 34,560,000)
    assert r.crossover_tokens_per_day == pytest.approx(48 / 1.75e-6)
    # each added replica costs 48 USD/day more; the API wins again right after the n-th replica fills while
    # (n+1) x 48 > n x 34.56M x 1.75e-6 = n x 60.48: n = 1 (96 > 60.48), 2 (144 > 120.96), 3 (192 > 181.44), not 4 (240 < 241.92)
    # so self-hosting stays cheaper from 4 x 48 / 1.75e-6 = 109,714,286 tokens/day (where 192 USD = the API's price)
    assert r.cheaper_from_tokens_per_day == pytest.approx(4 * 48 / 1.75e-6)
    assert r.plot and Path(r.plot).stat().st_size > 1000 and Path(r.plot).read_bytes()[:4] == b"\x89PNG"


def test_the_crossover_agrees_with_the_two_cost_curves_walked_point_by_point() -> None:
    daily, capacity, price = 48.0, 34_560_000.0, 1.75e-6
    first, stays = crossover(daily, capacity, price)

    def self_hosted(v: float) -> float:
        return max(1, math.ceil(v / capacity)) * daily

    volumes = [i * 50_000.0 for i in range(1, 4000)]  # up to 200M tokens/day
    cheaper = [v for v in volumes if self_hosted(v) < v * price]
    assert cheaper[0] == pytest.approx(first, abs=50_000)
    last_dearer = max(v for v in volumes if self_hosted(v) >= v * price)
    assert last_dearer == pytest.approx(stays, abs=50_000)


def test_an_api_cheaper_than_a_full_replica_never_crosses(settings: Settings, tmp_path: Path) -> None:
    # a full replica's tokens at the API: 34.56M x (0.75 x 0.1 + 0.25 x 0.4) / 1e6 = 6.05 USD/day < 48 USD/day
    r = estimate(settings, CostRequest(bench=str(bench_json(tmp_path)), gpu_hourly=2.0, api_input=0.1, api_output=0.4))
    assert r.crossover_tokens_per_day is None and r.cheaper_from_tokens_per_day is None
    assert "stays cheaper at every volume" in r.summary


def test_a_gpu_sizes_the_replica_with_the_bundle_math(settings: Settings, tmp_path: Path) -> None:
    config = next(SIZING_CONFIGS.glob("*70b*"), None) if SIZING_CONFIGS.is_dir() else None
    if config is None:
        pytest.skip("the 70B sizing config (tests/cluster/data/configs) is not there")
    local = tmp_path / "config.json"
    local.write_text(config.read_text() if config.is_file() else (config / "config.json").read_text())
    from model_serving.cluster.sizing import size_for

    expected = size_for(local, "H100-80GB").tensor_parallel_size
    r = estimate(settings, CostRequest(bench=str(bench_json(tmp_path)), gpu_hourly=2.0, gpu="H100-80GB", checkpoint=str(local)))
    assert expected > 1 and r.gpus_per_replica == expected and r.replica_hourly_usd == 2.0 * expected
    assert r.self_usd_per_m_blended == pytest.approx(2.0 * expected / (400 * 3600) * 1e6)


@pytest.mark.parametrize("values, cause", [
    ({"gpu_hourly": 0.0}, "gpu_hourly"),
    ({"gpu_hourly": -1.0}, "gpu_hourly"),
    ({}, "gpu_hourly"),
    ({"gpu_hourly": 2.0, "api_input": 0.0, "api_output": 1.0}, "api_input"),
    ({"gpu_hourly": 2.0, "api_input": 1.0}, "needs both sides"),
    ({"gpu_hourly": 2.0, "gpu": "H100-80GB"}, "needs both --gpu and --checkpoint"),
])
def test_missing_or_non_positive_prices_are_refused(values: dict, cause: str, settings: Settings, tmp_path: Path) -> None:
    path = bench_json(tmp_path)
    with pytest.raises(InputError, match=cause) as caught:
        estimate(settings, validated(CostRequest, {"bench": str(path), **values}, "cost_estimate"))
    assert caught.value.next_step


@pytest.mark.parametrize("content", [
    "not json",
    json.dumps({"model_serving": {"summary": {"completed": 0, "failed": 5}}}),
    json.dumps({"model_serving": {"summary": {"output_throughput": 0.0, "total_input_tokens": 0, "duration": 3.0}}}),
    json.dumps([1, 2]),
])
def test_a_bench_json_without_throughput_says_what_to_give(content: str, tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="has no usable throughput") as caught:
        read_throughput(path)
    assert "bench sweep" in caught.value.next_step


def test_vllms_own_bench_serve_json_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps({"duration": 10.0, "total_input_tokens": 5000, "output_throughput": 250.0, "max_concurrency": 16}))
    t = read_throughput(path)
    assert (t.input_tok_s, t.output_tok_s, t.concurrency) == (500.0, 250.0, 16) and "not a sweep" in t.source


def test_the_cost_cli_prints_the_crossover(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bench_json(tmp_path)
    code, out, _ = cli_in_process(capsys, "--root", str(tmp_path), "--json", "cost", "--bench", str(path), "--gpu-hourly", "2",
                                  "--api-input", "1", "--api-output", "4")
    assert code == 0
    assert json.loads(out)["crossover_tokens_per_day"] == pytest.approx(48 / 1.75e-6)
    code, _, err = cli_in_process(capsys, "--root", str(tmp_path), "cost", "--bench", str(path), "--gpu-hourly", "0")
    assert code != 0 and "gpu" in err and "next step" in err
