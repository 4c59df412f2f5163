"""A mergekit config as a deploy source: read defensively, refused before any work, rewritten with resolved paths."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import yaml
from checkpoints import tiny_random_checkpoint
from cli_runner import cli_in_process
from mcp import Client

from model_serving.checkpoint.merge_config import MAX_CONFIG_BYTES, read_merge_config
from model_serving.checkpoint.mergekit_env import MergekitEnvironment
from model_serving.deploy.pipeline import deploy
from model_serving.errors import InputError, PathNotAllowed
from model_serving.mcp.server import create_server
from model_serving.requests import DeployRequest
from model_serving.settings import Settings


def write(path: Path, config: dict | str) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config), encoding="utf-8")
    return path


def slerp(a: Path, b: Path, **extra: object) -> dict:
    return {"merge_method": "slerp", "base_model": str(a), "models": [{"model": str(a)}, {"model": str(b)}],
            "parameters": {"t": 0.5}, "dtype": "bfloat16", **extra}


def refused_deploy(settings: Settings, config: Path, tmp_path: Path) -> InputError:
    """Deploy the config and return its refusal, checking that the deploy wrote nothing."""
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as caught:
        deploy(settings, DeployRequest(source=str(config), target="embedded", bench=False, output=str(tmp_path / "d")))
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a refused deploy wrote something"
    assert not (settings.roots[0] / "deployments").exists()
    return caught.value


def test_a_slerp_config_is_rewritten_with_resolved_paths(settings: Settings, tmp_path: Path, tiny_checkpoint: Path,
                                                         tune_a: Path, tune_b: Path) -> None:
    # A relative path is read from the config's folder; filtered gradients pass through, checked.
    (tmp_path / "cfg").mkdir()
    link = tmp_path / "tune-b"
    link.symlink_to(tune_b)
    t = [{"filter": "self_attn", "value": [0.0, 0.5, 1.0]}, {"value": 0.3}]
    spec = read_merge_config(write(tmp_path / "cfg" / "m.yaml", {"merge_method": "slerp", "base_model": str(tune_a),
                                                               "models": [{"model": str(tune_a)}, {"model": "../tune-b"}],
                                                               "parameters": {"t": t}}), settings.roots)
    assert spec.method == "slerp" and spec.base == tune_a.resolve() and spec.models == (tune_b.resolve(),)
    ran = yaml.safe_load(spec.config_text)
    assert ran == {"merge_method": "slerp", "dtype": "bfloat16", "base_model": str(tune_a.resolve()),
                   "models": [{"model": str(tune_a.resolve())}, {"model": str(tune_b.resolve())}], "parameters": {"t": t}}
    assert [i.path for i in spec.inputs] == [tune_a.resolve(), tune_b.resolve()]


def test_a_ties_config_keeps_each_models_parameters(settings: Settings, tmp_path: Path, tiny_checkpoint: Path,
                                                    tune_a: Path, tune_b: Path) -> None:
    config = {"merge_method": "ties", "base_model": str(tiny_checkpoint), "parameters": {"normalize": True, "int8_mask": False},
              "models": [{"model": str(tiny_checkpoint)}, {"model": str(tune_a), "parameters": {"weight": 0.7, "density": 0.5}},
                         {"model": str(tune_b), "parameters": {"weight": 0.3, "density": 0.4}}]}
    spec = read_merge_config(write(tmp_path / "ties.yml", config), settings.roots)
    assert spec.base == tiny_checkpoint.resolve() and len(spec.models) == 2
    assert yaml.safe_load(spec.config_text)["models"][1]["parameters"] == {"weight": 0.7, "density": 0.5}


@pytest.mark.parametrize(("change", "words"), [
    (lambda a, b, c: {**slerp(a, b), "tokenizer_source": "union"}, "'tokenizer_source' at the top level"),
    (lambda a, b, c: {**slerp(a, b), "models": [{"model": str(a), "layer_range": [0, 2]}, {"model": str(b)}]}, "'layer_range' in a models entry"),
    (lambda a, b, c: {**slerp(a, b), "parameters": {"t": 0.5, "weight": 1.0}}, "'weight' in the parameters at the top level"),
    (lambda a, b, c: {**slerp(a, b), "slices": []}, "uses slices"),
    (lambda a, b, c: {**slerp(a, b), "models": [{"model": str(a)}, {"model": str(b)}, {"model": str(c)}]}, "exactly two"),
    (lambda a, b, c: {"merge_method": "ties", "models": [{"model": str(a), "parameters": {"weight": 1.0}},
                                                         {"model": str(b), "parameters": {"weight": 1.0}}]}, "names no base_model"),
    (lambda a, b, c: {"merge_method": "linear", "models": [{"model": str(a), "parameters": {"weight": 1.0}}, {"model": str(b)}]}, "gives no weight"),
    (lambda a, b, c: {"merge_method": "passthrough", "models": [{"model": str(a)}]}, "merge_method 'passthrough'"),
    (lambda a, b, c: {**slerp(a, b), "parameters": {"t": 1.5}}, "between 0 and 1"),
    (lambda a, b, c: {**slerp(a, b), "parameters": {"t": [{"filter": "mlp; rm -rf", "value": 0.5}]}}, "not a tensor name part"),
    (lambda a, b, c: {**slerp(a, b), "dtype": "int8"}, "dtype 'int8'"),
    (lambda a, b, c: {**slerp(a, b), "models": [{"model": str(a)}, {"model": f"{b}+{c}"}]}, "MODEL+LORA"),
    (lambda a, b, c: {**slerp(a, b), "models": [{"model": str(a)}, {"model": "HuggingFaceTB/SmolLM2-135M"}]}, "never downloads"),
])
def test_a_config_outside_what_a_deploy_accepts_is_refused_and_writes_nothing(settings: Settings, tmp_path: Path, tiny_checkpoint: Path,
                                                                              tune_a: Path, tune_b: Path, tune_c: Path, change, words: str) -> None:
    config = write(tmp_path / "merge.yaml", change(tune_a, tune_b, tune_c))
    refusal = refused_deploy(settings, config, tmp_path)
    assert words in refusal.cause and refusal.next_step


def test_a_model_outside_the_roots_is_refused(settings: Settings, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                              tiny_checkpoint: Path, tune_a: Path) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    config = write(tmp_path / "merge.yaml", slerp(tune_a, outside))
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        read_merge_config(config, settings.roots)
    assert isinstance(refused_deploy(settings, config, tmp_path), PathNotAllowed)


def test_unsafe_or_oversized_yaml_is_refused(settings: Settings, tmp_path: Path) -> None:
    tagged = write(tmp_path / "tagged.yaml", "merge_method: !!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in refused_deploy(settings, tagged, tmp_path).cause
    listed = write(tmp_path / "list.yaml", "- merge_method: slerp\n")
    assert "not a mapping" in refused_deploy(settings, listed, tmp_path).cause
    big = write(tmp_path / "big.yaml", "# " + "x" * MAX_CONFIG_BYTES + "\n")
    assert "at most" in refused_deploy(settings, big, tmp_path).cause


def test_inputs_of_different_shapes_are_refused_before_any_work(settings: Settings, tmp_path: Path, artifacts: Path, smollm2_gguf: Path,
                                                                tune_a: Path) -> None:
    narrow = tiny_random_checkpoint(artifacts / "tiny-narrow-hf", smollm2_gguf, hidden=32)
    refusal = refused_deploy(settings, write(tmp_path / "merge.yaml", slerp(tune_a, narrow)), tmp_path)
    assert "does not match" in refusal.cause and "one base model" in refusal.next_step


def test_both_faces_plan_a_config_and_refuse_a_bad_one(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, tune_a: Path,
                                                       tune_b: Path) -> None:
    config = write(tmp_path / "ties.yaml", {"merge_method": "ties", "base_model": str(tiny_checkpoint), "parameters": {"weight": 1.0, "density": 0.5},
                                            "models": [{"model": str(tune_a)}, {"model": str(tune_b)}]})
    bad = write(tmp_path / "bad.yaml", {**slerp(tune_a, tune_b), "tokenizer_source": "union"})
    roots = [x for r in settings.roots for x in ("--root", str(r))]
    code, out, err = cli_in_process(capsys, *roots, "--json", "deploy", str(config), "--target", "embedded", "--plan")
    assert code == 0, err
    cli = json.loads(out)
    assert cli["name"] == "ties" and [(s["step"], s["action"]) for s in cli["plan"]][:2] == [("merge", "run"), ("export", "run")]
    code, out, _ = cli_in_process(capsys, *roots, "--json", "deploy", str(bad), "--target", "embedded", "--plan")
    assert code != 0 and "tokenizer_source" in json.loads(out)["cause"]

    async def plan(source: Path) -> dict:
        async with Client(create_server(settings)) as client:
            started = await client.call_tool("deploy_model", {"source": str(source), "target": "embedded", "plan": True})
            if started.is_error or "taskId" not in (started.structured_content or {}):
                return {"error": started.content[0].text}  # type: ignore[union-attr]
            with anyio.fail_after(300):
                while True:
                    status = await client.call_tool("job_status", {"job_id": started.structured_content["taskId"], "wait_s": 30})
                    if status.is_error:
                        return {"error": status.content[0].text}  # type: ignore[union-attr]
                    info = status.structured_content.get("job", status.structured_content)
                    if info["status"] != "working":
                        return info

    planned = anyio.run(plan, config)
    assert [s["step"] for s in planned["result"]["plan"]][:2] == ["merge", "export"], planned
    assert "tokenizer_source" in anyio.run(plan, bad)["error"]
    assert not (tmp_path / "deployments").exists()
