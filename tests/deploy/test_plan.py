"""The deploy plan refuses bad input before any long work, and leaves nothing behind when it does."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from cli_runner import cli_in_process

from model_serving.deploy.pipeline import deploy
from model_serving.deploy.source import slug
from model_serving.errors import Cancelled, InputError, ServingError
from model_serving.jobs import Progress
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import start_model, stop_model
from model_serving.settings import Settings


def plan(settings: Settings, **values: object):  # noqa: ANN201
    return deploy(settings, DeployRequest(plan_only=True, **values))


def actions(result) -> dict[str, str]:  # noqa: ANN001
    return {s.step: s.action for s in result.plan}


def test_default_names_keep_what_tells_models_apart(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert slug("Llama-3.2-1B") == "llama-3.2-1b"
    assert slug("Llama-3.1-8B") == "llama-3.1-8b"
    assert slug("Qwen2.5-Coder 7B:Instruct") == "qwen2.5-coder-7b-instruct"  # ':' would read as an Ollama tag
    long = slug("A" * 80 + "-1B")
    assert len(long) == 64 and long == "a" * 64
    names = set()
    for folder in ("Llama-3.2-1B", "Llama-3.1-8B"):
        copy = shutil.copytree(tiny_checkpoint, tmp_path / folder)
        names.add(plan(settings, source=str(copy), target="embedded").name)
    assert names == {"llama-3.2-1b", "llama-3.1-8b"}


def test_unknown_quant_is_refused_before_the_export(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "tiny"
    (tmp_path / "no-native-build").mkdir()
    bare = dataclasses.replace(settings, native_cache=tmp_path / "no-native-build")
    for quant in ("Q9_9", "IQ2_XS"):  # unknown; needs an importance matrix, which needs the native build this one lacks
        with pytest.raises(InputError) as refused:
            deploy(bare, DeployRequest(source=str(tiny_checkpoint), quant=quant, out_dir=str(out)))
        assert refused.value.next_step
    assert not (tmp_path / "deploy").exists()  # no export ran, and no empty folder was left


def test_flag_like_values_are_refused(settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'-rf' starts with '-'"):
        plan(settings, source="-rf")
    code, out, err = cli_in_process(capsys, "--root", str(tmp_path), "deploy", "--quant=-x", "--plan")
    assert code == 2
    assert "quant" in err and "quantize to" not in out + err
    assert not (tmp_path / "deployments").exists()


def test_requantizing_needs_allow_requantize(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    with pytest.raises(InputError) as refused:
        deploy(settings, DeployRequest(source=str(smollm2_gguf), quant="Q8_0", out_dir=str(out)))
    assert "already quantized (Q4_1)" in refused.value.cause
    assert "allow_requantize" in refused.value.next_step
    assert not out.exists()
    # The next step it names is one deploy accepts; and serving it as it is needs no quantize step.
    allowed = plan(settings, source=str(smollm2_gguf), quant="Q8_0", allow_requantize=True)
    assert actions(allowed)["quantize"] == "run"
    assert "export" not in actions(allowed)
    for as_is in ("Q4_1", "F16"):
        assert actions(plan(settings, source=str(smollm2_gguf), quant=as_is))["quantize"] == "skip"


def test_a_served_name_gets_a_version_beside_it_and_is_replaced_only_when_asked(settings: Settings, smollm2_gguf: Path) -> None:
    name = plan(settings, source=str(smollm2_gguf), quant="F16").name
    assert name == "smollm2-135m-instruct.q4_1"
    start_model(settings, smollm2_gguf, name, ctx_size=256, parallel=1)
    try:
        beside = plan(settings, source=str(smollm2_gguf), quant="F16")
        assert (beside.name, beside.version, beside.live) == (f"{name}@2", 2, False)
        register = next(s.detail for s in beside.plan if s.step == "register")
        assert "served beside the live version" in register and "recorded as version 1 first" in register
        assert f"deployments/{name}@2/{name}@2.deploy.json" in next(s.detail for s in beside.plan if s.step == "manifest")
        replacing = plan(settings, source=str(smollm2_gguf), quant="F16", replace=True)
        assert (replacing.name, replacing.version, replacing.live) == (name, 2, True)
        assert "replaces the model served" in next(s.detail for s in replacing.plan if s.step == "register")
        assert not (settings.state_dir / "versions" / f"{name}.json").exists()  # a plan writes nothing
    finally:
        stop_model(settings, name)


def test_an_out_dir_of_another_source_is_not_overwritten(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    (out / "smol.deploy.json").write_text(json.dumps({"source": "/elsewhere/Other-7B"}), encoding="utf-8")
    with pytest.raises(InputError, match="another source"):
        plan(settings, source=str(smollm2_gguf), name="smol", quant="F16", out_dir=str(out))
    assert plan(settings, source=str(smollm2_gguf), name="smol", quant="F16", out_dir=str(out), replace=True).name == "smol"


def test_unreachable_auto_target_picks_embedded_and_says_so(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    result = plan(settings, source=str(smollm2_gguf), quant="F16")  # OLLAMA_HOST is the discard port here
    assert result.target == "embedded"
    assert "does not answer" in result.target_reason
    assert result.target_reason in next(s.detail for s in result.plan if s.step == "register")
    with pytest.raises(ServingError, match="not reachable"):
        deploy(settings, DeployRequest(source=str(smollm2_gguf), quant="F16", target="ollama", out_dir=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_the_plan_of_the_default_model(settings: Settings) -> None:
    result = plan(settings)
    assert result.name == "smollm2-135m-instruct"
    assert actions(result) == {"prepare": "run", "export": "run", "quantize": "run", "register": "run", "bench": "run", "manifest": "run"}
    bench = next(s.detail for s in result.plan if s.step == "bench")
    assert "32 streaming requests, 4 at a time" in bench  # the engine's 4 slots, not one request at a time
    assert not result.steps and result.manifest_path is None


def test_slots_longer_than_the_trained_context_are_refused_in_the_plan(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trained for") as refused:
        deploy(settings, DeployRequest(source=str(smollm2_gguf), quant="F16", ctx_size=1 << 20, parallel=1, out_dir=str(tmp_path / "d")))
    assert "ctx_size at most 8192" in refused.value.next_step
    assert not (tmp_path / "d").exists()


def test_a_deploy_stopped_midway_leaves_no_empty_folder(settings: Settings, smollm2_gguf: Path, tmp_path: Path) -> None:
    progress = Progress()
    progress.cancel()  # the plan passes (it takes no progress); the first step stops
    with pytest.raises(Cancelled):
        deploy(settings, DeployRequest(source=str(smollm2_gguf), quant="F16", bench=False, out_dir=str(tmp_path / "a" / "b")), progress)
    assert not (tmp_path / "a").exists()
