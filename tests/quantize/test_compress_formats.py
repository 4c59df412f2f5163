"""`quantize --format`: the refusals that come before any work, through the core and both faces (no llm-compressor needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_runner import cli_in_process
from mcp import Client
from pydantic import ValidationError

from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.quantize import formats
from model_serving.quantize.compress import compress_checkpoint, plan_compress
from model_serving.requests import QuantizeRequest
from model_serving.serve.vllm.formats import FP8_NEXT_STEP, fp8_refusal
from model_serving.settings import Settings


def _copy(src: Path, dst: Path, **config: Any) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**data, **config}))
    return dst


def test_a_gguf_is_refused_with_the_llama_cpp_way(settings: Settings, tiny_gguf: Path) -> None:
    with pytest.raises(InputError) as err:
        plan_compress(settings, tiny_gguf, None, "awq")
    assert "GGUF" in err.value.cause and "Q4_K_M" in err.value.next_step


def test_an_unknown_architecture_is_refused(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    odd = _copy(tiny_checkpoint, tmp_path / "odd", architectures=["GPTBigCodeForCausalLM"])
    for fmt in formats.FORMATS:
        with pytest.raises(InputError) as err:
            plan_compress(settings, odd, None, fmt)
        assert "GPTBigCodeForCausalLM" in err.value.cause and "LlamaForCausalLM" in err.value.next_step


def test_an_already_quantized_checkpoint_is_refused(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    done = _copy(tiny_checkpoint, tmp_path / "done", quantization_config={"quant_method": "awq"})
    with pytest.raises(InputError) as err:
        plan_compress(settings, done, None, "gptq")
    assert "already quantized (awq)" in err.value.cause and "16-bit" in err.value.next_step


def test_too_little_memory_is_refused_before_any_work(tiny_checkpoint: Path) -> None:
    with pytest.raises(InputError) as err:
        formats.check_memory(tiny_checkpoint, available=1 << 20)
    assert "memory" in err.value.cause and "Stop other models" in err.value.next_step
    assert formats.check_memory(tiny_checkpoint, available=1 << 40) > formats.checkpoint_bytes(tiny_checkpoint)


def test_fp8_takes_no_calibration_text(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    text = tmp_path / "calib.txt"
    text.write_text("words " * 400)
    with pytest.raises(InputError, match="needs no calibration"):
        plan_compress(settings, tiny_checkpoint, None, "fp8", calibration=str(text))
    assert plan_compress(settings, tiny_checkpoint, None, "gptq", calibration=str(text)).calibration == text


def test_without_llm_compressor_the_refusal_says_how_to_install_it(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        compress_checkpoint(settings, tiny_checkpoint, tmp_path / "out", "gptq")
    assert "engines install llmcompressor" in err.value.next_step
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("widths", "group"), [((576, 1536, 576), 64), ((2048, 8192, 2048), 128), ((256, 512, 256), 128)])
def test_group_size_divides_every_width(widths: tuple[int, int, int], group: int) -> None:
    hidden, inter, _ = widths
    config = {"hidden_size": hidden, "intermediate_size": inter, "num_attention_heads": hidden // 64, "head_dim": 64}
    assert formats.group_size(config) == group


def test_the_format_is_read_back_from_a_compressed_config() -> None:
    def config(weights: dict[str, Any], acts: dict[str, Any] | None = None) -> dict[str, Any]:
        group = {"weights": weights, "input_activations": acts}
        return {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"group_0": group}}}

    assert formats.detect(config({"num_bits": 8, "type": "float"})) == "fp8"
    assert formats.detect(config({"num_bits": 8, "type": "int"}, {"num_bits": 8})) == "w8a8-int8"
    assert formats.detect(config({"num_bits": 4, "type": "int", "symmetric": True})) == "gptq"
    assert formats.detect(config({"num_bits": 4, "type": "int", "symmetric": False})) == "awq"
    assert formats.detect({"torch_dtype": "bfloat16"}) is None


def test_fp8_serves_only_where_a_gpu_has_fp8_units() -> None:
    assert "CPU backend" in (fp8_refusal("cpu", None) or "")
    assert "runs no FP8 on this GPU" in (fp8_refusal("cuda", 7.5) or "")
    assert fp8_refusal("cuda", 9.0) is None and fp8_refusal("cuda", 8.0) is None
    assert "w8a8-int8" in FP8_NEXT_STEP


def test_the_request_takes_a_type_or_a_format() -> None:
    assert QuantizeRequest(input_path="m", format="awq").qtype is None
    for bad in ({"input_path": "m"}, {"input_path": "m", "qtype": "Q4_0", "format": "gptq"},
                {"input_path": "m", "format": "fp8", "allow_requantize": True}, {"input_path": "m", "format": "int3"}):
        with pytest.raises(ValidationError):
            QuantizeRequest(**bad)


def test_both_faces_refuse_a_gguf_for_a_format(settings: Settings, tiny_gguf: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVING_HOME", str(settings.home))
    monkeypatch.setenv("MODEL_SERVING_ROOTS", ":".join(str(r) for r in settings.roots))
    code, out, err = cli_in_process(capsys, "quantize", str(tiny_gguf), "--format", "w8a8-int8")
    assert code != 0 and "GGUF" in out + err and "Q4_K_M" in out + err

    async def call() -> tuple[bool, str]:
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("quantize_gguf", {"input_path": str(tiny_gguf), "format": "w8a8-int8"})
            if not result.is_error and result.structured_content and "taskId" in result.structured_content:
                result = await client.call_tool("job_status", {"job_id": result.structured_content["taskId"], "wait_s": 30})
        return bool(result.is_error), result.content[0].text  # type: ignore[union-attr]

    is_error, text = anyio.run(call)
    assert is_error and "GGUF" in text and "Next step:" in text
