"""Register a GGUF with Ollama over its REST API, verify what it stored, and probe the result.

Steps: read the GGUF -> plan the Modelfile (`plan.build_modelfile`: template, stop tokens,
num_ctx) -> upload the blob (HEAD first; sha256 streamed) -> /api/create with `files` -> check
what Ollama stored, probe and compare prompts (`verify.prove`). If any step after the upload
fails, the model name is put back the way it was (removed, or restored from a backup copy when
overwriting).
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError
from model_serving.gguf.adapter import check_lora
from model_serving.gguf.info import read_gguf
from model_serving.jobs import Progress
from model_serving.serve.ollama import names, versions
from model_serving.serve.ollama.client import ModelNotFound, OllamaClient
from model_serving.serve.ollama.fidelity import FidelityReport, GoRenderer
from model_serving.serve.ollama.modelfile import Modelfile
from model_serving.serve.ollama.plan import Quantizer, TemplateChoice, TemplateMode, build_modelfile, plan_quantize
from model_serving.serve.ollama.verify import StoredModel, prove
from model_serving.serve.probe_checks import ProbeResult
from model_serving.settings import Settings, is_loopback_url
from model_serving.util.filehash import HashCache
from model_serving.util.paths import confine


class OllamaRegistration(BaseModel):
    """What registration sent and what Ollama stored; the probe comes beside it (see `register_gguf`)."""

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


def register_gguf(
    settings: Settings, gguf_path: Path, name: str, *, source_dir: Path | None = None, quantize: str | None = None, overwrite: bool = False,
    system: str | None = None, num_ctx: int | None = None, progress: Progress | None = None, template: TemplateMode = "auto",
    adapter: Path | None = None, messages: list[tuple[str, str]] | None = None, parameters: dict[str, Any] | None = None,
    quantizer: Quantizer | None = None, go_renderer: GoRenderer | None = None, keep_on_failure: bool = False, chat_template: str | None = None,
) -> tuple[OllamaRegistration, ProbeResult]:
    """Create `name` on Ollama from a GGUF so it chats as its checkpoint does (or as `chat_template`, a user's Jinja, says);
    refuse (and undo) when it does not."""
    progress = progress or Progress()
    canonical = names.canonical(name)
    gguf_path, source_dir, adapter = _confined(settings, gguf_path, source_dir, adapter)
    progress.update(0.0, "reading the GGUF")
    info = read_gguf(gguf_path)
    if info.is_adapter:
        raise InputError(f"{gguf_path.name} is a LoRA adapter, not a model.", "Pass the base model GGUF and give the adapter with --adapter.")
    if adapter is not None:
        _check_adapter(info, adapter)
    with OllamaClient(settings) as client:
        version, existed = _check_server(client, canonical, overwrite)
        gguf_path, ollama_quantize, quantized_by = plan_quantize(info, gguf_path, quantize, quantizer, progress.span(0.0, 0.05))
        plan = build_modelfile(settings, gguf_path, source_dir=source_dir, system=system, num_ctx=num_ctx, template=template, server_version=version,
                               local=is_loopback_url(client.host), adapter=adapter, messages=messages, parameters=parameters,
                               chat_template=chat_template)
        if plan.choice.strategy == "none":  # Ollama would send prompts as written: no chat at all
            raise InputError(f"{gguf_path.name} has no chat template, and the checkpoint gives none: Ollama would send prompts as "
                             "written and the model would chat badly (typically repeating the prompt).",
                             "Pass a Jinja template (--chat-template FILE) or the checkpoint that has one (--source-dir), or serve it for "
                             "plain completions on the embedded engine (--completions).")
        body, digest, uploaded = _upload(client, settings, canonical, plan.modelfile, gguf_path, adapter, ollama_quantize, progress)
        backup = _backup(client, canonical) if existed else None
        try:
            statuses = _create(client, body, progress.span(0.78, 0.85))
            proof = prove(client, settings, canonical, plan, system=system, go_renderer=go_renderer, progress=progress)
        except BaseException:
            if not keep_on_failure:
                _restore(client, canonical, backup, existed)
            raise
        if backup:
            with contextlib.suppress(ServingError):
                client.delete(backup)
    progress.update(1.0, f"registered {canonical}")
    return OllamaRegistration(
        name=canonical, host=client.host, server_version=version, gguf=str(gguf_path), digest=digest, uploaded=uploaded, quantized_by=quantized_by,
        replaced_existing=existed, modelfile=plan.modelfile.render(), num_ctx=plan.num_ctx, num_ctx_reason=plan.num_ctx_reason, stop=plan.stops,
        template=plan.choice, create_status=statuses, stored=proof.stored, template_check=proof.live, template_render_check=proof.rendered,
    ), proof.probe


# Architectures whose LoRA adapters Ollama's ADAPTER applies (its import documentation); others need the merge.
OLLAMA_ADAPTER_ARCHS = frozenset({"llama", "mistral", "gemma", "gemma2", "gemma3"})


def _check_adapter(base: Any, adapter: Path) -> None:
    """The adapter is a GGUF LoRA of the base's architecture, and one Ollama can apply."""
    check_lora(base, adapter)
    merge = "Merge the adapter into its base instead (model-serving merge ADAPTER_DIR --base BASE_DIR), then register the merged GGUF."
    if base.architecture not in OLLAMA_ADAPTER_ARCHS:
        raise InputError(f"Ollama's ADAPTER does not take {base.architecture} adapters (it takes {', '.join(sorted(OLLAMA_ADAPTER_ARCHS))}).", merge)


def _confined(settings: Settings, gguf_path: Path, source_dir: Path | None, adapter: Path | None) -> tuple[Path, Path | None, Path | None]:
    return (confine(gguf_path, settings.roots, what="GGUF file"),
            confine(source_dir, settings.roots, what="checkpoint folder") if source_dir is not None else None,
            confine(adapter, settings.roots, what="adapter file") if adapter is not None else None)


def _check_server(client: OllamaClient, name: str, overwrite: bool) -> tuple[str, bool]:
    """The server's version (new enough to create from blobs) and whether `name` exists (only with overwrite)."""
    version = client.version()
    if not versions.supports(version, versions.CREATE_FILES):
        raise ServingError(f"Ollama {version} is too old: registering from an uploaded GGUF needs {versions.shown(versions.CREATE_FILES)} or later.",
                           "Upgrade Ollama (https://ollama.com/download) and run the command again.")
    existed = client.exists(name)
    if existed and not overwrite:
        raise InputError(f"Ollama already has a model named {name}.", "Choose another name, or pass replace (--replace) to replace it.")
    return version, existed


def _upload(client: OllamaClient, settings: Settings, name: str, modelfile: Modelfile, gguf_path: Path, adapter: Path | None,
            ollama_quantize: str | None, progress: Progress) -> tuple[dict[str, Any], str, bool]:
    """Push the GGUF (and adapter) blobs; return the /api/create body, the GGUF digest and whether bytes were sent."""
    digest = _sha256(gguf_path, settings, progress.span(0.05, 0.3))
    uploaded = client.push_blob(gguf_path, digest, progress.span(0.3, 0.75))
    body: dict[str, Any] = {"model": name, "files": {gguf_path.name: digest}, **modelfile.create_fields()}
    if adapter is not None:
        adapter_digest = _sha256(adapter, settings, progress.span(0.75, 0.77))
        client.push_blob(adapter, adapter_digest, progress.span(0.77, 0.78))
        body["adapters"] = {adapter.name: adapter_digest}
    if ollama_quantize:
        body["quantize"] = ollama_quantize
    return body, digest, uploaded


def _create(client: OllamaClient, body: dict[str, Any], progress: Progress) -> list[str]:
    statuses: list[str] = []

    def on_status(obj: dict[str, Any]) -> None:
        statuses.append(str(obj.get("status", "")))
        done = obj.get("completed") / obj["total"] if obj.get("total") and obj.get("completed") else None
        progress.update(done, f"ollama: {obj.get('status', '')}")

    client.create(body, on_status)
    return statuses


def _sha256(path: Path, settings: Settings, progress: Progress) -> str:
    """sha256 of a file, streamed with progress; the state folder's one hash cache remembers it (export and quantize fill it too)."""
    cache = HashCache(settings.state_dir)
    if (known := cache.get(path)) is not None:
        progress.update(1.0, "digest known")
        return f"sha256:{known}"

    def on_read(done: int, total: int) -> None:
        progress.update(done / total if total else 1.0, f"hashing {done >> 20}/{total >> 20} MiB")

    return f"sha256:{cache.sha256(path, on_read)}"


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
