"""The embedded engine: real llama.cpp server processes on loopback, serving real GGUFs."""

from __future__ import annotations

import concurrent.futures
import socket
from pathlib import Path

import httpx
import pytest

from model_serving.errors import InputError, VerificationFailed
from model_serving.serve.embedded.engine import list_models, register_embedded, start_model, stop_model
from model_serving.serve.embedded.llamacpp_probe import probe_model
from model_serving.serve.status import serving_status
from model_serving.settings import Settings


def chat(base_url: str, name: str, text: str, max_tokens: int = 8) -> dict:
    reply = httpx.post(f"{base_url}/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": text}],
                                                                 "max_tokens": max_tokens, "temperature": 0}, timeout=120)
    reply.raise_for_status()
    return reply.json()


def test_two_models_are_served_at_once_each_by_name(settings: Settings, tiny_gguf: Path) -> None:
    a = start_model(settings, tiny_gguf, "tiny-a", ctx_size=512, parallel=2)
    b = start_model(settings, tiny_gguf, "tiny-b", ctx_size=512, parallel=2)
    try:
        assert a.base_url != b.base_url and a.base_url.startswith("http://127.0.0.1:")
        assert {m.name: m.state for m in list_models(settings)} == {"tiny-a": "running", "tiny-b": "running"}
        assert httpx.get(f"{a.base_url}/v1/models").json()["data"][0]["id"] == "tiny-a"
        # concurrent streams on one model are batched by the server's parallel slots
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda i: chat(a.base_url, "tiny-a", f"count to {i}"), range(4)))
        assert all(r["usage"]["completion_tokens"] > 0 for r in replies)
        status = serving_status(settings)
        assert {e.model.name for e in status.engine if e.healthy} == {"tiny-a", "tiny-b"}
        assert all(e.slots_total == 2 for e in status.engine)
        assert status.total_engine_rss_bytes > 0
        assert status.ollama.reachable is False and "not reachable" in status.ollama.error and "ollama serve" in status.ollama.next_step
    finally:
        stop_model(settings, "tiny-a")
        stop_model(settings, "tiny-b")
    assert list_models(settings) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{a.base_url}/health", timeout=2)


def test_a_busy_port_and_a_taken_name_are_refused(settings: Settings, tiny_gguf: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start_model(settings, tiny_gguf, "tiny", port=port)
    start_model(settings, tiny_gguf, "tiny", ctx_size=256, parallel=1)
    try:
        with pytest.raises(InputError, match="already served"):
            start_model(settings, tiny_gguf, "tiny", ctx_size=256, parallel=1)
    finally:
        stop_model(settings, "tiny")


def test_bad_names_and_missing_models_get_clear_errors(settings: Settings, tiny_gguf: Path) -> None:
    with pytest.raises(InputError, match="not a valid model name"):
        start_model(settings, tiny_gguf, "Bad Name!")
    with pytest.raises(InputError, match="No model named"):
        stop_model(settings, "nothing-here")


def test_a_model_that_never_stops_fails_its_probe_and_is_not_left_running(settings: Settings, tiny_gguf: Path) -> None:
    # Random weights answer with noise and never produce <|im_end|>: registration must refuse it.
    with pytest.raises(VerificationFailed, match="did not stop by itself"):
        register_embedded(settings, tiny_gguf, "noise", ctx_size=512, parallel=1)
    assert list_models(settings) == []


@pytest.mark.slow
def test_smollm2_registers_answers_and_stops_with_its_own_template(settings: Settings, smollm2_gguf: Path) -> None:
    model, probe = register_embedded(settings, smollm2_gguf, "smol", ctx_size=1024, parallel=2)
    try:
        assert probe.ok, probe.problems
        assert probe.engine == "embedded" and probe.model == "smol"
        assert probe.finish_reason == "stop" and probe.answer.strip()
        assert probe.template_matches is True
        assert probe.rendered_prompt and probe.rendered_prompt.endswith("<|im_start|>assistant\n")
        assert probe.prompt_tokens == probe.expected_prompt_tokens
        assert "<|im_end|>" not in probe.answer
        again = probe_model(settings, "smol")
        assert again.answer == probe.answer  # greedy: the same question gets the same answer
    finally:
        stop_model(settings, model.name)


def test_status_reports_ollama_when_it_answers(ollama_settings: Settings, ollama_double) -> None:
    status = serving_status(ollama_settings)
    assert status.ollama.reachable is True
    assert status.ollama.version == "0.33.0"
    assert status.ollama.models == [] and status.ollama.running == []
    assert status.engine == []
