"""The registration scenario against a real Ollama, when one is installed; skipped otherwise.

It starts `ollama serve` on a free loopback port with its own model store, registers SmolLM2,
probes it, checks the prompts against the Jinja template, and deletes the model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_serving.serve.ollama import manage
from model_serving.serve.ollama.register import register_gguf
from model_serving.settings import Settings

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.skipif(shutil.which("ollama") is None, reason="no `ollama` binary on PATH")]


@pytest.fixture
def real_ollama(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models")}
    proc = subprocess.Popen(["ollama", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/version", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("ollama serve did not answer within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_register_probe_and_delete_on_a_real_ollama(settings: Settings, real_ollama: str, smollm2_gguf: Path) -> None:
    settings.ollama_host = real_ollama
    settings.roots.append(smollm2_gguf.parent.resolve())
    reg, probe = register_gguf(settings, smollm2_gguf, "model-serving-live-test", num_ctx=2048)
    try:
        assert probe.finish_reason == "stop", probe
        assert probe.ok, probe.problems
        assert reg.template_check is None or reg.template_check.passed, reg.template_check.describe()
        assert "model-serving-live-test:latest" in [m.name for m in manage.list_models(settings)]
    finally:
        manage.delete_model(settings, "model-serving-live-test")
