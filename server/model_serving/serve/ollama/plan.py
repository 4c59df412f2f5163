"""What registration sends to Ollama, decided without contacting it: template, stop tokens, num_ctx, Modelfile.

`build_modelfile` is the one place a Modelfile is built: `ollama modelfile` prints it, and
registration sends its fields to /api/create.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.checkpoint.inspect import generation_config_eos, source_chat_template
from model_serving.errors import InputError
from model_serving.gguf.info import GGUFInfo, read_gguf
from model_serving.jobs import Progress
from model_serving.serve.ollama import templates, versions
from model_serving.serve.ollama.modelfile import Modelfile
from model_serving.settings import Settings
from model_serving.util.paths import confine

TemplateMode = Literal["auto", "go", "gguf"]
# Ollama quantizes these itself, from F16/BF16 sources (general.file_type 1 or 32).
OLLAMA_QUANTIZE = {"q4_k_m": "q4_K_M", "q4_k": "q4_K_M", "q4_k_s": "q4_K_S", "q8_0": "q8_0"}
OLLAMA_QUANTIZES_FROM = ("F16", "BF16")  # what this path sends to Ollama's --quantize; F32 goes through our quantizer
DEFAULT_CTX_CAP = 32768
SAMPLING_DEFAULTS: dict[str, Any] = {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1}
Quantizer = Callable[[Path, str, Progress], Path]


class TemplateChoice(BaseModel):
    strategy: Literal["go", "gguf", "none"] = Field(description="go: our converted TEMPLATE; gguf: Ollama renders the GGUF's Jinja; none: no chat template")
    family: str
    reason: str
    notes: list[str] = Field(default_factory=list)
    supports_tools: bool = False
    tool_tag: str | None = Field(None, description="go: the text Ollama looks for before a tool call in the model's reply ('{': a reply must start with the call's JSON)")
    bos_left_to_runtime: bool = False
    double_bos_risk: bool = Field(False, description="the Jinja template writes a BOS and the GGUF asks the runtime for one too")


@dataclass
class ModelfilePlan:
    """The Modelfile and the decisions behind it; `jinja` is the reference template the checks compare with."""

    info: GGUFInfo
    modelfile: Modelfile
    choice: TemplateChoice
    go_template: str | None
    jinja: str | None
    stops: list[str]
    num_ctx: int
    num_ctx_reason: str


def build_modelfile(settings: Settings, gguf_path: Path, *, source_dir: Path | None = None, system: str | None = None, num_ctx: int | None = None,
                    template: TemplateMode = "go", server_version: str = "", local: bool = True, adapter: Path | None = None,
                    messages: list[tuple[str, str]] | None = None, parameters: dict[str, Any] | None = None,
                    chat_template: str | None = None) -> ModelfilePlan:
    """The Modelfile registration sends for a GGUF on a server of `server_version` (local: its memory bounds num_ctx);
    `chat_template` (a user's Jinja) replaces the checkpoint's and the GGUF's."""
    gguf_path = confine(gguf_path, settings.roots, what="GGUF file")
    if source_dir is not None:
        source_dir = confine(source_dir, settings.roots, what="checkpoint folder")
    info = read_gguf(gguf_path)
    choice, go_template, jinja = choose_template(info, source_dir, template, server_version or "0.0.0", given=chat_template)
    stops = templates.stop_tokens(info, jinja, generation_config_eos(source_dir))
    ctx, ctx_reason = choose_num_ctx(info, num_ctx, local=local)
    params: list[tuple[str, Any]] = [("num_ctx", ctx), *(("stop", s) for s in stops), *{**SAMPLING_DEFAULTS, **(parameters or {})}.items()]
    modelfile = Modelfile(from_=str(gguf_path), parameters=params, template=go_template, system=system, adapter=str(adapter) if adapter else None,
                          license=[info.license] if info.license else [], messages=list(messages or []))
    return ModelfilePlan(info=info, modelfile=modelfile, choice=choice, go_template=go_template, jinja=jinja, stops=stops,
                         num_ctx=ctx, num_ctx_reason=ctx_reason)


def choose_template(info: GGUFInfo, source_dir: Path | None, mode: TemplateMode, version: str,
                    given: str | None = None) -> tuple[TemplateChoice, str | None, str | None]:
    """Pick how Ollama will build prompts; return the choice, the Go TEMPLATE (or None) and the reference Jinja.

    A `given` template (the user's file) is the reference: it is converted, since the GGUF's own Jinja is another one."""
    source = given or source_chat_template(source_dir)
    jinja = source or info.chat_template
    server_renders_gguf = versions.supports(version, versions.GGUF_TEMPLATE) if version else False
    if not jinja:
        if mode == "gguf":
            raise InputError(f"{Path(info.path).name} carries no chat template (tokenizer.chat_template).", "Re-export it from a checkpoint with a chat template, or pass --source-dir.")
        return TemplateChoice(strategy="none", family="generic", reason="neither the GGUF nor the checkpoint has a chat template: prompts are sent as written"), None, None
    family = templates.detect_family(jinja)
    tools = templates.uses_tools(jinja)
    double_bos = bool(info.add_bos_token and info.bos_token and _starts_with_bos(jinja, info))
    gguf_matches = info.chat_template is not None and (source is None or source.strip() == info.chat_template.strip())

    def gguf_choice(reason: str, notes: list[str] | None = None) -> TemplateChoice:
        return TemplateChoice(strategy="gguf", family=family, reason=reason, notes=notes or [], supports_tools=tools, double_bos_risk=double_bos)

    if mode == "gguf":
        if not server_renders_gguf:
            raise InputError(f"Ollama {version} cannot render a GGUF's Jinja template (needs {versions.shown(versions.GGUF_TEMPLATE)} or later).",
                             "Use --template go (the converted Go TEMPLATE), or upgrade Ollama.")
        if not gguf_matches:
            raise InputError("The GGUF's chat template is missing or differs from the checkpoint's.", "Use --template go, or re-export the GGUF.")
        return gguf_choice("requested"), None, jinja
    if mode == "auto" and server_renders_gguf and gguf_matches:
        return gguf_choice(f"Ollama {version} renders the GGUF's own Jinja template, which the GGUF carries: the prompt is the checkpoint's by construction"), None, jinja
    try:
        conv = templates.convert(jinja, bos_token=info.bos_token or "", eos_token=info.eos_token or "", runtime_adds_bos=bool(info.add_bos_token))
    except templates.UnconvertibleTemplate as exc:
        if mode == "auto" and server_renders_gguf and info.chat_template and given is None:
            return gguf_choice(f"the Jinja template cannot be converted ({exc.construct}); Ollama {version} renders the GGUF's own template instead"), None, jinja
        raise
    reason = "requested" if mode == "go" else "the given chat template file, converted" if given else (f"Ollama {version or '(unknown)'} does not render GGUF Jinja templates" if not server_renders_gguf
                                               else "the checkpoint's template differs from the GGUF's")
    return TemplateChoice(strategy="go", family=conv.family, reason=reason, notes=conv.notes, supports_tools=tools, tool_tag=conv.tool_tag,
                          bos_left_to_runtime=conv.bos_left_to_runtime), conv.go_template, jinja


def _starts_with_bos(jinja: str, info: GGUFInfo) -> bool:
    from model_serving.util.chat_template import TemplateRejected, render

    try:
        text = render(jinja, [{"role": "user", "content": "x"}], add_generation_prompt=True, bos_token=info.bos_token or "", eos_token=info.eos_token or "")
    except TemplateRejected:
        return False
    return text.startswith(info.bos_token or "")


def choose_num_ctx(info: GGUFInfo, requested: int | None, *, local: bool) -> tuple[int, str]:
    """The context length to register: never past the trained length, never past what memory holds."""
    trained = info.context_length or 2048
    per_token = info.kv_bytes_per_token()
    fits = None
    if local and per_token:
        available = _available_memory()
        if available:
            fits = max(0, int((available * 0.8 - info.size_bytes) // per_token))
    if requested is not None:
        if requested < 1:
            raise InputError(f"num_ctx must be positive, not {requested}.", "Pass a context length such as 4096.")
        if requested > trained:
            raise InputError(f"num_ctx {requested} is larger than the model's trained context ({trained}).", f"Pass --num-ctx {trained} or less.")
        if fits is not None and requested > fits:
            raise InputError(f"num_ctx {requested} needs about {requested * per_token / 2**30:.1f} GiB of KV cache; only about {fits} tokens fit in free memory.",
                             f"Pass --num-ctx {fits // 256 * 256 or fits} or less, or free memory.")
        return requested, "requested"
    ctx = min(trained, DEFAULT_CTX_CAP)
    reason = f"the trained context ({trained})" if ctx == trained else f"capped at {DEFAULT_CTX_CAP} (trained: {trained})"
    if fits is not None and fits < ctx:
        ctx = max(256, fits // 256 * 256)
        reason = f"what fits in free memory (trained: {trained})"
    return ctx, reason


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def plan_quantize(info: GGUFInfo, path: Path, quantize: str | None, quantizer: Quantizer | None, progress: Progress) -> tuple[Path, str | None, Literal["ollama", "model-serving"] | None]:
    if not quantize:
        return path, None, None
    key = quantize.lower()
    if info.is_quantized:
        raise InputError(f"{path.name} is already quantized ({info.file_type}); re-quantizing loses quality.",
                         "Quantize from the F16/BF16 export instead, or register this file without --quantize.")
    if key in OLLAMA_QUANTIZE and info.file_type in OLLAMA_QUANTIZES_FROM:
        return path, OLLAMA_QUANTIZE[key], "ollama"
    if quantizer is None:
        raise InputError(f"Ollama cannot quantize to {quantize} from {info.file_type} (it does q4_K_M, q4_K_S and q8_0 from F16/BF16).",
                         f"Run `model-serving quantize {path.name} --type {quantize}` and register its output.")
    return quantizer(path, quantize, progress), None, "model-serving"
