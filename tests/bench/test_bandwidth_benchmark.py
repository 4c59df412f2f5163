"""benchmarks/bandwidth.py's arithmetic: the triad's output parsed, decode against the roofline, prefill against the peak."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from model_serving.bench.roofline import ModelBytes

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bandwidth.py"


@pytest.fixture(scope="module")
def bandwidth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bandwidth_benchmark", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_triad_figure_is_read_from_its_line(bandwidth: ModuleType) -> None:
    assert bandwidth.parse_triad("threads 2\narray_bytes 536870912\ntriad_best_gbs 41.2750\ncheck 7.0\n") == 41.275
    for broken in ("threads 2\ncheck 7.0\n", "triad_best_gbs 0.0000\n", "triad_best_gbs nan\n", "xtriad_best_gbs 3.0\n"):
        with pytest.raises(ValueError, match="no triad figure"):
            bandwidth.parse_triad(broken)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc compiles the triad")
def test_the_compiled_triad_reports_a_bandwidth_the_parser_reads(bandwidth: ModuleType) -> None:
    measured = bandwidth.stream_triad(threads=1, array_mb=8, reps=2)
    assert measured["triad_gbs"] > 0 and measured["numpy_read_gbs"] > 0 and measured["threads"] == 1


def test_decode_is_a_share_of_bandwidth_over_the_bytes_each_token_reads(bandwidth: ModuleType) -> None:
    mb = ModelBytes(weight_bytes_per_token=600_000_000, kv_bytes_per_context_token=20_000, file_bytes=700_000_000, n_layers=22)
    # 60 GB/s over 600 MB of weights and 32 tokens x 20 kB of cache: 60e9 / 600.64e6 tok/s
    roof = bandwidth.decode_roofline(mb, 80.0, 60.0, 32)
    assert roof["ceiling_tok_s"] == pytest.approx(60e9 / 600_640_000, abs=0.01)
    assert roof["fraction"] == pytest.approx(80.0 / (60e9 / 600_640_000), abs=1e-3)
    assert bandwidth.decode_roofline(mb, 80.0, 120.0, 32)["fraction"] == pytest.approx(roof["fraction"] / 2, abs=1e-3)


def test_prefill_counts_two_flops_per_weight_per_token(bandwidth: ModuleType) -> None:
    share = bandwidth.prefill_compute(500.0, 1_000_000_000, 2000.0)
    assert share == {"tok_s": 500.0, "gflops": 1000.0, "fraction_of_matmul_peak": 0.5}


def test_the_bound_follows_the_share_of_the_roofline(bandwidth: ModuleType) -> None:
    def row(fraction: float) -> dict[str, object]:
        return {"ours": {"decode": {"fraction": fraction}, "prefill": {"fraction_of_matmul_peak": 0.25}}}

    lines = bandwidth.bounds({"Q4_K_M": row(0.85), "Q8_0": row(0.5), "F16": row(1.5)})
    assert lines[0].startswith("Q4_K_M: decode at 85% of the roofline is bound by memory bandwidth")
    assert "not bandwidth" in lines[1] and "25% of the matmul peak" in lines[1]
    assert "CPU caches" in lines[2]  # a model that fits in cache is faster than memory allows: no bound claimed


def test_prefill_counts_the_weights_each_prompt_token_multiplies(bandwidth: ModuleType, smollm2_gguf: Path) -> None:
    from model_serving.gguf.header import read_header

    header = read_header(smollm2_gguf)
    vocab_by_hidden = header.token_embedding_shape[0] * header.token_embedding_shape[1]
    assert "output.weight" not in header.tensor_sizes  # SmolLM2 ties its output to the embedding table: counted once
    assert bandwidth.matmul_weights(smollm2_gguf) == header.parameter_count - vocab_by_hidden


def test_with_a_fit_each_quant_names_one_bound_from_its_split_of_the_token_time(bandwidth: ModuleType) -> None:
    def row(fraction: float, tok_s: float) -> dict[str, object]:
        return {"ours": {"decode": {"fraction": fraction, "measured_tok_s": tok_s}, "prefill": {"fraction_of_matmul_peak": 0.25}}}

    fit = {"effective_gbs": 39.2, "share_of_triad": 0.98, "fixed_ms_per_token": 2.8}
    # 20 ms per token, 2.8 of them fixed: reads take 86%; 5 ms per token: the fixed part is 56%
    lines = bandwidth.bounds({"Q4_K_M": row(0.88, 50.0), "tiny": row(0.4, 200.0)}, fit)
    assert "bound by memory bandwidth: weight reads take 86% of its 20.0 ms per token, the fixed part 14%" in lines[0]
    assert "bound by per-token work that does not grow with the weights: 2.8 ms of its 5.0 ms (56%)" in lines[1]
    assert "39.2 GB/s (98% of the STREAM triad), plus 2.8 ms per token" in lines[2]
    slow = bandwidth.bounds({"Q8_0": row(0.6, 50.0)}, {**fit, "share_of_triad": 0.6})
    assert "the kernels' read rate (60% of the triad)" in slow[0]


def test_the_mean_ratio_is_geometric_with_a_t_interval(bandwidth: ModuleType) -> None:
    import math

    got = bandwidth.mean_ratio([0.5, 2.0, None])
    assert got["geomean"] == 1.0 and got["pairs"] == 2
    # two rounds: one degree of freedom, t = 12.71; the log ratios' sd is ln(4)/sqrt(2)
    half = 12.71 * (math.log(4) / math.sqrt(2)) / math.sqrt(2)
    assert got["ci95"] == [round(math.exp(-half), 3), round(math.exp(half), 3)]
    assert bandwidth.mean_ratio([1.1]) is None


def test_level_is_judged_on_the_interval_against_the_margin(bandwidth: ModuleType) -> None:
    aa = [1.0, 1.01, 0.99, 1.0]
    assert bandwidth.level_verdict([1.10, 1.12, 1.11, 1.09], aa)["verdict"] == "ahead"
    assert bandwidth.level_verdict([0.99, 1.01, 0.98, 1.0], aa)["verdict"] == "at least level"
    assert bandwidth.level_verdict([0.80, 0.82, 0.81, 0.79], aa)["verdict"] == "behind"
    noisy = bandwidth.level_verdict([1.01, 0.94, 0.82, 1.03], aa)  # the spread of session 9's rounds at one stream
    assert noisy["verdict"] == "not resolved" and noisy["stock_over_stock"]["pairs"] == 4
    assert bandwidth.level_verdict([None, None], aa)["verdict"] == "not resolved"
