"""A weighted canary in the bundle: two versions' Deployments and Services, and a Gateway API HTTPRoute that weighs them."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import validate_manifest
from mcp import Client
from pydantic import ValidationError
from test_bundle import MANIFESTS, load

from model_serving.cluster.bundle import plan_production
from model_serving.cluster.canary import check_route
from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.requests import PlanProductionRequest
from model_serving.settings import Settings

LIVE_ID, CANARY_ID = "meta-llama/Llama-3.1-8B-Instruct", "example/llama-3.1-8b-v2"
SERVICES = {"llama-3-1-8b-instruct": 80, "llama-3-1-8b-instruct-canary": 80}


def with_canary(settings: Settings, configs: Path, out: str = "bundle", **options: Any) -> tuple[Any, dict[str, Any]]:
    # the second version: a fine-tune of the same base (its own folder, the same shape)
    shutil.copytree(configs / "llama-3.1-8b", configs / "llama-3.1-8b-v2", dirs_exist_ok=True)
    req = PlanProductionRequest(source=str(configs / "llama-3.1-8b"), gpu="H100-80GB", output=str(configs.parent / out), model_id=LIVE_ID,
                                canary=str(configs / "llama-3.1-8b-v2"), canary_model_id=CANARY_ID, **options)
    result = plan_production(settings, req)
    return result, load(configs.parent / out)


def test_the_canary_bundle_validates_and_splits_90_10(settings: Settings, configs: Path) -> None:
    result, files = with_canary(settings, configs, canary_share=10)
    canary_manifests = [m.replace("manifests/", "manifests/canary-") for m in MANIFESTS]
    assert set(files) >= {*MANIFESTS, *canary_manifests, "manifests/httproute.yaml", "canary-grafana-dashboard.json", "canary-vllm-args.json"}
    for name in [*MANIFESTS, *canary_manifests, "manifests/httproute.yaml"]:
        validate_manifest(files[name])
    route = files["manifests/httproute.yaml"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    [rule] = route["spec"]["rules"]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("llama-3-1-8b-instruct", 80, 90), ("llama-3-1-8b-instruct-canary", 80, 10)]
    # each backendRef is a Service of the bundle, and each Service selects only its own version's pods
    services = {files[f]["metadata"]["name"]: files[f]["spec"]["selector"] for f in ("manifests/service.yaml", "manifests/canary-service.yaml")}
    assert services == {"llama-3-1-8b-instruct": {"app.kubernetes.io/name": "llama-3-1-8b-instruct"},
                        "llama-3-1-8b-instruct-canary": {"app.kubernetes.io/name": "llama-3-1-8b-instruct-canary"}}
    live, canary = files["vllm-args.json"], files["canary-vllm-args.json"]
    assert (live[2], canary[2]) == (LIVE_ID, CANARY_ID)
    # the client keeps its `model`: both versions serve the live one's name
    assert live[live.index("--served-model-name") + 1] == canary[canary.index("--served-model-name") + 1] == "llama-3-1-8b-instruct"
    assert result.canary.share == 10 and result.canary.argv == canary and "manifests/httproute.yaml" in result.files


def test_the_live_version_watches_only_its_own_pods(settings: Settings, configs: Path) -> None:
    _, files = with_canary(settings, configs)
    query = files["manifests/scaledobject.yaml"]["spec"]["triggers"][0]["metadata"]["query"]
    pattern = re.search(r'pod=~"([^"]+)"', query).group(1)
    # Prometheus anchors the regex: a live pod matches, a canary pod does not
    assert re.fullmatch(pattern, "llama-3-1-8b-instruct-7f9c6d5b8-x2x7q")
    assert not re.fullmatch(pattern, "llama-3-1-8b-instruct-canary-5d8f7c9b6-k9z4m")
    canary_query = files["manifests/canary-scaledobject.yaml"]["spec"]["triggers"][0]["metadata"]["query"]
    assert re.fullmatch(re.search(r'pod=~"([^"]+)"', canary_query).group(1), "llama-3-1-8b-instruct-canary-5d8f7c9b6-k9z4m")


def test_a_long_name_leaves_room_for_the_pods_generated_names(settings: Settings, configs: Path) -> None:
    shutil.copytree(configs / "smollm2-135m", configs / "v2")
    long_id = "example/" + "a" * 45  # the live name is cut at 40 characters
    plan_production(settings, PlanProductionRequest(source=str(configs / "smollm2-135m"), gpu="H100-80GB", output=str(configs.parent / "b"),
                                                    model_id=long_id, canary=str(configs / "v2"), canary_model_id="example/v2"))
    deployments = [load(configs.parent / "b")[f]["metadata"]["name"] for f in ("manifests/deployment.yaml", "manifests/canary-deployment.yaml")]
    assert deployments == ["a" * 40, "a" * 39 + "-canary"]
    # a pod's name is generated from NAME-<pod-template-hash, up to 10>- and cut at 58 characters: none of it is cut here
    assert all(len(f"{name}-{'h' * 10}-") <= 58 for name in deployments)


def test_a_broken_weight_or_backend_is_refused(settings: Settings, configs: Path) -> None:
    _, files = with_canary(settings, configs)
    route = files["manifests/httproute.yaml"]
    check_route(route, SERVICES)  # the bundle's own route passes
    broken = {
        "must be greater than or equal to 0|minimum": lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight=-10),
        "names no Service in the bundle": lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(name="llama-v3"),
        "not the Service's port": lambda r: r["spec"]["rules"][0]["backendRefs"][1].pop("port"),
        "weight above 0": lambda r: [b.update(weight=0) for b in r["spec"]["rules"][0]["backendRefs"]],
        "not a field of HTTPRoute v1": lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(weigth=90),
        "is not of type 'integer'": lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(weight="90"),
    }
    for cause, damage in broken.items():
        doc = copy.deepcopy(route)
        damage(doc)
        with pytest.raises(InputError) as err:
            check_route(doc, SERVICES)
        assert re.search(cause, err.value.cause), err.value.cause
    negative = copy.deepcopy(route)
    negative["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError):  # the offline validator of the tests refuses it too
        validate_manifest(negative)


def test_canary_inputs_are_bounded_and_lora_is_refused(settings: Settings, configs: Path) -> None:
    for share in (0, 100, -5):
        with pytest.raises(ValidationError):
            PlanProductionRequest(source="a", gpu="H100-80GB", output="b", canary="c", canary_share=share)
    with pytest.raises(InputError) as err:
        with_canary(settings, configs, lora=["sql=example/llama-3.1-8b-sql-lora"], format="bf16")
    assert "adapter" in err.value.cause and "without --lora" in err.value.next_step
    assert not (configs.parent / "bundle").exists()


def test_the_cli_and_the_mcp_tool_write_the_same_canary(settings: Settings, configs: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio
    from cli_runner import cli_in_process

    shutil.copytree(configs / "smollm2-135m", configs / "smollm2-v2")
    monkeypatch.setenv("MODEL_SERVING_HOME", str(configs.parent / "home"))
    args = ["plan-production", str(configs / "smollm2-135m"), "--gpu", "H100-80GB", "--canary", str(configs / "smollm2-v2"),
            "--canary-model-id", "example/smollm2-v2", "--canary-share", "25"]
    code, stdout, stderr = cli_in_process(capsys, "--root", str(configs.parent), *args, "-o", str(configs.parent / "cli"))
    assert code == 0, stderr
    assert "canary smollm2-135m-instruct-canary: 25%" in stdout

    async def via_mcp() -> Any:
        async with Client(create_server(settings)) as client:
            return await client.call_tool("plan_production", {"source": str(configs / "smollm2-135m"), "gpu": "H100-80GB",
                                                              "canary": str(configs / "smollm2-v2"), "canary_model_id": "example/smollm2-v2",
                                                              "canary_share": 25, "output": str(configs.parent / "mcp")})

    result = anyio.run(via_mcp)
    assert not result.is_error, result.content[0].text
    assert load(configs.parent / "cli")["manifests/httproute.yaml"] == load(configs.parent / "mcp")["manifests/httproute.yaml"]
    weights = [b["weight"] for b in load(configs.parent / "mcp")["manifests/httproute.yaml"]["spec"]["rules"][0]["backendRefs"]]
    assert weights == [75, 25]
