"""inspect and merge of LoRA adapters on real peft and transformers, through the core, the CLI and MCP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest
from cli_runner import cli_in_process
from lora_fixtures import ADAPTER_TEMPLATE, ADDED_TOKEN, tiny_lora_adapter
from mcp import Client

from model_serving.checkpoint.inspect import inspect_path
from model_serving.checkpoint.lora import RELATIVE_TOLERANCE, merge_adapter
from model_serving.errors import InputError
from model_serving.mcp.server import create_server
from model_serving.settings import Settings


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


def test_inspect_names_rank_targets_full_weights_tokens_and_memory(settings: Settings, lora_token_adapter: Path, tiny_checkpoint: Path) -> None:
    info = inspect_path(settings, lora_token_adapter)
    a = info.adapter
    assert info.kind == "lora_adapter" and a is not None
    assert (a.rank, a.alpha, sorted(a.target_modules)) == (4, 8.0, ["o_proj", "q_proj", "v_proj"])
    assert "model.embed_tokens.weight" in a.full_weights and a.lora_modules == 6  # 2 layers x 3 targets
    assert a.has_tokenizer and a.has_chat_template and a.added_tokens == 1
    assert a.base_available and a.base_path == str(tiny_checkpoint)
    assert a.base_plus_adapter_bytes == a.merged_bytes + a.adapter_bytes and info.memory is not None


def test_inspect_without_a_local_base_says_so(settings: Settings, tmp_path: Path, lora_adapter: Path) -> None:
    orphan = tmp_path / "orphan"
    shutil.copytree(lora_adapter, orphan)
    cfg = json.loads((orphan / "adapter_config.json").read_text())
    (orphan / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "nobody/not-cached-anywhere"}))
    info = inspect_path(settings, orphan)
    assert info.adapter is not None and not info.adapter.base_available
    assert any("--base" in w for w in info.warnings)


def test_merge_keeps_the_adapter_effect_and_matches_peft_unmerged(settings: Settings, tmp_path: Path, lora_adapter: Path, tiny_checkpoint: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result = merge_adapter(settings, str(lora_adapter), str(tiny_checkpoint), str(out))
    v = result.verification
    assert v.passed and v.merged_vs_adapter <= RELATIVE_TOLERANCE < v.adapter_vs_base
    assert result.dtype == "bfloat16" and result.tokenizer_from == "base" and result.chat_template_from == "base"
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file() and leftovers(tmp_path) == []
    # independently of the merge's own check: the written checkpoint against peft's unmerged model
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok("Hello there, how are you?", return_tensors="pt")
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(str(out))(**ids).logits.float()
        base = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint), dtype=torch.bfloat16)
        unmerged = PeftModel.from_pretrained(base, str(lora_adapter))(**ids).logits.float()
        plain = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint))(**ids).logits.float()
    scale = float(unmerged.abs().max())
    bf16 = 0.05  # both sides here compute in bfloat16, whose rounding differs between the two paths
    assert float((merged - unmerged).abs().max()) / scale <= bf16 < float((merged - plain).abs().max()) / scale


def test_merge_takes_the_adapters_added_token_and_chat_template(settings: Settings, tmp_path: Path, lora_token_adapter: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    out = tmp_path / "merged-tok"
    result = merge_adapter(settings, str(lora_token_adapter), None, str(out))  # the base named in adapter_config.json
    assert result.verification.passed and result.added_tokens == 1
    assert (result.tokenizer_from, result.chat_template_from) == ("adapter", "adapter")
    tok = AutoTokenizer.from_pretrained(str(out))
    assert ADDED_TOKEN in tok.get_vocab() and AutoConfig.from_pretrained(str(out)).vocab_size == len(tok)
    assert (out / "chat_template.jinja").read_text() == ADAPTER_TEMPLATE
    assert inspect_path(settings, out).warnings == []


@pytest.mark.parametrize(("asked", "expected"), [("bfloat16", "bfloat16"), ("float16", "float16")])
def test_a_float32_base_is_cast_to_the_dtype_asked_and_16_bit_bases_keep_theirs(
        settings: Settings, tmp_path: Path, tiny_checkpoint: Path, lora_adapter: Path, asked: str, expected: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    f32 = tmp_path / "base-f32"
    AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).save_pretrained(f32)
    AutoTokenizer.from_pretrained(str(tiny_checkpoint)).save_pretrained(f32)
    assert merge_adapter(settings, str(lora_adapter), str(f32), str(tmp_path / "m"), dtype=asked).dtype == expected  # type: ignore[arg-type]
    kept = merge_adapter(settings, str(lora_adapter), str(tiny_checkpoint), str(tmp_path / "k"), dtype="float16")
    assert kept.dtype == "bfloat16"  # the base's own 16-bit dtype wins


# ------------------------------------------------------------------ bad input: a cause, a next step, no output


def _refused(settings: Settings, tmp_path: Path, adapter: Path, base: str | None, *words: str) -> InputError:
    out = tmp_path / "never"
    with pytest.raises(InputError) as exc:
        merge_adapter(settings, str(adapter), base, str(out))
    text = f"{exc.value.cause} {exc.value.next_step}"
    assert all(w in text for w in words), text
    assert exc.value.next_step and not out.exists() and leftovers(tmp_path) == []
    return exc.value


def test_an_adapter_without_its_base(settings: Settings, tmp_path: Path, lora_adapter: Path) -> None:
    orphan = tmp_path / "orphan"
    shutil.copytree(lora_adapter, orphan)
    cfg = json.loads((orphan / "adapter_config.json").read_text())
    (orphan / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "nobody/not-cached-anywhere"}))
    _refused(settings, tmp_path, orphan, None, "nobody/not-cached-anywhere", "not available locally", "--base")


def test_a_base_of_another_size(settings: Settings, tmp_path: Path, smollm2_gguf: Path, lora_adapter: Path) -> None:
    from checkpoints import tiny_random_checkpoint

    other = tiny_random_checkpoint(tmp_path / "wide-base", smollm2_gguf, hidden=96)
    _refused(settings, tmp_path, lora_adapter, str(other), "does not fit the adapter", "q_proj", "--base")


def test_a_quantized_base_names_its_16_bit_original(settings: Settings, tmp_path: Path, tiny_checkpoint: Path, lora_adapter: Path) -> None:
    quantized = tmp_path / "SmolLM2-135M-bnb-4bit"
    shutil.copytree(tiny_checkpoint, quantized)
    cfg = json.loads((quantized / "config.json").read_text())
    (quantized / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}))
    adapter = tmp_path / "for-quantized"
    shutil.copytree(lora_adapter, adapter)
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**acfg, "base_model_name_or_path": "unsloth/SmolLM2-135M-bnb-4bit"}))
    _refused(settings, tmp_path, adapter, str(quantized), "quantized (bitsandbytes)", "16-bit original (unsloth/SmolLM2-135M)")


@pytest.mark.parametrize(("edit", "words"), [
    (lambda c: {**c, "r": "four"}, "r (the rank)"),
    (lambda c: {**c, "peft_type": "IA3"}, "not 'LORA'"),
    (lambda c: {**c, "target_modules": 7}, "target_modules"),
    (None, "not valid JSON"),
])
def test_a_malformed_adapter_config(settings: Settings, tmp_path: Path, lora_adapter: Path, edit: object, words: str) -> None:
    bad = tmp_path / "bad-adapter"
    shutil.copytree(lora_adapter, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps(edit(cfg)) if callable(edit) else '{"peft_type": "LORA", "r": ')
    _refused(settings, tmp_path, bad, None, words)
    with pytest.raises(InputError):
        inspect_path(settings, bad)


def test_the_fixture_adapters_are_not_zero(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from safetensors.torch import load_file

    adapter = tiny_lora_adapter(tmp_path / "a", tiny_checkpoint, seed=5)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert all(float(t.abs().max()) > 0 for k, t in weights.items() if "lora_B" in k)


# ------------------------------------------------------------------ the faces


def test_cli_merge_and_inspect(settings: Settings, tmp_path: Path, lora_adapter: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = [a for r in settings.roots for a in ("--root", str(r))]
    code, out, err = cli_in_process(capsys, *roots, "--json", "inspect", str(lora_adapter), "--base", str(tiny_checkpoint))
    assert code == 0, err
    assert json.loads(out)["adapter"]["rank"] == 4
    code, out, err = cli_in_process(capsys, *roots, "--json", "merge", str(lora_adapter), "--base", str(tiny_checkpoint), "-o", str(tmp_path / "cli"))
    assert code == 0, err
    assert json.loads(out)["verification"]["passed"] is True and (tmp_path / "cli" / "model.safetensors").is_file()
    code, _, err = cli_in_process(capsys, *roots, "merge", str(lora_adapter), "--base", str(tiny_checkpoint), "-o", str(tmp_path / "cli"))
    assert code == 2 and "--replace" in err


async def wait_job(client: Client, job_id: str) -> dict:
    with anyio.fail_after(600):
        while True:
            result = await client.call_tool("job_status", {"job_id": job_id, "wait_s": 30})
            info = result.structured_content.get("job", result.structured_content)  # a failed job is an error result
            if info["status"] != "working":
                return info


@pytest.mark.anyio
async def test_mcp_merge_adapter_is_a_job_and_refuses_a_missing_base(settings: Settings, tmp_path: Path, lora_adapter: Path, tiny_checkpoint: Path) -> None:
    async with Client(create_server(settings)) as client:
        started = await client.call_tool("merge_adapter", {"adapter": str(lora_adapter), "base": str(tiny_checkpoint), "output": str(tmp_path / "mcp")})
        final = await wait_job(client, started.structured_content["taskId"])
        assert final["status"] == "completed", final.get("error")
        assert final["result"]["verification"]["passed"] and (tmp_path / "mcp" / "model.safetensors").is_file()
        missing = await client.call_tool("merge_adapter", {"adapter": str(lora_adapter), "base": str(tmp_path / "no-such-base")})
        text = missing.content[0].text if missing.is_error else json.dumps(await wait_job(client, missing.structured_content["taskId"]))
        assert "base" in text and not (tmp_path / "no-such-base").exists()
