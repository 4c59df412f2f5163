"""LoRA fixtures: adapters on the tiny random base, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from lora_fixtures import tiny_lora_adapter


@pytest.fixture(scope="session")
def lora_adapter(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """A rank-4 LoRA on q/v/o with random non-zero weights; no tokenizer of its own."""
    return tiny_lora_adapter(artifacts / "tiny-lora", tiny_checkpoint)


@pytest.fixture(scope="session")
def lora_token_adapter(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """A LoRA that adds a token (saved embedding rows) and brings its own tokenizer and chat template."""
    return tiny_lora_adapter(artifacts / "tiny-lora-tok", tiny_checkpoint, seed=2, added_token=True)


@pytest.fixture(scope="session")
def smollm2_lora(artifacts: Path, smollm2_checkpoint: Path) -> Path:
    """A gentle LoRA on the real SmolLM2 (it still answers and stops), with an added token and its own template."""
    return tiny_lora_adapter(artifacts / "smollm2-lora", smollm2_checkpoint, seed=3, added_token=True, scale=0.02)


@pytest.fixture(scope="session")
def smollm2_lora_gguf(artifacts: Path, smollm2_checkpoint: Path) -> Path:
    """A gentle LoRA of SmolLM2 without full-saved weights, as a GGUF adapter (llama.cpp's convert_lora_to_gguf.py)."""
    from model_serving.checkpoint.lora_gguf import export_lora_gguf
    from model_serving.settings import Settings

    out = artifacts / "smollm2-lora-f16.gguf"
    if not out.exists():
        adapter = tiny_lora_adapter(artifacts / "smollm2-lora-plain", smollm2_checkpoint, seed=4, scale=0.3)  # changes the answer, still stops
        export_lora_gguf(Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home")), str(adapter), str(smollm2_checkpoint), str(out))
    return out


def _tiny_lora_gguf(artifacts: Path, tiny_checkpoint: Path, name: str, **adapter: object) -> Path:
    """A tiny-base adapter converted to a GGUF LoRA (llama.cpp's convert_lora_to_gguf.py), once per session."""
    from model_serving.checkpoint.lora_gguf import export_lora_gguf
    from model_serving.settings import Settings

    out = artifacts / f"{name}-f16.gguf"
    if not out.exists():
        folder = tiny_lora_adapter(artifacts / name, tiny_checkpoint, **adapter)  # type: ignore[arg-type]
        export_lora_gguf(Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home")), str(folder), str(tiny_checkpoint), str(out))
    return out


@pytest.fixture(scope="session")
def tiny_lora_ggufs(artifacts: Path, tiny_checkpoint: Path, lora_adapter: Path) -> tuple[Path, Path]:
    """Two different GGUF LoRAs of the tiny base (seeds 1 and 5): each changes the greedy answer its own way."""
    return _tiny_lora_gguf(artifacts, tiny_checkpoint, "tiny-lora"), _tiny_lora_gguf(artifacts, tiny_checkpoint, "tiny-lora-b", seed=5)


@pytest.fixture(scope="session")
def tiny_zero_lora_gguf(artifacts: Path, tiny_checkpoint: Path) -> Path:
    """An untrained adapter (lora_B all zero, as peft initialises it): it cannot change any answer."""
    return _tiny_lora_gguf(artifacts, tiny_checkpoint, "tiny-lora-zero", seed=6, scale=0.0)


@pytest.fixture(scope="session")
def tiny_merged_gguf(artifacts: Path, tiny_checkpoint: Path, lora_adapter: Path) -> Path:
    """The tiny base with `lora_adapter` merged (peft merge_and_unload), exported to f16 GGUF."""
    from model_serving.checkpoint.export import export_gguf
    from model_serving.checkpoint.lora import merge_adapter
    from model_serving.settings import Settings

    out = artifacts / "tiny-merged-f16.gguf"
    if not out.exists():
        settings = Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home"))
        merged = artifacts / "tiny-merged"
        if not merged.exists():
            merge_adapter(settings, str(lora_adapter), str(tiny_checkpoint), str(merged))
        export_gguf(settings, str(merged), str(out))
    return out
