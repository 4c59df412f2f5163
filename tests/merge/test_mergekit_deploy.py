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


@pytest.mark.slow
def test_a_slerp_config_deploys_answers_records_its_recipe_and_resumes(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                                       wired_tunes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from model_serving.deploy.context import DeployContext, DeployResult
    from model_serving.deploy.plan import make_plan
    from model_serving.deploy.steps import merge
    from model_serving.jobs import Progress
    from model_serving.publish.lineage import lineage

    monkeypatch.setenv("MODEL_SERVING_PROBE_TOOLS", "0")  # the wired base answers; it was never taught to call tools
    a, b = wired_tunes
    config = tmp_path / "merge.yaml"
    config.write_text(f"merge_method: slerp\nbase_model: {a}\nmodels:\n  - model: {a}\n  - model: {b}\nparameters:\n  t: 0.5\n", encoding="utf-8")
    request = DeployRequest(source=str(config), name="merged-tunes", quant="F16", target="embedded", output=str(tmp_path / "d"), bench=False)
    # A deploy stopped after its merge step: the plan and the merge ran, nothing after.
    plan = make_plan(settings, request)
    assert [(s.step, s.action) for s in plan.steps][:2] == [("merge", "run"), ("export", "run")]
    plan.out_dir.mkdir(parents=True)
    stopped = DeployContext(settings=settings, request=request, plan=plan,
                            result=DeployResult(name=plan.name, target=plan.target, target_reason=plan.target_reason, plan=plan.steps))
    merge(stopped, Progress())
    quality = stopped.result.steps[0].summary["quality"]
    assert stopped.result.steps[0].status == "done" and [Path(q["input_path"]).name for q in quality] == [a.name, b.name]
    try:
        resumed = deploy(settings, request)
        assert resumed.answer, "the merged model answered nothing"
        assert dict((s.step, s.action) for s in resumed.plan)["merge"] == "reuse"
        step = next(s for s in resumed.steps if s.step == "merge")
        assert step.status == "reused" and step.output == str(plan.checkpoint)
        assert step.summary["quality"] == quality  # measured once, kept in the sidecar
        manifest = json.loads(Path(resumed.manifest_path or "").read_text(encoding="utf-8"))
        recipe = manifest["merge_recipe"]
        assert manifest["base_model_relation"] == "merge" and manifest["source"] == str(config.resolve())
        assert recipe["method"] == "slerp" and recipe["mergekit_version"] == mergekit.version
        assert [i["path"] for i in recipe["inputs"]] == [str(a.resolve()), str(b.resolve())]
        found = lineage(settings, manifest, None)
        assert found.relation == "merge" and found.recipe["config"] == recipe["config"]
    finally:
        with contextlib.suppress(InputError):
            stop_model(settings, "merged-tunes")
