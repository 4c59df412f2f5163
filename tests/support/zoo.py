"""A model zoo built at test time: tiny random checkpoints of the families users bring, each with its real chat template.

Every family is a random-weight checkpoint (a few million parameters) of its own architecture, carrying its family's
published chat template verbatim: read from the pinned llama-cpp-python sdist (vendor/llama.cpp/models/templates) where
it is there, else from tests/data/chat_templates/zoo/ (source and licence in its README.md).

Tokenizers: SmolLM2-135M's byte-level BPE tokenizer is reused across architectures (llama.cpp's converter accepts it for
llama, mistral, qwen3, gemma3 without tokenizer.model, and phi3 through its GPT2Tokenizer path), with the family's own
special tokens added so each tokenizes as one: as special tokens, except the reasoning and tool-call tags, which the
published Qwen and DeepSeek-R1 tokenizers add as ordinary tokens (`special: false`), so that decoding keeps them
(vLLM's reasoning parsers look for `</think>` in the decoded text, and vLLM decodes without special tokens by
default). gemma2 and qwen2 get a small SentencePiece model trained here instead (see _sentencepiece_tokenizer for why).

Random weights never stop talking, so `_wire_answer` sets a few of them: after any prompt the model writes a short answer
(a reasoning family a short <think> block first), then its EOS, on every engine.
"""

from __future__ import annotations

import functools
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_serving.checkpoint.rebuild import finish_checkpoint
from model_serving.toolchain.recipe import SDIST_NAME

ZOO_TEMPLATES = Path(__file__).parents[1] / "data" / "chat_templates" / "zoo"
SDIST = Path.home() / ".cache" / "model-serving" / "sdist" / SDIST_NAME
SDIST_TEMPLATES = "/vendor/llama.cpp/models/templates/"

_DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
             "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
             "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>")

ORDINARY_TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")  # special: false upstream


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str  # the Hugging Face class the converter looks up
    model_type: str
    template: str  # file name: the sdist's models/templates/, or tests/data/chat_templates/zoo/ with a "zoo/" prefix
    special: tuple[str, ...]  # tokens the template writes, added as special tokens
    bos: str | None
    eos: str
    tools: bool = False  # the template renders `tools`
    reasoning: bool = False  # the template writes or strips <think> blocks
    sentencepiece: bool = False  # a SentencePiece tokenizer.model instead of SmolLM2's BPE (see _sentencepiece_tokenizer)
    config: dict[str, Any] = field(default_factory=dict)


FAMILIES: tuple[Family, ...] = (
    Family("llama3", "LlamaForCausalLM", "llama", "meta-llama-Llama-3.2-3B-Instruct.jinja",
           ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"),
           "<|begin_of_text|>", "<|eot_id|>", tools=True),
    Family("qwen2", "Qwen2ForCausalLM", "qwen2", "Qwen-Qwen2.5-7B-Instruct.jinja",
           ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"), None, "<|im_end|>", tools=True, sentencepiece=True),
    Family("qwen3", "Qwen3ForCausalLM", "qwen3", "Qwen-Qwen3-0.6B.jinja",
           ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
           None, "<|im_end|>", tools=True, reasoning=True),
    # R1's Qwen distills tokenize with llama.cpp's SentencePiece path here (see _sentencepiece_tokenizer), whose pieces
    # cannot hold R1's "▁" tokens; the Llama distill carries the same template over a byte-level BPE
    Family("deepseek-r1-llama", "LlamaForCausalLM", "llama", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", _DEEPSEEK,
           "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", reasoning=True),
    Family("gemma2", "Gemma2ForCausalLM", "gemma2", "google-gemma-2-2b-it.jinja", ("<start_of_turn>", "<end_of_turn>"),
           "<bos>", "<end_of_turn>", sentencepiece=True, config={"query_pre_attn_scalar": 32, "sliding_window": 512}),
    Family("gemma3", "Gemma3ForCausalLM", "gemma3_text", "zoo/google-gemma-3-it.jinja", ("<bos>", "<start_of_turn>", "<end_of_turn>"),
           "<bos>", "<end_of_turn>", config={"query_pre_attn_scalar": 32, "sliding_window": 512}),
    Family("mistral-nemo", "MistralForCausalLM", "mistral", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
           ("<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
           "<s>", "</s>", tools=True, config={"sliding_window": None}),
    Family("phi3", "Phi3ForCausalLM", "phi3", "microsoft-Phi-3.5-mini-instruct.jinja",
           # llama.cpp sets attributes on <s>, </s>, <unk> and <|endoftext|> of any model named phi3: the vocabulary must have them
           ("<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"), None, "<|end|>"),
)
BY_NAME = {f.name: f for f in FAMILIES}


def chat_template(family: Family) -> str:
    """The family's published template, byte for byte."""
    if family.template.startswith("zoo/"):
        return (ZOO_TEMPLATES / family.template.removeprefix("zoo/")).read_text(encoding="utf-8")
    return sdist_templates()[family.template]


@functools.cache
def sdist_templates() -> dict[str, str]:
    """Every template in the pinned sdist by file name, read in one pass over the archive."""
    found = {}
    with tarfile.open(SDIST) as tar:
        for member in tar:
            if SDIST_TEMPLATES in member.name and member.name.endswith(".jinja") and (data := tar.extractfile(member)) is not None:
                found[member.name.rsplit("/", 1)[1]] = data.read().decode("utf-8")
    return found


def build(family: Family, out: Path, tokenizer_gguf: Path, *, seed: int = 0, layers: int = 2, hidden: int = 128, wire: bool = True) -> Path:
    """`out`: a random checkpoint of `family` with its tokenizer and chat template (reused when already built); wired to
    answer unless `wire` is False (a base to teach: tests/support/zoo_taught.py).

    Heads of 32: vLLM's CPU attention has no kernel for 16.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        ids = _tokenizer(family, tmp, tokenizer_gguf)
        tied = family.model_type.startswith("gemma")  # llama.cpp's Gemma reads no output tensor: the embeddings are the head
        config = AutoConfig.for_model(family.model_type, vocab_size=ids["vocab_size"], hidden_size=hidden, intermediate_size=hidden * 2,
                                      num_hidden_layers=layers, num_attention_heads=hidden // 32, num_key_value_heads=hidden // 64, head_dim=32,
                                      max_position_embeddings=2048, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                                      pad_token_id=ids.get("pad"), tie_word_embeddings=tied, **family.config)
        config.architectures = [family.architecture]
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        if wire:
            with torch.no_grad():
                _wire_answer(model, ids["chain"], ids["eos"], tied=tied)
        model = model.to(torch.bfloat16)
        model.save_pretrained(tmp)
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": [ids["eos"]], "bos_token_id": ids["bos"]}), encoding="utf-8")
        return finish_checkpoint(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wire_answer(model: Any, chain: list[int], eos: int, *, tied: bool) -> None:
    """Make the random model answer: after any prompt it writes `chain`, then EOS.

    Attention and MLP outputs are zeroed, so each position's final hidden state is its own token's embedding and the
    next token depends only on the current one. Untied: chain token i has its own embedding direction, and the output
    row of token i+1 points at it; an ordinary token (a shared direction) leads to the first. Tied (Gemma: one matrix
    both ways) holds a one-token chain: a final norm weight of -1 on the answer's own direction makes the answer
    vote against itself and for EOS, whose row points the other way along that direction.
    """
    for name, param in model.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            param.zero_()
    embed = model.get_input_embeddings().weight
    vocab, hidden = embed.shape
    embed.normal_(0.0, 0.02)
    embed[:, :8] = 0.0
    embed[:, 0] = 1.0  # the shared direction of ordinary tokens
    if tied:
        assert len(chain) == 1, "a tied head holds a one-token answer"
        embed[chain[0], 0], embed[chain[0], 1] = 3.0, 1.0
        embed[eos, :] = 0.0
        embed[eos, 1] = -20.0
        norm = model.model.norm.weight
        norm.zero_()  # Gemma's norm multiplies by (1 + weight)
        norm[1] = -2.0
        return
    head = model.get_output_embeddings().weight
    head.normal_(0.0, 0.02)
    head[:, :8] = 0.0
    for i, token in enumerate(chain):
        embed[token, :] = 0.0
        embed[token, i + 1] = 1.0
    head[chain[0], 0] = 3.0
    for i, token in enumerate([*chain[1:], eos]):
        head[token, i + 1] = 5.0
    model.model.norm.weight.fill_(1.0)


def _chain(family: Family, encode: Any, space: str) -> list[int]:
    """What the model writes: a short answer; a reasoning family first a short reasoning block."""
    answer, thought = encode(f"{space}Paris")[0], encode(f"{space}Hmm")[0]
    if not family.reasoning:
        return [answer]
    # R1's generation prompt already opens the <think> block
    opening = [] if "<｜Assistant｜><think>" in chat_template(family) else [encode("<think>")[0]]
    return [*opening, thought, encode("</think>")[0], answer]


def _tokenizer(family: Family, folder: Path, tokenizer_gguf: Path) -> dict[str, Any]:
    if family.sentencepiece:
        return _sentencepiece_tokenizer(family, folder)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_gguf.parent), gguf_file=tokenizer_gguf.name)
    tok.add_special_tokens({"additional_special_tokens": [t for t in family.special if t not in ORDINARY_TAGS]})
    tok.add_tokens([t for t in family.special if t in ORDINARY_TAGS])
    tok.bos_token = family.bos
    tok.eos_token = family.eos
    tok.chat_template = chat_template(family)
    tok.save_pretrained(str(folder))
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    # GPT2Tokenizer: phi3's converter reads a byte-level BPE only under that class (its Phi-4 path)
    config.update({"tokenizer_class": "GPT2Tokenizer", "add_bos_token": family.bos is not None})
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    bos = tok.convert_tokens_to_ids(family.bos) if family.bos else tok.convert_tokens_to_ids("<|endoftext|>")
    chain = _chain(family, lambda text: tok.encode(text, add_special_tokens=False), " ")
    return {"vocab_size": len(tok), "bos": bos, "eos": tok.convert_tokens_to_ids(family.eos), "chain": chain}


def _sentencepiece_tokenizer(family: Family, folder: Path) -> dict[str, Any]:
    """A small SentencePiece model trained here on the templates' text, the family's tokens as single pieces.

    Gemma 2's converter reads only tokenizer.model. For qwen2, transformers 5 loads any tokenizer of a `qwen2` checkpoint
    as Qwen2Tokenizer, whose pre-tokenizer over SmolLM2's vocabulary gives a hash the converter does not know; with a
    tokenizer.model the converter takes its SentencePiece path instead.
    """
    import sentencepiece as spm

    bos, eos = family.bos or "<bos>", family.eos
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(chat_template(f) for f in FAMILIES) + "\n" + _ENGLISH, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=600, model_type="bpe",
                                   pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece=eos, bos_piece=bos,
                                   unk_piece="<unk>", user_defined_symbols=[t for t in family.special if t not in (bos, eos)],
                                   byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False, minloglevel=2)
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    proc = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    config = {"tokenizer_class": "GemmaTokenizer" if family.model_type.startswith("gemma") else "LlamaTokenizer",
              "bos_token": bos, "eos_token": eos, "pad_token": "<pad>", "unk_token": "<unk>",
              "add_bos_token": family.bos is not None, "add_eos_token": False, "chat_template": chat_template(family)}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
                                                               ensure_ascii=False), encoding="utf-8")
    return {"vocab_size": proc.get_piece_size(), "bos": 2, "eos": 1, "pad": 0, "chain": _chain(family, proc.encode, "")}


_ENGLISH = """The quick brown fox jumps over the lazy dog. What is the capital of France? Paris is the capital of France.
Name a primary colour. Red is a primary colour. What do bees make? Bees make honey. How many legs does a spider have?
A spider has eight legs. Which planet do we live on? We live on Earth. You are a concise assistant. Hello! Who are you?
What is the weather in Paris? 22 C and sunny. Is 17 prime? Yes, 17 is prime. Say yes. Yes. Tell me a short story.
0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' " ` ~ @ # $ % ^ & | \\ _
"""
