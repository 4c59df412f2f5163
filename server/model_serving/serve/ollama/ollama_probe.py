"""How the probe asks Ollama: one chat after unloading the model, plus its listed capabilities.

Unloading first means no cached prompt prefix hides tokens from `prompt_eval_count`. The checks
themselves (answers, stops, prompt token count) are `model_serving.serve.probe_checks`'s; here Ollama
also must list the `tools` capability when the template supports tools.
"""

from __future__ import annotations

import time
from pathlib import Path

from model_serving.gguf.vocab import vocab as _vocab
from model_serving.serve import probe_checks as probe
from model_serving.serve.chat_features import split_reasoning
from model_serving.serve.ollama.client import OllamaClient
from model_serving.settings import Settings


def gguf_tokenizer(gguf_path: Path) -> probe.Tokenize:
    """Tokenize as llama.cpp does at run time: special tokens parsed, BOS added when asked and the model wants one."""
    vocab = _vocab(str(gguf_path))
    return lambda text, add_bos: vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)


def probe_model(settings: Settings, name: str, *, expected_prompt_tokens: int | None = None, expect_tools: bool | None = None,
                expect_reasoning: bool = False, num_predict: int = 256, client: OllamaClient | None = None) -> probe.ProbeResult:
    """Ask Ollama the probe question; the shared checks decide. A reasoning model is asked with `think`, when Ollama can."""
    own = client is None
    client = client or OllamaClient(settings)
    started = time.perf_counter()
    try:
        info = client.show(name)
        think = expect_reasoning and "thinking" in info.capabilities
        num_predict = max(num_predict, probe.REASONING_MAX_TOKENS) if expect_reasoning else num_predict
        client.unload(name)
        chat = client.chat(name, probe.PROBE_MESSAGES, options={"temperature": 0, "seed": 42, "num_predict": num_predict}, think=think or None)
    finally:
        if own:
            client.close()
    answer, reasoning = chat.content, chat.thinking
    unsupported = []
    if expect_reasoning and not think:
        unsupported.append("reasoning: not separated by ollama for this template (Ollama lists no 'thinking' capability: "
                           "its TEMPLATE holds no <think>...</think> pair)")
        reasoning, answer = split_reasoning(answer)
    reply = probe.Reply(answer=answer, finish_reason=chat.done_reason or None, prompt_tokens=chat.prompt_eval_count,
                        completion_tokens=chat.eval_count, decode_seconds=chat.eval_duration / 1e9 if chat.eval_duration else None,
                        reasoning=reasoning)
    extra = []
    if expect_tools and "tools" not in info.capabilities:
        extra.append("the chat template supports tools but Ollama does not list the 'tools' capability")
    return probe.result("ollama", name, reply, expected_prompt_tokens=expected_prompt_tokens, max_tokens=num_predict, messages=probe.PROBE_MESSAGES,
                        seconds=time.perf_counter() - started, extra_problems=extra, capabilities=info.capabilities, tools_expected=expect_tools,
                        reasoning_expected=expect_reasoning, unsupported=unsupported)
