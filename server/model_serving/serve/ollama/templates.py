"""Turn a Hugging Face Jinja chat template into an Ollama Go TEMPLATE, and derive stop tokens.

The conversion (package `gotemplate`) walks Jinja's own parse tree (so trim_blocks/lstrip_blocks
and `{%-` trimming are already applied to the literal text) and writes the equivalent Go
text/template. Jinja's `add_generation_prompt` becomes "the last message is not the assistant's",
which is how Ollama decides whether the model starts a new turn. What depends on no conversation
(`strftime_now()`, constants, variables Ollama does not pass) is evaluated at registration.

What Go templates cannot express (macros, string methods on message text, lists built at render
time, ...) raises `UnconvertibleTemplate` naming the construct, its line and column. A few
constructs are carried over with a stated reading (`trim` on content, `is defined` read as
"non-empty", dropped `raise_exception` checks, sorted keys of tool properties); they are listed in
`Conversion.notes`, and the fidelity check shows whether they matter for a given conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from model_serving.errors import InputError
from model_serving.gguf.info import GGUFInfo
from model_serving.serve.ollama import tooltag
from model_serving.serve.ollama.gotemplate import UnconvertibleTemplate, convert_ast, go_string, literal_text
from model_serving.util.chat_template import environment

__all__ = ["Conversion", "UnconvertibleTemplate", "convert", "detect_family", "go_string", "literal_text", "stop_tokens", "uses_tools"]

Family = str  # chatml | llama3 | gemma | mistral | phi3 | generic

# Turn markers per family: the end of a turn, and the start of the next one, both make good stops.
_TURN_MARKERS: dict[Family, tuple[str, ...]] = {
    "chatml": ("<|im_end|>", "<|im_start|>"),
    "llama3": ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>"),
    "gemma": ("<end_of_turn>", "<start_of_turn>"),
    "mistral": ("[INST]", "[/INST]"),
    "phi3": ("<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|endoftext|>"),
    "generic": (),
}


@dataclass
class Conversion:
    go_template: str
    family: Family
    notes: list[str] = field(default_factory=list)
    bos_left_to_runtime: bool = False  # the template's BOS is dropped because the runtime adds one
    dated: bool = False  # strftime_now() was evaluated at registration: the TEMPLATE holds that day's date
    tool_tag: str | None = None  # the tag Ollama will look for before a tool call (None: the template writes no tool calls)


def detect_family(source: str) -> Family:
    if "<|im_start|>" in source:
        return "chatml"
    if "<|start_header_id|>" in source:
        return "llama3"
    if "<start_of_turn>" in source:
        return "gemma"
    if "<|user|>" in source and "<|end|>" in source:
        return "phi3"
    if "[INST]" in source:
        return "mistral"
    return "generic"


def uses_tools(source: str) -> bool:
    """Whether the template renders a tool list (it reads the `tools` variable)."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError:
        return False
    return any(n.name == "tools" for n in ast.find_all(nodes.Name))


def stop_tokens(info: GGUFInfo, template: str | None, extra_eos_ids: list[int] | None = None) -> list[str]:
    """Every string that ends a turn: EOS/EOT/EOM, generation_config's EOS list, and the family's turn markers."""
    stops: list[str] = []

    def add(text: str | None) -> None:
        if text and text not in stops:
            stops.append(text)

    for token_id in [*(info.special_token_ids.get(r) for r in ("eos", "eot", "eom")), *(extra_eos_ids or [])]:
        add(info.token(token_id))
    if template:
        for marker in _TURN_MARKERS[detect_family(template)]:
            if marker in template and (info.is_special(marker) or not info.vocab_size):
                add(marker)
    return stops


def convert(source: str, *, bos_token: str, eos_token: str, runtime_adds_bos: bool) -> Conversion:
    """Convert a Jinja chat template; UnconvertibleTemplate names what could not be carried over."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError as exc:
        raise InputError(f"The chat template is not valid Jinja: {exc.message} (line {exc.lineno}).", "Fix the template in tokenizer_config.json or the GGUF.") from None
    done = convert_ast(source, ast, bos=bos_token, eos=eos_token, runtime_adds_bos=runtime_adds_bos)
    go_template, tag = done.go_template, tooltag.jinja_tag(source, bos=bos_token, eos=eos_token)
    if tag is not None and tag != tooltag.FALLBACK and tooltag.ollama_tag(go_template) != tag:
        # Ollama looks for the tag in the TEMPLATE's first `if .ToolCalls`; without one it expects a reply that starts
        # with `{`, and a call written after the family's tag comes back as text.
        go_template = tooltag.declaration(tag) + go_template
    return Conversion(go_template, detect_family(source), done.notes, done.bos_dropped, done.dated, tag)


_SPACES = re.compile(r"\s+")


def summary_line(text: str, limit: int = 80) -> str:
    text = _SPACES.sub(" ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
