"""The refusals of a mergekit merge: each before any work (nothing written), each naming its next step; and the request."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from checkpoints import tiny_random_checkpoint
from cli_runner import cli_in_process
from pydantic import ValidationError

from model_serving.checkpoint import merge_check
from model_serving.checkpoint.mergekit_merge import build_config, merge_models
from model_serving.errors import InputError
from model_serving.requests import MergeRequest
from model_serving.settings import Settings


def refused(settings: Settings, tmp_path: Path, models: list[Path], base: Path | None, method: str, **kw: object) -> InputError:
    out = tmp_path / "merged"
    with pytest.raises(InputError) as caught:
        merge_models(settings, [str(m) for m in models], str(base) if base else None, str(out), method=method, **kw)  # type: ignore[arg-type]
    assert not out.exists() and not out.with_name("merged.merge.json").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    return caught.value


def test_inputs_of_different_shapes_are_refused(settings: Settings, tmp_path: Path, smollm2_gguf: Path, tiny_checkpoint: Path, tune_a: Path) -> None:
    wide = tiny_random_checkpoint(tmp_path / "wide", smollm2_gguf, hidden=96)
    err = refused(settings, tmp_path, [tune_a, wide], tiny_checkpoint, "ties")
    assert "wide does not match tiny-llama-hf" in err.cause and "[" in err.cause and "one base model" in err.next_step


def test_inputs_of_different_architectures_are_refused(settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path) -> None:
    other = tmp_path / "other-arch"
    shutil.copytree(tune_b, other)
    config = (other / "config.json").read_text().replace("LlamaForCausalLM", "MistralForCausalLM")
    (other / "config.json").write_text(config)
    err = refused(settings, tmp_path, [tune_a, other], None, "linear")
    assert "architecture MistralForCausalLM vs LlamaForCausalLM" in err.cause


def test_slerp_takes_exactly_two_models(settings: Settings, tmp_path: Path, tiny_checkpoint: Path, tune_a: Path, tune_b: Path, tune_c: Path) -> None:
    err = refused(settings, tmp_path, [tune_a, tune_b, tune_c], None, "slerp")
    assert "exactly two" in err.cause and "ties" in err.next_step
    err = refused(settings, tmp_path, [tune_a, tune_b], tiny_checkpoint, "slerp")  # the base counts as a third
    assert "3 were given" in err.cause


@pytest.mark.parametrize("method", ["ties", "dare_ties", "task_arithmetic"])
def test_a_method_that_needs_a_base_refuses_without_one(settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path, method: str) -> None:
    err = refused(settings, tmp_path, [tune_a, tune_b], None, method)
    assert "no base" in err.cause and "--base" in err.next_step


def test_parameters_that_do_not_fit_the_method_are_refused(settings: Settings, tmp_path: Path, tiny_checkpoint: Path, tune_a: Path, tune_b: Path) -> None:
    assert "t is the SLERP" in refused(settings, tmp_path, [tune_a, tune_b], None, "linear", t=0.3).cause
    assert "density applies" in refused(settings, tmp_path, [tune_a, tune_b], None, "linear", density=[0.5]).cause
    assert "one t between 0 and 1" in refused(settings, tmp_path, [tune_a, tune_b], None, "slerp", t=1.5).cause
    assert "3 values of weight for 2" in refused(settings, tmp_path, [tune_a, tune_b], tiny_checkpoint, "ties", weight=[1.0, 1.0, 1.0]).cause


def test_an_adapter_is_not_a_fine_tune(settings: Settings, tmp_path: Path, tune_a: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert "method lora" in refused(settings, tmp_path, [tune_a, adapter], None, "linear").cause


def test_not_enough_disk_space_is_refused(settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge_check.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))  # type: ignore[attr-defined]
    err = refused(settings, tmp_path, [tune_a, tune_b], None, "linear")
    assert "only 4.0 KiB is free" in err.cause and "-o" in err.next_step


def test_mergekit_missing_is_refused_with_the_install_command(settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path) -> None:
    err = refused(settings, tmp_path, [tune_a, tune_b], None, "linear")  # this test's state directory has no mergekit
    assert "mergekit is not installed" in err.cause and "model-serving engines install mergekit" in err.next_step


def test_the_request_keeps_the_lora_merge_and_takes_the_new_methods() -> None:
    assert MergeRequest.model_validate({"adapter": "ad"}).adapter == "ad"
    lora = MergeRequest.model_validate({"models": ["ad"]})
    assert (lora.method, lora.adapter, lora.models) == ("lora", "ad", None)
    with pytest.raises(ValidationError, match="one adapter"):
        MergeRequest.model_validate({"models": ["a", "b"]})
    with pytest.raises(ValidationError, match="adapter is for method lora"):
        MergeRequest.model_validate({"adapter": "a", "method": "ties"})
    with pytest.raises(ValidationError):
        MergeRequest.model_validate({"models": ["a", "b"], "method": "ties", "density": [1.5]})
    with pytest.raises(ValidationError):
        MergeRequest.model_validate({"models": ["-a", "b"], "method": "linear"})


def test_the_config_is_mergekits_own_format(tmp_path: Path) -> None:
    a, b, base = tmp_path / "a", tmp_path / "b", tmp_path / "base"
    slerp = build_config("slerp", [a, b], None, t=0.3, weight=None, density=None, dtype="bfloat16")
    assert slerp == {"merge_method": "slerp", "dtype": "bfloat16", "base_model": str(a), "models": [{"model": str(a)}, {"model": str(b)}],
                     "parameters": {"t": 0.3}}
    ties = build_config("dare_ties", [a, b], base, t=None, weight=[0.7, 0.3], density=[0.4], dtype="float16")
    assert ties["base_model"] == str(base)
    assert [m["parameters"] for m in ties["models"]] == [{"weight": 0.7, "density": 0.4}, {"weight": 0.3, "density": 0.4}]


def test_cli_refusal_names_the_next_step(settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path, tune_c: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    roots = [a for r in settings.roots for a in ("--root", str(r))]
    code, _, err = cli_in_process(capsys, *roots, "merge", "--method", "slerp", str(tune_a), str(tune_b), str(tune_c), "-o", str(tmp_path / "o"))
    assert code == 2 and "exactly two" in err and "ties" in err and not (tmp_path / "o").exists()
