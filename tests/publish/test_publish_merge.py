"""A deploy of a folder that `merge --method` (mergekit) wrote: the card records base_model_relation merge, the
merged models as base models, and the recipe from the merge's own record."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hub_double import HubDouble
from huggingface_hub import ModelCard, hf_hub_download

from model_serving.failures import validated
from model_serving.publish.lineage import lineage
from model_serving.publish.push import publish
from model_serving.requests import PublishRequest
from model_serving.settings import Settings

REPO = "tester/merged-gguf"
CONFIG = "merge_method: ties\ndtype: bfloat16\nbase_model: {base}\nmodels:\n- model: {a}\n  parameters:\n    weight: 1.0\n    density: 0.5\n"


def merged_source(tmp_path: Path) -> Path:
    """A merged folder and the record merge_models writes beside it; the inputs sit in Hugging Face cache snapshots."""
    snap = {name: tmp_path / "hub" / f"models--me--{name}" / "snapshots" / "0a1b2c" for name in ("base", "tune-a")}
    merged = tmp_path / "merged-ties"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    record = {"config": CONFIG.format(base=snap["base"], a=snap["tune-a"]), "method": "ties", "mergekit_version": "0.1.5",
              "inputs": [{"path": str(snap["base"]), "role": "base", "sha256": "b" * 64, "size_bytes": 1},
                         {"path": str(snap["tune-a"]), "role": "model", "sha256": "a" * 64, "size_bytes": 1}]}
    (tmp_path / "merged-ties.merge.json").write_text(json.dumps(record))
    return merged


def test_lineage_of_a_mergekit_merge(settings: Settings, tmp_path: Path) -> None:
    found = lineage(settings, {"source": str(merged_source(tmp_path))}, None)
    assert found.relation == "merge" and found.base_model == ["me/base", "me/tune-a"]
    assert yaml.safe_load(found.recipe["config"])["merge_method"] == "ties"
    (tmp_path / "merged-ties.merge.json").write_text("not json")
    assert lineage(settings, {"source": str(tmp_path / "merged-ties")}, None).relation is None  # a local folder, no record: no lineage


def test_the_card_of_a_merge_names_its_models_and_recipe(settings: Settings, hub: HubDouble, tmp_path: Path, deploy_dir: Path,
                                                        manifest_writer, smollm2_sha256: str) -> None:  # type: ignore[no-untyped-def]
    manifest_writer(deploy_dir, deploy_dir / "smol.gguf", smollm2_sha256, source=str(merged_source(tmp_path)))
    publish(settings, validated(PublishRequest, {"source": str(deploy_dir), "repo": REPO}))
    card = ModelCard.load(hf_hub_download(REPO, "README.md", endpoint=hub.url))
    data = card.data.to_dict()
    assert data["base_model"] == ["me/base", "me/tune-a"] and data["base_model_relation"] == "merge"
    assert "merge" in data["tags"] and "mergekit" in data["tags"]
    assert "## Merge recipe" in card.text and "merge_method: ties" in card.text and "Merged with mergekit 0.1.5" in card.text
    assert f"tree sha256 {'a' * 64}" in card.text
