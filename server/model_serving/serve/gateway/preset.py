"""The gateway's preset: every embedded model we registered, one llama.cpp router section each.

llama.cpp's router reads an INI file (`--models-preset`): a section per model id with `model = PATH`
and any server option as a key. We generate it from the engine registry, so the gateway serves
exactly the registered models under their names (not a name served by replicas: see `entries`); an adapter
served on its base's engine becomes a section of its own (the base's `model` plus `lora`). That instance is a second process: it maps the
same GGUF (the page cache shares the weights) but has its own KV cache and compute buffers, and it
counts as one model against the router's `--models-max`.

The file is written whole (temporary name, then rename), and a running router re-reads it on
`GET /models?reload=1`. This module sits below `engine.py` (whose stop calls `sync`), so it starts
nothing; `router.py` starts and stops the router.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from pydantic import BaseModel, Field

from model_serving.serve import registry
from model_serving.serve.registry import ServedModel
from model_serving.settings import Settings

RELOAD_TIMEOUT_S = 10.0
TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.IGNORECASE)  # common/preset.cpp's canonical_tag
UNSAFE = ("\n", "\r", ";", "#")  # would end or comment out an INI value


class PresetEntry(BaseModel):
    """One model id the gateway serves, and the settings its instance loads with."""

    name: str
    gguf_path: str
    lora: str | None = Field(None, description="An adapter on the base GGUF: its own instance")
    adapter_of: str | None = None
    ctx_size: int
    parallel: int
    threads: int
    chat_template_file: str | None = Field(None, description="The template the model was served with instead of its GGUF's")


def router_id(name: str) -> str:
    """The id the router gives a section: it rewrites the tag after the last ':' upper-case (`smol:q8` is `smol:Q8`)."""
    base, colon, tag = name.rpartition(":")
    if not colon:
        return name
    found = TAG.search(tag)
    return f"{base}:{(found.group(1) if found else tag).upper()}"


def entries(models: list[ServedModel]) -> tuple[list[PresetEntry], list[str]]:
    """The sections for the registered embedded models (vLLM serves checkpoints, not GGUFs), and what was left out and why."""
    found: dict[str, PresetEntry] = {}
    skipped: list[str] = []
    for m in sorted(models, key=lambda m: m.started_at):
        if m.router:  # server-models.cpp proxies only to instances it spawned itself: no section can name a URL
            skipped.append(f"{m.name}: {len(m.replicas)} replicas behind vllm-router stay on their own URL {m.base_url}/v1 "
                           "(llama.cpp's router mode routes only to instances it starts, not to a running server)")
            continue
        if m.engine != "embedded":
            continue
        common = {"gguf_path": m.source, "ctx_size": m.ctx_size, "parallel": m.parallel, "threads": m.threads,
                  "chat_template_file": m.chat_template_file}  # the gateway's instance must prompt as the model's own engine does
        for entry in [PresetEntry(name=m.name, **common),
                      *(PresetEntry(name=a.name, lora=a.source, adapter_of=m.name, **common) for a in m.adapters)]:
            if router_id(entry.name) in found:
                taken = found[router_id(entry.name)]
                skipped.append(f"{entry.name}: the router's id {router_id(entry.name)} is taken by {taken.adapter_of or 'a model'} {taken.name}")
            elif any(c in entry.gguf_path + (entry.lora or "") + (entry.chat_template_file or "") for c in UNSAFE):
                skipped.append(f"{entry.name}: its path holds one of ; # or a line break, which the preset file cannot carry")
            else:
                found[router_id(entry.name)] = entry
    return list(found.values()), skipped


def render(items: list[PresetEntry], keep_alive_s: int) -> str:
    """The INI text: shared settings in [*] (what our per-model engines run with), then one section per model."""
    lines = ["version = 1", "", "[*]", "host = 127.0.0.1", "jinja = true", "reasoning-format = deepseek", "metrics = true", "cont-batching = true",
             f"sleep-idle-seconds = {keep_alive_s}", "load-on-startup = false", "stop-timeout = 10"]
    for e in items:
        lines += ["", f"[{e.name}]", f"model = {e.gguf_path}", *([f"lora = {e.lora}"] if e.lora else []),
                  *([f"chat-template-file = {e.chat_template_file}"] if e.chat_template_file else []),
                  f"c = {e.ctx_size}", f"parallel = {e.parallel}", f"threads = {e.threads}", f"threads-batch = {e.threads}"]
    return "\n".join(lines) + "\n"


def write(settings: Settings, keep_alive_s: int) -> tuple[list[PresetEntry], list[str]]:
    items, skipped = entries(registry.list_models(settings))
    registry.write_atomic(registry.gateway_path(settings, ".ini"), render(items, keep_alive_s))
    return items, skipped


def reload(base_url: str, *, timeout_s: float = RELOAD_TIMEOUT_S) -> bool:
    """Ask a running router to re-read the preset: an added model is listed (unloaded), a removed one unloaded and dropped."""
    try:
        return httpx.get(f"{base_url}/models", params={"reload": "1"}, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def sync(settings: Settings, *, stop: Callable[[int], None] | None = None) -> None:
    """Rewrite a gateway's preset from the registry and reload it; with `stop`, a gateway left with no model is stopped."""
    record = registry.load_gateway(settings)
    if record is None or record.state != "running":
        return
    items, _ = write(settings, record.keep_alive_s)
    if not items and stop is not None:  # nothing behind the one endpoint: it starts again with the next model
        stop(record.pid)
        record.state = "stopped"
        registry.save_gateway(settings, record)
        return
    reload(record.base_url)
