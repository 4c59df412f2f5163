"""Merges through the real mergekit (its own venv) on test-time fine-tunes: what each method does to the weights, the
sidecar and its reuse, the measurement against each input, and the CLI and MCP faces."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import yaml
from cli_runner import cli_in_process
from mcp import Client

from model_serving.checkpoint.mergekit_env import MergekitEnvironment
from model_serving.checkpoint.mergekit_merge import merge_models
from model_serving.mcp.server import create_server
from model_serving.requests import MergeRequest
from model_serving.settings import Settings
from model_serving.util.paths import tree_sha256

pytestmark = pytest.mark.slow
LAYER0 = "model.layers.0.self_attn.q_proj.weight"
UNTOUCHED = "model.embed_tokens.weight"  # no fine-tune moved it


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update({k: v.float() for k, v in load_file(str(file)).items()})
    return out


def test_linear_averages_and_records_and_reuses(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path) -> None:
    out = tmp_path / "linear"
    done = merge_models(settings, [str(tune_a), str(tune_b)], None, str(out), method="linear")
    a, b, merged = weights(tune_a), weights(tune_b), weights(out)
    assert set(merged) == set(a)
    assert float((merged[LAYER0] - (a[LAYER0] + b[LAYER0]) / 2).abs().max()) < 1e-3  # equal weights: the mean
    record = json.loads((tmp_path / "linear.merge.json").read_text())
    assert record["config"] == done.config and yaml.safe_load(done.config)["merge_method"] == "linear"
    assert [i["sha256"] for i in record["inputs"]] == [tree_sha256(tune_a), tree_sha256(tune_b)]
    assert record["mergekit_version"] == mergekit.version == done.mergekit_version
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    again = merge_models(settings, [str(tune_a), str(tune_b)], None, str(out), method="linear")
    assert again.skipped and not done.skipped
    changed = merge_models(settings, [str(tune_a), str(tune_b)], None, str(out), method="linear", weight=[3.0, 1.0], overwrite=True)
    assert not changed.skipped
    assert float((weights(out)[LAYER0] - (3 * a[LAYER0] + b[LAYER0]) / 4).abs().max()) < 1e-3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_slerp_lies_between_its_two_models(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path) -> None:
    merge_models(settings, [str(tune_a), str(tune_b)], None, str(tmp_path / "slerp"), method="slerp", t=0.5)
    a, b, merged = weights(tune_a), weights(tune_b), weights(tmp_path / "slerp")
    assert float((merged[UNTOUCHED] - a[UNTOUCHED]).abs().max()) < 1e-6
    to_a, to_b = (float((merged[LAYER0] - x[LAYER0]).norm()) for x in (a, b))
    apart = float((a[LAYER0] - b[LAYER0]).norm())
    assert 0 < to_a < apart and 0 < to_b < apart  # on the arc between them, at neither end


def test_ties_keeps_the_densest_share_of_each_task_vector(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                         tiny_checkpoint: Path, tune_a: Path, tune_b: Path) -> None:
    merge_models(settings, [str(tune_a), str(tune_b)], str(tiny_checkpoint), str(tmp_path / "ties"), method="ties", density=[0.5])
    base, a, merged = weights(tiny_checkpoint), weights(tune_a), weights(tmp_path / "ties")
    moved = merged[LAYER0] != base[LAYER0]
    assert 0.45 < float(moved.float().mean()) < 0.55  # density 0.5: half of A's task vector kept, the largest half
    assert float((merged[LAYER0] - a[LAYER0])[moved].abs().max()) < 2e-3  # only A moved layer 0: what is kept is A's value
    assert float((merged[UNTOUCHED] - base[UNTOUCHED]).abs().max()) == 0.0


def test_dare_ties_drops_at_random_and_rescales(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                tiny_checkpoint: Path, tune_a: Path, tune_b: Path) -> None:
    merge_models(settings, [str(tune_a), str(tune_b)], str(tiny_checkpoint), str(tmp_path / "dare"), method="dare_ties", density=[0.5])
    base, a, merged = weights(tiny_checkpoint), weights(tune_a), weights(tmp_path / "dare")
    moved = merged[LAYER0] != base[LAYER0]
    assert 0.4 < float(moved.float().mean()) < 0.6
    rescaled = base[LAYER0] + 2 * (a[LAYER0] - base[LAYER0])  # DARE divides what it keeps by the density
    assert float((merged[LAYER0] - rescaled)[moved].abs().max()) < 5e-3


def test_the_verb_measures_the_merge_against_each_input(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path,
                                                       tune_a: Path, tune_b: Path) -> None:
    from model_serving.jobs import Progress
    from model_serving.verbs import merge_adapter

    req = MergeRequest.model_validate({"models": [str(tune_a), str(tune_b)], "method": "linear", "output": str(tmp_path / "m")})
    result = merge_adapter(settings, req, Progress())
    assert result.quality is not None and result.quality_error is None, result.quality_error
    assert [q.input_path for q in result.quality] == [str(tune_a), str(tune_b)]
    for q in result.quality:
        assert q.ppl_ratio is not None and q.ppl_ratio_interval is not None and q.input_perplexity and q.merged_perplexity
        assert q.ppl_ratio_interval[0] <= q.ppl_ratio <= q.ppl_ratio_interval[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "m", "m.merge.json"]  # the scratch GGUFs are gone


def test_cli_and_mcp_merge_with_the_same_method(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path, tune_a: Path, tune_b: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    roots = [x for r in settings.roots for x in ("--root", str(r))]
    code, out, err = cli_in_process(capsys, *roots, "--json", "merge", "--method", "slerp", str(tune_a), str(tune_b), "-t", "0.25",
                                    "--no-verify", "-o", str(tmp_path / "cli"))
    assert code == 0, err
    cli = json.loads(out)
    assert cli["method"] == "slerp" and yaml.safe_load(cli["config"])["parameters"] == {"t": 0.25}

    async def call() -> dict:
        async with Client(create_server(settings)) as client:
            started = await client.call_tool("merge_adapter", {"models": [str(tune_a), str(tune_b)], "method": "slerp", "weight": [0.25],
                                                               "verify": False, "output": str(tmp_path / "mcp")})
            with anyio.fail_after(600):
                while True:
                    status = await client.call_tool("job_status", {"job_id": started.structured_content["taskId"], "wait_s": 30})
                    info = status.structured_content.get("job", status.structured_content)
                    if info["status"] != "working":
                        return info

    final = anyio.run(call)
    assert final["status"] == "completed", final.get("error")
    assert final["result"]["config"].replace(str(tmp_path / "mcp"), "") == cli["config"].replace(str(tmp_path / "cli"), "")
    assert weights(tmp_path / "cli")[LAYER0].equal(weights(tmp_path / "mcp")[LAYER0])


def _running_with(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_mcp_cancel_kills_mergekit_and_keeps_nothing(mergekit: MergekitEnvironment, settings: Settings, tmp_path: Path, tune_a: Path,
                                                     tune_b: Path) -> None:
    async def run() -> dict:
        async with Client(create_server(settings)) as client:
            started = await client.call_tool("merge_adapter", {"models": [str(tune_a), str(tune_b)], "method": "linear", "verify": False,
                                                               "output": str(tmp_path / "cancelled")})
            job = started.structured_content["taskId"]
            with anyio.fail_after(120):
                while not _running_with(str(tmp_path / ".cancelled.")):  # mergekit-yaml has started on the partial
                    await anyio.sleep(0.2)
            done = await client.call_tool("job_cancel", {"job_id": job})
            return done.structured_content.get("job", done.structured_content)

    info = anyio.run(run)
    assert info["status"] == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no output, no sidecar, no partial, no config
    assert _running_with(str(tmp_path / ".cancelled.")) == []
