"""Where a deploy's model came from, for the card's `base_model`, and the Hugging Face files a publish can add:
the merged checkpoint or the LoRA adapter of a deploy made from an adapter (its manifest's merge step).

A deploy of a folder that `merge --method` wrote (mergekit) has the merge's record beside that folder
(`<folder>.merge.json`): its inputs are the card's base models, its relation `merge`, its config the recipe."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model_serving.checkpoint.export import REPO_ID
from model_serving.errors import InputError
from model_serving.settings import Settings
from model_serving.util.paths import confine

_CACHED = re.compile(r"models--([A-Za-z0-9][A-Za-z0-9._-]*)--([A-Za-z0-9][A-Za-z0-9._-]*)/snapshots/[0-9a-f]+/?$")
_NOT_SENT = {"README.md", ".gitattributes"}  # peft writes a README.md of its own; ours is the card
Include = Literal["merged", "adapter"]


@dataclass
class Lineage:
    base_model: str | list[str] | None = None  # a list for a merge of several models
    relation: Literal["quantized", "merge", "adapter"] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # a mergekit merge's record: config, inputs' sha256s, mergekit version
    merge: dict[str, Any] = field(default_factory=dict)  # the deploy's merge step summary (hashes, logit check), if any
    files: list[Path] = field(default_factory=list)  # the checkpoint or adapter files to send, if asked for
    include: Include | None = None


def hub_id(value: Any) -> str | None:
    """A Hub repo id, from an id or from a Hugging Face cache snapshot path; a local folder is no lineage."""
    text = str(value or "")
    cached = _CACHED.search(text)
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    return text if REPO_ID.match(text) and not Path(text).expanduser().exists() else None


def _merge_step(manifest: dict[str, Any]) -> dict[str, Any] | None:
    steps = (manifest.get("result") or {}).get("steps") or []
    return next((s for s in steps if isinstance(s, dict) and s.get("step") == "merge"), None)


def mergekit_record(settings: Settings, source: Any) -> dict[str, Any] | None:
    """The record `merge --method` wrote beside a local source folder, when it is one with a config and inputs."""
    try:
        folder = confine(str(source or ""), settings.roots, what="source") if source else None
        record = json.loads(folder.with_name(folder.name + ".merge.json").read_text(encoding="utf-8")) if folder and folder.is_dir() else None
    except (InputError, OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("config"), str) and isinstance(record.get("inputs"), list)
    return record if ok else None


def _adapter_config(adapter: Path) -> dict[str, Any]:
    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _adapter_dir(settings: Settings, raw: Any) -> Path | None:
    try:
        return confine(str(raw), settings.roots, what="adapter folder") if raw else None
    except InputError:  # moved or outside the roots now: no lineage read from it
        return None


def _folder(settings: Settings, raw: Any, what: str) -> Path:
    path = confine(str(raw or ""), settings.roots, must_exist=False, what=what) if raw else None
    if path is None or not path.is_dir():
        raise InputError(f"The deploy's {what} ({raw or 'not recorded'}) is not there any more.",
                         "Run the same deploy again (it rebuilds what is missing), then publish.")
    return path


def lineage(settings: Settings, manifest: dict[str, Any], include: Include | None) -> Lineage:
    """base_model and its relation; with `include`, the merged checkpoint's or the adapter's files."""
    step = _merge_step(manifest)
    if step is None:
        if include:
            raise InputError(f"This deploy was not made from a LoRA adapter, so it has no {include} checkpoint to publish.",
                             "Publish without include, or deploy ADAPTER_DIR --base BASE first and publish that deploy.")
        recipe = mergekit_record(settings, manifest.get("source"))
        if recipe:
            return _merged_from(recipe)
        base = hub_id(manifest.get("source"))
        return Lineage(base_model=base, relation="quantized" if base else None)
    summary = step.get("summary") or {}
    if summary.get("kind") == "mergekit":  # a deploy of a mergekit config: the recipe is its merge step's record
        return _mergekit_step(settings, step, summary, include)
    adapter = summary.get("adapter") or manifest.get("source")
    adapter_dir = _adapter_dir(settings, adapter)
    config = _adapter_config(adapter_dir) if adapter_dir else {}
    named = hub_id(config.get("base_model_name_or_path"))
    found = Lineage(base_model=named or hub_id(summary.get("base")), relation="adapter" if include == "adapter" else "merge",
                    merge=summary, include=include)
    if include == "adapter":
        folder = _folder(settings, adapter, "adapter folder")
        if named is None:
            raise InputError(f"{folder.name}/adapter_config.json names its base as {config.get('base_model_name_or_path')!r}, "
                             "which nobody pulling the adapter from the Hub can load.",
                             "Set base_model_name_or_path in adapter_config.json to the base's Hub repo id, then publish again.")
        found.files = _files(folder)
    elif include == "merged":
        found.files = _files(_folder(settings, step.get("output"), "merged checkpoint"))
    return found


def _merged_from(recipe: dict[str, Any]) -> Lineage:
    """A mergekit merge: its inputs that are Hub repos (or Hub cache snapshots) are the base models, its relation merge."""
    models = [m for m in (hub_id(i.get("path")) for i in recipe.get("inputs") or [] if isinstance(i, dict)) if m]
    return Lineage(base_model=models or None, relation="merge", recipe=recipe)


def _mergekit_step(settings: Settings, step: dict[str, Any], summary: dict[str, Any], include: Include | None) -> Lineage:
    if not isinstance(summary.get("config"), str) or not isinstance(summary.get("inputs"), list):
        raise InputError("The deploy's merge step records no mergekit config or inputs, so its recipe cannot be written.",
                         "Run the same deploy again (it reuses the merge and records it), then publish.")
    if include == "adapter":
        raise InputError("This deploy merged checkpoints with mergekit; it has no LoRA adapter to publish.",
                         "Publish without include, or with include merged for the merged checkpoint.")
    found = _merged_from(summary)
    if include == "merged":
        found.include, found.files = "merged", _files(_folder(settings, step.get("output"), "merged checkpoint"))
    return found


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_SENT)
