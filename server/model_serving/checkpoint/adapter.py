"""What a peft LoRA adapter folder holds, from its adapter_config.json and weight headers (no torch).

inspect.py reads the files (with its size bounds) and hands the parsed data here; the merge
(checkpoint/lora.py) uses the same details to refuse a bad adapter before loading anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from model_serving.errors import InputError
from model_serving.util.paths import confine

# Imported inside functions: huggingface_hub, about a second to import, only to find a Hub repo in the local cache.

_RESAVE = "Save the adapter again with peft's save_pretrained (adapter_config.json and adapter_model.safetensors)."
# A LoRA weight's key names its module: ...<module>.lora_A.weight / .lora_B.weight (optionally .<adapter name>.)
LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[A-Za-z0-9_]+)?\.weight$")
FULL_MODULES = ("embed_tokens", "lm_head", "wte", "word_embeddings", "embed_out")


class AdapterDetails(BaseModel):
    peft_type: str
    base_model: str | None = None
    rank: int
    alpha: float
    target_modules: list[str] = []
    modules_to_save: list[str] = []
    full_weights: list[str] = []  # tensors saved whole, not as a low-rank delta (embeddings, lm_head, modules_to_save)
    lora_modules: int = 0
    adapter_bytes: int = 0
    has_tokenizer: bool = False
    has_chat_template: bool = False
    tokenizer_vocab_size: int | None = None
    added_tokens: int | None = None
    base_path: str | None = None
    base_available: bool = False
    merged_bytes: int | None = None
    base_plus_adapter_bytes: int | None = None


def malformed(why: str) -> InputError:
    return InputError(f"adapter_config.json is malformed: {why}.", _RESAVE)


def _names(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise malformed(f"{key} is neither a module name nor a list of names")


def parse_adapter_config(cfg: dict[str, Any]) -> AdapterDetails:
    """Validate the fields a merge or conversion relies on; InputError naming the first bad one."""
    peft_type = cfg.get("peft_type")
    if peft_type not in ("LORA", "lora"):
        raise malformed(f"peft_type is {peft_type!r}, not 'LORA'" if peft_type is not None else "it has no peft_type")
    rank, alpha = cfg.get("r"), cfg.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank <= 65536:
        raise malformed(f"r (the rank) is {rank!r}, not a positive integer")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise malformed(f"lora_alpha is {alpha!r}, not a positive number")
    targets = _names(cfg.get("target_modules"), "target_modules")
    if not targets:
        raise malformed("target_modules is empty")
    base = cfg.get("base_model_name_or_path")
    return AdapterDetails(peft_type="LORA", base_model=base if isinstance(base, str) and base else None, rank=rank, alpha=float(alpha),
                          target_modules=targets, modules_to_save=_names(cfg.get("modules_to_save"), "modules_to_save"))


def module_of(key: str) -> str:
    """A weight key without peft's prefix: the name the base checkpoint uses."""
    return key.removeprefix("base_model.model.")


def add_weights(details: AdapterDetails, header: dict[str, Any]) -> dict[str, dict[str, list[int]]]:
    """Record full and low-rank tensors; return {module: {"A": shape, "B": shape}} for shape checks."""
    pairs: dict[str, dict[str, list[int]]] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        match = LORA_KEY.match(key)
        if match:
            pairs.setdefault(match["module"], {})[match["which"]] = entry["shape"]
        else:
            details.full_weights.append(module_of(key))
    details.lora_modules = len(pairs)
    if not pairs:
        raise InputError("The adapter's weights hold no LoRA tensors (no *.lora_A / *.lora_B).", _RESAVE)
    return pairs


def saves_full_embeddings(details: AdapterDetails) -> list[str]:
    """Tensors that the GGUF-adapter path cannot carry: embeddings or output heads saved whole."""
    named = details.full_weights + details.modules_to_save
    return sorted({n for n in named if any(part in n.split(".") for part in FULL_MODULES)})


def shape_mismatches(pairs: dict[str, dict[str, list[int]]], base_shapes: dict[str, list[int]]) -> list[str]:
    """Modules whose LoRA shapes do not fit the base: B @ A must have the base weight's [out, in] shape."""
    bad: list[str] = []
    for module, ab in sorted(pairs.items()):
        want = base_shapes.get(f"{module}.weight")
        a, b = ab.get("A"), ab.get("B")
        if want is None:
            bad.append(f"{module} (not in the base)")
        elif a is None or b is None or len(a) != 2 or len(b) != 2 or [b[0], a[1]] != list(want[:2]):
            bad.append(f"{module} (adapter {b and b[0]}x{a and a[1]}, base {'x'.join(map(str, want))})")
    return bad


def find_base(settings: Any, base: str | None, named: str | None) -> Path | None:
    """The base folder: `base` (a folder in the roots, or a Hub id), else the adapter's own base id; local files only."""
    for candidate in (base, named):
        if not candidate:
            continue
        if Path(candidate).expanduser().is_dir() or candidate.startswith(("/", ".", "~")):
            return confine(candidate, settings.roots, what="base model folder")
        cached = _hub_cache(candidate)
        if cached is not None:
            return cached
    return None


def _hub_cache(repo_id: str) -> Path | None:
    """A Hub repo's snapshot in the local Hugging Face cache, never a download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except (HFValidationError, OSError, ValueError):  # not cached (LocalEntryNotFoundError is an OSError), or not a repo id
        return None
    return path if (path / "config.json").is_file() else None
