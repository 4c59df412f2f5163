"""export ADAPTER_DIR --base BASE --as-lora-gguf with llama.cpp's convert_lora_to_gguf.py, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import cli_in_process

from model_serving.checkpoint.inspect import inspect_gguf
from model_serving.checkpoint.lora_gguf import export_lora_gguf
from model_serving.errors import InputError
from model_serving.settings import Settings


def test_an_adapter_becomes_a_gguf_adapter_of_its_base(settings: Settings, tmp_path: Path, lora_adapter: Path, tiny_checkpoint: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    roots = [a for r in settings.roots for a in ("--root", str(r))]
    out = tmp_path / "tiny-lora.gguf"
    code, stdout, err = cli_in_process(capsys, *roots, "--json", "export", str(lora_adapter), "--base", str(tiny_checkpoint),
                                       "--as-lora-gguf", "-o", str(out))
    assert code == 0, err
    result = json.loads(stdout)
    info = inspect_gguf(out)
    assert info.is_adapter and result["gguf"]["is_adapter"] and result["sha256"] and info.architecture == "llama"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-lora.gguf"]  # nothing partial beside it


def test_an_adapter_with_full_embeddings_is_sent_to_the_merge(settings: Settings, tmp_path: Path, lora_token_adapter: Path) -> None:
    out = tmp_path / "never.gguf"
    with pytest.raises(InputError, match="in full") as exc:
        export_lora_gguf(settings, str(lora_token_adapter), None, str(out))
    assert "model-serving merge" in exc.value.next_step and not out.exists() and list(tmp_path.iterdir()) == []
