"""The embedded engine's registry: one JSON record per served model under the state directory.

The CLI, the MCP server and a later session all read the same records. A record's file name is
the model name with ':' written as '%3A' ('%' cannot occur in a name), so the mapping is
injective: `m:1` and `m_1` are two records, never one.
The gateway (serve/gateway) keeps its record, preset and log under the stem '@gateway': no model
name starts with '@', so it is never a model's record.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError
from model_serving.settings import Settings

NAME = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,63}$")
GATEWAY = "@gateway"  # the gateway's file stem: a name starts with a letter or digit
WORKER_MODULE = "model_serving.serve.embedded.worker"
# What an engine process's command line names: a recycled pid names neither.
ENGINE_MARKERS = (WORKER_MODULE, "model_serving/serve/vllm/launcher.py",
                  "model_serving.serve.router.worker",  # the router in front of a name's replicas (serve/router)
                  "/llama-server\0")  # the natively compiled llama.cpp server (serve/embedded/native.py)


class ServedAdapter(BaseModel):
    """A LoRA adapter served on its base's engine under its own model name (the OpenAI `model` field picks it)."""

    name: str
    gguf_path: str = Field(description="the adapter GGUF (vllm: its folder)")
    differs_from_base: bool | None = Field(default=None, description="its greedy answer or logprobs differ from the base's")
    answer: str | None = None


class Replica(BaseModel):
    """One engine behind a router (serve/router): its own process, port and log, recorded inside the router's record."""

    base_url: str
    port: int
    pid: int
    log_path: str
    state: Literal["running", "dead"] = "running"
    rss_bytes: int | None = None


class GatewayRecord(BaseModel):
    """The one endpoint for every model: llama.cpp's server in router mode (serve/gateway), and what it was started with."""

    base_url: str
    port: int
    pid: int
    log_path: str
    preset_path: str
    started_at: str
    keep_alive_s: int
    models_max: int
    memory_budget_bytes: int
    largest_model_bytes: int | None = None
    state: Literal["running", "stopped", "dead"] = "running"
    on_demand: bool = Field(default=True, description="serve start / register start it; `serve gateway stop` turns this off")


def gateway_path(settings: Settings, suffix: str) -> Path:
    return directory(settings) / f"{GATEWAY}{suffix}"


def load_gateway(settings: Settings) -> GatewayRecord | None:
    try:
        record = GatewayRecord.model_validate_json(gateway_path(settings, ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.state == "running" and not alive(record.pid):
        record.state = "dead"
    return record


def save_gateway(settings: Settings, record: GatewayRecord) -> None:
    write_atomic(gateway_path(settings, ".json"), record.model_dump_json(indent=2))


class ServedModel(BaseModel):
    name: str
    gguf_path: str
    base_url: str = Field(description="OpenAI-compatible base: POST {base_url}/v1/chat/completions")
    port: int
    pid: int
    ctx_size: int
    parallel: int
    threads: int
    started_at: str
    log_path: str
    file_type: str | None = None
    has_chat_template: bool = False
    stop_tokens: list[str] = []
    state: Literal["running", "dead"] = "running"
    rss_bytes: int | None = Field(default=None, description="Resident memory of the engine process")
    adapters: list[ServedAdapter] = Field(default_factory=list, description="LoRA adapters, each served under its own name")
    engine_build: str | None = Field(default=None, description="Which llama.cpp build serves it, and why")
    engine: Literal["embedded", "vllm"] = Field(default="embedded", description="vllm: gguf_path is the checkpoint folder")
    router: str | None = Field(default=None, description="vllm-router policy when replicas serve this name; pid is the router's")
    replicas: list[Replica] = Field(default_factory=list, description="With router: the engines behind it")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a valid model name.", "Use lowercase letters, digits and . _ : - (at most 64, starting with a letter or digit).")
    return name


def directory(settings: Settings) -> Path:
    path = settings.state_dir / "engine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(name: str) -> str:
    """The file stem for a name; reversible, so two names never share a record."""
    return check_name(name).replace(":", "%3A")


def record_path(settings: Settings, name: str) -> Path:
    return directory(settings) / f"{key(name)}.json"


def log_path(settings: Settings, name: str) -> Path:
    return directory(settings) / f"{key(name)}.log"


def replica_log_path(settings: Settings, name: str, index: int) -> Path:
    return directory(settings) / f"{key(name)}@r{index}.log"  # '@' is not in a name: never another model's log


def save(settings: Settings, model: ServedModel) -> None:
    write_atomic(record_path(settings, model.name), model.model_dump_json(indent=2))


def write_atomic(record: Path, text: str) -> None:
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, record)  # readers never see half a record


def remove(settings: Settings, name: str) -> None:
    record_path(settings, name).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return any(marker.encode() in cmdline for marker in ENGINE_MARKERS)  # a recycled pid is not our engine


def rss(pid: int) -> int | None:
    """Resident memory of the engine process and its children (vLLM's engine core is a child of its server)."""
    total, stack = None, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total = (total or 0) + int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def list_models(settings: Settings) -> list[ServedModel]:
    models = []
    for file in sorted(directory(settings).glob("*.json")):
        if file.stem.startswith(GATEWAY):
            continue
        try:
            model = ServedModel.model_validate_json(file.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if not NAME.match(model.name):
            continue
        if file.stem != key(model.name):
            if not _migrate(settings, file, model.name):
                continue  # not a record this registry wrote under that name
        for served in [model, *model.replicas]:
            if alive(served.pid):
                served.rss_bytes = rss(served.pid)
            else:
                served.state = "dead"
        models.append(model)
    return models


def _migrate(settings: Settings, file: Path, name: str) -> bool:
    """Move a record written under the old lossy key (':' as '_') to its own key, so its process stays visible."""
    target = record_path(settings, name)
    if file.stem != name.replace(":", "_") or target.exists():
        return False
    os.replace(file, target)
    return True


def get_model(settings: Settings, name: str) -> ServedModel:
    for model in list_models(settings):
        if model.name == name:
            return model
    raise InputError(f"No model named {name!r} is served by the embedded engine.", "List them with `model-serving serve list`, or register one.")
