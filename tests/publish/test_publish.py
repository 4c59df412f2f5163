"""Publish through huggingface_hub, unchanged, against the strict Hub test double: push, verify, resume, refuse."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hub_double import TOKEN, HubDouble
from huggingface_hub import HfApi, ModelCard, hf_hub_download

from model_serving.errors import InputError, ServingError
from model_serving.failures import validated
from model_serving.publish.collect import HUB_FILE_LIMIT
from model_serving.publish.push import publish
from model_serving.requests import PublishRequest
from model_serving.settings import Settings

REPO = "tester/smol-gguf"


def request(source: Path, **extra: object) -> PublishRequest:
    return validated(PublishRequest, {"source": str(source), "repo": REPO, **extra})


def test_publish_then_verify(settings: Settings, hub: HubDouble, deploy_dir: Path, smollm2_sha256: str) -> None:
    result = publish(settings, request(deploy_dir))
    tree = hub.tree(REPO)
    assert set(tree) == {".gitattributes", "smol-gguf-Q4_1.gguf", "smol.deploy.json", "params", "template", "README.md"}
    assert tree["smol-gguf-Q4_1.gguf"].sha256 == smollm2_sha256 and tree["smol-gguf-Q4_1.gguf"].lfs
    assert result.commit_url == f"{hub.url}/{REPO}/commit/{hub.repos[REPO].heads['main']}"
    assert len(result.verified) == 3 and sorted(result.uploaded) == sorted(set(tree) - {".gitattributes"})
    assert hub.puts() == [f"/{REPO}.git/info/lfs/objects/{smollm2_sha256}/{os.path.getsize(deploy_dir / 'smol.gguf')}"]
    params = json.loads(tree["params"].data)
    assert params["num_ctx"] > 0 and "<|im_end|>" in params["stop"]
    assert "{{" in tree["template"].data.decode()  # a Go template, as `ollama run hf.co/...` reads it
    assert TOKEN not in result.model_dump_json() and TOKEN not in tree["README.md"].data.decode()


def test_the_card_parses_and_claims_only_what_was_measured(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    publish(settings, request(deploy_dir))
    card = ModelCard.load(hf_hub_download(REPO, "README.md", endpoint=hub.url))
    data = card.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and data["base_model_relation"] == "quantized"
    assert data["license"] == "apache-2.0" and data["tags"] == ["gguf", "llama"] and data["quantized_by"] == "tester"
    assert data["pipeline_tag"] == "text-generation" and data["library_name"] == "gguf"
    assert "| smol-gguf-Q4_1.gguf | Q4_1 |" in card.text and "| ok | 1.0123 | 0.833 |" in card.text
    assert f"ollama run hf.co/{REPO}:Q4_1" in card.text and "Hardware: not recorded" in card.text
    assert "| ttft | p95 | 0.123 |" in card.text


def test_an_unmeasured_quant_is_stated_as_missing(settings: Settings, hub: HubDouble, deploy_dir: Path, smollm2_gguf: Path) -> None:
    (deploy_dir / "smol.deploy.json").unlink()
    result = publish(settings, request(deploy_dir / "smol.gguf"))
    assert "| not measured | not measured | not measured |" in result.card and "No benchmark was recorded" in result.card
    assert "base_model:" not in result.card  # a GGUF alone names no Hub lineage, so the card claims none


def test_a_second_publish_sends_nothing(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    publish(settings, request(deploy_dir))
    head, count = hub.repos[REPO].heads["main"], len(hub.requests)
    plan = publish(settings, request(deploy_dir, plan=True))
    assert {f.action for f in plan.files} == {"same"} and "0 to send" in plan.summary  # a plan that changes nothing
    again = publish(settings, request(deploy_dir))
    assert {f.action for f in again.files} == {"same"} and again.uploaded == []
    assert hub.repos[REPO].heads["main"] == head and again.commit_oid == head
    sent = [(m, p) for m, p in hub.requests[count:] if m in ("PUT",) or "/commit/" in p or "/preupload/" in p]
    assert sent == []


def test_a_plan_uploads_nothing(settings: Settings, hub: HubDouble, deploy_dir: Path, smollm2_sha256: str) -> None:
    result = publish(settings, request(deploy_dir, plan=True))
    assert result.planned_only and REPO not in hub.repos
    assert all(m in ("GET", "HEAD") for m, _ in hub.requests)
    gguf = next(f for f in result.files if f.path_in_repo.endswith(".gguf"))
    assert gguf.sha256 == smollm2_sha256 and gguf.action == "add" and "base_model" in result.card


def test_an_interrupted_publish_resumes_with_only_what_is_missing(settings: Settings, hub: HubDouble, deploy_dir: Path,
                                                                  f16_source: Path) -> None:
    from quant_helpers import place

    place(f16_source, deploy_dir, "smol-f16.gguf")
    hub.fail_after_puts = 1  # the second LFS upload is cut
    with pytest.raises(ServingError, match="nothing was committed") as refused:
        publish(settings, request(deploy_dir))
    assert "Run the same publish again" in refused.value.next_step
    assert set(hub.tree(REPO)) == {".gitattributes"}  # nothing half-published: the repo holds only what create_repo made
    stored = set(hub.lfs)
    assert len(stored) == 1
    hub.fail_after_puts, before = None, len(hub.requests)
    result = publish(settings, request(deploy_dir))
    resumed = [p for m, p in hub.requests[before:] if m == "PUT"]
    assert len(resumed) == 1 and resumed[0].split("/")[-2] not in stored
    assert {"smol-gguf-Q4_1.gguf", "smol-gguf-F16.gguf"} <= set(hub.tree(REPO)) and len(result.verified) == 3


def test_a_refused_token(settings: Settings, hub: HubDouble, deploy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(InputError, match="refused the token") as refused:
        publish(settings, request(deploy_dir))
    assert "HF_TOKEN" in refused.value.next_step and "hf_wrong" not in str(refused.value)
    assert REPO not in hub.repos


def test_no_token(settings: Settings, hub: HubDouble, deploy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(InputError, match="No Hugging Face token"):
        publish(settings, request(deploy_dir))
    assert hub.requests == []


def test_a_repo_with_other_files(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    hub.seed(REPO, {"notes.txt": b"kept\n", "README.md": b"---\nlicense: mit\n---\nsomeone else's card\n"})
    with pytest.raises(InputError, match="already holds different README.md") as refused:
        publish(settings, request(deploy_dir))
    assert "--replace" in refused.value.next_step and hub.puts() == []
    plan = publish(settings, request(deploy_dir, plan=True))
    assert {f.path_in_repo: f.action for f in plan.files}["README.md"] == "change"
    assert plan.warnings == ["the repo also holds notes.txt (kept)"]
    publish(settings, request(deploy_dir, replace=True))
    assert hub.tree(REPO)["notes.txt"].data == b"kept\n" and b"base_model" in hub.tree(REPO)["README.md"].data


def test_a_broken_quant_is_refused_unless_allowed(settings: Settings, hub: HubDouble, deploy_dir: Path, smollm2_sha256: str,
                                                  manifest_writer: Callable[..., Path]) -> None:
    manifest_writer(deploy_dir, deploy_dir / "smol.gguf", smollm2_sha256, verdict="broken")
    with pytest.raises(InputError, match="'broken'") as refused:
        publish(settings, request(deploy_dir))
    assert "--allow-broken" in refused.value.next_step and hub.requests == []
    result = publish(settings, request(deploy_dir, allow_broken=True))
    assert "failed its quality check (verdict `broken`)" in result.card and "| broken |" in result.card


def test_a_file_over_the_hub_limit(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    with open(deploy_dir / "huge.gguf", "wb") as fh:  # sparse: no disk used
        fh.truncate(HUB_FILE_LIMIT + 1)
    with pytest.raises(InputError, match="over the Hub's per-file limit") as refused:
        publish(settings, request(deploy_dir))
    assert "smaller quantization" in refused.value.next_step and hub.requests == []


def test_an_unknown_license_asks_for_one(settings: Settings, hub: HubDouble, tmp_path: Path, smollm2_gguf: Path) -> None:
    data = smollm2_gguf.read_bytes()
    key = b"general.license"
    assert data.count(key) == 1
    folder = tmp_path / "nolicense"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(data.replace(key, b"general.licensX"))  # same length: the header stays valid
    with pytest.raises(InputError, match="license could not be determined") as refused:
        publish(settings, request(folder))
    assert "--license" in refused.value.next_step and hub.requests == []
    result = publish(settings, request(folder, license="apache-2.0", plan=True))
    assert "license: apache-2.0" in result.card


@pytest.mark.parametrize("repo", ["no-slash", "a/b/c", "user/-x", "user/with space"])
def test_an_invalid_repo_id(repo: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="repo"):
        validated(PublishRequest, {"source": str(tmp_path), "repo": repo})


def test_the_double_rejects_what_the_hub_rejects(hub: HubDouble, deploy_dir: Path) -> None:
    import httpx
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api = HfApi(endpoint=hub.url, token=TOKEN)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/missing")
    with pytest.raises(HfHubHTTPError) as bad_token:
        HfApi(endpoint=hub.url, token="hf_bad").whoami()
    assert bad_token.value.response.status_code == 401
    api.create_repo("tester/r")
    api.create_commit("tester/r", [CommitOperationAdd("a.txt", b"one")], commit_message="one")
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit("tester/r", [CommitOperationAdd("b.txt", b"two")], commit_message="two", parent_commit="0" * 40)
    assert stale.value.response.status_code == 412
    from hub_double import _signature

    wrong = httpx.put(f"{hub.url}/tester/r.git/info/lfs/objects/{'0' * 64}/3?sig={_signature('0' * 64)}", content=b"abc")
    assert wrong.status_code == 400 and hub.lfs == {}


def test_a_branch_of_an_existing_repo(settings: Settings, hub: HubDouble, deploy_dir: Path) -> None:
    hub.seed(REPO, {"notes.txt": b"main stays as it was\n"})
    result = publish(settings, request(deploy_dir, revision="gguf"))
    assert set(hub.tree(REPO, "main")) == {"notes.txt"}
    assert {"smol-gguf-Q4_1.gguf", "README.md", "notes.txt"} <= set(hub.tree(REPO, "gguf"))
    assert result.revision == "gguf" and len(result.verified) == 3
