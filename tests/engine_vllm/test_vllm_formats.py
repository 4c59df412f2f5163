"""quantize --format on real llm-compressor and vLLM CPU: each format made from a test-time checkpoint, the W8A8 one served,
judged and deployed, FP8 made and refused for serving here, and a recipe that breaks a real model refused by the gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from checkpoints import tiny_random_checkpoint
from cli_runner import cli_in_process
from mcp import Client
from quant_helpers import cancel_on_message
from vllm_helpers import call

from model_serving.errors import Cancelled, InputError
from model_serving.mcp.server import create_server
from model_serving.quantize import compressor_env, formats
from model_serving.quantize.compress import compress_checkpoint
from model_serving.quantize.compressor_env import CompressorEnvironment
from model_serving.serve.embedded.engine import list_models, stop_model
from model_serving.serve.vllm.engine import start_vllm
from model_serving.serve.vllm.format_quality import measure_on_vllm
from model_serving.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed_compressor() -> CompressorEnvironment:
    """llm-compressor's venv in the default state directory (where scripts/install.sh put it), before any test moves the home."""
    found = compressor_env.find(Settings.from_env())
    if not found.installed:  # the skip reason is the one the install recorded
        pytest.skip(f"llm-compressor is not installed here: {found.error}. {found.next_step}")
    return found


@pytest.fixture(scope="module")
def world(vllm_python: str, installed_compressor: CompressorEnvironment, smollm2_gguf: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("formats")
    settings = Settings.from_env(roots=[str(root)], home=str(root / "home"), ollama_host="http://127.0.0.1:9")
    compressor_env.save(settings, installed_compressor)
    # 256 wide: every W4A16 group of 128 fits, and vLLM's CPU kernels take it
    tiny_random_checkpoint(root / "tiny", smollm2_gguf, hidden=256, layers=2)
    yield settings
    for model in list_models(settings):
        if model.state == "running":
            stop_model(settings, model.name)


def _cli(capsys: pytest.CaptureFixture[str], settings: Settings, *args: str) -> tuple[int, str, str]:
    roots = [a for root in settings.roots for a in ("--root", str(root))]
    return cli_in_process(capsys, "--home", str(settings.home), *roots, *args)


def test_w8a8_is_made_judged_on_vllm_and_reused(world: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = world.roots[0] / "tiny"

    async def run() -> dict[str, Any]:
        async with Client(create_server(world)) as client:
            return await call(client, "quantize_gguf", {"input_path": str(tiny), "format": "w8a8-int8"})

    result = anyio.run(run)
    out = Path(result["output_path"])
    assert out == tiny.with_name("tiny-w8a8-int8") and formats.detect(json.loads((out / "config.json").read_text())) == "w8a8-int8"
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    assert result["versions"]["llmcompressor"] == world_version(world) and result["calibration"] == "built-in"
    report = result["quality"]
    assert result["verdict"] == report["verdict"] and report["verdict"] in ("ok", "degraded", "broken")
    assert report["reference"]["tokens_scored"] > 1000 and report["candidate"]["tokens_scored"] == report["reference"]["tokens_scored"]
    assert report["ppl_ratio_interval"] is not None and len(report["prompts"]) == len(report["reference"]["answers"])
    assert report["thresholds"]["ppl_broken"] == 1.5
    sidecar = json.loads(out.with_name(out.name + ".compress.json").read_text())
    assert sidecar["input_sha256"] == result["input_sha256"] and sidecar["format"] == "w8a8-int8"
    code, text, err = _cli(capsys, world, "quantize", str(tiny), "--format", "w8a8-int8", "--no-verify")
    assert code == 0 and "reused" in text, err


def world_version(settings: Settings) -> str | None:
    return compressor_env.find(settings).version


def test_awq_gptq_and_fp8_are_made_and_fp8_is_refused_for_serving_here(world: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = world.roots[0] / "tiny"
    for fmt in ("awq", "gptq", "fp8"):
        made = compress_checkpoint(world, tiny, None, fmt)
        config = json.loads((Path(made.output_path) / "config.json").read_text())
        assert formats.detect(config) == fmt and made.output_size_bytes < made.input_size_bytes
        assert made.group_size == (128 if fmt != "fp8" else None) and made.vllm_cpu == (fmt != "fp8")
    with pytest.raises(InputError) as err:
        start_vllm(world, tiny.with_name("tiny-fp8"), "fp8")
    assert "FP8" in err.value.cause and "w8a8-int8" in err.value.next_step
    code, out, err_text = _cli(capsys, world, "deploy", str(tiny), "--target", "vllm", "--format", "fp8", "--plan")
    assert code != 0 and "FP8" in out + err_text and "w8a8-int8" in out + err_text


def test_deploy_serves_the_compressed_checkpoint_on_vllm(world: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """Served for completions: a random-weight model never stops by itself, and the completion probe asks for an answer only."""
    tiny = world.roots[0] / "tiny"
    code, out, err = _cli(capsys, world, "--json", "deploy", str(tiny), "--target", "vllm", "--format", "gptq", "--name", "tiny-gptq",
                          "--completions", "--no-bench", "--no-verify-quality", "--parallel", "2", "--ctx-size", "1024")
    assert code == 0, err
    result = json.loads(out)
    step = next(s for s in result["steps"] if s["step"] == "quantize")
    assert step["summary"]["format"] == "gptq" and step["summary"]["group_size"] == 128 and step["output"].endswith("tiny-gptq-gptq")
    served = next(m for m in list_models(world) if m.name == "tiny-gptq")
    assert served.state == "running" and served.source == step["output"] and result["answer"]
    stop_model(world, "tiny-gptq")


def test_a_recipe_that_breaks_a_real_model_is_refused_by_the_gate(world: Settings, smollm2_checkpoint: Path) -> None:
    settings = Settings.from_env(roots=[*map(str, world.roots), str(smollm2_checkpoint.parent)], home=str(world.home))
    """4-bit weights rounded to nearest with one scale per output channel and no calibration: vLLM serves it, the gate refuses it."""
    made = compress_checkpoint(settings, smollm2_checkpoint, world.roots[0] / "smollm2-rtn", "gptq", bits=4, group_size=0, calibrate=False)
    assert made.calibration is None and "round-to-nearest int4 weights, group per channel" in made.recipe
    report = measure_on_vllm(settings, smollm2_checkpoint, Path(made.output_path))
    assert report.verdict == "broken", report.summary
    assert report.candidate.error is None and report.ppl_ratio_interval is not None and report.ppl_ratio_interval[0] >= 1.0


def test_a_cancel_kills_llm_compressor_and_leaves_nothing(world: Settings) -> None:
    tiny = world.roots[0] / "tiny"
    out = world.roots[0] / "cancelled-awq"
    raised = cancel_on_message(lambda p: compress_checkpoint(world, tiny, out, "awq", progress=p), "llm-compressor: calibrating")
    assert isinstance(raised, Cancelled), raised
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*")) and not out.with_name(out.name + ".compress.json").exists()
