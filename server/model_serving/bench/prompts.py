"""Prompt sources: a fixed set for A/B runs, synthetic prompts of set length, one text, or a user JSONL file.

Synthetic prompts (the older form of the `random` profile, bench/workloads.py) start with a random prefix
drawn from the recorded seed, so no two requests of a run share a cacheable prefix; a rerun with the same
seed repeats them, which `random` and `chat` avoid with a per-run nonce. The fixed set and a single text
repeat, so the prompt cache serves them: results label them `cached/repeated`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_serving.errors import InputError

# Short questions with short, checkable answers: the same list for every A/B run.
FIXED_PROMPTS: tuple[str, ...] = (
    "What is the capital of France? Answer in one word.",
    "What is 12 plus 7? Answer with the number only.",
    "Name the largest planet in our solar system.",
    "Which gas do plants take in from the air to make food?",
    "Translate 'thank you' into Spanish.",
    "How many days are there in a leap year?",
    "What colour do you get by mixing blue and yellow?",
    "Who wrote the play Romeo and Juliet?",
)

# Plain words for synthetic prompts; on common tokenizers most of them are one token each.
_WORDS = (
    "river stone light garden window paper music table winter orange market letter silver forest "
    "bridge engine doctor island camera pocket rocket summer candle basket planet button mirror "
    "ladder cotton violin harbor pillow meadow jacket lemon tunnel marble falcon velvet anchor"
).split()
_TOKENS_PER_WORD = 1.3  # rough English average; the server's own count is recorded next to it


@dataclass(frozen=True)
class PromptSpec:
    id: str
    text: str | None = None
    chat: tuple[tuple[str, str], ...] | None = None
    max_tokens: int | None = None
    input_tokens_estimate: int = 0

    def messages(self) -> list[dict[str, str]]:
        if self.chat is not None:
            return [{"role": role, "content": content} for role, content in self.chat]
        return [{"role": "user", "content": self.text or ""}]

    def as_text(self) -> str:
        if self.text is not None:
            return self.text
        return "\n".join(content for _, content in self.chat or ())


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text.split()) * _TOKENS_PER_WORD))


_estimate = estimate_tokens


def word_body(rng: random.Random, input_tokens: int) -> str:
    """Random common words, about `input_tokens` tokens of them."""
    n_words = max(4, round(input_tokens / _TOKENS_PER_WORD))
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def fixed_prompts() -> list[PromptSpec]:
    return [PromptSpec(id=f"fixed-{i}", text=t, input_tokens_estimate=_estimate(t)) for i, t in enumerate(FIXED_PROMPTS)]


def text_prompt(text: str) -> list[PromptSpec]:
    return [PromptSpec(id="text-0", text=text, input_tokens_estimate=_estimate(text))]


def synthetic_prompts(n: int, input_tokens: int, output_tokens: int, seed: int) -> list[PromptSpec]:
    """n prompts of about `input_tokens` tokens, each opening with its own random prefix."""
    rng = random.Random(seed)
    n_words = max(4, round(input_tokens / _TOKENS_PER_WORD))
    specs = []
    for i in range(n):
        prefix = f"[{rng.getrandbits(48):012x}]"
        body = " ".join(rng.choice(_WORDS) for _ in range(n_words - 1))
        text = f"{prefix} Continue this list of words: {body}"
        specs.append(PromptSpec(id=f"synthetic-{i}", text=text, max_tokens=output_tokens, input_tokens_estimate=_estimate(text)))
    return specs


def _chat_from(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: 'messages' must be a non-empty list.", "Write messages as [{\"role\": \"user\", \"content\": \"...\"}].")
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("content"), str):
            raise InputError(f"{where}: each message needs a string 'role' and 'content'.", "Fix that message and run again.")
        turns.append((turn["role"], turn["content"]))
    return tuple(turns)


def jsonl_prompts(path: Path) -> list[PromptSpec]:
    """Read {"prompt": "..."} or {"messages": [...]} lines, each with optional "id" and "max_tokens"."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the prompt file {path}: {exc}.", "Pass a UTF-8 JSONL file, one JSON object per line.") from None
    specs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno}).", "Fix that line: each line must be one JSON object.") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where} is a JSON {type(obj).__name__}, not an object.", "Write each line as {\"prompt\": \"...\"}.")
        max_tokens = obj.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise InputError(f"{where}: max_tokens must be a positive integer.", "Fix or remove it.")
        pid = str(obj.get("id", f"jsonl-{number}"))
        if "messages" in obj:
            chat = _chat_from(obj["messages"], where)
            estimate = _estimate(" ".join(c for _, c in chat))
            specs.append(PromptSpec(id=pid, chat=chat, max_tokens=max_tokens, input_tokens_estimate=estimate))
        elif isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
            specs.append(PromptSpec(id=pid, text=obj["prompt"], max_tokens=max_tokens, input_tokens_estimate=_estimate(obj["prompt"])))
        else:
            raise InputError(f"{where} has neither a non-empty 'prompt' string nor 'messages'.", "Add one of them to that line.")
    if not specs:
        raise InputError(f"The prompt file {path} holds no prompts.", "Add at least one line like {\"prompt\": \"Hello\"}.")
    return specs


def load_prompts(source: str, *, n: int, seed: int, prompt: str | None, prompts_file: Path | None,
                 input_tokens: int, output_tokens: int) -> list[PromptSpec]:
    """The repeated or user-given prompts for a run, cycled to `n` requests (random and chat: bench.workloads)."""
    if source == "synthetic":
        return synthetic_prompts(n, input_tokens, output_tokens, seed)
    if source == "jsonl":
        assert prompts_file is not None
        pool = jsonl_prompts(prompts_file)
    elif source == "text":
        pool = text_prompt(prompt or "")
    else:
        pool = fixed_prompts()
    return [pool[i % len(pool)] for i in range(n)]
