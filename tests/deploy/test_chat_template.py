"""A GGUF is served as it is, and a missing chat template is caught in the plan, before any engine starts.

The template-less GGUF is SmolLM2's Q4_1 with its template removed (tests/support/bare_model.py): the case of a
base model's GGUF from a converter. Refusals must name the three ways on, on both faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from bare_model import GIVEN_TEMPLATE, strip_template, write_template
from cli_runner import cli_in_process
from mcp import Client

from model_serving.checkpoint.template_check import MAX_TEMPLATE_BYTES, load, problem
from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.requests import DeployRequest
from model_serving.serve import processes
from model_serving.serve.registry import list_models
from model_serving.settings import Settings

THREE_STEPS = ("--chat-template FILE", "carries one", "--completions")


@pytest.fixture(scope="session")
def bare_gguf(artifacts: Path, smollm2_gguf: Path) -> Path:
    return strip_template(smollm2_gguf, artifacts / "bare-q4_1.gguf")


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every engine start goes through processes.launch: record any, so a test can assert none happened."""
    launched: list[list[str]] = []
    real = processes.launch

    def launch(argv, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        launched.append([str(a) for a in argv])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(processes, "launch", launch)
    return launched


def plan(settings: Settings, **values: object):  # noqa: ANN201
    return deploy(settings, DeployRequest(plan=True, target="embedded", **values))


def details(result) -> dict[str, str]:  # noqa: ANN001
    return {s.step: s.detail for s in result.plan}


def test_a_quantized_gguf_is_served_as_it_is_without_a_quant(settings: Settings, smollm2_gguf: Path) -> None:
    result = plan(settings, source=str(smollm2_gguf))
    quantize = next(s for s in result.plan if s.step == "quantize")
    assert quantize.action == "skip" and quantize.detail.endswith("as it is, Q4_1")
    assert "export" not in details(result)
    # Its own type named is the same; another type still needs allow_requantize, and then it quantizes.
    assert details(plan(settings, source=str(smollm2_gguf), quant="Q4_1"))["quantize"] == quantize.detail
    with pytest.raises(InputError) as refused:
        plan(settings, source=str(smollm2_gguf), quant="Q8_0")
    assert "already quantized (Q4_1)" in refused.value.cause and "Leave quant out" in refused.value.next_step
    assert next(s for s in plan(settings, source=str(smollm2_gguf), quant="Q8_0", allow_requantize=True).plan
                if s.step == "quantize").action == "run"


def test_a_gguf_without_a_template_is_refused_by_the_plan_with_three_next_steps(settings: Settings, bare_gguf: Path) -> None:
    with pytest.raises(InputError) as refused:
        plan(settings, source=str(bare_gguf))
    assert "bare-q4_1.gguf: it has no chat template" in refused.value.cause
    assert all(step in refused.value.next_step for step in THREE_STEPS), refused.value.next_step


def test_deploy_refuses_it_before_any_engine_starts(settings: Settings, bare_gguf: Path, tmp_path: Path,
                                                    no_engine: list[list[str]]) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no chat template"):
        deploy(settings, DeployRequest(source=str(bare_gguf), target="embedded", bench=False, output=str(out)))
    assert no_engine == [] and list_models(settings) == [] and not out.exists()


def test_both_faces_refuse_it_with_the_three_next_steps(settings: Settings, bare_gguf: Path, capsys: pytest.CaptureFixture[str],
                                                         no_engine: list[list[str]]) -> None:
    roots = [a for root in settings.roots for a in ("--root", str(root))]
    code, out, err = cli_in_process(capsys, *roots, "deploy", str(bare_gguf), "--target", "embedded", "--plan")
    assert code == 2 and all(step in out + err for step in THREE_STEPS), out + err
    code, out, err = cli_in_process(capsys, *roots, "serve", "start", str(bare_gguf), "--name", "bare")
    assert code == 2 and all(step in out + err for step in THREE_STEPS), out + err

    async def call() -> tuple[bool, str]:
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("deploy_model", {"source": str(bare_gguf), "target": "embedded", "plan": True})
            while not result.is_error and (result.structured_content or {}).get("status") == "working":
                result = await client.call_tool("job_status", {"job_id": result.structured_content["taskId"], "wait_s": 5})
            if not result.is_error and (result.structured_content or {}).get("status") == "failed":
                return True, json.dumps(result.structured_content)
        return bool(result.is_error), json.dumps([c.model_dump() for c in result.content]) + json.dumps(result.structured_content)

    is_error, text = anyio.run(call)
    assert is_error and "no chat template" in text and "chat_template" in text and "completions" in text, text
    assert no_engine == []


def test_the_plan_serves_it_with_a_template_file_or_for_completions(settings: Settings, bare_gguf: Path, tmp_path: Path) -> None:
    given = write_template(tmp_path)
    with_file = plan(settings, source=str(bare_gguf), chat_template=str(given))
    assert details(with_file)["quantize"].endswith("as it is, Q4_1")
    assert f"with the chat template {given}" in details(with_file)["register"]
    completions = plan(settings, source=str(bare_gguf), completions=True)
    assert "not a chat model: /v1/completions only" in details(completions)["register"]
    assert "probe /v1/completions" in details(completions)["register"]
    with pytest.raises(InputError, match="exclude each other"):
        plan(settings, source=str(bare_gguf), completions=True, chat_template=str(given))
    with pytest.raises(InputError, match="Ollama serves a model for chat"):
        deploy(settings, DeployRequest(plan=True, target="ollama", source=str(bare_gguf), completions=True))


def test_a_checkpoint_without_a_template_is_refused_too(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    bare = shutil.copytree(tiny_checkpoint, tmp_path / "bare-ckpt")
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(InputError) as refused:
        plan(settings, source=str(bare))
    assert "bare-ckpt: it has no chat template" in refused.value.cause
    assert all(step in refused.value.next_step for step in THREE_STEPS)
    assert plan(settings, source=str(tiny_checkpoint)).plan  # the same checkpoint with its template plans


def test_template_files_are_confined_bounded_and_rendered(settings: Settings, tmp_path: Path,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    good = load(write_template(tmp_path), settings.roots)
    assert good.text == GIVEN_TEMPLATE and len(good.sha256) == 64
    outside = write_template(tmp_path_factory.mktemp("elsewhere"))
    with pytest.raises(InputError, match="outside the allowed roots"):
        load(outside, settings.roots)
    with pytest.raises(InputError, match="at most"):
        load(write_template(tmp_path, "x" * (MAX_TEMPLATE_BYTES + 1), "big.jinja"), settings.roots)
    (tmp_path / "latin1.jinja").write_bytes(b"{{ '\xe9' }}")
    with pytest.raises(InputError, match="not UTF-8"):
        load(tmp_path / "latin1.jinja", settings.roots)
    with pytest.raises(InputError, match="JSON file"):
        load(write_template(tmp_path, json.dumps({"chat_template": GIVEN_TEMPLATE}), "tc.json"), settings.roots)
    with pytest.raises(InputError, match="not usable"):
        load(write_template(tmp_path, "{% for m in messages %}", "broken.jinja"), settings.roots)
    # Unusable in other ways: a sandbox escape, a template that refuses plain chat, one that drops the user's text.
    assert "cannot be rendered" in (problem("{{ ''.__class__.__mro__[1].__subclasses__() }}") or "")
    assert "refuses" in (problem("{{ raise_exception('system message required') }}") or "")
    assert "drops the user's message" in (problem("{% for m in messages %}{{ m.role }}{% endfor %}") or "")


def test_ollama_registration_of_it_is_refused_before_anything_is_uploaded(ollama_settings: Settings, ollama_double, bare_gguf: Path) -> None:  # noqa: ANN001
    from model_serving.serve.register import register

    with pytest.raises(InputError) as refused:
        register(ollama_settings, bare_gguf, "bare", target="ollama")
    assert "has no chat template" in refused.value.cause and "--chat-template FILE" in refused.value.next_step
    assert {path for method, path in ollama_double.requests if method == "POST"} <= {"/api/show"}  # read only: no blob, no create
