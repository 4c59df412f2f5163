"""The rebuilt checkpoint is cached by the GGUF's sha256: built once, then copied (not linked) into each deploy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from model_serving.checkpoint.rebuild import cached_checkpoint, checkpoint_from_gguf
from model_serving.util.filehash import HashCache
from model_serving.util.paths import sha256_file


def test_miss_builds_into_the_cache_then_a_hit_copies_it(tiny_gguf: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = checkpoint_from_gguf(tiny_gguf, tmp_path / "deploy-1" / "hf", cache=cache)
    kept = cached_checkpoint(tiny_gguf, cache)
    assert kept.parent == cache and (kept / "model.safetensors").is_file()
    assert (first / "model.safetensors").read_bytes() == (kept / "model.safetensors").read_bytes()
    assert json.loads((first / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]

    # Mark the cached copy: a hit must hand out exactly it, where a rebuild would not carry the mark.
    config = json.loads((kept / "config.json").read_text())
    (kept / "config.json").write_text(json.dumps({**config, "cache_mark": 1}))
    hashes = HashCache(tmp_path / "state")
    second = checkpoint_from_gguf(tiny_gguf, tmp_path / "deploy-2" / "hf", cache=cache, hashes=hashes)
    for copied in second.iterdir():  # recorded for the export that reads the copy next, and right
        assert hashes.get(copied) == sha256_file(copied)
    assert json.loads((second / "config.json").read_text())["cache_mark"] == 1
    assert (second / "model.safetensors").stat().st_ino != (kept / "model.safetensors").stat().st_ino  # a copy, not a link
    assert not list(second.parent.glob(".hf.*"))  # no partial left beside it


def test_the_key_follows_the_content(tiny_gguf: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    shutil.copyfile(tiny_gguf, other)
    same = cached_checkpoint(other, tmp_path / "cache")
    assert same.name == cached_checkpoint(tiny_gguf, tmp_path / "cache").name
    with other.open("ab") as fh:
        fh.write(b"\0")
    assert cached_checkpoint(other, tmp_path / "cache").name != same.name
    assert cached_checkpoint(other, tmp_path / "cache", "float16") != cached_checkpoint(other, tmp_path / "cache")


def test_the_install_fills_the_cache_a_deploy_then_copies(tiny_gguf: Path, tmp_path: Path) -> None:
    from model_serving.checkpoint.rebuild import cached_or_build

    cache = tmp_path / "state" / "rebuilt-checkpoints"
    warmed = cached_or_build(tiny_gguf, cache)
    assert warmed == cached_checkpoint(tiny_gguf, cache) and (warmed / "model.safetensors").is_file()
    mtime = (warmed / "model.safetensors").stat().st_mtime_ns
    assert cached_or_build(tiny_gguf, cache) == warmed and (warmed / "model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    copied = checkpoint_from_gguf(tiny_gguf, tmp_path / "deploy" / "hf", cache=cache)
    assert (copied / "model.safetensors").read_bytes() == (warmed / "model.safetensors").read_bytes()
