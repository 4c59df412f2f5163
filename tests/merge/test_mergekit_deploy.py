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
