"""register BASE.gguf --target ollama --adapter ADAPTER.gguf against the Ollama test double (real llama.cpp inference)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from model_serving.errors import InputError
from model_serving.serve.register import register
from model_serving.settings import Settings


def answer(host: str, name: str) -> str:
    reply = httpx.post(f"{host}/api/chat", timeout=300, json={"model": name, "stream": False, "options": {"temperature": 0, "num_predict": 24},
                                                               "messages": [{"role": "user", "content": "Write one sentence about the sea."}]})
    reply.raise_for_status()
    return reply.json()["message"]["content"]


@pytest.mark.slow
def test_an_adapter_registers_with_ollama_and_changes_the_answer(ollama_settings: Settings, ollama_double, smollm2_gguf: Path,
                                                                 smollm2_lora_gguf: Path) -> None:
    tuned = register(ollama_settings, smollm2_gguf, "smol-tuned", target="ollama", adapter=smollm2_lora_gguf)
    assert tuned.probe.ok and tuned.ollama is not None
    assert f"ADAPTER {smollm2_lora_gguf}" in tuned.ollama.modelfile
    assert ollama_double.models["smol-tuned:latest"].adapter is not None  # /api/create got the adapter blob
    plain = register(ollama_settings, smollm2_gguf, "smol-plain", target="ollama")
    assert plain.probe.ok
    assert answer(ollama_double.url, "smol-tuned") != answer(ollama_double.url, "smol-plain")


def test_the_adapter_must_be_a_gguf_adapter_of_the_base_and_only_for_ollama(ollama_settings: Settings, ollama_double, smollm2_gguf: Path,
                                                                            tiny_gguf: Path) -> None:
    with pytest.raises(InputError, match="not a LoRA adapter GGUF"):
        register(ollama_settings, smollm2_gguf, "smol-bad", target="ollama", adapter=tiny_gguf)
    with pytest.raises(InputError, match="only apply to the Ollama target"):
        register(ollama_settings, smollm2_gguf, "smol-bad", target="embedded", adapter=tiny_gguf)
    assert "smol-bad:latest" not in ollama_double.models


def test_an_adapter_of_another_architecture_and_one_ollama_cannot_take(settings: Settings, tmp_path: Path, tiny_gguf: Path) -> None:
    from lora_fixtures import synthetic_gguf

    qwen_base = synthetic_gguf(tmp_path / "qwen2-base.gguf", "qwen2", adapter=False)
    qwen_lora = synthetic_gguf(tmp_path / "qwen2-lora.gguf", "qwen2", adapter=True)
    with pytest.raises(InputError, match="is an adapter for qwen2, but the base is llama") as exc:
        register(settings, tiny_gguf, "mixed", target="ollama", adapter=qwen_lora)
    assert "trained on" in exc.value.next_step
    with pytest.raises(InputError, match="does not take qwen2 adapters") as exc:  # refused before Ollama is asked anything
        register(settings, qwen_base, "qwen-tuned", target="ollama", adapter=qwen_lora)
    assert "model-serving merge ADAPTER_DIR --base BASE_DIR" in exc.value.next_step
