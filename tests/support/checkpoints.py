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
