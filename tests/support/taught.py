"""Test-only checkpoints that behave: the tiny random Llama, given another family's chat template and taught answers.

Random weights emit noise, so a probe of reasoning or tool calls would only ever see noise. Here the tiny checkpoint
(64 wide, 2 layers, SmolLM2's tokenizer) gets a published template and is trained for a few hundred steps on a few
conversations until it answers them, greedily, exactly as taught: "<think>...</think>answer" for a reasoning
template, a `<tool_call>` for a tool template. `<think>` and `</think>` become single tokens of the tokenizer, as in
the families that think (vLLM's reasoning parsers need them so).
"""

from __future__ import annotations

import json
import shutil
import tempfile
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


def _examples(tokenizer: Any, lessons: list[Lesson]) -> list[tuple[list[int], int]]:
    """(token ids, where the reply starts) for each lesson, the prompt built by the template as an engine builds it."""
    out = []
    for lesson in lessons:
        prompt = tokenizer.apply_chat_template(lesson.messages, tools=lesson.tools, add_generation_prompt=True, tokenize=False)
        head = tokenizer.encode(prompt, add_special_tokens=False)
        out.append((head + tokenizer.encode(lesson.reply, add_special_tokens=False) + [tokenizer.eos_token_id], len(head)))
    return out


def _train(model: Any, examples: list[tuple[list[int], int]], steps: int) -> float:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    loss = torch.tensor(1.0)
    for _ in range(steps):
        if float(loss.detach()) < 0.01:  # learnt: every reply token is the greedy choice by a wide margin
            break
        optimizer.zero_grad()
        total = torch.tensor(0.0)
        for ids, start in examples:
            x = torch.tensor([ids])
            labels = x.clone()
            labels[0, :start] = -100  # only the reply is taught; the prompt is the engine's to build
            total = total + model(input_ids=x, labels=labels).loss
        loss = total / len(examples)
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


def taught_checkpoint(out: Path, base: Path, template: str, lessons: list[Lesson], *, steps: int = 300) -> Path:
    """`base` (an HF checkpoint folder) with `template` as its chat template, trained until it gives each lesson's reply."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = template
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(str(base), torch_dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.config.vocab_size = len(tokenizer)
    loss = _train(model, _examples(tokenizer, lessons), steps)
    assert loss < 0.05, f"the tiny model did not learn its lessons (loss {loss:.3f})"
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
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
