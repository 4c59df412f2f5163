"""Zoo families taught to reason and to call tools, each in its own published format, so the probes can prove both.

A wired zoo model (tests/support/zoo.py) answers one word whatever it is asked; it cannot decide to call a tool. Each
family whose template renders tools or thinks is built here from its own architecture's zoo checkpoint, with its own
tokenizer and template kept byte for byte, and trained (tests/support/taught.py) on the probe's two conversations:

- the probe's question: the answer, after a `<think>` block where the family reasons (R1's generation prompt already
  opens the block, so that model only closes it);
- the probe's tool request: the call of the probe's tool, written as the family's own template writes an assistant
  turn holding that call (Llama 3.2: a bare `{"name": ..., "parameters": ...}`; Qwen 2.5/3: `<tool_call>` JSON,
  Qwen 3 after its `<think>` block; Mistral Nemo: `[TOOL_CALLS][{..., "id": ...}]`). That rendering is the
  format llama.cpp's parser derives from the same template, and the one vLLM's parser for the family reads.

Each prompt is tokenized both by transformers (as vLLM does) and by llama.cpp's tokenizer from the exported GGUF;
where they differ (qwen2's SentencePiece model) the model learns both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taught import ANSWER, THOUGHT, Encode, Lesson, taught_checkpoint
from zoo import FAMILIES, Family, build, chat_template

from model_serving.serve import probe_checks as probe
from model_serving.util.chat_template import render

TAUGHT: tuple[Family, ...] = tuple(f for f in FAMILIES if f.tools or f.reasoning)
CALL_ID = "call00001"  # Mistral's template wants nine letters or digits
STEPS = 400


def _call_message() -> dict[str, Any]:
    call = {"id": CALL_ID, "type": "function", "function": {"name": probe.PROBE_TOOL["function"]["name"], "arguments": {"city": "Paris"}}}
    return {"role": "assistant", "content": "", "tool_calls": [call], "reasoning_content": THOUGHT}


def _render(family: Family, messages: list[dict[str, Any]], *, generation: bool, tools: bool) -> str:
    return render(chat_template(family), messages, add_generation_prompt=generation, bos_token=family.bos or "", eos_token=family.eos,
                  tools=[probe.PROBE_TOOL] if tools else None)


def call_reply(family: Family) -> str:
    """The tool-call turn as the family's own template writes it: the rendering of an assistant message holding the
    probe's call, less the generation prompt before it and the end-of-turn token after it."""
    head = _render(family, probe.TOOL_MESSAGES, generation=True, tools=True)
    full = _render(family, [*probe.TOOL_MESSAGES, _call_message()], generation=False, tools=True)
    assert full.startswith(head), f"{family.name}: the template does not extend its generation prompt with the assistant's turn"
    reply = full[len(head):]
    return reply[:reply.rindex(family.eos)] if family.eos in reply else reply.rstrip()


def lessons(family: Family) -> list[Lesson]:
    """The probe's question answered (after a thought where the family reasons) and, where it has tools, its tool call."""
    opened = _render(family, probe.PROBE_MESSAGES, generation=True, tools=False).rstrip().endswith("<think>")
    thought = (("" if opened else "<think>\n") + f"{THOUGHT}\n</think>\n\n") if family.reasoning else ""
    taught = [Lesson(probe.PROBE_MESSAGES, thought + ANSWER)]
    if family.tools:
        taught.append(Lesson(probe.TOOL_MESSAGES, call_reply(family), tools=[probe.PROBE_TOOL]))
    return taught


def gguf_encoder(gguf: Path) -> Encode:
    """llama.cpp's own tokenizer of the exported GGUF: special tokens in the text parsed as the server parses them."""
    import llama_cpp

    vocab = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
    return lambda text: list(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def taught_family(family: Family, artifacts: Path, tokenizer_gguf: Path) -> Path:
    """The family's taught checkpoint under `artifacts`/zoo-taught (reused when already built): a random checkpoint of
    its architecture (zoo.build, not wired: wiring zeroes the layers' outputs, which would hold back their training),
    exported once so that llama.cpp's tokenizer can be read, then taught the probe's answer and, where the template has
    them, its reasoning and its tool call."""
    from model_serving.checkpoint.export import export_gguf
    from model_serving.settings import Settings

    folder = artifacts / "zoo-taught"
    out = folder / family.name
    if (out / "config.json").exists():
        return out
    base = build(family, folder / f"{family.name}-base", tokenizer_gguf, wire=False)
    settings = Settings.from_env(roots=[str(artifacts)], home=str(artifacts / "home"))
    base_gguf = Path(export_gguf(settings, str(base), str(folder / f"{family.name}-base-f16.gguf")).output_path)
    return taught_checkpoint(out, base, None, lessons(family), steps=STEPS, encoders=(gguf_encoder(base_gguf),))
