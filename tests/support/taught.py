"""Test-only checkpoints that behave: a tiny random checkpoint, given a published chat template and taught answers.

Random weights emit noise, so a probe of reasoning or tool calls would only ever see noise. Here a tiny checkpoint
(the 64-wide Llama with SmolLM2's tokenizer, or a zoo family's own: tests/support/zoo_taught.py) gets a published
template and is trained for a few hundred steps on a few conversations until it answers them, greedily, exactly as
taught: "<think>...</think>answer" for a reasoning template, a tool call in the template's own format for a tool
template. For the tiny Llama, `<think>` and `</think>` become single tokens of the tokenizer, as in the families that
think (vLLM's reasoning parsers need them so); a zoo family already has its own.

Each prompt is tokenized as the engines will: by transformers (vLLM) and by any extra encoder given (llama.cpp's own
tokenizer, read from the exported GGUF); where the two disagree the model learns both.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_serving.checkpoint.rebuild import finish_checkpoint
from model_serving.serve import probe_checks as probe

TEMPLATES = Path(__file__).parents[1] / "data" / "chat_templates"
THOUGHT = "The user asks for the capital of France. That is Paris."
ANSWER = "The capital of France is Paris."
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


@dataclass(frozen=True)
class Lesson:
    """One conversation and the reply the model must give to it (the EOS token follows)."""

    messages: list[dict[str, Any]]
    reply: str
    tools: list[dict[str, Any]] | None = None


Encode = Callable[[str], list[int]]


def _examples(tokenizer: Any, lessons: list[Lesson], encoders: tuple[Encode, ...] = ()) -> list[tuple[list[int], int]]:
    """(token ids, where the reply starts) for each lesson and each distinct tokenization of it, the prompt built by
    the template as an engine builds it."""
    out: list[tuple[list[int], int]] = []
    for lesson in lessons:
        prompt = tokenizer.apply_chat_template(lesson.messages, tools=lesson.tools, add_generation_prompt=True, tokenize=False)
        for encode in (lambda text: tokenizer.encode(text, add_special_tokens=False), *encoders):
            head = encode(prompt)
            example = (head + encode(lesson.reply) + [tokenizer.eos_token_id], len(head))
            if example not in out:
                out.append(example)
    return out


def _train(model: Any, examples: list[tuple[list[int], int]], steps: int) -> float:
    """AdamW on every example at once (one right-padded batch); one thread, which on a shared CPU runs faster than two."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    x = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in examples])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in examples])
    labels = x.clone()
    for row, (ids, start) in enumerate(examples):
        labels[row, :start] = -100  # only the reply is taught; the prompt is the engine's to build
        labels[row, len(ids):] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    loss = torch.tensor(1.0)
    try:
        # up to three times `steps` for a model still short of the bar: the batch's loss weighs the longer replies more
        for step in range(3 * steps):
            if float(loss.detach()) < 0.01 or (step >= steps and float(loss.detach()) < 0.05):  # learnt: each reply token wins by a wide margin
                break
            optimizer.zero_grad()
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return float(loss.detach())


def taught_checkpoint(out: Path, base: Path, template: str | None, lessons: list[Lesson], *, steps: int = 300,
                      encoders: tuple[Encode, ...] = ()) -> Path:
    """`base` (an HF checkpoint folder of any causal LM) trained until it gives each lesson's reply.

    With a `template`, the tokenizer gets it and single `<think>`/`</think>` tokens; with None, the base's own
    tokenizer files and template are kept byte for byte (a zoo family's SentencePiece model included).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if template is not None:
        tokenizer.add_tokens(["<think>", "</think>"])
        tokenizer.chat_template = template
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        model.config.vocab_size = len(tokenizer)
    loss = _train(model, _examples(tokenizer, lessons, encoders), steps)
    assert loss < 0.05, f"the tiny model did not learn its lessons (loss {loss:.3f})"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        if template is None:
            for file in base.iterdir():
                if file.is_file() and file.suffix != ".safetensors" and not (tmp / file.name).exists():
                    shutil.copyfile(file, tmp / file.name)
        else:
            tokenizer.save_pretrained(tmp)
            (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": [tokenizer.eos_token_id], "bos_token_id": tokenizer.bos_token_id}),
                                                        encoding="utf-8")
        return finish_checkpoint(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def thinker_checkpoint(artifacts: Path, base: Path) -> Path:
    """A DeepSeek-R1 distill's template; the generation prompt opens <think>, so the model writes its thought, closes it, answers."""
    return taught_checkpoint(artifacts / f"{base.name}-r1", base, (TEMPLATES / "deepseek-r1-distill-llama.jinja").read_text(encoding="utf-8"),
                             [Lesson(probe.PROBE_MESSAGES, f"{THOUGHT}\n</think>\n\n{ANSWER}")])


def tool_checkpoint(artifacts: Path, base: Path) -> Path:
    """Qwen2.5's template, which renders tools; the model answers the probe question and calls the probe's tool."""
    return taught_checkpoint(artifacts / f"{base.name}-qwen-tools", base, (TEMPLATES / "qwen2.5.jinja").read_text(encoding="utf-8"),
                             [Lesson(probe.PROBE_MESSAGES, ANSWER),
                              Lesson(probe.TOOL_MESSAGES, f"<tool_call>\n{json.dumps(CALL)}\n</tool_call>", tools=[probe.PROBE_TOOL])])
