"""Test-only checkpoints: a tiny random Llama with SmolLM2's real tokenizer and chat template."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from model_serving.checkpoint.rebuild import finish_checkpoint


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
        return finish_checkpoint(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def perturbed_checkpoint(base: Path, out: Path, *, layers: tuple[int, ...], seed: int, scale: float = 0.02) -> Path:
    """A test-time "fine-tune" of `base`: seeded noise added to the weights of the given decoder layers only."""
    import torch
    from safetensors.torch import load_file, save_file

    if (out / "config.json").exists():
        return out
    generator = torch.Generator().manual_seed(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for file in base.iterdir():
            if file.suffix != ".safetensors" and file.is_file():
                shutil.copyfile(file, tmp / file.name)
        for file in sorted(base.glob("*.safetensors")):
            tensors = load_file(str(file))
            for name, tensor in tensors.items():
                if any(f"layers.{i}." in name for i in layers) and tensor.dim() == 2:
                    noise = torch.randn(tensor.shape, generator=generator) * scale
                    tensors[name] = (tensor.float() + noise).to(tensor.dtype)
            save_file(tensors, str(tmp / file.name), metadata={"format": "pt"})
        tmp.rename(out)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
