"""deploy ADAPTER_DIR --base BASE: the merge is the first step, resumable, and the manifest records its inputs."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError
from model_serving.requests import DeployRequest
from model_serving.serve.embedded.engine import stop_model
from model_serving.settings import Settings
from model_serving.util.paths import tree_sha256


@pytest.mark.slow
def test_deploy_from_an_adapter_merges_first_and_reuses_the_merge(settings: Settings, tmp_path: Path, smollm2_lora: Path,
                                                                  smollm2_checkpoint: Path) -> None:
    out = tmp_path / "d"
    request = dict(source=str(smollm2_lora), base=str(smollm2_checkpoint), name="tuned", quant="F16", target="embedded",
                   out_dir=str(out), bench=False, verify_quality=False)
    plan = deploy(settings, DeployRequest(plan_only=True, **request))  # type: ignore[arg-type]
    assert [s.step for s in plan.plan][:2] == ["merge", "export"] and plan.plan[0].action == "run"
    try:
        result = deploy(settings, DeployRequest(**request))  # type: ignore[arg-type]
        assert [s.step for s in result.steps] == ["merge", "export", "register"]
        assert result.answer is not None
        manifest = json.loads(Path(result.manifest_path or "").read_text(encoding="utf-8"))
        merged = next(s for s in manifest["result"]["steps"] if s["step"] == "merge")["summary"]
        assert merged["adapter_sha256"] == tree_sha256(smollm2_lora) and merged["base_sha256"] == tree_sha256(smollm2_checkpoint)
        assert merged["dtype"] == "bfloat16" and merged["verification"]["passed"] and merged["chat_template_from"] == "adapter"
        assert manifest["settings"]["base"] == str(smollm2_checkpoint)
        again = deploy(settings, DeployRequest(**{**request, "replace": True}))  # type: ignore[arg-type]
        assert {s.step: s.status for s in again.steps}["merge"] == "reused"
        assert {s.step: s.status for s in again.steps}["export"] == "reused"
    finally:
        with contextlib.suppress(InputError):  # not served when the deploy failed before registering
            stop_model(settings, "tuned")


def test_deploy_refuses_a_quantized_base_in_the_plan(settings: Settings, tmp_path: Path, lora_adapter: Path, tiny_checkpoint: Path) -> None:
    quantized = tmp_path / "tiny-gptq"
    shutil.copytree(tiny_checkpoint, quantized)
    cfg = json.loads((quantized / "config.json").read_text())
    (quantized / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "gptq", "bits": 4}}))
    with pytest.raises(InputError, match="quantized") as exc:
        deploy(settings, DeployRequest(source=str(lora_adapter), base=str(quantized), out_dir=str(tmp_path / "never"), plan_only=True))
    assert "16-bit original" in exc.value.next_step and not (tmp_path / "never").exists()
