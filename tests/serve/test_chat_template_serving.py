"""A template-less quantized GGUF served for real: with a template file (embedded engine, Ollama double) or for completions.

The GGUF is SmolLM2's Q4_1 with its template removed (tests/support/bare_model.py); the given template is ChatML with a
default system line of its own, so a served prompt holding that line was built from the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from bare_model import GIVEN_MARKER, GIVEN_TEMPLATE, strip_template, write_template
from ollama_double import OllamaDouble

from model_serving.deploy.pipeline import deploy
from model_serving.deploy.template import COMPLETIONS_ONLY
from model_serving.gguf.info import read_gguf
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import get_model, stop_model
from model_serving.serve.ollama import templates
from model_serving.serve.register import register
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def bare_gguf(artifacts: Path, smollm2_gguf: Path) -> Path:
    return strip_template(smollm2_gguf, artifacts / "bare-q4_1.gguf")


def step(result, name: str) -> dict:  # noqa: ANN001
    return next(s.summary for s in result.steps if s.step == name)


def test_deploy_with_a_template_file_serves_the_gguf_as_it_is_and_chats_by_the_file(settings: Settings, bare_gguf: Path,
                                                                                    tmp_path: Path) -> None:
    given = write_template(tmp_path)
    result = deploy(settings, DeployRequest(source=str(bare_gguf), chat_template=str(given), target="embedded", bench=False,
                                            ctx_size=1024, parallel=1, output=str(tmp_path / "out")))
    try:
        model = get_model(settings, result.name)
        assert model.file_type == "Q4_1" and model.source == str(bare_gguf)  # no --quant: the file as it is, no quantize step
        assert not {"export", "quantize"} & {s.step for s in result.steps}
        assert model.chat_template_file == str(given.resolve())
        probe = step(result, "register")["probe"]
        assert probe["ok"] and probe["finish_reason"] == "stop" and probe["template_matches"] is True
        assert GIVEN_MARKER in probe["rendered_prompt"]
        # The engine itself renders by the file: its own /apply-template shows the file's system line.
        rendered = httpx.post(f"{model.base_url}/apply-template", json={"messages": [{"role": "user", "content": "Hi"}]}).json()["prompt"]
        assert rendered.startswith(f"<|im_start|>system\n{GIVEN_MARKER}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
        manifest = json.loads(Path(result.manifest_path or "").read_text(encoding="utf-8"))
        assert manifest["result"]["chat_template"] == {"path": str(given.resolve()), "sha256": hashlib.sha256(given.read_bytes()).hexdigest()}
        assert manifest["artifacts"]["served"]["path"] == str(bare_gguf)
    finally:
        stop_model(settings, result.name)


def test_deploy_for_completions_passes_its_completion_probe_and_benches_that_route(settings: Settings, bare_gguf: Path,
                                                                                  tmp_path: Path) -> None:
    result = deploy(settings, DeployRequest(source=str(bare_gguf), completions=True, target="embedded", ctx_size=1024, parallel=1,
                                            bench_requests=2, concurrency=1, output=str(tmp_path / "out")))
    try:
        assert result.serves == COMPLETIONS_ONLY and result.endpoint and result.endpoint.endswith("/v1/completions")
        probe = step(result, "register")["probe"]
        assert probe["ok"] and probe["answer"].strip() and probe["finish_reason"] in ("length", "stop")
        assert 0 < probe["completion_tokens"] <= 16
        assert get_model(settings, result.name).completions_only
        bench = step(result, "bench")
        assert bench["summary"]["completed"] == 2 and bench["summary"]["failed"] == 0
        assert json.loads(Path(bench["files"]["json"]).read_text(encoding="utf-8"))["backend"] == "openai-completions"
    finally:
        stop_model(settings, result.name)


def test_ollama_registers_it_with_the_file_converted_to_a_go_template(ollama_settings: Settings, ollama_double: OllamaDouble,
                                                                      bare_gguf: Path, tmp_path: Path) -> None:
    given = write_template(tmp_path)
    done = register(ollama_settings, bare_gguf, "bare", target="ollama", chat_template=given, ctx_size=1024)
    assert done.ollama is not None and done.probe.ok and done.probe.finish_reason == "stop"
    info = read_gguf(bare_gguf)
    expected = templates.convert(GIVEN_TEMPLATE, bos_token=info.bos_token or "", eos_token=info.eos_token or "",
                                 runtime_adds_bos=bool(info.add_bos_token)).go_template
    assert done.ollama.template.strategy == "go" and "given chat template file" in done.ollama.template.reason
    assert done.ollama.stored.template == expected and GIVEN_MARKER in expected
    assert done.ollama.template_check is not None and done.ollama.template_check.passed
