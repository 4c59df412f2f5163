"""register_gguf end to end against the Ollama test double with SmolLM2-135M, and its failure modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ollama_double import OllamaDouble

from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.gguf.info import read_gguf
from model_serving.serve.ollama import manage, templates
from model_serving.serve.ollama.client import OllamaAPIError, OllamaClient, OllamaUnreachable
from model_serving.serve.ollama.modelfile import parse
from model_serving.serve.ollama.plan import choose_num_ctx, choose_template
from model_serving.serve.ollama.register import register_gguf
from model_serving.settings import Settings
from model_serving.util.filehash import HashCache


def _names(settings: Settings) -> list[str]:
    with OllamaClient(settings) as client:
        return sorted(m.name for m in client.list())


@pytest.mark.slow
def test_register_relying_on_the_ggufs_template_then_manage(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    reg, probe = register_gguf(ollama_settings, smollm2_gguf, "smol", num_ctx=1024, system="You are a concise assistant.")
    assert reg.name == "smol:latest" and reg.uploaded and reg.server_version == "0.33.0"
    assert reg.template.strategy == "gguf" and "renders the GGUF's own Jinja template" in reg.template.reason
    assert reg.stored.template == read_gguf(smollm2_gguf).chat_template
    assert reg.stop == ["<|im_end|>", "<|im_start|>"]
    assert reg.stored.parameters["stop"] == reg.stop and reg.stored.parameters["num_ctx"] == ["1024"]
    assert reg.stored.system == "You are a concise assistant."
    assert reg.create_status[-1] == "success"
    # the probe: stops by itself, sees every prompt token
    assert probe.ok and probe.engine == "ollama" and probe.finish_reason == "stop" and probe.answer
    assert probe.prompt_tokens == probe.expected_prompt_tokens and not probe.truncated and not probe.double_bos
    assert reg.template_check is not None and reg.template_check.passed
    assert [c.status for c in reg.template_check.cases] == ["equal", "equal", "equal", "not applicable", "not applicable"]
    # the Modelfile we report reads back to the same content
    modelfile = parse(reg.modelfile)
    assert modelfile.template is None and modelfile.parameter("stop") == reg.stop and modelfile.system == "You are a concise assistant."

    # management on the registered model
    assert [m.name for m in manage.list_models(ollama_settings)] == ["smol:latest"]
    manage.copy_model(ollama_settings, "smol", "smol:v1")
    with pytest.raises(InputError, match="already has a model named smol:v1"):
        manage.copy_model(ollama_settings, "smol", "smol:v1")
    manage.delete_model(ollama_settings, "smol:v1")
    with OllamaClient(ollama_settings) as client:
        client.chat("smol", [{"role": "user", "content": "Hi"}], options={"num_predict": 2}, keep_alive="1h")
    [running] = manage.running_models(ollama_settings)
    assert running.name == "smol:latest" and running.processor == "100% CPU" and 3500 < (running.expires_in_s or 0) <= 3600
    manage.unload_model(ollama_settings, "smol")
    assert manage.running_models(ollama_settings) == []
    status = manage.server_status(ollama_settings)
    assert status.reachable and status.missing_features == []


@pytest.mark.slow
def test_register_with_the_converted_go_template_on_an_older_server(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path,
                                                                     go_renderer) -> None:
    ollama_double.version = "0.29.0"
    reg, probe = register_gguf(ollama_settings, smollm2_gguf, "smol-go", num_ctx=1024, go_renderer=go_renderer)
    assert reg.template.strategy == "go" and "does not render GGUF Jinja templates" in reg.template.reason
    assert reg.stored.template.startswith("{{ $messages := $.Messages }}")
    assert probe.ok and probe.finish_reason == "stop"
    assert reg.template_check is not None and reg.template_check.passed
    assert reg.template_render_check is not None and reg.template_render_check.passed
    assert {c.status for c in reg.template_render_check.cases} == {"equal", "not applicable"}
    status = manage.server_status(ollama_settings)
    assert status.missing_features and "0.30.0" in status.warnings[0]

    with pytest.raises(InputError, match="already has a model named smol-go:latest"):
        register_gguf(ollama_settings, smollm2_gguf, "smol-go", num_ctx=1024)
    again, _ = register_gguf(ollama_settings, smollm2_gguf, "smol-go", num_ctx=512, overwrite=True)
    assert again.replaced_existing and not again.uploaded  # the blob was already there
    assert again.stored.parameters["num_ctx"] == ["512"]
    assert _names(ollama_settings) == ["smol-go:latest"]  # the backup copy is gone


def test_invalid_name_is_refused_before_anything_is_sent(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    with pytest.raises(InputError, match="not a valid Ollama model name") as err:
        register_gguf(ollama_settings, smollm2_gguf, "bad name!")
    assert "my-model:v1" in err.value.next_step
    assert ollama_double.requests == []


def test_ollama_not_running(settings: Settings, smollm2_gguf: Path) -> None:
    settings.roots.append(smollm2_gguf.parent.resolve())
    with pytest.raises(OllamaUnreachable) as err:
        register_gguf(settings, smollm2_gguf, "smol")
    assert "ollama serve" in err.value.next_step


def test_path_outside_the_roots_is_refused(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    from model_serving.errors import PathNotAllowed

    outside = tmp_path_factory.mktemp("outside") / "model.gguf"
    outside.write_bytes(b"GGUF")
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        register_gguf(settings, outside, "smol")


def test_dropped_uploads_leave_no_model(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    ollama_double.drop_uploads = 3
    with pytest.raises(ServingError, match=r"broke off 3 times .*; nothing was registered"):
        register_gguf(ollama_settings, smollm2_gguf, "smol", num_ctx=1024)
    assert _names(ollama_settings) == []
    assert ("POST", "/api/create") not in ollama_double.requests


def test_digest_mismatch_is_caught_and_leaves_no_model(ollama_settings: Settings, smollm2_gguf: Path) -> None:
    # A file that changed after it was hashed: simulate with a stale remembered digest.
    HashCache(ollama_settings.state_dir).put(smollm2_gguf, "ab" * 32)  # the one hash cache export and quantize fill too
    with pytest.raises(VerificationFailed, match="digest mismatch") as err:
        register_gguf(ollama_settings, smollm2_gguf, "smol", num_ctx=1024)
    assert "run the command again" in err.value.next_step
    assert _names(ollama_settings) == []


def test_error_line_while_creating_leaves_the_previous_model(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path) -> None:
    with pytest.raises(OllamaAPIError, match="in the middle of its response stream"):
        ollama_double.stream_error_after["/api/create"] = 1
        register_gguf(ollama_settings, smollm2_gguf, "fresh", num_ctx=1024)
    assert _names(ollama_settings) == []
    # now an existing model whose replacement fails: it stays as it was, and no backup is left behind
    with OllamaClient(ollama_settings) as client:
        digest = "sha256:" + __import__("hashlib").sha256(smollm2_gguf.read_bytes()).hexdigest()
        client.create({"model": "keep", "files": {smollm2_gguf.name: digest}, "system": "original"})
    ollama_double.stream_error_after["/api/create"] = 1
    with pytest.raises(OllamaAPIError):
        register_gguf(ollama_settings, smollm2_gguf, "keep", num_ctx=1024, overwrite=True, system="replacement")
    assert _names(ollama_settings) == ["keep:latest"]
    assert manage.show_model(ollama_settings, "keep").system == "original"


def test_unconvertible_template_on_an_old_server_names_the_construct(ollama_settings: Settings, ollama_double: OllamaDouble, smollm2_gguf: Path,
                                                                     tmp_path: Path) -> None:
    source = tmp_path / "checkpoint"
    source.mkdir()
    (source / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.title() }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"}))
    ollama_double.version = "0.29.0"
    with pytest.raises(templates.UnconvertibleTemplate, match=r"the method \.title\(\)") as err:
        register_gguf(ollama_settings, smollm2_gguf, "smol", source_dir=source)
    assert "--template gguf" in err.value.next_step
    assert ("POST", "/api/create") not in ollama_double.requests
    # a server that renders GGUF templates falls back to the GGUF's own template, and says why
    info = read_gguf(smollm2_gguf)
    choice, go_template, _ = choose_template(info, source, "auto", "0.33.0")
    assert choice.strategy == "gguf" and go_template is None and ".title()" in choice.reason


def test_tool_templates_rely_on_the_gguf_where_the_server_can(smollm2_gguf: Path, tmp_path: Path) -> None:
    info = read_gguf(smollm2_gguf)
    info.chat_template = (Path(__file__).parents[1] / "data" / "chat_templates" / "qwen2.5.jinja").read_text()
    choice, go_template, _ = choose_template(info, None, "auto", "0.33.0")
    assert choice.strategy == "gguf" and choice.supports_tools and go_template is None
    old, go_template, _ = choose_template(info, None, "auto", "0.29.0")
    assert old.strategy == "go" and "$.Tools" in (go_template or "") and any("compact JSON" in n for n in old.notes)
    with pytest.raises(InputError, match="cannot render a GGUF's Jinja template"):
        choose_template(info, None, "gguf", "0.29.0")


def test_num_ctx_never_silently_exceeds_the_model_or_memory(smollm2_gguf: Path) -> None:
    info = read_gguf(smollm2_gguf)
    assert choose_num_ctx(info, None, local=False) == (8192, "the trained context (8192)")
    assert choose_num_ctx(info, 2048, local=True) == (2048, "requested")
    with pytest.raises(InputError, match="larger than the model's trained context"):
        choose_num_ctx(info, 16384, local=False)
    info.context_length = 10**9  # pretend a huge trained context: free memory is the limit
    with pytest.raises(InputError, match="KV cache"):
        choose_num_ctx(info, 10**8, local=True)
    ctx, reason = choose_num_ctx(info, None, local=True)
    assert ctx <= 32768 and ("memory" in reason or "capped" in reason)


def test_quantize_requests_are_checked_against_the_source_type(ollama_settings: Settings, smollm2_gguf: Path) -> None:
    with pytest.raises(InputError, match=r"already quantized \(Q4_1\)"):
        register_gguf(ollama_settings, smollm2_gguf, "smol", quantize="q4_K_M")
    assert _names(ollama_settings) == []
