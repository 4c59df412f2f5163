"""A strict Hub test double on loopback, huggingface_hub pointed at it, and a deploy folder to publish."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
from hub_double import TOKEN, HubDouble

from model_serving.util.paths import sha256_file


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: object) -> Iterator[HubDouble]:
    double = HubDouble().start()
    monkeypatch.setenv("HF_ENDPOINT", double.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    # The double speaks the LFS basic transfer, not Xet; the cache and the login file stay under tmp_path.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    yield double
    double.stop()


@pytest.fixture(scope="session")
def smollm2_sha256(smollm2_gguf: Path) -> str:
    return sha256_file(smollm2_gguf)


def write_manifest(folder: Path, gguf: Path, sha256: str, *, verdict: str = "ok", source: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> Path:
    """The manifest a deploy of a GGUF writes (deploy/manifest.py), with a quality verdict and a bench."""
    artifact = {"path": str(gguf), "sha256": sha256}
    payload = {
        "name": folder.name, "target": "embedded", "source": source,
        "artifacts": {"source": artifact, "served": artifact},
        "tool_versions": {"model-serving": "test", "huggingface_hub": "2.4.0"},
        "result": {"quality": {"verdict": verdict, "summary": "measured", "ppl_ratio": 1.0123, "agreement_rate": 0.833},
                   "verdicts": [{"target": "ttft", "statistic": "p95", "measured": 0.123, "threshold": 1.0, "state": "PASS"}]},
    }
    path = folder / f"{folder.name}.deploy.json"
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def manifest_writer() -> Callable[..., Path]:
    return write_manifest


@pytest.fixture
def deploy_dir(tmp_path: Path, smollm2_gguf: Path, smollm2_sha256: str) -> Path:
    """deployments/smol: the packaged SmolLM2 Q4_1 (linked, not copied) and its manifest."""
    folder = tmp_path / "deployments" / "smol"
    folder.mkdir(parents=True)
    gguf = folder / "smol.gguf"
    os.symlink(smollm2_gguf, gguf)
    write_manifest(folder, gguf, smollm2_sha256)
    return folder


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def tiny_merge(artifacts: Path, tiny_checkpoint: Path) -> tuple[Path, Path, dict[str, object]]:
    """A real peft LoRA on the tiny base whose adapter_config.json names a Hub base id, merged once by our merge:
    (adapter folder, merged checkpoint, the summary the deploy's merge step records)."""
    import shutil

    from lora_fixtures import tiny_lora_adapter

    from model_serving.checkpoint.lora import merge_adapter
    from model_serving.settings import Settings
    from model_serving.util.paths import tree_sha256

    adapter = artifacts / "publish-lora"
    if not adapter.exists():
        shutil.copytree(tiny_lora_adapter(artifacts / "tiny-lora", tiny_checkpoint), adapter)
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "acme/tiny-base"}), encoding="utf-8")
    merged = artifacts / "publish-lora-merged"
    done = merge_adapter(Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home")), str(adapter), str(tiny_checkpoint),
                         str(merged), overwrite=True)
    summary = {"adapter_sha256": tree_sha256(adapter), "base_sha256": tree_sha256(tiny_checkpoint), "adapter": str(adapter),
               "base": str(tiny_checkpoint), "dtype": done.dtype, "tokenizer_from": done.tokenizer_from,
               "chat_template_from": done.chat_template_from, "verification": done.verification.model_dump()}
    return adapter, merged, summary


@pytest.fixture
def adapter_deploy(tmp_path: Path, tiny_gguf: Path, tiny_merge: tuple[Path, Path, dict[str, object]]) -> Path:
    """deployments/tuned as `deploy ADAPTER --base BASE` leaves it: the merged checkpoint, its GGUF (the tiny f16 export,
    linked) and a manifest whose merge step records the adapter, the base and the logit check."""
    import shutil

    _, merged, summary = tiny_merge
    folder = tmp_path / "deployments" / "tuned"
    folder.mkdir(parents=True)
    shutil.copytree(merged, folder / "tuned-merged")
    os.symlink(tiny_gguf, folder / "tuned-f16.gguf")
    artifact = {"path": str(folder / "tuned-f16.gguf"), "sha256": sha256_file(tiny_gguf)}
    steps = [{"step": "merge", "status": "done", "seconds": 1.0, "output": str(folder / "tuned-merged"), "summary": summary},
             {"step": "export", "status": "done", "seconds": 1.0, "output": artifact["path"]}]
    payload = {"name": "tuned", "target": "embedded", "source": summary["adapter"], "artifacts": {"source": artifact, "served": artifact},
               "tool_versions": {"model-serving": "test"}, "result": {"steps": steps, "quality": None, "verdicts": []}}
    (folder / "tuned.deploy.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return folder
