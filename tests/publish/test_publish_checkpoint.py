"""publish --include merged|adapter: a deploy made from a LoRA adapter also publishes its merged checkpoint or the
adapter itself, with the lineage (`base_model`, `base_model_relation`) in a card huggingface_hub parses."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from hub_double import HubDouble
from huggingface_hub import ModelCard, hf_hub_download
from mcp import Client

from model_serving.errors import InputError
from model_serving.failures import validated
from model_serving.mcp.server import create_server
from model_serving.publish.push import publish
from model_serving.requests import PublishRequest
from model_serving.settings import Settings
from model_serving.util.paths import sha256_file

REPO = "tester/tuned"
GGUF_FILES = {".gitattributes", "tuned-F16.gguf", "tuned.deploy.json", "params", "template", "README.md"}


def request(source: Path, **extra: object) -> PublishRequest:
    return validated(PublishRequest, {"source": str(source), "repo": REPO, "license": "apache-2.0", **extra})


def card_of(hub: HubDouble) -> ModelCard:
    return ModelCard.load(hf_hub_download(REPO, "README.md", endpoint=hub.url))


def test_publish_the_merged_checkpoint(settings: Settings, hub: HubDouble, adapter_deploy: Path,
                                       tiny_merge: tuple[Path, Path, dict[str, object]]) -> None:
    result = publish(settings, request(adapter_deploy, include="merged"))
    merged = adapter_deploy / "tuned-merged"
    sent = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= sent
    tree = hub.tree(REPO)
    assert set(tree) == GGUF_FILES | sent
    assert tree["model.safetensors"].lfs and tree["model.safetensors"].sha256 == sha256_file(merged / "model.safetensors")
    assert tree["config.json"].data == (merged / "config.json").read_bytes()
    assert result.verified[0].startswith(f"{len(tree) - 1} files listed")  # the checkpoint's files are verified too
    data = card_of(hub).data.to_dict()
    assert data["base_model"] == "acme/tiny-base" and data["base_model_relation"] == "merge"
    assert data["library_name"] == "transformers" and "lora" in data["tags"]
    check = tiny_merge[2]["verification"]
    assert isinstance(check, dict)
    assert f"| {check['merged_vs_adapter']:.2e} | {check['tolerance']} |" in result.card  # the measured logit check, as measured
    assert "Benchmark" in result.card and "No benchmark was recorded" in result.card and "AutoModelForCausalLM.from_pretrained('tester/tuned')" in result.card


def test_publish_the_adapter(settings: Settings, hub: HubDouble, adapter_deploy: Path, tiny_merge: tuple[Path, Path, dict[str, object]]) -> None:
    adapter = tiny_merge[0]
    result = publish(settings, request(adapter_deploy, include="adapter"))
    tree = hub.tree(REPO)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(tree) and "model.safetensors" not in tree
    assert tree["adapter_model.safetensors"].sha256 == sha256_file(adapter / "adapter_model.safetensors")
    assert tree["README.md"].data.decode() == result.card  # peft's own README.md stays behind: the card is ours
    data = card_of(hub).data.to_dict()
    assert data["base_model"] == "acme/tiny-base" and data["base_model_relation"] == "adapter" and data["library_name"] == "peft"
    assert json.loads(tree["adapter_config.json"].data)["base_model_name_or_path"] == "acme/tiny-base"


def test_the_ggufs_of_an_adapter_deploy_name_the_merge(settings: Settings, hub: HubDouble, adapter_deploy: Path) -> None:
    result = publish(settings, request(adapter_deploy, plan=True))
    assert {f.path_in_repo for f in result.files} == GGUF_FILES - {".gitattributes"}
    assert "base_model: acme/tiny-base" in result.card and "base_model_relation: merge" in result.card


def test_include_refusals_publish_nothing(settings: Settings, hub: HubDouble, adapter_deploy: Path, deploy_dir: Path,
                                          tiny_merge: tuple[Path, Path, dict[str, object]], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not made from a LoRA adapter") as refused:
        publish(settings, request(deploy_dir, include="merged"))
    assert "Publish without include" in refused.value.next_step
    local = tmp_path / "local-lora"
    import shutil

    shutil.copytree(tiny_merge[0], local)
    config = json.loads((local / "adapter_config.json").read_text(encoding="utf-8"))
    (local / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(tmp_path / "base")}), encoding="utf-8")
    manifest = adapter_deploy / "tuned.deploy.json"
    payload = json.loads(manifest.read_text(encoding="utf-8"))
    payload["result"]["steps"][0]["summary"]["adapter"] = str(local)
    manifest.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(InputError, match="nobody pulling the adapter from the Hub can load") as refused:
        publish(settings, request(adapter_deploy, include="adapter"))
    assert "base_model_name_or_path" in refused.value.next_step
    shutil.rmtree(adapter_deploy / "tuned-merged")
    with pytest.raises(InputError, match="merged checkpoint .* is not there any more") as refused:
        publish(settings, request(adapter_deploy, include="merged"))
    assert "Run the same deploy again" in refused.value.next_step
    assert hub.requests == []


def test_cli_and_mcp_include(settings: Settings, hub: HubDouble, adapter_deploy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = [arg for root in settings.roots for arg in ("--root", str(root))]
    code, out, err = cli_in_process(capsys, *roots, "publish", str(adapter_deploy), "--repo", REPO, "--license", "apache-2.0",
                                    "--include", "merged", "--plan")
    assert code == 0, err
    assert "add    model.safetensors" in out and "base_model_relation: merge" in out and REPO not in hub.repos
    code, _, err = cli_in_process(capsys, *roots, "publish", str(adapter_deploy), "--repo", REPO, "--include", "weights")
    assert code == 2 and "weights" in err

    async def mcp() -> str:
        async with Client(create_server(settings)) as client:
            args = {"source": str(adapter_deploy), "repo": REPO, "license": "apache-2.0", "include": "adapter"}
            job = (await client.call_tool("publish_model", args)).structured_content
            with anyio.fail_after(300):
                while True:
                    status = await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})
                    info = status.structured_content.get("job", status.structured_content)
                    if info["status"] != "working":
                        return f"{info['status']}: {status.content[0].text}"

    outcome = anyio.run(mcp)
    assert outcome.startswith("completed:") and "Published tester/tuned@main" in outcome, outcome
    assert "adapter_model.safetensors" in hub.tree(REPO)


@pytest.mark.slow
def test_a_real_adapter_deploy_publishes_its_merge_and_its_adapter(settings: Settings, hub: HubDouble, artifacts: Path, tmp_path: Path,
                                                                    smollm2_checkpoint: Path) -> None:
    """deploy ADAPTER --base SmolLM2 (merge, export, serve, probe), then both includes of that deploy's own manifest."""
    import contextlib
    import shutil

    from lora_fixtures import tiny_lora_adapter

    from model_serving.deploy.pipeline import deploy
    from model_serving.requests import DeployRequest
    from model_serving.serve.embedded.engine import stop_model

    adapter = tmp_path / "smol-lora"
    shutil.copytree(tiny_lora_adapter(artifacts / "smollm2-lora-plain", smollm2_checkpoint, seed=4, scale=0.3), adapter)
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the checkpoint was rebuilt from
    (adapter / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "deployments" / "tuned"
    try:
        deploy(settings, DeployRequest(source=str(adapter), base=str(smollm2_checkpoint), name="tuned", quant="Q8_0", target="embedded",
                                       output=str(out), bench=False, verify_quality=False))
    finally:
        with contextlib.suppress(InputError):
            stop_model(settings, "tuned")
    merged = publish(settings, request(out, include="merged"))
    assert {"model.safetensors", "config.json", "tuned-Q8_0.gguf", "tuned-F16.gguf"} <= set(hub.tree(REPO)) and len(merged.verified) == 3
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in merged.card and "base_model_relation: merge" in merged.card
    assert "| merged vs base + adapter" in merged.card and "Passed: yes" in merged.card
    again = publish(settings, request(out, include="adapter", revision="adapter"))
    assert "adapter_model.safetensors" in hub.tree(REPO, "adapter") and "base_model_relation: adapter" in again.card
