"""The pull side against the Hub double: `USER/REPO --quant Q` on a GGUF repo and `hf.co/USER/REPO[:Q]` download just
that file and serve it as it is; a checkpoint repo stays a checkpoint (quant is then the type to quantize to)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from hub_double import HubDouble
from mcp import Client

from model_serving.deploy.pipeline import deploy
from model_serving.deploy.source import find_source
from model_serving.errors import InputError
from model_serving.failures import validated
from model_serving.mcp.server import create_server
from model_serving.publish.push import publish
from model_serving.requests import DeployRequest, PublishRequest
from model_serving.settings import Settings

REPO = "tester/smol-gguf"


@pytest.fixture
def gguf_repo(settings: Settings, hub: HubDouble, deploy_dir: Path) -> str:
    publish(settings, validated(PublishRequest, {"source": str(deploy_dir), "repo": REPO}))
    return REPO


def downloads(hub: HubDouble, since: int = 0) -> list[str]:
    return [p for m, p in hub.requests[since:] if m == "GET" and "/resolve/" in p]


def plan(settings: Settings, source: str, **extra: object) -> dict[str, str]:
    result = deploy(settings, DeployRequest(source=source, target="embedded", plan=True, **extra))  # type: ignore[arg-type]
    return {s.step: s.action for s in result.plan}


def test_a_gguf_repo_id_with_quant_pulls_just_that_file(settings: Settings, hub: HubDouble, gguf_repo: str, smollm2_sha256: str) -> None:
    before = len(hub.requests)
    source = find_source(settings, gguf_repo, quant="q4_1")
    assert source.kind == "gguf" and source.pulled and source.label == f"hf.co/{REPO}:Q4_1" and source.file_type == "Q4_1"
    assert downloads(hub, before) == [f"/{REPO}/resolve/main/smol-gguf-Q4_1.gguf"]
    from model_serving.util.paths import sha256_file

    assert source.path is not None and sha256_file(source.path) == smollm2_sha256
    steps = plan(settings, gguf_repo, quant="Q4_1")
    assert steps["quantize"] == "skip" and "export" not in steps  # served as it is


def test_a_quant_the_repo_lacks_names_the_ones_it_has(settings: Settings, hub: HubDouble, gguf_repo: str) -> None:
    before = len(hub.requests)
    with pytest.raises(InputError, match=r"no GGUF of type Q8_0 \(it has: Q4_1\)") as refused:
        find_source(settings, gguf_repo)  # the default quant, Q8_0, picks the file too
    assert "quant picks the file" in refused.value.next_step and downloads(hub, before) == []


def test_an_hf_co_tag_wins_over_the_default_quant(settings: Settings, hub: HubDouble, gguf_repo: str) -> None:
    steps = plan(settings, f"hf.co/{REPO}:Q4_1")  # quant stays Q8_0: the tag picked the file, nothing is requantized
    assert steps["quantize"] == "skip"
    assert find_source(settings, f"hf.co/{REPO}", quant="Q4_1").label == f"hf.co/{REPO}:Q4_1"  # no tag: quant picks


def test_a_checkpoint_repo_stays_a_checkpoint(settings: Settings, hub: HubDouble) -> None:
    hub.seed("tester/ckpt", {"config.json": b"{}", "model.safetensors": b"\0" * 8, "extra-Q4_K_M.gguf": b"GGUF"})
    source = find_source(settings, "tester/ckpt", quant="Q4_K_M")
    assert source.kind == "hub" and not source.pulled and downloads(hub) == []  # quant is the type to quantize to


def test_a_repo_the_hub_cannot_list_stays_a_checkpoint_id(settings: Settings, hub: HubDouble) -> None:
    source = find_source(settings, "tester/missing", quant="Q4_1")
    assert source.kind == "hub"  # the export then reports the Hub's refusal, as before


def test_cli_deploy_plan_from_a_gguf_repo(settings: Settings, hub: HubDouble, gguf_repo: str, capsys: pytest.CaptureFixture[str]) -> None:
    roots = [arg for root in settings.roots for arg in ("--root", str(root))]
    code, out, err = cli_in_process(capsys, "--json", *roots, "deploy", gguf_repo, "--quant", "Q4_1", "--target", "embedded", "--plan")
    assert code == 0, err
    steps = {s["step"]: s["action"] for s in json.loads(out)["plan"]}
    assert steps["quantize"] == "skip" and steps["register"] == "run"
    code, _, err = cli_in_process(capsys, *roots, "deploy", gguf_repo, "--quant", "Q5_K_M", "--target", "embedded", "--plan")
    assert code == 2 and "no GGUF of type Q5_K_M" in err and "next step:" in err


@pytest.mark.anyio
async def test_mcp_deploy_plan_from_a_gguf_repo(settings: Settings, hub: HubDouble, gguf_repo: str) -> None:
    async with Client(create_server(settings)) as client:
        args = {"source": gguf_repo, "quant": "Q4_1", "target": "embedded", "plan": True}
        job = (await client.call_tool("deploy_model", args)).structured_content
        with anyio.fail_after(120):
            while True:
                status = await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})
                info = status.structured_content.get("job", status.structured_content)
                if info["status"] != "working":
                    break
        assert info["status"] == "completed", status.content[0].text
        assert downloads(hub)[-1] == f"/{REPO}/resolve/main/smol-gguf-Q4_1.gguf"
