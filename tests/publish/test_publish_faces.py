"""Publish through the CLI and the MCP server, and the loop closed: deploy hf.co/USER/REPO:QUANT from the Hub double."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from cli_runner import cli_in_process
from hub_double import TOKEN, HubDouble
from mcp import Client

from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import stop_model
from model_serving.settings import Settings

REPO = "tester/smol-gguf"


def roots(settings: Settings) -> list[str]:
    return [arg for root in settings.roots for arg in ("--root", str(root))]


def test_cli_plan_then_publish(settings: Settings, hub: HubDouble, deploy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", REPO, "--plan")
    assert code == 0, err
    assert "add    smol-gguf-Q4_1.gguf" in out and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in out
    assert REPO not in hub.repos
    code, out, err = cli_in_process(capsys, "--json", *roots(settings), "publish", str(deploy_dir), "--repo", REPO)
    assert code == 0, err
    result = json.loads(out)
    assert result["commit_url"].startswith(f"{hub.url}/{REPO}/commit/") and len(result["verified"]) == 3
    assert TOKEN not in out + err


def test_cli_bad_input_exits_with_a_cause(settings: Settings, hub: HubDouble, deploy_dir: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", "not-a-repo-id")
    assert code == 2 and "Hub repo id" in err
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", REPO)
    assert code == 2 and "No Hugging Face token" in err and "next step: Set HF_TOKEN" in err
    assert hub.requests == []


@pytest.mark.anyio
async def test_mcp_publish_job_then_refusals(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    async with Client(create_server(settings)) as client:
        job = (await client.call_tool("publish_model", {"source": str(deploy_dir), "repo": REPO})).structured_content
        with anyio.fail_after(300):
            while True:
                status = await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})
                info = status.structured_content.get("job", status.structured_content)
                if info["status"] != "working":
                    break
        assert info["status"] == "completed", status.content[0].text
        assert "Published tester/smol-gguf@main" in status.content[0].text
        bad = await client.call_tool("publish_model", {"source": str(deploy_dir), "repo": "a/b/c"})
        assert bad.is_error and "Hub repo id" in bad.content[0].text
    assert set(hub.tree(REPO)) >= {"smol-gguf-Q4_1.gguf", "README.md", "params", "template"}


@pytest.mark.slow
@pytest.mark.parametrize(("source", "quant"), [(f"hf.co/{REPO}:Q4_1", "Q8_0"), (REPO, "Q4_1")])  # the tag, or quant, picks the file
def test_publish_then_pull_and_deploy_on_the_embedded_engine(settings: Settings, hub: HubDouble, deploy_dir: Path,
                                                             smollm2_sha256: str, tmp_path: Path, source: str, quant: str) -> None:
    from model_serving.failures import validated
    from model_serving.publish.push import publish
    from model_serving.requests import PublishRequest

    publish(settings, validated(PublishRequest, {"source": str(deploy_dir), "repo": REPO}))
    before = len(hub.requests)
    request = DeployRequest(source=source, name="pulled", quant=quant, target="embedded", output=str(tmp_path / "pulled"),
                            bench=False, verify_quality=False)
    result = deploy(settings, request)
    try:
        downloads = [p for m, p in hub.requests[before:] if m == "GET" and "/resolve/" in p]
        assert downloads == [f"/{REPO}/resolve/main/smol-gguf-Q4_1.gguf"]  # just that file
        manifest = json.loads(Path(result.manifest_path or "").read_text(encoding="utf-8"))
        assert manifest["artifacts"]["source"]["sha256"] == smollm2_sha256 and manifest["source"] == f"hf.co/{REPO}:Q4_1"
        reply = httpx.post(f"{result.endpoint}", timeout=120,
                           json={"model": "pulled", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                                 "max_tokens": 16, "temperature": 0})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].strip()
        assert result.answer and result.answer.strip()  # the deploy's own probe: it answers and stops
    finally:
        stop_model(settings, "pulled")


def _no_token(folder: Path, monkeypatch: pytest.MonkeyPatch, **_: object) -> dict[str, str]:
    monkeypatch.delenv("HF_TOKEN")
    return {"source": str(folder)}


def _broken(folder: Path, writer: Callable[..., Path], sha256: str, **_: object) -> dict[str, str]:
    writer(folder, folder / "smol.gguf", sha256, verdict="broken")
    return {"source": str(folder)}


def _over_limit(folder: Path, **_: object) -> dict[str, str]:
    from model_serving.publish.collect import HUB_FILE_LIMIT

    with open(folder / "huge.gguf", "wb") as fh:  # sparse: no disk used
        fh.truncate(HUB_FILE_LIMIT + 1)
    return {"source": str(folder)}


def _no_license(folder: Path, gguf: Path, **_: object) -> dict[str, str]:
    target = folder.parent / "nolicense.gguf"
    target.write_bytes(gguf.read_bytes().replace(b"general.license", b"general.licensX"))  # same length: the header stays valid
    return {"source": str(target)}


BAD = {  # each bad input of the issue: (setup, extra arguments, the cause, the next step), on both faces
    "no token": (_no_token, {}, "No Hugging Face token", "HF_TOKEN"),
    "repo id": (lambda folder, **_: {"source": str(folder)}, {"repo": "a/b/c"}, "Hub repo id", ""),
    "broken quant": (_broken, {}, "'broken'", "allow-broken"),
    "over the file limit": (_over_limit, {}, "over the Hub's per-file limit", "smaller quantization"),
    "no license": (_no_license, {}, "license could not be determined", "license"),
    "include without a merge": (lambda folder, **_: {"source": str(folder)}, {"include": "merged"}, "not made from a LoRA adapter", "include"),
}


@pytest.mark.parametrize("face", ["cli", "mcp"])
@pytest.mark.parametrize("case", list(BAD))
def test_every_bad_input_on_both_faces(case: str, face: str, settings: Settings, hub: HubDouble, deploy_dir: Path, smollm2_gguf: Path,
                                       smollm2_sha256: str, manifest_writer: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    setup, extra, cause, next_step = BAD[case]
    args = {"repo": REPO, **setup(deploy_dir, monkeypatch=monkeypatch, writer=manifest_writer, sha256=smollm2_sha256, gguf=smollm2_gguf),
            **extra}
    if face == "cli":
        flags = [arg for key, value in args.items() if key != "source" for arg in (f"--{key}", value)]
        code, _, text = cli_in_process(capsys, *roots(settings), "publish", args["source"], *flags)
        assert code == 2 and cause in text and (not next_step or "next step: " in text and next_step in text), text
    else:
        text = anyio.run(_mcp_outcome, settings, args)
        assert text.startswith("error:") and cause in text and next_step in text, text
    assert REPO not in hub.repos and hub.puts() == []  # nothing half-published


async def _mcp_outcome(settings: Settings, args: dict[str, str]) -> str:
    async with Client(create_server(settings)) as client:
        first = await client.call_tool("publish_model", args)
        if first.is_error:
            return f"error: {first.content[0].text}"
        with anyio.fail_after(120):
            while True:
                status = await client.call_tool("job_status", {"job_id": first.structured_content["taskId"], "wait_s": 30})
                info = status.structured_content.get("job", status.structured_content) if status.structured_content else {}
                if info.get("status") != "working":
                    return f"{'error' if status.is_error else info.get('status')}: {status.content[0].text}"


@pytest.mark.slow
def test_publish_then_pull_and_deploy_through_the_cli_and_mcp(settings: Settings, hub: HubDouble, deploy_dir: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli_in_process(capsys, *roots(settings), "publish", str(deploy_dir), "--repo", REPO)
    assert code == 0, err
    common = ["--quant", "Q4_1", "--target", "embedded", "--no-bench", "--no-verify-quality"]
    try:
        code, out, err = cli_in_process(capsys, "--json", *roots(settings), "deploy", REPO, *common, "--name", "pulled-cli",
                                        "--output", str(tmp_path / "cli"))
        assert code == 0, err
        result = json.loads(out)
        assert result["answer"].strip() and "quantize" not in {s["step"] for s in result["steps"]}  # served as it is
    finally:
        with contextlib.suppress(InputError):
            stop_model(settings, "pulled-cli")

    async def mcp() -> str:
        async with Client(create_server(settings)) as client:
            args = {"source": REPO, "quant": "Q4_1", "target": "embedded", "bench": False, "verify_quality": False, "name": "pulled-mcp",
                    "output": str(tmp_path / "mcp")}
            job = (await client.call_tool("deploy_model", args)).structured_content
            with anyio.fail_after(300):
                while True:
                    status = await client.call_tool("job_status", {"job_id": job["taskId"], "wait_s": 30})
                    info = status.structured_content.get("job", status.structured_content)
                    if info["status"] != "working":
                        return f"{info['status']}: {status.content[0].text}"

    try:
        outcome = anyio.run(mcp)
        assert outcome.startswith("completed:"), outcome
    finally:
        with contextlib.suppress(InputError):
            stop_model(settings, "pulled-mcp")
    assert {p for m, p in hub.requests if m == "GET" and "/resolve/main/" in p} == {f"/{REPO}/resolve/main/smol-gguf-Q4_1.gguf"}  # just that file
