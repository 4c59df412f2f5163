"""The production plan picks the weight format per GPU, sizes with its bytes per weight, and the bundle carries it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import validate_chart_values, validate_manifest
from test_bundle import MANIFESTS, load

from model_serving.cluster.bundle import plan_production
from model_serving.cluster.cost import per_million
from model_serving.cluster.throughput import BANDWIDTH_EFFICIENCY, CONTEXT_FILL
from model_serving.errors import InputError
from model_serving.requests import PlanProductionRequest
from model_serving.settings import Settings

# Llama-3.1-8B: the projections of 32 layers, 32 x (2 x 4096x4096 + 2 x 4096x1024 + 3 x 4096x14336) = 6,979,321,856, are what
# a format quantizes; embeddings, lm_head and norms (8,030,261,248 - 6,979,321,856 = 1,050,939,392) stay at 2 bytes
LINEAR, REST = 6_979_321_856, 1_050_939_392
BYTES = {"bf16": (LINEAR + REST) * 2, "fp8": LINEAR + REST * 2, "w8a8-int8": LINEAR + REST * 2,
         "awq": int(LINEAR * 4.25 / 8) + REST * 2, "gptq": int(LINEAR * 4.125 / 8) + REST * 2}
ID = "example/llama-3.1-8b-quantized"  # the quantized checkpoint's repo (a 16-bit source needs one for awq, gptq, w8a8-int8)

# (GPU, the format `auto` picks, words its reason gives, TP)
GPU_CLASSES = [
    ("H100-80GB", "fp8", "(compute capability 9.0) has FP8 tensor cores", 1),  # Hopper
    ("L40S-48GB", "fp8", "(compute capability 8.9) has FP8 tensor cores", 1),  # Ada, datacenter bandwidth
    ("L4-24GB", "awq", "memory-bound (300 GB/s)", 1),  # Ada, but L4-class bandwidth: 4-bit (bf16 needs TP 2 here)
    ("A10G-24GB", "awq", "memory-bound (600 GB/s)", 1),
    ("T4-16GB", "awq", "memory-bound (320 GB/s)", 1),
    ("A100-80GB", "w8a8-int8", "(compute capability 8.0) has INT8 tensor cores but no FP8", 1),  # Ampere: no FP8 compute, INT8 fits
]


def plan(settings: Settings, configs: Path, gpu: str, out: str = "bundle", config: str = "llama-3.1-8b", **options: Any) -> tuple[Any, dict[str, Any]]:
    folder = configs.parent / out
    result = plan_production(settings, PlanProductionRequest(source=str(configs / config), gpu=gpu, output=str(folder), **options))
    return result, load(folder)


@pytest.mark.parametrize(("gpu", "fmt", "reason", "tp"), GPU_CLASSES)
def test_auto_picks_the_format_per_gpu_class_and_sizes_with_its_bytes(settings: Settings, configs: Path, gpu: str, fmt: str, reason: str,
                                                                      tp: int) -> None:
    result, files = plan(settings, configs, gpu, model_id=ID)
    assert (result.format, result.sizing.tensor_parallel_size) == (fmt, tp) and reason in result.format_why
    assert result.sizing.weights_bytes == BYTES[fmt]
    for name in [*MANIFESTS, "kserve-llminferenceservice.yaml"]:
        validate_manifest(files[name])
    validate_chart_values(files["production-stack-values.yaml"])
    argv = files["vllm-args.json"]
    # vLLM makes FP8 at load from the 16-bit checkpoint; the others are read from the quantized checkpoint's config
    quantization = ["--quantization", "fp8"] if fmt == "fp8" else []
    assert argv[-2:] == quantization if quantization else "--quantization" not in argv
    model = files["production-stack-values.yaml"]["servingEngineSpec"]["modelSpec"][0]["vllmConfig"]
    assert model["extraArgs"] == quantization
    kserve_args = files["kserve-llminferenceservice.yaml"]["spec"]["template"]["containers"][0]["env"][0]["value"]
    assert kserve_args.endswith(" --quantization fp8") == (fmt == "fp8")
    if fmt == "fp8":  # the cache holds, and the start-up budget loads, the 16-bit files
        container = files["manifests/deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
        assert container["startupProbe"]["failureThreshold"] == math.ceil(2 * (BYTES["bf16"] / 500e6 + 180) / 10)
    else:
        assert any(n.startswith(f"The pods pull {ID}: it must hold the ") for n in result.notes)


def test_int8_gives_way_to_w4a16_where_it_does_not_fit(settings: Settings, configs: Path) -> None:
    # 70B at INT8 on a 12 GiB A100-class card: 72.7 GB of weights are 9.1 GB per GPU at TP 8, + 3 GiB reserve > 10.8 GiB usable
    result, _ = plan(settings, configs, "A100-40GB", config="llama-3.1-70b", model_id="example/llama-70b-awq", gpu_memory_gb=12,
                     max_model_len=4096, target_concurrency=1)
    assert result.format == "awq" and "INT8 W8A8 does not fit" in result.format_why and result.sizing.tensor_parallel_size == 8


def test_the_16bit_checkpoint_is_not_served_as_a_quantized_one(settings: Settings, configs: Path) -> None:
    with pytest.raises(InputError) as err:  # auto picks AWQ on L4, and the pods would pull a 16-bit repo under that name
        plan(settings, configs, "L4-24GB", config="smollm2-135m")
    assert "AWQ W4A16" in err.value.cause and "quantize --format awq" in err.value.next_step and "--format fp8" in err.value.next_step
    with pytest.raises(InputError, match="compute capability 7.5"):
        plan(settings, configs, "T4-16GB", model_id=ID, format="fp8")
    with pytest.raises(InputError, match="CPU node"):
        plan(settings, configs, "cpu", model_id="example/llama-GGUF", format="awq")
    result, _ = plan(settings, configs, "A100-80GB", model_id=ID, format="fp8")
    assert any("weight-only" in n for n in result.notes)  # Ampere runs FP8 weights without FP8 compute
    result, files = plan(settings, configs, "H100-80GB", out="b2", model_id=ID, format="bf16")
    assert result.format == "bf16" and "--quantization" not in files["vllm-args.json"] and result.sizing.weights_bytes == BYTES["bf16"]


def test_a_repo_name_that_does_not_say_quantized_gets_a_warning(settings: Settings, configs: Path) -> None:
    result, _ = plan(settings, configs, "L4-24GB", model_id="meta-llama/Llama-3.1-8B-Instruct")
    assert result.format == "awq" and any("does not say it is quantized" in n and "--format bf16" in n for n in result.notes)
    result, _ = plan(settings, configs, "L4-24GB", out="b2", model_id="example/Llama-3.1-8B-Instruct-AWQ")
    assert not any("does not say it is quantized" in n for n in result.notes)


def test_a_consumer_gpu_keeps_llamacpp_unless_a_vllm_format_is_asked(settings: Settings, configs: Path) -> None:
    result, _ = plan(settings, configs, "RTX4090-24GB", model_id="example/llama-GGUF:Q4_K_M", target_concurrency=2)
    assert result.engine == "llamacpp" and result.format == "gguf Q4_K_M"
    result, files = plan(settings, configs, "RTX4090-24GB", out="b2", model_id=ID, format="awq")
    assert result.engine == "vllm" and result.format == "awq" and files["vllm-args.json"][2] == ID


def compressed(configs: Path, name: str, weights: dict[str, Any], activations: dict[str, Any] | None = None) -> str:
    cfg = json.loads((configs / "llama-3.1-8b" / "config.json").read_text())
    group: dict[str, Any] = {"targets": ["Linear"], "weights": weights}
    if activations:
        group["input_activations"] = activations
    cfg["quantization_config"] = {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"group_0": group}}
    (configs / name).mkdir()
    (configs / name / "config.json").write_text(json.dumps(cfg))
    return name


@pytest.mark.parametrize(("weights", "activations", "fmt"), [
    ({"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128}, None, "awq"),
    ({"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128}, None, "gptq"),
    ({"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}, {"num_bits": 8, "type": "int", "dynamic": True}, "w8a8-int8"),
    ({"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"}, {"num_bits": 8, "type": "float", "dynamic": True}, "fp8"),
])
def test_a_compressed_checkpoint_is_served_as_its_config_says(settings: Settings, configs: Path, weights: dict[str, Any],
                                                             activations: dict[str, Any] | None, fmt: str) -> None:
    name = compressed(configs, "ct", weights, activations)
    result, files = plan(settings, configs, "H100-80GB", config=name, model_id=ID)
    assert (result.format, result.sizing.weights_bytes) == (fmt, BYTES[fmt]) and "the checkpoint is" in result.format_why
    assert "--quantization" not in files["vllm-args.json"]  # vLLM reads compressed-tensors from the config
    with pytest.raises(InputError, match="already"):
        plan(settings, configs, "H100-80GB", out="b2", config=name, model_id=ID, format="bf16")


def test_a_compressed_folder_is_sized_by_its_files(settings: Settings, configs: Path) -> None:
    name = compressed(configs, "awq-dir", {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128})
    # a packed tensor as compressed-tensors stores it (int32, 8 weights each): its count is not the model's parameters
    header = json.dumps({"model.layers.0.mlp.up_proj.weight_packed": {"dtype": "I32", "shape": [64, 16], "data_offsets": [0, 4096]}}).encode()
    (configs / name / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4096))
    size = (configs / name / "model.safetensors").stat().st_size
    result, _ = plan(settings, configs, "H100-80GB", config=name, model_id=ID)
    assert (result.format, result.sizing.weights_bytes, result.sizing.parameter_count) == ("awq", size, LINEAR + REST)


def test_an_unknown_quantization_is_refused(settings: Settings, configs: Path) -> None:
    cfg = json.loads((configs / "llama-3.1-8b" / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (configs / "bnb").mkdir()
    (configs / "bnb" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError) as err:
        plan(settings, configs, "H100-80GB", config="bnb", model_id=ID)
    assert "bitsandbytes" in err.value.cause and "16-bit source" in err.value.next_step


def test_the_throughput_is_estimated_by_its_rule_or_measured_and_priced(settings: Settings, configs: Path) -> None:
    result, _ = plan(settings, configs, "H100-80GB", model_id=ID, gpu_hourly=2.5)
    s, t = result.sizing, result.throughput
    kv = int(s.target_concurrency * s.max_model_len * CONTEXT_FILL) * s.kv_bytes_per_token_per_gpu
    expected = s.target_concurrency / ((s.weights_bytes_per_gpu + kv) / (3350e9 * BANDWIDTH_EFFICIENCY))
    assert t.label == "estimated" and "3350 GB/s" in t.rule and t.output_tok_s == round(expected, 1)
    assert t.usd_per_m_output == round(2.5 * 1 / (t.output_tok_s * 3600) * 1e6, 4)
    # vLLM's `bench serve` JSON of the fp8 checkpoint on the card, with the machine it ran on
    bench = configs.parent / "fp8-h100.json"
    bench.write_text(json.dumps({"output_throughput": 1234.5, "total_input_tokens": 51200, "duration": 40.0, "max_concurrency": 8,
                                 "format": "fp8", "machine": "1 x H100 SXM5 80GB"}))
    result, _ = plan(settings, configs, "H100-80GB", out="b2", model_id=ID, gpu_hourly=2.5, bench=str(bench))
    t = result.throughput
    assert (t.label, t.output_tok_s, t.usd_per_m_output) == ("measured, on 1 x H100 SXM5 80GB", 1234.5, round(per_million(2.5, 1234.5), 4))
    bench.write_text(json.dumps({"output_throughput": 99.0, "total_input_tokens": 100, "duration": 1.0, "format": "awq"}))
    with pytest.raises(InputError, match="measured format awq"):
        plan(settings, configs, "H100-80GB", out="b3", model_id=ID, bench=str(bench))
