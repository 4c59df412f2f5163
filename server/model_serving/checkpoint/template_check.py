"""Is there a chat template a server can use? Asked of a source, or of a file the user gives, before any engine starts.

A GGUF without `tokenizer.chat_template` (a base model from a converter, say) makes llama.cpp fall back to
ChatML and Ollama to a bare prompt: the model answers a format it never saw, usually by repeating the prompt.
So the deploy plan reads the source's template (the GGUF's metadata, or the checkpoint's tokenizer_config.json /
chat_template.jinja), renders it once with a test conversation, and refuses when it is missing or unusable,
naming the three ways on: a template file, a checkpoint that has one, or plain completions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_serving.errors import InputError
from model_serving.util.paths import confine

MAX_TEMPLATE_BYTES = 256 * 1024  # published templates are under 20 KiB; a larger "template" is something else
TEST_CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Hello, who are you?"},
    {"role": "assistant", "content": "I am a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


@dataclass(frozen=True)
class TemplateFile:
    """A chat template the user gave: where it is, its text, and the sha256 of its bytes (recorded in the manifest)."""

    path: Path
    text: str
    sha256: str


def problem(text: str | None) -> str | None:
    """Why `text` cannot serve as a chat template (None: it renders the test conversation and keeps the last question)."""
    import jinja2

    from model_serving.util.chat_template import TemplateRejected, render

    if text is None or not text.strip():
        return "it has no chat template"
    try:
        prompt = render(text, TEST_CONVERSATION, add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
    except TemplateRejected as exc:
        return f"its chat template refuses a plain user/assistant conversation ({exc})"
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        return f"its chat template cannot be rendered ({type(exc).__name__}: {str(exc)[:200]})"
    if TEST_CONVERSATION[-1]["content"] not in prompt:
        return "its chat template drops the user's message from the prompt"
    return None


def next_steps(source: str) -> str:
    """The three ways on from a missing or unusable template, in the words of both faces."""
    return (f"Give a Jinja template with chat_template (--chat-template FILE); or deploy a checkpoint (or GGUF) of {source} "
            "that carries one (an -Instruct/-Chat release); or pass completions (--completions) to serve it for plain "
            "/v1/completions, not chat.")


def refuse(source: str, why: str) -> InputError:
    return InputError(f"{source}: {why}, so a server would fall back to a generic template and the model would chat badly "
                      "(typically repeating the prompt).", next_steps(source))


def load(path: str | Path, roots: Sequence[Path]) -> TemplateFile:
    """The user's template file: confined to the roots, size-bounded, UTF-8, and able to render a test conversation."""
    resolved = confine(path, roots, what="chat template file")
    if not resolved.is_file():
        raise InputError(f"The chat template {resolved} is not a file.", "Pass a Jinja file (for example chat_template.jinja).")
    size = resolved.stat().st_size
    if size > MAX_TEMPLATE_BYTES:
        raise InputError(f"The chat template {resolved} is {size} bytes; at most {MAX_TEMPLATE_BYTES} are read.",
                         "Pass the Jinja chat template itself (published ones are a few KiB).")
    raw = resolved.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"The chat template {resolved} is not UTF-8 text.", "Pass a Jinja text file.") from None
    if text.startswith("{") and '"chat_template"' in text[:200]:
        raise InputError(f"{resolved} looks like a JSON file holding a template, not the template itself.",
                         "Save the value of its chat_template field as a .jinja file and pass that.")
    if (why := problem(text)) is not None:
        raise InputError(f"The chat template {resolved} is not usable: {why.removeprefix('its chat template ')}.",
                         "Fix the Jinja (it must render messages with role and content and end with the generation prompt), "
                         "or pass completions (--completions) instead.")
    return TemplateFile(path=resolved, text=text, sha256=hashlib.sha256(raw).hexdigest())


def source_template(kind: str, path: Path | None) -> str | None:
    """The chat template a GGUF file or a checkpoint folder carries (None when it has none, or cannot be read here)."""
    if path is None:
        return None
    if kind == "gguf":
        from model_serving.gguf.header import read_header

        value = read_header(path).metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None
    from model_serving.checkpoint.inspect import chat_template

    return chat_template(path)[0] if path.is_dir() else None


def engine_template(roots: Sequence[Path], what: str, own: str | None, given: str | Path | None, completions: bool) -> Path | None:
    """The checked template file to give an engine (None: the model's own, or none for completions); refused before
    the engine starts when the model's own template is unusable and neither a file nor completions is asked for."""
    if given is not None and completions:
        raise InputError("chat_template and completions exclude each other: a template is for chat, completions serve without one.",
                         "Pass one of them: --chat-template FILE to chat, or --completions for plain /v1/completions.")
    if given is not None:
        return load(given, roots).path
    if not completions and (why := problem(own)) is not None:
        raise refuse(what, why)
    return None
