"""What a chat template asks of an engine beyond plain chat: reasoning kept apart from the answer, and tool calls.

The template's own text decides, in this one table, which of vLLM's parsers reads the model's output
(`--reasoning-parser`, `--tool-call-parser`); llama.cpp's server reads both itself once it renders with Jinja
(`--reasoning-format deepseek` puts the reasoning in `reasoning_content`), and Ollama splits reasoning out when a
request asks `think`. A template the table does not know is served, and the probe and the deploy result say
which feature that engine leaves undone, instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError, nodes

from model_serving.util.chat_template import environment

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# (marker in the template, vLLM tool-call parser): the first marker found wins, so the more specific come first.
TOOL_PARSERS: tuple[tuple[str, str], ...] = (
    ("<tool_call>", "hermes"),  # Qwen 2.5/3, QwQ, Hermes 2/3, SmolLM3
    ("[TOOL_CALLS]", "mistral"),
    ("<|tool_call|>", "granite"),  # Granite 3
    ("<｜tool▁calls▁begin｜>", "deepseek_v3"),
    ("<|tool_calls_section_begin|>", "kimi_k2"),
    ("<|start_header_id|>", "llama3_json"),  # Llama 3.1-3.3: a bare JSON object
)
# (marker, vLLM reasoning parser) for templates that think in <think>...</think>.
REASONING_PARSERS: tuple[tuple[str, str], ...] = (
    ("<|start_of_role|>", "granite"),  # Granite 3.x thinking
    ("<｜Assistant｜>", "deepseek_r1"),  # DeepSeek-R1 distills: the prompt opens <think>, the model only closes it
    ("<|im_start|>", "qwen3"),  # Qwen3, QwQ, SmolLM3: no close tag means no reasoning
)
DEFAULT_REASONING_PARSER = "deepseek_r1"


@dataclass(frozen=True)
class ChatFeatures:
    """The template's reasoning and tool support, and how each engine is told to parse them."""

    reasoning: bool = False
    tools: bool = False
    reasoning_parser: str | None = None
    tool_parser: str | None = None
    vllm_reasoning_gap: str | None = None

    def vllm_argv(self) -> list[str]:
        """vLLM's server options that make it hand back reasoning and tool calls apart from the answer."""
        argv = ["--reasoning-parser", self.reasoning_parser] if self.reasoning_parser else []
        if self.tool_parser:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_parser]
        return argv

    def unsupported(self, engine: str) -> list[str]:
        """What this engine cannot do for this template, in the words the probe and the deploy result use."""
        if engine != "vllm":
            return []
        missing = [f"reasoning: not separated by {engine} for this template ({self.vllm_reasoning_gap})"] if self.vllm_reasoning_gap else []
        if self.tools and not self.tool_parser:
            missing.append(f"tools: not supported by {engine} for this template (no tool-call parser matches its markers)")
        return missing


def renders_tools(template: str) -> bool:
    """Whether the template reads the `tools` variable (it renders a tool list)."""
    try:
        ast = environment().parse(template)
    except TemplateSyntaxError:
        return False
    return any(n.name == "tools" for n in ast.find_all(nodes.Name))


def thinks(template: str) -> bool:
    return THINK_OPEN in template and THINK_CLOSE in template


def _first(template: str, table: tuple[tuple[str, str], ...]) -> str | None:
    return next((parser for marker, parser in table if marker in template), None)


def chat_features(template: str | None, vocab: Collection[str] | None = None) -> ChatFeatures:
    """The features of a chat template; `vocab` (the tokenizer's tokens, when known) decides whether vLLM can see the tags.

    vLLM's reasoning parsers find `<think>`/`</think>` as single tokens and refuse to start otherwise.
    """
    if not template:
        return ChatFeatures()
    reasoning, tools = thinks(template), renders_tools(template)
    gap = parser = None
    if reasoning:
        parser = _first(template, REASONING_PARSERS) or DEFAULT_REASONING_PARSER
        if vocab is not None and not {THINK_OPEN, THINK_CLOSE} <= set(vocab):
            gap, parser = "the tokenizer has no single <think> and </think> tokens, which vLLM's parser needs", None
    return ChatFeatures(reasoning=reasoning, tools=tools, reasoning_parser=parser, tool_parser=_first(template, TOOL_PARSERS) if tools else None,
                        vllm_reasoning_gap=gap)


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer) of text that still holds its <think> block (an engine that did not split it).

    A text with a close tag and no open tag thought from its start (the prompt opened the block).
    """
    if THINK_CLOSE not in text:
        return ("", text) if THINK_OPEN not in text else (text.split(THINK_OPEN, 1)[1], text.split(THINK_OPEN, 1)[0])
    head, answer = text.split(THINK_CLOSE, 1)
    reasoning = head.split(THINK_OPEN, 1)[1] if THINK_OPEN in head else head
    return reasoning.strip(), answer.strip()
