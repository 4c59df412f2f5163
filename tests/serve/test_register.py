"""`serve.register.register`: one entry point and one result shape for both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_serving.errors import InputError, PathNotAllowed, VerificationFailed
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.register import RegisterResult, register
from model_serving.settings import Settings


def test_paths_are_confined_before_any_engine_is_touched(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "m.gguf").write_bytes(b"GGUF")
    for target in ("embedded", "ollama"):
        with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
            register(settings, outside / "m.gguf", "m", target=target)  # type: ignore[arg-type]


def test_ollama_only_options_are_refused_for_the_embedded_engine(settings: Settings, tiny_gguf: Path) -> None:
    with pytest.raises(InputError, match="quantize, system only apply to the Ollama target"):
        register(settings, tiny_gguf, "m", quantize="q4_K_M", system="be brief")
    assert list_models(settings) == []


def test_a_failed_probe_leaves_nothing_served(settings: Settings, tiny_gguf: Path) -> None:
    with pytest.raises(VerificationFailed, match="did not stop by itself"):
        register(settings, tiny_gguf, "noise", ctx_size=512, parallel=1)
    assert list_models(settings) == []


@pytest.mark.slow
def test_both_targets_give_the_same_result_shape(ollama_settings: Settings, ollama_double, smollm2_gguf: Path) -> None:
    embedded = register(ollama_settings, smollm2_gguf, "smol", ctx_size=1024, parallel=1)
    try:
        ollama = register(ollama_settings, smollm2_gguf, "smol", target="ollama", ctx_size=1024)
    finally:
        stop_model(ollama_settings, "smol")
    assert isinstance(embedded, RegisterResult) and isinstance(ollama, RegisterResult)
    assert embedded.target == "embedded" and embedded.served is not None and embedded.ollama is None
    assert embedded.endpoint == f"{embedded.served.base_url}/v1/chat/completions"
    assert ollama.target == "ollama" and ollama.ollama is not None and ollama.served is None and ollama.name == "smol:latest"
    assert ollama.endpoint == f"{ollama_double.url}/api/chat"
    for result in (embedded, ollama):
        assert result.probe.ok, result.probe.problems
        assert result.probe.engine == result.target and result.probe.finish_reason == "stop"
        assert result.probe.prompt_tokens == result.probe.expected_prompt_tokens
    assert embedded.model_dump().keys() == ollama.model_dump().keys()
