"""The merge of two fine-tunes of the real SmolLM2 deploys like any checkpoint: exported, served, probed, answering."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from checkpoints import perturbed_checkpoint

from model_serving.checkpoint.mergekit_env import MergekitEnvironment
from model_serving.checkpoint.mergekit_merge import merge_models
from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import stop_model
from model_serving.settings import Settings


@pytest.mark.slow
def test_a_slerp_merge_of_two_smollm2_fine_tunes_deploys_and_answers(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                                     artifacts: Path, smollm2_checkpoint: Path) -> None:
    a = perturbed_checkpoint(smollm2_checkpoint, artifacts / "smollm2-tune-a", layers=(0, 1, 2), seed=21, scale=0.002)
    b = perturbed_checkpoint(smollm2_checkpoint, artifacts / "smollm2-tune-b", layers=(27, 28, 29), seed=22, scale=0.002)
    merged = merge_models(settings, [str(a), str(b)], None, str(tmp_path / "smol-merged"), method="slerp", t=0.5)
    request = dict(source=merged.output_path, name="smol-merged", quant="F16", target="embedded", out_dir=str(tmp_path / "d"),
                   bench=False, verify_quality=False)
    try:
        result = deploy(settings, DeployRequest(**request))  # type: ignore[arg-type]
        assert result.answer, "the merged model answered nothing"
        manifest = json.loads(Path(result.manifest_path or "").read_text(encoding="utf-8"))
        assert manifest["source"] == merged.output_path
    finally:
        with contextlib.suppress(InputError):
            stop_model(settings, "smol-merged")


@pytest.fixture(scope="module")
def wired_tunes(artifacts: Path, smollm2_gguf: Path) -> tuple[Path, Path]:
    """Two test-time fine-tunes of a tiny base that answers and stops (the zoo's wired Llama 3), each moving one layer."""
    from zoo import BY_NAME, build

    base = build(BY_NAME["llama3"], artifacts / "zoo-llama3-merge-base", smollm2_gguf)
    return (perturbed_checkpoint(base, artifacts / "zoo-llama3-tune-a", layers=(0,), seed=31, scale=0.002),
            perturbed_checkpoint(base, artifacts / "zoo-llama3-tune-b", layers=(1,), seed=32, scale=0.002))


@pytest.mark.slow
def test_a_slerp_config_deploys_answers_records_its_recipe_and_resumes(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                                       wired_tunes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from model_serving.publish.lineage import lineage

    monkeypatch.setenv("MODEL_SERVING_PROBE_TOOLS", "0")  # the wired base answers; it was never taught to call tools

    a, b = wired_tunes
    config = tmp_path / "merge.yaml"
    config.write_text(f"merge_method: slerp\nbase_model: {a}\nmodels:\n  - model: {a}\n  - model: {b}\nparameters:\n  t: 0.5\n", encoding="utf-8")
    request = dict(source=str(config), name="merged-tunes", quant="F16", target="embedded", output=str(tmp_path / "d"), bench=False)
    planned = deploy(settings, DeployRequest(plan=True, **request))  # type: ignore[arg-type]
    assert [(s.step, s.action) for s in planned.plan][:2] == [("merge", "run"), ("export", "run")]
    try:
        first = deploy(settings, DeployRequest(**request))  # type: ignore[arg-type]
        assert first.answer, "the merged model answered nothing"
        merge = next(s for s in first.steps if s.step == "merge")
        assert merge.status == "done" and merge.output == str(tmp_path / "d" / "merged-tunes-merged")
        quality = merge.summary["quality"]
        assert [Path(q["input_path"]).name for q in quality] == [a.name, b.name] and all(q["verdict"] for q in quality)
        manifest = json.loads(Path(first.manifest_path or "").read_text(encoding="utf-8"))
        recipe = manifest["merge_recipe"]
        assert manifest["base_model_relation"] == "merge" and manifest["source"] == str(config.resolve())
        assert recipe["method"] == "slerp" and recipe["mergekit_version"] == mergekit.version
        assert [i["path"] for i in recipe["inputs"]] == [str(a.resolve()), str(b.resolve())]
        found = lineage(settings, manifest, None)
        assert found.relation == "merge" and found.recipe["config"] == recipe["config"]

        again = deploy(settings, DeployRequest(replace=True, **request))  # type: ignore[arg-type]
        assert dict((s.step, s.action) for s in again.plan)["merge"] == "reuse"
        merge_again = next(s for s in again.steps if s.step == "merge")
        assert merge_again.status == "reused" and merge_again.summary["quality"] == quality  # measured once, kept in the sidecar
        assert again.answer == first.answer
    finally:
        with contextlib.suppress(InputError):
            stop_model(settings, "merged-tunes")
