"""Every file of the bundle is valid against its schema, for three model sizes on two GPUs and on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import validate_chart_values, validate_manifest
from mcp import Client

from model_serving.cluster.bundle import plan_production
from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.requests import PlanProductionRequest
from model_serving.settings import Settings

MANIFESTS = ["manifests/deployment.yaml", "manifests/service.yaml", "manifests/pvc.yaml", "manifests/scaledobject.yaml",
             "manifests/podmonitor.yaml", "manifests/prometheusrule.yaml"]
# (config, GPU, Hub repo, options, expected TP); in bf16, the sizes test_sizing.py works out by hand (70B on L4 only fits at TP 8
# with a short context); test_formats.py covers the formats `auto` picks
BF16 = {"format": "bf16"}
GPU_CASES = [
    ("smollm2-135m", "H100-80GB", "HuggingFaceTB/SmolLM2-135M-Instruct", BF16, 1),
    ("smollm2-135m", "L4-24GB", "HuggingFaceTB/SmolLM2-135M-Instruct", BF16, 1),
    ("llama-3.1-8b", "H100-80GB", "meta-llama/Llama-3.1-8B-Instruct", {"lora": ["sql=example/llama-3.1-8b-sql-lora"], **BF16}, 1),
    ("llama-3.1-8b", "L4-24GB", "meta-llama/Llama-3.1-8B-Instruct", BF16, 2),
    ("llama-3.1-70b", "H100-80GB", "meta-llama/Llama-3.1-70B-Instruct", BF16, 4),
    ("llama-3.1-70b", "L4-24GB", "meta-llama/Llama-3.1-70B-Instruct", {"max_model_len": 4096, "target_concurrency": 2, **BF16}, 8),
]


def load(folder: Path) -> dict[str, Any]:
    """Every file by its path in the bundle (manifests/ holds the Kubernetes objects)."""
    return {p.relative_to(folder).as_posix(): json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
            for p in folder.rglob("*") if p.is_file()}


def plan(settings: Settings, configs: Path, config: str, gpu: str, model_id: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    out = configs.parent / f"bundle-{config}-{gpu}"
    result = plan_production(settings, PlanProductionRequest(source=str(configs / config), gpu=gpu, output=str(out), model_id=model_id, **options))
    return result, load(out)


@pytest.mark.parametrize(("config", "gpu", "model_id", "options", "tp"), GPU_CASES)
def test_vllm_bundle_is_valid_and_carries_the_sizing(settings: Settings, configs: Path, config: str, gpu: str, model_id: str,
                                                     options: dict[str, Any], tp: int) -> None:
    result, files = plan(settings, configs, config, gpu, model_id, **options)
    assert sorted(files) == sorted(MANIFESTS + ["grafana-dashboard.json", "vllm-args.json", "plan.json", "production-stack-values.yaml",
                                                "kserve-llminferenceservice.yaml"])
    for name in [*MANIFESTS, "kserve-llminferenceservice.yaml"]:
        validate_manifest(files[name])
    validate_chart_values(files["production-stack-values.yaml"])
    s = result.sizing
    assert s.tensor_parallel_size == tp and result.engine == "vllm"
    argv = files["vllm-args.json"]
    assert argv[:3] == ["vllm", "serve", model_id]
    assert argv[argv.index("--tensor-parallel-size") + 1] == str(tp) and argv[argv.index("--max-model-len") + 1] == str(s.max_model_len)
    container = files["manifests/deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] + container["args"] == argv
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(tp)
    # start-up budget: twice (weights / 500 MB/s + 180 s), in 10 s probe periods
    assert container["startupProbe"]["failureThreshold"] == math.ceil(2 * (s.weights_bytes / 500e6 + 180) / 10)
    assert {p["httpGet"]["path"] for p in (container["startupProbe"], container["readinessProbe"], container["livenessProbe"])} == {"/health"}
    scaled = files["manifests/scaledobject.yaml"]["spec"]
    assert scaled["minReplicaCount"] == 1 and "vllm:num_requests_waiting" in scaled["triggers"][0]["metadata"]["query"]
    exprs = [r["expr"] for r in files["manifests/prometheusrule.yaml"]["spec"]["groups"][0]["rules"]]
    assert any("vllm:time_to_first_token_seconds_bucket" in e for e in exprs) and any("vllm:num_requests_waiting" in e for e in exprs)
    panels = files["grafana-dashboard.json"]["panels"]
    assert {p["title"] for p in panels} >= {"Requests", "Time to first token", "KV cache use"}
    assert all(t["expr"] for p in panels for t in p["targets"])
    model = files["production-stack-values.yaml"]["servingEngineSpec"]["modelSpec"][0]
    assert (model["requestGPU"], model["vllmConfig"]["tensorParallelSize"], model["vllmConfig"]["maxModelLen"]) == (tp, tp, s.max_model_len)
    kserve = files["kserve-llminferenceservice.yaml"]["spec"]
    assert (kserve["parallelism"]["tensor"], kserve["model"]["uri"]) == (tp, f"hf://{model_id}")
    assert f"--max-model-len {s.max_model_len} " in kserve["template"]["containers"][0]["env"][0]["value"]
    assert files["plan.json"]["sizing"] == s.model_dump(mode="json")


@pytest.mark.parametrize(("gpu", "image"), [("cpu", "ghcr.io/ggml-org/llama.cpp:server"), ("RTX4090-24GB", "ghcr.io/ggml-org/llama.cpp:server-cuda")])
def test_cpu_and_consumer_gpu_get_the_llamacpp_bundle(settings: Settings, configs: Path, gpu: str, image: str) -> None:
    result, files = plan(settings, configs, "llama-3.1-8b", gpu, "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M", target_concurrency=2)
    assert result.engine == "llamacpp" and result.sizing is None
    assert "production-stack-values.yaml" not in files and "kserve-llminferenceservice.yaml" not in files
    for name in MANIFESTS:
        validate_manifest(files[name])
    container = files["manifests/deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image and container["args"] == files["llama-server-args.json"][1:]
    # 2 slots x 4096 tokens share one context in llama.cpp; Q4_K_M at 4.89 bits: 8,030,261,248 x 4.89 / 8 bytes
    assert container["args"][container["args"].index("--ctx-size") + 1] == "8192"
    assert result.llamacpp.memory.weights_bytes == int(8_030_261_248 * 4.89 / 8)
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) == (gpu != "cpu")
    assert "llamacpp:requests_deferred" in files["manifests/scaledobject.yaml"]["spec"]["triggers"][0]["metadata"]["query"]
    rules = files["manifests/prometheusrule.yaml"]["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ["MetaLlama318bInstructGgufQueueDeep"]  # llama.cpp exports no TTFT histogram


def test_refusals_leave_nothing_behind(settings: Settings, configs: Path) -> None:
    out = configs.parent / "bundle"
    with pytest.raises(InputError) as err:
        plan_production(settings, PlanProductionRequest(source=str(configs / "llama-3.1-70b"), gpu="L4-24GB", output=str(out),
                                                        model_id="meta-llama/Llama-3.1-70B-Instruct", max_model_len=131072))
    assert "even at tensor-parallel 8" in err.value.cause
    with pytest.raises(InputError) as err:
        plan_production(settings, PlanProductionRequest(source=str(configs / "llama-3.1-8b"), gpu="cpu", output=str(out)))
    assert "--model-id" in err.value.next_step
    assert sorted(p.name for p in configs.parent.iterdir() if p.name != "home") == ["configs"]
    out.mkdir()
    with pytest.raises(InputError, match="already exists"):
        plan_production(settings, PlanProductionRequest(source=str(configs / "smollm2-135m"), gpu="L4-24GB", output=str(out)))


@pytest.mark.anyio
async def test_the_mcp_tool_writes_the_same_bundle(settings: Settings, configs: Path) -> None:
    args = {"source": str(configs / "smollm2-135m"), "gpu": "H100-80GB", "output": str(configs.parent / "via-mcp")}
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("plan_production", args)
    assert not result.is_error, result.content[0].text
    direct = plan_production(settings, PlanProductionRequest(**{**args, "output": str(configs.parent / "direct")}))
    assert load(configs.parent / "via-mcp")["vllm-args.json"] == load(configs.parent / "direct")["vllm-args.json"] == direct.argv
    assert direct.format == "fp8" and direct.argv[-2:] == ["--quantization", "fp8"]  # made at load from the 16-bit repo


def test_the_validators_catch_what_they_are_for(settings: Settings, configs: Path) -> None:
    _, files = plan(settings, configs, "smollm2-135m", "L4-24GB", "HuggingFaceTB/SmolLM2-135M-Instruct", **BF16)
    broken = {
        "manifests/deployment.yaml": lambda d: d["spec"]["template"]["spec"]["containers"][0].update(gpus=1),  # unknown field
        "manifests/service.yaml": lambda d: d["spec"]["ports"][0].update(port="eighty"),
        "manifests/scaledobject.yaml": lambda d: d["spec"].update(minReplicaCount="1"),
        "manifests/podmonitor.yaml": lambda d: d["spec"].pop("selector"),
        "manifests/prometheusrule.yaml": lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"),
        "kserve-llminferenceservice.yaml": lambda d: d["spec"]["parallelism"].update(tensor=0),
    }
    for name, damage in broken.items():
        damage(files[name])
        with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
            validate_manifest(files[name])
    files["production-stack-values.yaml"]["servingEngineSpec"]["modelSpec"][0]["vllmConfig"]["maxModelLenn"] = 1
    with pytest.raises(AssertionError):
        validate_chart_values(files["production-stack-values.yaml"])


@pytest.mark.anyio
async def test_bad_input_through_the_tool_gets_a_cause_and_a_next_step(settings: Settings, configs: Path) -> None:
    bare = configs / "bare"
    bare.mkdir()
    (bare / "config.json").write_text('{"model_type": "llama", "hidden_size": 4096}')
    out = str(configs.parent / "out")
    cases = {
        "even at tensor-parallel 8": {"source": str(configs / "llama-3.1-70b"), "gpu": "L4-24GB", "max_model_len": 131072,
                                      "model_id": "meta-llama/Llama-3.1-70B-Instruct"},
        "Unknown GPU 'B300'": {"source": str(configs / "llama-3.1-8b"), "gpu": "B300"},
        "which sizing needs": {"source": str(bare), "gpu": "H100-80GB"},
    }
    async with Client(create_server(settings)) as client:
        for cause, args in cases.items():
            result = await client.call_tool("plan_production", {"output": out, **args})
            text = result.content[0].text
            assert result.is_error and cause in text and "Next step:" in text and "Traceback" not in text, text
    assert not Path(out).exists()


def test_the_cli_writes_the_bundle_and_says_why(configs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_runner import cli_in_process

    monkeypatch.setenv("MODEL_SERVING_HOME", str(configs.parent / "home"))
    out = configs.parent / "cli-bundle"
    code, stdout, stderr = cli_in_process(capsys, "--root", str(configs.parent), "plan-production", str(configs / "llama-3.1-8b"),
                                          "--gpu", "L4-24GB", "-o", str(out), "--model-id", "meta-llama/Llama-3.1-8B-Instruct", "--format", "bf16")
    assert code == 0, stderr
    assert "tensor_parallel_size 2, max_model_len 22016, max_num_seqs 8" in stdout and "TP 1: KV for 32768 tokens" in stdout
    assert json.loads((out / "vllm-args.json").read_text())[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    code, _, stderr = cli_in_process(capsys, "--root", str(configs.parent), "plan-production", str(configs / "llama-3.1-8b"),
                                     "--gpu", "B300", "-o", str(configs.parent / "other"))
    assert code != 0 and "Unknown GPU" in stderr and "--gpu-memory-gb" in stderr
