"""inspect and export on real files: a tiny random checkpoint with SmolLM2's tokenizer, and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from lora_fixtures import adapter_files

from model_serving.checkpoint.export import export_gguf
from model_serving.checkpoint.inspect import inspect_checkpoint, inspect_gguf, inspect_path
from model_serving.errors import Cancelled, InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.settings import Settings


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_inspect_checkpoint_reads_architecture_tokenizer_template_and_memory(tiny_checkpoint: Path) -> None:
    info = inspect_checkpoint(tiny_checkpoint, ctx_size=1024, parallel=2)
    assert info.kind == "hf_checkpoint"
    assert info.architectures == ["LlamaForCausalLM"]
    assert info.has_tokenizer and info.has_chat_template
    assert info.eos_token_ids == [2]
    assert info.parameter_count and 3_000_000 < info.parameter_count < 4_000_000
    # KV = 2 (K and V) x layers x kv_heads x head_dim x ctx x 2 bytes (f16)
    assert info.memory and info.memory.kv_cache_bytes == 2 * 2 * 2 * 16 * 1024 * 2
    assert info.memory.total_bytes > info.memory.weights_bytes


def test_inspect_detects_a_lora_adapter(tmp_path: Path) -> None:
    info = inspect_checkpoint(adapter_files(tmp_path))
    assert info.kind == "lora_adapter" and info.adapter_base_model == "org/base"


def test_inspect_refuses_a_folder_that_is_not_a_model(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(InputError, match="not a model: it has no config.json"):
        inspect_path(settings, tmp_path / "notes")


def test_inspect_reports_a_truncated_safetensors_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        inspect_checkpoint(ckpt)


def test_inspect_flags_an_already_quantized_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    cfg = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (ckpt / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    info = inspect_checkpoint(ckpt)
    assert info.quantization_config and any("Already quantized (gptq)" in w for w in info.warnings)


def test_inspect_gguf_reads_metadata_template_and_stop_tokens(tiny_gguf: Path) -> None:
    info = inspect_gguf(tiny_gguf)
    assert info.architecture == "llama" and info.file_type == "F16" and not info.is_quantized
    assert info.vocab_size == 49152
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.eos_token == "<|im_end|>" and info.special_token_ids["eos"] == 2
    assert info.tokenizer_pre == "smollm"
    assert info.tensor_types.get("F16") and info.bits_per_weight and 15 < info.bits_per_weight < 20


def test_inspect_gguf_refuses_truncated_and_foreign_files(tiny_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        inspect_gguf(cut)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(tiny_gguf.read_bytes()[:64])
    with pytest.raises(InputError, match="truncated"):
        inspect_gguf(header_only)
    foreign = tmp_path / "weights.gguf"
    foreign.write_bytes(b"PK\x03\x04 not a gguf at all")
    with pytest.raises(InputError, match="not a GGUF file"):
        inspect_gguf(foreign)


def test_export_writes_a_verified_gguf_and_reuses_it(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.gguf"
    first = export_gguf(settings, str(tiny_checkpoint), str(out))
    assert not first.skipped and out.exists()
    v = first.verification
    assert v.parses and v.chat_template_kept and v.vocab_size == 49152 and v.eos_token == "<|im_end|>" and not v.problems
    assert first.converter.source.startswith("llama-cpp-python") or first.converter.source == "LLAMA_CPP_DIR"
    again = export_gguf(settings, str(tiny_checkpoint), str(out))
    assert again.skipped and again.sha256 == first.sha256


def test_export_keeps_the_template_from_chat_template_jinja(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    (ckpt / "chat_template.jinja").write_text("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}", encoding="utf-8")
    result = export_gguf(settings, str(ckpt), str(tmp_path / "t.gguf"))
    assert result.gguf and result.gguf.chat_template and "<<{{ m['content'] }}>>" in result.gguf.chat_template


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: adapter_files(d, "b"), "LoRA adapter"),
        (lambda d: _edit_config(d, quantization_config={"quant_method": "awq"}), "already quantized"),
        (lambda d: _edit_config(d, architectures=["NoSuchModelForCausalLM"]), "does not support the architecture"),
        (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer"),
        (lambda d: (d / "model.safetensors").unlink(), "no weights"),
    ],
    ids=["adapter", "quantized", "unsupported-arch", "no-tokenizer", "no-weights"],
)
def test_export_preflight_refuses_bad_checkpoints(settings: Settings, tiny_checkpoint: Path, tmp_path: Path, mutate, message: str) -> None:
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    mutate(ckpt)
    with pytest.raises(InputError, match=message):
        export_gguf(settings, str(ckpt), str(tmp_path / "out.gguf"))
    assert not (tmp_path / "out.gguf").exists()


def _edit_config(directory: Path, **changes: object) -> None:
    cfg = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    cfg.update(changes)
    (directory / "config.json").write_text(json.dumps(cfg), encoding="utf-8")


def test_export_refuses_to_overwrite_an_existing_output(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep.gguf"
    out.write_bytes(b"someone else's file")
    with pytest.raises(InputError, match="already exists"):
        export_gguf(settings, str(tiny_checkpoint), str(out))
    assert out.read_bytes() == b"someone else's file"


def test_export_catches_a_config_that_does_not_match_the_weights(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    _edit_config(ckpt, hidden_size=96)  # the converter writes this without complaint; the file would not load
    with pytest.raises(VerificationFailed, match="does not match the weights"):
        export_gguf(settings, str(ckpt), str(tmp_path / "out.gguf"))
    assert not (tmp_path / "out.gguf").exists()


def test_export_shows_the_converter_output_when_it_fails(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    (ckpt / "tokenizer.json").write_text("{ this is not json", encoding="utf-8")
    with pytest.raises(ServingError) as err:
        export_gguf(settings, str(ckpt), str(tmp_path / "out.gguf"))
    assert "converter" in err.value.cause.lower()
    assert err.value.detail.strip()  # the converter's last lines
    assert not (tmp_path / "out.gguf").exists()
    assert not list(tmp_path.glob(".out.gguf.*"))


def test_cancelled_export_leaves_no_partial_file(settings: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    progress = Progress()
    started = threading.Event()
    progress.subscribe(lambda f, m: started.set() if "converting" in m else None)
    threading.Thread(target=lambda: (started.wait(60), time.sleep(0.5), progress.cancel()), daemon=True).start()
    with pytest.raises(Cancelled):
        export_gguf(settings, str(tiny_checkpoint), str(tmp_path / "c.gguf"), progress=progress)
    assert not (tmp_path / "c.gguf").exists()
    assert not list(tmp_path.glob(".c.gguf.*"))


def test_export_from_a_hub_repo_id_in_offline_mode_uses_the_local_cache(settings: Settings, tiny_checkpoint: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--acme--tiny-chat" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_checkpoint, snapshot)
    (hub / "models--acme--tiny-chat" / "refs").mkdir(parents=True)
    (hub / "models--acme--tiny-chat" / "refs" / "main").write_text("a" * 40, encoding="utf-8")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    result = export_gguf(settings, "acme/tiny-chat", str(tmp_path / "hub.gguf"))
    assert result.verification.chat_template_kept
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        export_gguf(settings, "acme/not-downloaded", str(tmp_path / "missing.gguf"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
