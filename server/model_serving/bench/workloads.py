"""Workloads that do not flatter: unique prompts of a stated length, as `vllm bench serve` and AIPerf send by default.

- `random` (like `vllm bench serve --dataset-name random`): token ids drawn from the model's vocabulary and
  decoded to text, when the served GGUF's tokenizer is at hand; otherwise random common words of about the
  stated length.
- `chat`: varied chat questions (a context, a task, details), their lengths spread around the stated length.

Every prompt opens with its own random hex, drawn from a per-run nonce and its index, in a short system message on the chat
route (so a template's built-in system prompt, the same for every request, is not prepended either).
The nonce comes from the operating system, not from the seed: a rerun with the same seed shares nothing
with the last run, which a host-memory prompt cache (llama-server `--cache-ram`) would otherwise serve.
The seed fixes everything after the nonce, so runs with one seed differ only in their openings.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from pathlib import Path

from model_serving.bench.prompts import PromptSpec, estimate_tokens, load_prompts, word_body
from model_serving.bench.schema import UNIQUE_SOURCES, BenchConfig, Workload
from model_serving.bench.tokens import Vocabulary, vocabulary

_CONTEXTS = (
    "I run a small bakery and", "My team maintains a web service that", "I am studying for an exam and",
    "Our school is planning a trip and", "I just moved to a new city and", "I volunteer at an animal shelter and",
    "My grandmother asked me a question:", "We are renovating an old house and", "I am learning to play the guitar and",
    "At work we keep a shared spreadsheet that", "I am training for a half marathon and", "My garden gets little sun and",
)
_TASKS = (
    "explain in plain words", "give me three options for", "compare the pros and cons of", "write a short plan for",
    "summarise what I should know about", "suggest a checklist for", "describe step by step", "list common mistakes in",
)
_TOPICS = (
    "keeping bread fresh for a week", "caching database queries", "remembering dates in history", "budgeting a bus trip",
    "finding a good doctor", "socialising shy cats", "fixing a squeaky wooden floor", "practising chord changes",
    "tracking expenses by month", "pacing the last five kilometres", "growing herbs in shade", "backing up family photos",
    "writing a polite complaint letter", "choosing a second-hand bicycle", "planning meals for a busy week",
)
_DETAILS = (
    "It has to work on a small budget.", "I have about an hour a day for it.", "Two of us share the work.",
    "Last time it went wrong because we started too late.", "The deadline is at the end of the month.",
    "I would like to avoid buying new tools.", "Please keep in mind that I am a beginner.", "The weather here is often rainy.",
    "Some of the people involved do not speak English well.", "We tried a simple approach once and it was too slow.",
    "Safety matters more to me than speed.", "I can ask a friend who has done this before.",
)


def new_nonce() -> str:
    """A per-run prefix from the operating system's randomness (never from the seed)."""
    return secrets.token_hex(6)


def _opening(nonce: str, index: int) -> str:
    """This request's own opening, drawn from the run's nonce: it differs from every other from its first characters on
    (a shared run nonce followed by an index let the cache serve the nonce's tokens of every request)."""
    return hashlib.blake2s(f"{nonce}:{index}".encode(), digest_size=6).hexdigest()


def random_prompts(n: int, input_tokens: int, output_tokens: int, seed: int, *, nonce: str,
                   tokenizer: VocabularySampler | None = None, opening_in: str = "system") -> list[PromptSpec]:
    """n unique prompts of `input_tokens` tokens of text (vocabulary tokens when a tokenizer is given, else about that many
    words' tokens); with `opening_in="user"` one user message, opening and body together, as the peers' random prompts."""
    rng = random.Random(seed)
    specs = []
    count = tokenizer.count if tokenizer is not None else None
    for i in range(n):
        opening = _opening(nonce, i) + ("\n" if opening_in == "user" else "")
        # The stated length is the text sent, opening included (as vLLM's random-input-len and GuideLLM's prompt_tokens);
        # the chat template's tokens come on top.
        body_tokens = max(1, input_tokens - (count(opening) if count is not None else estimate_tokens(opening)))
        body = tokenizer.text(rng, body_tokens) if tokenizer is not None else word_body(rng, body_tokens)
        chat = (("user", opening + body),) if opening_in == "user" else (("system", opening), ("user", body))
        text_tokens = sum(count(c) for _, c in chat) if count is not None else input_tokens
        specs.append(PromptSpec(id=f"random-{i}", chat=chat, max_tokens=output_tokens, input_tokens_estimate=text_tokens))
    return specs


def _chat_question(rng: random.Random, target_tokens: int) -> str:
    words = [rng.choice(_CONTEXTS), rng.choice(_TASKS), rng.choice(_TOPICS) + "."]
    text = " ".join(words)
    while estimate_tokens(text) < target_tokens:
        text += " " + rng.choice(_DETAILS)
    return text + f" ({rng.randint(2, 9)} short points, please.)"


def chat_prompts(n: int, input_tokens: int, output_tokens: int, seed: int, *, nonce: str) -> list[PromptSpec]:
    """n unique chat questions; lengths uniform within half to one and a half times `input_tokens`."""
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        target = max(8, round(input_tokens * rng.uniform(0.5, 1.5)))
        question = _chat_question(rng, target)
        opening = f"{_opening(nonce, i)} You are a helpful assistant."
        specs.append(PromptSpec(id=f"chat-{i}", chat=(("system", opening), ("user", question)), max_tokens=output_tokens,
                                input_tokens_estimate=estimate_tokens(opening + " " + question)))
    return specs


class VocabularySampler:
    """Random text from the model's own vocabulary, and the count of any text in its tokens (the same tokenizer)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self._vocab = vocab

    def text(self, rng: random.Random, n: int) -> str:
        """Text of random vocabulary tokens (control tokens left out) that tokenizes to n tokens.

        As vLLM's random dataset: draw, decode, tokenize again, and top up until the text holds n tokens, then trim."""
        vocab = self._vocab
        ids = [rng.randrange(vocab.size) for _ in range(n + n // 4 + 4)]
        text, got = vocab.text_of(ids, n)
        for _ in range(8):
            if got >= n:
                break
            ids += [rng.randrange(vocab.size) for _ in range(n - got + 4)]
            text, got = vocab.text_of(ids, n)
        return text

    def count(self, text: str) -> int:
        return self._vocab.count(text)


def vocabulary_sampler(gguf_path: Path) -> VocabularySampler | None:
    """The sampler of the model's vocabulary; None without a tokenizer (the random profile then draws words)."""
    try:
        return VocabularySampler(vocabulary(gguf_path))
    except Exception:  # noqa: BLE001 - no tokenizer only means the word form of the random profile
        return None


def build(config: BenchConfig, n: int, warm: int) -> tuple[list[PromptSpec], list[PromptSpec], Workload]:
    """The measured prompts, the warm-up prompts (never among the measured: a warm-up would cache them) and the workload."""
    source = config.prompt_source
    unique = source in UNIQUE_SOURCES
    nonce = new_nonce() if source in ("random", "chat") else None
    sampler = vocabulary_sampler(config.gguf_path) if source == "random" and config.gguf_path is not None else None
    total = n + warm if unique else n
    if source == "random":
        # /v1/completions sends one text: the user shape, so the stated length is exactly the text sent
        opening_in = config.opening if config.route == "chat" else "user"
        specs = random_prompts(total, config.input_tokens, config.max_tokens, config.seed, nonce=nonce or "", tokenizer=sampler,
                               opening_in=opening_in)
    elif source == "chat":
        specs = chat_prompts(total, config.input_tokens, config.max_tokens, config.seed, nonce=nonce or "")
    else:
        specs = load_prompts(source, n=total, seed=config.seed, prompt=config.prompt, prompts_file=config.prompts_file,
                             input_tokens=config.input_tokens, output_tokens=config.max_tokens)
    repeated = not unique and (source != "jsonl" or len({s.as_text() for s in specs}) < len(specs))
    workload = Workload(
        profile=source, prompts="repeated" if repeated else "unique", input_tokens=config.input_tokens if unique else None,
        output_tokens=config.max_tokens, ignore_eos=bool(config.ignore_eos) and config.api == "openai", seed=config.seed,
        run_nonce=nonce, tokenizer=sampler is not None, label="cached/repeated" if repeated else "")
    return (specs[:n], specs[n:], workload) if unique else (specs, [], workload)
