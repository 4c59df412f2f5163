"""The registry of served things: one JSON record per served name under the state directory, keyed by engine.

The CLI, the MCP server and a later session all read the same records; each names its engine (embedded, vllm,
replicas) and its `source` (a GGUF, or vLLM's checkpoint folder). A record's file name is the model name with ':'
written as '%3A' ('%' cannot occur in a name), so the mapping is injective: `m:1` and `m_1` are two records.
The gateway (serve/gateway) keeps its record, preset and log under the stem '@gateway': no model name starts
with '@', so it is never a model's record.

A start holds its name's claim (`claim`) from its first check to its record: two starts of one name at once give
one engine and one record, and the other a refusal that names the winner. The claim is an flock on `NAME.claim`,
so a claim whose owner died is free again at once.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator

from model_serving.errors import InputError, VerificationFailed
from model_serving.requests import SERVED_NAME_PATTERN
from model_serving.serve.engine_names import ServedEngine
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.processes import STOP_GRACE_S, alive, free_port, port_free, rss, terminate
from model_serving.settings import Settings
from model_serving.util import claim as util_claim
from model_serving.util.paths import write_text_atomic

NAME = re.compile(SERVED_NAME_PATTERN)  # a model name, or NAME@N: version N >= 2 served beside version 1 (lifecycle/)
GATEWAY = "@gateway"  # the gateway's file stem: a name starts with a letter or digit
SOURCE = AliasChoices("source", "gguf_path")  # records written before `source` named it gguf_path


class ServedAdapter(BaseModel):
    """A LoRA adapter served on its base's engine under its own model name (the OpenAI `model` field picks it)."""

    name: str
    source: str = Field(validation_alias=SOURCE, description="the adapter GGUF (vllm: its folder)")
    differs_from_base: bool | None = Field(default=None, description="its greedy answer or logprobs differ from the base's")
    answer: str | None = None


class Replica(BaseModel):
    """One engine behind a router (serve/replicas): its own process, port and log, recorded inside the router's record."""

    base_url: str
    port: int
    pid: int
    log_path: str
    state: Literal["running", "dead"] = "running"
    rss_bytes: int | None = None


class GatewayRecord(BaseModel):
    """The one endpoint for every model: our front before llama.cpp's server in router mode (serve/gateway), and what it was started with."""

    base_url: str
    port: int
    pid: int
    log_path: str
    engine_url: str | None = Field(None, description="llama.cpp's router, on loopback behind the gateway's front (base_url)")
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
    source: str = Field(validation_alias=SOURCE, description="what is served: the GGUF (embedded, replicas) or the checkpoint folder (vllm)")
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
    engine: ServedEngine = Field(default="embedded", description="Which engine serves it (serve/engines.py); vllm: source is a checkpoint folder")
    router: str | None = Field(default=None, description="vllm-router policy when replicas serve this name; pid is the router's")
    replicas: list[Replica] = Field(default_factory=list, description="With router: the engines behind it")
    chat_template_file: str | None = Field(default=None, description="The Jinja template file the engine was given instead of the model's")
    completions_only: bool = Field(default=False, description="Served for /v1/completions only: not a chat model")

    @model_validator(mode="before")
    @classmethod
    def _replicas_engine(cls, data: Any) -> Any:
        """Records written before the replicas engine had its name say embedded with a router."""
        if isinstance(data, dict) and data.get("router") and data.get("engine", "embedded") == "embedded":
            return {**data, "engine": "replicas"}
        return data

    def processes(self) -> list[ServedModel | Replica]:
        """Every process this record holds: the engine (or the router), then the replicas behind it."""
        return [self, *self.replicas]


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a valid model name.", "Use lowercase letters, digits and . _ : - (at most 64, starting with a letter or digit); "
                         "a version served beside is NAME@N.")
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
    return directory(settings) / f"{key(name)}@r{index}.log"  # a version is NAME@<digits>, never NAME@r<digits>: never another model's log


def save(settings: Settings, model: ServedModel) -> None:
    write_atomic(record_path(settings, model.name), model.model_dump_json(indent=2))


def write_atomic(record: Path, text: str) -> None:
    write_text_atomic(record, text)  # a temporary name of this writer's own: two writers never share one


def remove(settings: Settings, name: str) -> None:
    record_path(settings, name).unlink(missing_ok=True)


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
        for served in model.processes():
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
    raise InputError(f"No model named {name!r} is served.", "List them with `model-serving serve list`, or register one.")


# ---------------------------------------------------------------- claims
#
# One start of a name at a time, across threads and processes: an exclusive flock on `NAME.claim`, which the
# kernel releases when its holder exits, however it exits (a claim whose owner died is free again at once).
# The holder writes who it is into the file, so a refusal names the winner; the file goes when the claim ends.

def claim_path(settings: Settings, name: str) -> Path:
    return directory(settings) / f"{key(name)}.claim"


@contextlib.contextmanager
def claim(settings: Settings, name: str) -> Iterator[None]:
    """Hold `name` for one start: a second start of it (any thread, any process) is refused, naming this one."""
    try:
        with util_claim.hold(claim_path(settings, name)):
            yield
    except util_claim.Claimed as exc:
        who = f"process {exc.holder['pid']}, {util_claim.since_text(exc.holder)}" if exc.holder.get("pid") else "a process that is just starting it"
        raise InputError(f"Another start of {name!r} is under way ({who}).",
                         f"Wait for it to finish, then check `model-serving serve list`; stop it with `model-serving serve stop {name}` "
                         "if it is not the one you want.") from None


@contextlib.contextmanager
def gateway_lock(settings: Settings) -> Iterator[None]:
    """Serialise gateway starts, restarts and stops: a second caller waits for the first, then sees its record."""
    with util_claim.hold(gateway_path(settings, ".lock"), wait=True):
        yield


# ---------------------------------------------------------------- the lifecycle every engine shares

def stop_model(settings: Settings, name: str, *, grace_s: float = STOP_GRACE_S) -> ServedModel:
    """SIGTERM, then SIGKILL after `grace_s`; the record goes either way. A router goes first, then its replicas."""
    model = get_model(settings, name)
    for served in model.processes():
        if served.state == "running":
            terminate(served.pid, grace_s)
    remove(settings, name)
    model.state = "dead"
    return model


def make_room(settings: Settings, name: str, port: int | None, replace: bool) -> int:
    """Under the name's claim: stop a running model of the same name when allowed; return a free port on 127.0.0.1."""
    existing = [m for m in list_models(settings) if m.name == name]
    if existing and existing[0].state == "running":
        if not replace:
            raise InputError(f"A model named {name!r} is already served at {existing[0].base_url} (pid {existing[0].pid}).",
                             "Stop it first (`model-serving serve stop NAME`) or pass --replace.")
        stop_model(settings, name)
    if port is None:
        return free_port()
    if not port_free(port):
        raise InputError(f"Port {port} on 127.0.0.1 is already in use.", "Choose another --port, or leave it out to pick a free one.")
    return port


def proven(settings: Settings, name: str, probe: Callable[[Settings, str], ProbeResult], served: str, next_step: str) -> ProbeResult:
    """The probe's result for a just-started model; a failed or broken probe stops the model again (nothing half-served)."""
    try:
        result = probe(settings, name)
    except BaseException:
        stop_model(settings, name)
        raise
    if not result.ok:
        stop_model(settings, name)
        raise VerificationFailed(f"{name} was {served} but failed its probe: " + "; ".join(result.problems) + ".", next_step,
                                 detail=f"answer: {result.answer[:300]!r}")
    return result
