"""Test-only LoRA adapters: peft LoRAs with random non-zero weights on the tiny random base."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

ADDED_TOKEN = "<|tool_call|>"
# The fine-tune's own template: ChatML with a system message of its own (the base's names SmolLM)
ADAPTER_TEMPLATE = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
                    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_lora_adapter(out: Path, base_dir: Path, *, seed: int = 1, added_token: bool = False, rank: int = 4, scale: float = 0.5) -> Path:
    """A LoRA on q/v/o projections (random A and B, so it changes the logits); optionally an added token,
    saved embedding rows and its own chat template, the way fine-tunes that add tokens ship."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "adapter_config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.bfloat16)
    if added_token:
        tokenizer.add_special_tokens({"additional_special_tokens": [ADDED_TOKEN]})
        model.resize_token_embeddings(len(tokenizer))
        tokenizer.chat_template = ADAPTER_TEMPLATE
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False,
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, scale)  # peft's own init leaves B small; the tests need an effect well above rounding
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        peft_model.save_pretrained(tmp, save_embedding_layers=added_token)
        if added_token:
            tokenizer.save_pretrained(tmp)
        import json
        cfg = json.loads((tmp / "adapter_config.json").read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = str(base_dir)
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        tmp.rename(out)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def adapter_files(out: Path, base_model: str = "org/base", *, rank: int = 4, hidden: int = 64) -> Path:
    """A peft-shaped adapter folder without torch: its config and a safetensors file with one LoRA pair."""
    import numpy as np
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = {"base_model_name_or_path": base_model, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
              "target_modules": ["q_proj"], "modules_to_save": None, "bias": "none"}
    (out / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": np.ones((rank, hidden), np.float32), f"{prefix}.lora_B.weight": np.zeros((hidden, rank), np.float32)},
              str(out / "adapter_model.safetensors"))
    return out


def synthetic_gguf(path: Path, architecture: str, *, adapter: bool, width: int = 64, rank: int = 4) -> Path:
    """A minimal GGUF written with gguf-py: a one-tensor model of `architecture`, or a LoRA for it (general.type adapter).

    For refusals that depend only on the header (another architecture, one Ollama's ADAPTER cannot take):
    building a real checkpoint and adapter of that architecture would take minutes for a check that reads metadata.
    """
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(f"synthetic {architecture}")
    if adapter:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(2 * rank))
        writer.add_tensor("blk.0.attn_q.weight.lora_a", np.full((rank, width), 0.01, dtype=np.float32))  # ne = [width, rank]
        writer.add_tensor("blk.0.attn_q.weight.lora_b", np.full((width, rank), 0.01, dtype=np.float32))  # ne = [rank, width]
    else:
        writer.add_block_count(1)
        writer.add_embedding_length(width)
        writer.add_tensor("blk.0.attn_q.weight", np.zeros((width, width), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
