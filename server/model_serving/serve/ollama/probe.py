"""Prove a registered model chats: it stops by itself, sees its whole prompt, and has its tools.

One chat request after unloading the model (so no cached prompt hides tokens from
`prompt_eval_count`): it must end with done_reason "stop", its prompt_eval_count must equal the
token count of the prompt the checkpoint's Jinja template builds (fewer means truncation, one more
a doubled BOS), and /api/show must list the `tools` capability when the template supports tools.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

from model_serving.serve.ollama.client import OllamaClient
from model_serving.serve.ollama.fidelity import Conversation, jinja_prompt
from model_serving.settings import Settings

PROBE_MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
Tokenize = Callable[[str, bool], list[int]]


class ProbeResult(BaseModel):
    model: str
    passed: bool
    problems: list[str] = Field(default_factory=list)
    done_reason: str
    reply: str = Field(description="the model's answer (first 500 characters)")
    prompt_eval_count: int
    expected_prompt_tokens: int | None = Field(None, description="token count of the Jinja-built prompt, when known")
    truncated: bool | None = None
    double_bos: bool | None = None
    eval_count: int = 0
    eval_duration_ns: int = 0
    tokens_per_second: float | None = None
    capabilities: list[str] = Field(default_factory=list)
    tools_expected: bool | None = None


@lru_cache(maxsize=4)
def _vocab(path: str):  # noqa: ANN202 - llama_cpp.Llama
    import llama_cpp

    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def gguf_tokenizer(gguf_path: Path) -> Tokenize:
    """Tokenize as llama.cpp does at run time: special tokens parsed, BOS added when asked and the model wants one."""
    vocab = _vocab(str(gguf_path))
    return lambda text, add_bos: vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)


def expected_tokens(jinja_template: str, messages: list[dict], tokenize: Tokenize, *, bos: str, eos: str, add_bos: bool, system: str | None = None) -> int:
    """Tokens the runtime should evaluate for a chat: one BOS at most, the Jinja prompt, nothing else."""
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    prompt = jinja_prompt(jinja_template, Conversation(name="probe", messages=messages), bos, eos)
    if add_bos and bos and prompt.startswith(bos):
        prompt = prompt[len(bos):]  # the runtime's own BOS replaces the template's
    return len(tokenize(prompt, add_bos))


def probe_model(settings: Settings, name: str, *, expected_prompt_tokens: int | None = None, expect_tools: bool | None = None,
                num_predict: int = 256, client: OllamaClient | None = None) -> ProbeResult:
    own = client is None
    client = client or OllamaClient(settings)
    try:
        info = client.show(name)
        client.unload(name)
        result = client.chat(name, PROBE_MESSAGES, options={"temperature": 0, "seed": 42, "num_predict": num_predict})
    finally:
        if own:
            client.close()
    problems = []
    if result.done_reason != "stop":
        problems.append(
            f"the reply ended with done_reason {result.done_reason!r}, not 'stop': the model did not end its turn within {num_predict} tokens "
            "(a missing stop token or a wrong template)"
        )
    truncated = double_bos = None
    if expected_prompt_tokens is not None:
        truncated = result.prompt_eval_count < expected_prompt_tokens
        double_bos = result.prompt_eval_count == expected_prompt_tokens + 1
        if truncated:
            problems.append(f"Ollama evaluated {result.prompt_eval_count} prompt tokens but the prompt has {expected_prompt_tokens}: it was truncated or the template drops text")
        elif result.prompt_eval_count != expected_prompt_tokens:
            why = "a doubled BOS token" if double_bos else "the template adds text"
            problems.append(f"Ollama evaluated {result.prompt_eval_count} prompt tokens, expected {expected_prompt_tokens} ({why})")
    if expect_tools and "tools" not in info.capabilities:
        problems.append("the chat template supports tools but Ollama does not list the 'tools' capability")
    tps = result.eval_count / result.eval_duration * 1e9 if result.eval_duration else None
    return ProbeResult(
        model=name, passed=not problems, problems=problems, done_reason=result.done_reason, reply=result.content[:500],
        prompt_eval_count=result.prompt_eval_count, expected_prompt_tokens=expected_prompt_tokens, truncated=truncated, double_bos=double_bos,
        eval_count=result.eval_count, eval_duration_ns=result.eval_duration, tokens_per_second=round(tps, 2) if tps else None,
        capabilities=info.capabilities, tools_expected=expect_tools,
    )
