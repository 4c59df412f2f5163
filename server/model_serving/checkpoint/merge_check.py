"""Everything a mergekit merge can refuse, refused before any work: each refusal names its cause and the next step.

The inputs are read defensively, from their own files only: config.json (architecture and the sizes that decide
tensor shapes) and the safetensors headers (every tensor's name, dtype and shape). Nothing is loaded into torch here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_serving.checkpoint.inspect import read_json, safetensors_header
from model_serving.errors import InputError
from model_serving.util.paths import confine
from model_serving.util.units import human_size

# The config fields that fix every tensor's shape: two inputs that differ on one cannot be merged tensor by tensor.
SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
NEEDS_BASE = frozenset({"ties", "dare_ties", "task_arithmetic"})
DENSITY_METHODS = frozenset({"ties", "dare_ties"})
DISK_MARGIN = 1.1  # the merged checkpoint is the size of one input at the merge dtype, plus its tokenizer and config


@dataclass(frozen=True)
class MergeInput:
    path: Path
    architectures: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    size_bytes: int


def read_input(path: Path, what: str) -> MergeInput:
    """One input's architecture, tensor shapes and weight size, or the InputError that says why it cannot be merged."""
    if not (path / "config.json").is_file():
        hint = " It is a LoRA adapter: merge it into its base first (method lora)." if (path / "adapter_config.json").is_file() else ""
        raise InputError(f"The {what} {path} is not a Hugging Face checkpoint: it has no config.json.{hint}",
                         "Pass checkpoint folders (config.json and *.safetensors), all fine-tunes of one base.")
    config = read_json(path / "config.json")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise InputError(f"The {what} {path} has no .safetensors weights.", "Save it again with save_pretrained(safe_serialization=True).")
    if config.get("quantization_config"):
        raise InputError(f"The {what} {path.name} is quantized: merging would add rounding errors, not fine-tunes.",
                         "Merge the 16-bit checkpoints and quantize the merge afterwards.")
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        for name, entry in safetensors_header(file).items():
            if name != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("shape"), list):
                shapes[name] = tuple(int(x) for x in entry["shape"])
    archs = config.get("architectures")
    architectures = tuple(str(a) for a in archs) if isinstance(archs, list) else ()
    return MergeInput(path, architectures, shapes, sum(f.stat().st_size for f in files))


def _differences(first: MergeInput, other: MergeInput) -> list[str]:
    if first.architectures != other.architectures:
        return [f"architecture {', '.join(other.architectures) or 'unknown'} vs {', '.join(first.architectures) or 'unknown'}"]
    out = [f"{name} is missing" for name in sorted(set(first.shapes) - set(other.shapes))]
    out += [f"{name} is extra" for name in sorted(set(other.shapes) - set(first.shapes))]
    out += [f"{name} {list(other.shapes[name])} vs {list(shape)}" for name, shape in sorted(first.shapes.items())
            if name in other.shapes and other.shapes[name] != shape]
    return out


def same_shapes(inputs: list[MergeInput]) -> None:
    """Refuse inputs whose architectures or tensor shapes differ from the first's (the base's, when there is one)."""
    first = inputs[0]
    for other in inputs[1:]:
        bad = _differences(first, other)
        if bad:
            more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise InputError(f"{other.path.name} does not match {first.path.name}: " + "; ".join(bad[:3]) + more + ".",
                             "Merge only fine-tunes of one base model (same architecture and sizes); for different bases, "
                             "fine-tune one base again instead.")


def _per_model(name: str, values: list[float] | None, count: int) -> None:
    if values is not None and len(values) not in (1, count):
        raise InputError(f"{len(values)} values of {name} for {count} models.", f"Give one {name} for all, or one per model ({count}).")


def method_rules(method: str, models: int, base: bool, t: float | None, weight: list[float] | None, density: list[float] | None) -> None:
    """The method's own rules: model counts, a base where it needs one, and which parameters it takes."""
    if method == "slerp" and models != 2:
        raise InputError(f"SLERP interpolates between exactly two models; {models} were given (counting --base).",
                         "Merge several fine-tunes with ties, dare_ties or linear, or pick two for slerp.")
    if method in NEEDS_BASE and not base:
        raise InputError(f"{method} merges the fine-tunes' differences from their base, and no base was given.",
                         "Pass the base model the fine-tunes were trained from with --base.")
    if models < 2:
        raise InputError(f"{method} needs at least two models in all (counting --base); {models} was given.", "Pass two or more fine-tunes.")
    if t is not None and method != "slerp":
        raise InputError(f"t is the SLERP interpolation factor; method {method} does not use it.", "Use --weight (and --density) instead.")
    if (weight is not None and method == "slerp") or not 0 <= (t or 0) <= 1:
        raise InputError("SLERP takes one t between 0 and 1, not per-model weights.", "Pass -t between 0 (the first model) and 1 (the second).")
    if density is not None and method not in DENSITY_METHODS:
        raise InputError(f"density applies to ties and dare_ties, not {method}.", "Drop --density, or use --method ties or dare_ties.")
    _per_model("weight", weight, models - (1 if base else 0))
    _per_model("density", density, models - (1 if base else 0))


def disk_room(output: Path, inputs: list[MergeInput]) -> int:
    """The bytes the merge will write (estimated from the largest input); InputError when the output's disk lacks them."""
    need = int(max(i.size_bytes for i in inputs) * DISK_MARGIN)
    parent = output.parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if free < need:
        raise InputError(f"The merge needs about {human_size(need)} on {parent} and only {human_size(free)} is free.",
                         "Free some space there, or write the merge elsewhere with -o.")
    return need


def resolve_inputs(roots: Any, models: list[str], base: str | None) -> tuple[list[Path], Path | None]:
    """The models' and base's folders, confined to the roots; a base also listed among the models counts once."""
    paths = [confine(m, roots, what="model folder") for m in models]
    base_path = confine(base, roots, what="base folder") if base else None
    if len(set(paths)) != len(paths):
        raise InputError("The same model is listed twice.", "List each fine-tune once.")
    return [p for p in paths if p != base_path], base_path
