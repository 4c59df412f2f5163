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
