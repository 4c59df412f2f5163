"""A mergekit YAML config given as a deploy source, read defensively before anything runs.

The file is untrusted: it is read with a size limit and `yaml.safe_load`, and only the keys mergekit documents for the
methods we run are accepted (top level: merge_method, base_model, models, parameters, dtype; per model: model,
parameters), each parameter checked for its type and range. Every model path must be a local checkpoint folder under
the roots (a relative path is read from the config's own folder); mergekit's `path+lora` spelling is refused, as is
anything the `merge` verb refuses (checkpoint/merge_check.py). What runs is our own rewrite of the config, with the
resolved paths, so mergekit never sees a key or a path we did not check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from model_serving.checkpoint.merge_check import NEEDS_BASE
from model_serving.checkpoint.mergekit_merge import MergeSpec, checked_spec
from model_serving.errors import InputError
from model_serving.util.paths import confine

MAX_CONFIG_BYTES = 64 * 1024
MAX_MODELS = 8  # as the merge verb (requests.MAX_MERGE_MODELS)
MAX_GRADIENT = 64
CONFIG_SUFFIXES = (".yaml", ".yml")
TOP_KEYS = ("merge_method", "base_model", "models", "parameters", "dtype")
DTYPES = ("bfloat16", "float16", "float32")
# Per method: the parameters a model entry may carry (tensor parameters, also allowed at the top level as defaults)
# and those only the top level takes (mergekit's global parameters).
MODEL_PARAMS: dict[str, tuple[str, ...]] = {
    "slerp": (), "linear": ("weight",), "task_arithmetic": ("weight",), "ties": ("weight", "density"), "dare_ties": ("weight", "density")}
GLOBAL_PARAMS: dict[str, tuple[str, ...]] = {
    "slerp": ("t",), "linear": ("normalize",), **dict.fromkeys(("task_arithmetic", "ties", "dare_ties"), ("normalize", "lambda", "int8_mask", "rescale"))}
FLAGS = frozenset({"normalize", "int8_mask", "rescale"})
FRACTIONS = frozenset({"t", "density"})
_FILTER = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_NEXT = "Fix the config (docs/merge.md lists the keys a deploy accepts), or merge with `model-serving merge` and deploy its output."


def is_merge_config(path: Path) -> bool:
    return path.suffix.lower() in CONFIG_SUFFIXES


def _refuse(what: str, next_step: str = _NEXT) -> InputError:
    return InputError(f"The merge config {what}", next_step)


def _load(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise _refuse(f"{path.name} is {size} bytes; a merge config is at most {MAX_CONFIG_BYTES}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise _refuse(f"{path.name} is not valid YAML: {str(exc).splitlines()[0][:200]}.") from None
    if not isinstance(data, dict):
        raise _refuse(f"{path.name} is not a mapping of keys (merge_method, models, ...).")
    return data


def _unknown(keys: Any, allowed: Sequence[str], where: str) -> None:
    extra = sorted(str(k) for k in keys if k not in allowed)
    if "slices" in extra:
        raise _refuse("uses slices; a deploy merges whole models only.",
                      "Write the models form (models: - model: PATH), or run mergekit yourself and deploy its output folder.")
    if extra:
        raise _refuse(f"has {', '.join(repr(k[:40]) for k in extra[:5])} {where}; allowed there: {', '.join(allowed) or 'nothing'}.")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _refuse(f"gives {name} as {str(value)[:40]!r}; it must be a finite number.")
    if name in FRACTIONS and not 0 <= value <= 1:
        raise _refuse(f"gives {name} = {value}; it must lie between 0 and 1.")
    return float(value)


def _gradient(name: str, value: Any) -> float | list[float]:
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_GRADIENT:
            raise _refuse(f"gives {name} as a list of {len(value)} values; a gradient has 1 to {MAX_GRADIENT}.")
        return [_number(name, v) for v in value]
    return _number(name, value)


def _value(name: str, value: Any) -> Any:
    """A flag is a bool; a number a scalar, a gradient (list of numbers) or filtered values [{filter, value}, ...]."""
    if name in FLAGS:
        if not isinstance(value, bool):
            raise _refuse(f"gives {name} as {str(value)[:40]!r}; it must be true or false.")
        return value
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if len(value) > MAX_GRADIENT:
            raise _refuse(f"gives {len(value)} filtered values of {name}; at most {MAX_GRADIENT}.")
        out = []
        for item in value:
            _unknown(item, ("filter", "value"), f"in a filtered value of {name}")
            if "filter" in item and not (isinstance(item["filter"], str) and _FILTER.match(item["filter"])):
                raise _refuse(f"has a filter of {name} that is not a tensor name part (letters, digits, _ and .).")
            if "value" not in item:
                raise _refuse(f"has a filtered value of {name} without its value.")
            out.append({**({"filter": item["filter"]} if "filter" in item else {}), "value": _gradient(name, item["value"])})
        return out
    return _gradient(name, value)


def _params(raw: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _refuse(f"has parameters {where} that are not a mapping.")
    _unknown(raw, allowed, f"in the parameters {where}")
    return {str(k): _value(str(k), v) for k, v in raw.items()}


def _folder(raw: Any, here: Path, roots: Sequence[Path], what: str) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise _refuse(f"names a {what} that is not a path: {str(raw)[:60]!r}.")
    if "+" in raw:  # mergekit reads MODEL+LORA as a LoRA applied on the fly: not a checked input
        raise _refuse(f"names the {what} {raw!r}; the MODEL+LORA form is not deployed.",
                      "Merge the LoRA into its model first (`model-serving merge ADAPTER --base MODEL -o DIR`) and name DIR.")
    candidate = Path(raw).expanduser()
    path = confine(candidate if candidate.is_absolute() else here / candidate, roots, must_exist=False, what=f"{what} in the merge config")
    if not path.is_dir():
        raise _refuse(f"names the {what} {raw!r}, which is not a folder ({path}); a deploy never downloads a merge input.",
                      "Download it first (huggingface-cli download REPO --local-dir DIR) and name DIR in the config.")
    return path


def _method(data: dict[str, Any]) -> str:
    method = data.get("merge_method")
    if method not in MODEL_PARAMS:
        raise _refuse(f"has merge_method {str(method)[:40]!r}; a deploy runs {', '.join(MODEL_PARAMS)}.")
    return str(method)


def _models(data: dict[str, Any], method: str, here: Path, roots: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    entries = data.get("models")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_MODELS:
        raise _refuse(f"needs models: a list of 1 to {MAX_MODELS} entries (- model: PATH).")
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _refuse("has a models entry that is not a mapping (- model: PATH).")
        _unknown(entry, ("model", "parameters"), "in a models entry")
        out.append((_folder(entry.get("model"), here, roots, "model"), _params(entry.get("parameters"), MODEL_PARAMS[method], "of a model")))
    if len({p for p, _ in out}) != len(out):
        raise _refuse("lists the same model twice.", "List each fine-tune once.")
    return out


def _count_rules(method: str, models: list[Path], base: Path | None) -> None:
    """The method's own rules, in the config's words (the merge verb's, checkpoint/merge_check.method_rules, use flags)."""
    count = len(models) + (1 if base else 0)
    if method == "slerp" and count != 2:
        raise _refuse(f"asks slerp of {count} models (counting base_model); SLERP interpolates between exactly two.",
                      "Name two models for slerp, or use ties, dare_ties or linear for more.")
    if method in NEEDS_BASE and base is None:
        raise _refuse(f"asks {method}, which merges the fine-tunes' differences from their base, and names no base_model.",
                      "Add base_model: the folder of the base the fine-tunes were trained from.")
    if count < 2:
        raise _refuse(f"names {count} model in all; a merge needs at least two (counting base_model).", "Add the other fine-tunes.")


def read_merge_config(path: Path, roots: Sequence[Path]) -> MergeSpec:
    """The checked merge `path` describes; InputError (naming the key or path at fault) for anything not accepted."""
    data = _load(path)
    _unknown(data, TOP_KEYS, "at the top level")
    method = _method(data)
    here = path.parent
    entries = _models(data, method, here, roots)
    base = _folder(data["base_model"], here, roots, "base_model") if data.get("base_model") is not None else None
    if method == "slerp" and base is None:
        base = entries[0][0]  # as the merge verb: t = 0 is the first model
    models = [p for p, _ in entries if p != base]
    _count_rules(method, models, base)
    dtype = data.get("dtype", "bfloat16")
    if dtype not in DTYPES:
        raise _refuse(f"has dtype {str(dtype)[:40]!r}; use one of {', '.join(DTYPES)}.")
    top = _params(data.get("parameters"), (*GLOBAL_PARAMS[method], *MODEL_PARAMS[method]), "at the top level")
    if method == "slerp" and "t" not in top:
        raise _refuse("asks slerp without parameters: t (0 is base_model, 1 the other model).")
    config: dict[str, Any] = {"merge_method": method, "dtype": dtype}
    if base is not None:
        config["base_model"] = str(base)
    config["models"] = [{"model": str(p), **({"parameters": params} if params else {})} for p, params in entries]
    if base is not None and method == "slerp" and all(p != base for p, _ in entries):
        config["models"].insert(0, {"model": str(base)})
    if top:
        config["parameters"] = top
    _weights(method, entries, base, top)
    return checked_spec(method, models, base, config, dtype)


def _weights(method: str, entries: list[tuple[Path, dict[str, Any]]], base: Path | None, top: dict[str, Any]) -> None:
    """mergekit has no default weight: linear needs one for every model, the task-vector methods for every fine-tune."""
    if method == "slerp" or "weight" in top:
        return
    missing = [p.name for p, params in entries if "weight" not in params and (method == "linear" or p != base)]
    if missing:
        raise _refuse(f"gives no weight for {', '.join(missing[:3])}; {method} needs one per model (mergekit has no default).",
                      "Add parameters: {weight: 1.0} to each model entry, or weight once under the top-level parameters.")
