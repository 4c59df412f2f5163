"""Sizing against numbers worked out by hand from the configs and the GPU table (arithmetic written out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_serving.cluster.gpus import GPUS, resolve_gpu
from model_serving.cluster.shape import read_shape
from model_serving.cluster.sizing import size_model
from model_serving.errors import InputError

MIB, GIB = 2**20, 2**30
H100 = int(81559 * MIB * 0.9)  # nvidia-smi total x gpu_memory_utilization: 76,968,728,985 bytes
L4 = int(23034 * MIB * 0.9)  # 21,737,609,625 bytes


def test_parameter_counts_from_the_configs(configs: Path) -> None:
    # SmolLM2-135M: embeddings 49152 x 576 = 28,311,552 (tied: no separate lm_head)
    # per layer: q 576x576 + k,v 2 x 576x192 + o 576x576 + MLP 3 x 576x1536 + 2 norms x 576 = 3,540,096; x 30 layers
    assert read_shape(configs / "smollm2-135m").parameter_count == 28_311_552 + 30 * 3_540_096 + 576 == 134_515_008
    # Llama-3.1-8B: embeddings and lm_head 2 x 128256 x 4096; per layer 4096x4096 x 2 + 4096x1024 x 2 + 3 x 4096x14336 + 2 x 4096
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert read_shape(configs / "llama-3.1-8b").parameter_count == 2 * 128256 * 4096 + 32 * per_layer + 4096 == 8_030_261_248
    per_layer = 2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192
    assert read_shape(configs / "llama-3.1-70b").parameter_count == 2 * 128256 * 8192 + 80 * per_layer + 8192 == 70_553_706_496


# (config, GPU, TP, max_model_len, max_num_seqs, KV tokens), each line derived in the comment above it
CASES = [
    # 135M on H100: weights 2 x 134,515,008 = 269,030,016; reserve 1 GiB + 8192 x 576 x 2 x 16 = 1,224,736,768;
    # KV/token 2 x 30 layers x 3 heads x 64 x 2 = 23,040; (76,968,728,985 - 269,030,016 - 1,224,736,768) // 23,040 = 3,275,823
    # max_model_len: the trained 8192 (3,275,823 / 8 sequences is far more); max_num_seqs: min(256, 3,275,823 // 8192 = 399) = 256
    ("smollm2-135m", "H100-80GB", H100, 1, 8192, 256, (H100 - 269_030_016 - 1_224_736_768) // 23_040),
    # 135M on L4: (21,737,609,625 - 269,030,016 - 1,224,736,768) // 23,040 = 878,639; 878,639 // 8192 = 107 sequences
    ("smollm2-135m", "L4-24GB", L4, 1, 8192, 107, (L4 - 269_030_016 - 1_224_736_768) // 23_040),
    # 8B on H100, TP 1: weights 16,060,522,496; reserve 1 GiB + 8192 x 4096 x 32 = 2 GiB; KV/token 2 x 32 x 8 x 128 x 2 = 131,072
    # (76,968,728,985 - 16,060,522,496 - 2 GiB) // 131,072 = 448,308 tokens; / 8 sequences = 56,038 -> 55,808 (a multiple of 256)
    ("llama-3.1-8b", "H100-80GB", H100, 1, 55_808, 8, (H100 - 16_060_522_496 - 2 * GIB) // 131_072),
    # 8B on L4, TP 1: 3,529,603,481 bytes left hold 26,928 tokens < 8 x 4096 = 32,768: no. TP 2: weights 8,030,261,248 per GPU,
    # KV/token 65,536 per GPU; (21,737,609,625 - 8,030,261,248 - 2 GiB) // 65,536 = 176,389; / 8 = 22,048 -> 22,016
    ("llama-3.1-8b", "L4-24GB", L4, 2, 22_016, 8, (L4 - 8_030_261_248 - 2 * GIB) // 65_536),
    # 70B on H100: TP 1 weights 141 GB exceed 77 GB; TP 2: 3,193,797,017 left hold 19,493 tokens < 32,768; TP 4: weights
    # 35,276,853,248 per GPU, reserve 1 GiB + 8192 x 8192 x 32 = 3 GiB, KV/token 2 x 80 x 2 heads x 128 x 2 = 81,920 per GPU
    # (76,968,728,985 - 35,276,853,248 - 3 GiB) // 81,920 = 469,612; / 8 = 58,701 -> 58,624
    ("llama-3.1-70b", "H100-80GB", H100, 4, 58_624, 8, (H100 - 35_276_853_248 - 3 * GIB) // 81_920),
]


@pytest.mark.parametrize(("config", "gpu", "usable", "tp", "length", "seqs", "tokens"), CASES)
def test_sizing_matches_the_hand_arithmetic(configs: Path, config: str, gpu: str, usable: int, tp: int, length: int, seqs: int, tokens: int) -> None:
    s = size_model(read_shape(configs / config), GPUS[gpu])
    assert (s.tensor_parallel_size, s.max_model_len, s.max_num_seqs, s.kv_capacity_tokens) == (tp, length, seqs, tokens)
    assert s.kv_budget_bytes_per_gpu == usable - s.weights_bytes // tp - s.reserve_bytes_per_gpu
    assert [t.fits for t in s.tried] == [False] * (len(s.tried) - 1) + [True]


def test_70b_on_l4_fits_only_at_tp8_with_a_short_context(configs: Path) -> None:
    # TP 8: weights 17,638,426,624 per GPU + 3 GiB reserve leave 877,957,529 bytes; KV/token 2 x 80 x 1 head x 128 x 2 = 40,960
    # -> 21,434 tokens: 2 sequences of 4096 fit (8,192); 2 x 4096 was asked. max_num_seqs: 21,434 // 4096 = 5
    s = size_model(read_shape(configs / "llama-3.1-70b"), GPUS["L4-24GB"], max_model_len=4096, target_concurrency=2)
    assert (s.tensor_parallel_size, s.kv_capacity_tokens, s.max_model_len, s.max_num_seqs) == (8, 877_957_529 // 40_960, 4096, 5)


def test_a_model_that_does_not_fit_even_at_tp8(configs: Path) -> None:
    # 8 x 131,072 tokens x 40,960 bytes = 40 GiB of KV per GPU; 0.8 GiB is left: the error says what would fit (21,434 / 8 = 2,679)
    with pytest.raises(InputError) as err:
        size_model(read_shape(configs / "llama-3.1-70b"), GPUS["L4-24GB"], max_model_len=131072)
    assert "does not fit L4-24GB even at tensor-parallel 8" in err.value.cause and "TP 8: KV for 1048576 tokens" in err.value.cause
    assert "2679 tokens per sequence" in err.value.next_step and "--max-model-len" in err.value.next_step


def test_unknown_gpu_lists_the_known_ones_and_the_memory_option() -> None:
    with pytest.raises(InputError) as err:
        resolve_gpu("B300-288GB")
    assert all(name in err.value.cause for name in GPUS) and "--gpu-memory-gb" in err.value.next_step
    assert resolve_gpu("B300-288GB", 268.0).memory_bytes == 268 * GIB


def test_a_config_without_the_sizing_fields(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 4096, "vocab_size": 32000}')
    with pytest.raises(InputError) as err:
        read_shape(tmp_path)
    assert "num_hidden_layers, num_attention_heads, max_position_embeddings" in err.value.cause
    assert "original config.json" in err.value.next_step


def test_context_beyond_the_trained_one_is_refused(configs: Path) -> None:
    with pytest.raises(InputError) as err:
        size_model(read_shape(configs / "smollm2-135m"), GPUS["L4-24GB"], max_model_len=16384)
    assert "8192" in err.value.cause and "at most 8192" in err.value.next_step


@pytest.mark.parametrize("tied", [True, False])
def test_the_config_count_equals_a_real_checkpoints_tensors(tmp_path: Path, tied: bool) -> None:
    """A real (random) Llama saved by transformers: the count from its safetensors headers is the config's count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=tied)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path / "model")
    measured = read_shape(tmp_path / "model")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_bytes((tmp_path / "model" / "config.json").read_bytes())
    from_config = read_shape(tmp_path / "config-only")
    assert (measured.weights_source, from_config.weights_source) == ("safetensors", "config")
    assert measured.parameter_count == from_config.parameter_count
    assert measured.weights_bytes == from_config.weights_bytes == 2 * measured.parameter_count
