"""Register a GGUF with Ollama over its REST API, verify what it stored, and probe the result.

Steps: read the GGUF (and the source checkpoint, when given) -> choose the template (the GGUF's own
Jinja on servers that render it, else our Go conversion) -> stop tokens, num_ctx, Modelfile ->
upload the blob (HEAD first; sha256 streamed) -> /api/create with `files` -> /api/show to confirm
what Ollama stored -> probe and template check. If any step after the upload fails, the model
name is put back the way it was (removed, or restored from a backup copy when overwriting).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.serve.ollama import names, templates, versions
from model_serving.serve.ollama.client import ModelNotFound, OllamaClient
from model_serving.serve.ollama.fidelity import CONVERSATIONS, FidelityReport, GoRenderer, check_live, check_rendered, to_ollama_messages
from model_serving.serve.ollama.gguf_info import GGUFInfo, generation_config_eos, read_gguf, source_chat_template
from model_serving.serve.ollama.modelfile import Modelfile
from model_serving.serve.ollama.probe import PROBE_MESSAGES, ProbeResult, expected_tokens, gguf_tokenizer, probe_model
from model_serving.settings import Settings, is_loopback_url
from model_serving.util.paths import confine

TemplateMode = Literal["auto", "go", "gguf"]
# Ollama quantizes these itself, from F16/BF16 sources (general.file_type 1 or 32).
OLLAMA_QUANTIZE = {"q4_k_m": "q4_K_M", "q4_k": "q4_K_M", "q4_k_s": "q4_K_S", "q8_0": "q8_0"}
UNQUANTIZED_FILE_TYPES = (1, 32)
DEFAULT_CTX_CAP = 32768
SAMPLING_DEFAULTS: dict[str, Any] = {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.1}
Quantizer = Callable[[Path, str, Progress], Path]


class TemplateChoice(BaseModel):
    strategy: Literal["go", "gguf", "none"] = Field(description="go: our converted TEMPLATE; gguf: Ollama renders the GGUF's Jinja; none: no chat template")
    family: str
    reason: str
    notes: list[str] = Field(default_factory=list)
    supports_tools: bool = False
    bos_left_to_runtime: bool = False
    double_bos_risk: bool = Field(False, description="the Jinja template writes a BOS and the GGUF asks the runtime for one too")


class StoredModel(BaseModel):
    """What /api/show reports after creation."""

    template: str
    parameters: dict[str, list[str]]
    system: str = ""
    capabilities: list[str] = Field(default_factory=list)
    family: str = ""
    quantization_level: str = ""
    parameter_size: str = ""


class OllamaRegistration(BaseModel):
    name: str
    host: str
    server_version: str
    gguf: str
    digest: str
    uploaded: bool = Field(description="false when the server already had the blob")
    quantized_by: Literal["ollama", "model-serving"] | None = None
    replaced_existing: bool = False
    modelfile: str
    num_ctx: int
    num_ctx_reason: str
    stop: list[str]
    template: TemplateChoice
    create_status: list[str]
    stored: StoredModel
    template_check: FidelityReport | None = None
    template_render_check: FidelityReport | None = None
    probe: ProbeResult


def register_gguf(
    settings: Settings, gguf_path: Path, name: str, *, source_dir: Path | None = None, quantize: str | None = None, overwrite: bool = False,
    system: str | None = None, num_ctx: int | None = None, progress: Progress | None = None, template: TemplateMode = "auto",
    adapter: Path | None = None, messages: list[tuple[str, str]] | None = None, parameters: dict[str, Any] | None = None,
    quantizer: Quantizer | None = None, go_renderer: GoRenderer | None = None, keep_on_failure: bool = False,
) -> OllamaRegistration:
    progress = progress or Progress()
    canonical = names.canonical(name)
    gguf_path = confine(gguf_path, settings.roots, what="GGUF file")
    if source_dir is not None:
        source_dir = confine(source_dir, settings.roots, what="checkpoint folder")
    if adapter is not None:
        adapter = confine(adapter, settings.roots, what="adapter file")
    progress.update(0.0, "reading the GGUF")
    info = read_gguf(gguf_path)
    if info.adapter:
        raise InputError(f"{gguf_path.name} is a LoRA adapter, not a model.", "Pass the base model GGUF and give the adapter with --adapter.")

    with OllamaClient(settings) as client:
        version = client.version()
        if not versions.supports(version, versions.CREATE_FILES):
            raise ServingError(f"Ollama {version} is too old: registering from an uploaded GGUF needs {versions.shown(versions.CREATE_FILES)} or later.",
                               "Upgrade Ollama (https://ollama.com/download) and run the command again.")
        existed = client.exists(canonical)
        if existed and not overwrite:
            raise InputError(f"Ollama already has a model named {canonical}.", "Choose another name, or pass --overwrite to replace it.")

        gguf_path, ollama_quantize, quantized_by = _plan_quantize(info, gguf_path, quantize, quantizer, progress.span(0.0, 0.05))
        if quantized_by == "model-serving":
            info = read_gguf(gguf_path)
        choice, go_template, jinja = _choose_template(info, source_dir, template, version)
        stops = templates.stop_tokens(info, jinja, generation_config_eos(source_dir))
        ctx, ctx_reason = choose_num_ctx(info, num_ctx, local=is_loopback_url(client.host))
        params: list[tuple[str, Any]] = [("num_ctx", ctx), *(("stop", s) for s in stops)]
        for key, value in {**SAMPLING_DEFAULTS, **(parameters or {})}.items():
            params.append((key, value))
        modelfile = Modelfile(
            from_=str(gguf_path), parameters=params, template=go_template, system=system, adapter=str(adapter) if adapter else None,
            license=[info.license] if info.license else [], messages=list(messages or []),
        )

        digest = _sha256(gguf_path, settings, progress.span(0.05, 0.3))
        uploaded = client.push_blob(gguf_path, digest, progress.span(0.3, 0.75))
        body: dict[str, Any] = {"model": canonical, "files": {gguf_path.name: digest}, **modelfile.create_fields()}
        if adapter is not None:
            adapter_digest = _sha256(adapter, settings, progress.span(0.75, 0.77))
            client.push_blob(adapter, adapter_digest, progress.span(0.77, 0.78))
            body["adapters"] = {adapter.name: adapter_digest}
        if ollama_quantize:
            body["quantize"] = ollama_quantize

        backup = _backup(client, canonical) if existed else None
        statuses: list[str] = []
        try:
            create_progress = progress.span(0.78, 0.85)

            def on_status(obj: dict[str, Any]) -> None:
                statuses.append(str(obj.get("status", "")))
                done = obj.get("completed") / obj["total"] if obj.get("total") and obj.get("completed") else None
                create_progress.update(done, f"ollama: {obj.get('status', '')}")

            client.create(body, on_status)
            progress.update(0.86, "checking what Ollama stored")
            stored = _verify_stored(client, canonical, choice, go_template, jinja, stops, ctx, system)
            progress.update(0.88, "probing the model")
            tokenize = gguf_tokenizer(gguf_path)
            expected = None
            if jinja:
                expected = expected_tokens(jinja, PROBE_MESSAGES, tokenize, bos=info.bos_token, eos=info.eos_token, add_bos=info.add_bos, system=system)
            probe = probe_model(settings, canonical, expected_prompt_tokens=expected, expect_tools=choice.supports_tools, client=client)
            live = render_check = None
            if jinja:
                progress.update(0.93, "comparing prompts with the Jinja template")
                live = check_live(_chat_counter(client, canonical), jinja, tokenize, bos=info.bos_token, eos=info.eos_token, add_bos=info.add_bos,
                                  template_uses_tools=choice.supports_tools, system=system)
            if go_renderer is not None and go_template is not None and jinja:
                render_check = check_rendered(jinja, go_template, go_renderer, bos=info.bos_token, eos=info.eos_token,
                                              bos_left_to_runtime=choice.bos_left_to_runtime, template_uses_tools=choice.supports_tools, notes=choice.notes)
            failed = [r for r in (live, render_check) if r is not None and not r.passed]
            if not probe.passed or failed:
                detail = "\n".join([*("probe: " + p for p in probe.problems), *(r.describe() for r in failed)])
                raise VerificationFailed(
                    f"{canonical} was created but does not behave like its checkpoint: {(probe.problems or ['its prompts differ from the Jinja template'])[0]}.",
                    "Check the stop tokens and template listed below; try --template go or --template gguf, or pass --num-ctx.",
                    detail=detail,
                )
        except BaseException:
            if not keep_on_failure:
                _restore(client, canonical, backup, existed)
            raise
        else:
            if backup:
                with contextlib.suppress(ServingError):
                    client.delete(backup)
        progress.update(1.0, f"registered {canonical}")
        return OllamaRegistration(
            name=canonical, host=client.host, server_version=version, gguf=str(gguf_path), digest=digest, uploaded=uploaded,
            quantized_by=quantized_by, replaced_existing=existed, modelfile=modelfile.render(), num_ctx=ctx, num_ctx_reason=ctx_reason,
            stop=stops, template=choice, create_status=statuses, stored=stored, template_check=live, template_render_check=render_check, probe=probe,
        )


def build_modelfile(settings: Settings, gguf_path: Path, *, source_dir: Path | None = None, system: str | None = None, num_ctx: int | None = None,
                    template: TemplateMode = "go", server_version: str = "") -> tuple[Modelfile, TemplateChoice]:
    """The Modelfile registration would use, without contacting Ollama (for `ollama modelfile`)."""
    gguf_path = confine(gguf_path, settings.roots, what="GGUF file")
    if source_dir is not None:
        source_dir = confine(source_dir, settings.roots, what="checkpoint folder")
    info = read_gguf(gguf_path)
    choice, go_template, jinja = _choose_template(info, source_dir, template, server_version or "0.0.0")
    stops = templates.stop_tokens(info, jinja, generation_config_eos(source_dir))
    ctx, _ = choose_num_ctx(info, num_ctx, local=True)
    params: list[tuple[str, Any]] = [("num_ctx", ctx), *(("stop", s) for s in stops), *SAMPLING_DEFAULTS.items()]
    return Modelfile(from_=str(gguf_path), parameters=params, template=go_template, system=system,
                     license=[info.license] if info.license else []), choice


def _choose_template(info: GGUFInfo, source_dir: Path | None, mode: TemplateMode, version: str) -> tuple[TemplateChoice, str | None, str | None]:
    """Pick how Ollama will build prompts; return the choice, the Go TEMPLATE (or None) and the reference Jinja."""
    source = source_chat_template(source_dir)
    jinja = source or info.chat_template
    server_renders_gguf = versions.supports(version, versions.GGUF_TEMPLATE) if version else False
    if not jinja:
        if mode == "gguf":
            raise InputError(f"{info.path.name} carries no chat template (tokenizer.chat_template).", "Re-export it from a checkpoint with a chat template, or pass --source-dir.")
        return TemplateChoice(strategy="none", family="generic", reason="neither the GGUF nor the checkpoint has a chat template: prompts are sent as written"), None, None
    family = templates.detect_family(jinja)
    tools = templates.uses_tools(jinja)
    double_bos = bool(info.add_bos and info.bos_token and _starts_with_bos(jinja, info))
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
        conv = templates.convert(jinja, bos_token=info.bos_token, eos_token=info.eos_token, runtime_adds_bos=info.add_bos)
    except templates.UnconvertibleTemplate as exc:
        if mode == "auto" and server_renders_gguf and info.chat_template:
            return gguf_choice(f"the Jinja template cannot be converted ({exc.construct}); Ollama {version} renders the GGUF's own template instead"), None, jinja
        raise
    reason = "requested" if mode == "go" else (f"Ollama {version or '(unknown)'} does not render GGUF Jinja templates" if not server_renders_gguf
                                               else "the checkpoint's template differs from the GGUF's")
    return TemplateChoice(strategy="go", family=conv.family, reason=reason, notes=conv.notes, supports_tools=tools,
                          bos_left_to_runtime=conv.bos_left_to_runtime), conv.go_template, jinja


def _starts_with_bos(jinja: str, info: GGUFInfo) -> bool:
    from model_serving.util.chat_template import TemplateRejected, render

    try:
        text = render(jinja, [{"role": "user", "content": "x"}], add_generation_prompt=True, bos_token=info.bos_token, eos_token=info.eos_token)
    except TemplateRejected:
        return False
    return text.startswith(info.bos_token)


def choose_num_ctx(info: GGUFInfo, requested: int | None, *, local: bool) -> tuple[int, str]:
    """The context length to register: never past the trained length, never past what memory holds."""
    trained = info.context_length or 2048
    per_token = info.kv_bytes_per_token()
    fits = None
    if local and per_token:
        available = _available_memory()
        if available:
            fits = max(0, int((available * 0.8 - info.size) // per_token))
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


def _plan_quantize(info: GGUFInfo, path: Path, quantize: str | None, quantizer: Quantizer | None, progress: Progress) -> tuple[Path, str | None, Literal["ollama", "model-serving"] | None]:
    if not quantize:
        return path, None, None
    key = quantize.lower()
    if info.file_type not in UNQUANTIZED_FILE_TYPES + (0,):
        raise InputError(f"{path.name} is already quantized ({info.file_type_name}); re-quantizing loses quality.",
                         "Quantize from the F16/BF16 export instead, or register this file without --quantize.")
    if key in OLLAMA_QUANTIZE and info.file_type in UNQUANTIZED_FILE_TYPES:
        return path, OLLAMA_QUANTIZE[key], "ollama"
    if quantizer is None:
        raise InputError(f"Ollama cannot quantize to {quantize} from {info.file_type_name} (it does q4_K_M, q4_K_S and q8_0 from F16/BF16).",
                         f"Run `model-serving quantize {path.name} --type {quantize}` and register its output.")
    return quantizer(path, quantize, progress), None, "model-serving"


def _sha256(path: Path, settings: Settings, progress: Progress) -> str:
    """sha256 of a file, streamed with progress; remembered by (path, size, mtime) so re-runs skip it."""
    stat = path.stat()
    cache_file = settings.state_dir / "ollama-digests.json"
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    if key in cache:
        progress.update(1.0, "digest known")
        return cache[key]
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            done += len(chunk)
            progress.update(done / stat.st_size if stat.st_size else 1.0, f"hashing {done >> 20}/{stat.st_size >> 20} MiB")
    value = f"sha256:{digest.hexdigest()}"
    cache[key] = value
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, cache_file)
    return value


def _verify_stored(client: OllamaClient, name: str, choice: TemplateChoice, go_template: str | None, jinja: str | None, stops: list[str],
                   ctx: int, system: str | None) -> StoredModel:
    info = client.show(name)
    params = info.parameter_values()
    problems = []
    if choice.strategy == "go" and info.template != go_template:
        problems.append("the stored TEMPLATE differs from the one sent")
    if choice.strategy == "gguf" and (not info.template or info.template.strip() != (jinja or "").strip()):
        problems.append("Ollama does not show the GGUF's chat template, so it will not use it")
    missing = [s for s in stops if s not in params.get("stop", [])]
    if missing:
        problems.append(f"stop tokens missing: {missing}")
    if params.get("num_ctx", [None])[0] not in (str(ctx), ctx):
        problems.append(f"num_ctx is {params.get('num_ctx')}, expected {ctx}")
    if system is not None and info.system != system:
        problems.append("the SYSTEM message differs")
    if problems:
        raise VerificationFailed(f"Ollama stored {name} differently from what was sent: {problems[0]}.",
                                 "Check the server version (`model-serving ollama version`) and run again with --overwrite.", detail="; ".join(problems))
    return StoredModel(template=info.template, parameters=params, system=info.system, capabilities=info.capabilities, family=info.details.family,
                       quantization_level=info.details.quantization_level, parameter_size=info.details.parameter_size)


def _chat_counter(client: OllamaClient, name: str) -> Callable[[Any], int]:
    def count(conv: Any) -> int:
        client.unload(name)  # a cached prefix would lower prompt_eval_count
        result = client.chat(name, to_ollama_messages(conv.messages), tools=conv.tools, options={"num_predict": 1, "temperature": 0})
        return result.prompt_eval_count

    return count


def _backup(client: OllamaClient, name: str) -> str:
    backup = f"{name.split(':')[0]}:backup-{secrets.token_hex(4)}"
    client.copy(name, backup)
    return backup


def _restore(client: OllamaClient, name: str, backup: str | None, existed: bool) -> None:
    """Put the name back as it was: the previous model restored, or no model at all."""
    with contextlib.suppress(ServingError):
        if backup:
            client.copy(backup, name)
            client.delete(backup)
        elif not existed:
            with contextlib.suppress(ModelNotFound):
                client.delete(name)


__all__ = ["OllamaRegistration", "ProbeResult", "TemplateChoice", "build_modelfile", "choose_num_ctx", "register_gguf", "CONVERSATIONS"]
