"""The embedded engine: llama.cpp's server, one supervised process per model, on 127.0.0.1.

The registry is one JSON file per model under the state directory, so the CLI, the MCP server and a
later session all see the same served models. A record whose process died is reported as such.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from model_serving.checkpoint.inspect import GGUFInfo, inspect_gguf
from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.settings import Settings
from model_serving.util.chat_template import render as render_chat
from model_serving.util.paths import confine
from model_serving.util.process import python_argv, spawn

NAME = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,63}$")
START_TIMEOUT_S = 180.0


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


class ProbeResult(BaseModel):
    """Evidence that a served model formats chats as its template says, answers, and stops."""

    ok: bool
    prompt: str
    answer: str
    finish_reason: str | None
    completion_tokens: int
    prompt_tokens: int
    expected_prompt_tokens: int | None = None
    template_matches: bool | None = Field(default=None, description="Server-rendered prompt equals the GGUF's Jinja template rendered here")
    rendered_prompt: str | None = None
    seconds: float
    problems: list[str] = []


def _registry(settings: Settings) -> Path:
    path = settings.state_dir / "engine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record_path(settings: Settings, name: str) -> Path:
    return _registry(settings) / f"{name.replace(':', '_')}.json"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a valid model name.", "Use lowercase letters, digits and . _ : - (at most 64, starting with a letter or digit).")
    return name


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"model_serving.serve.embedded.worker" in cmdline  # a recycled pid is not our engine


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def list_models(settings: Settings) -> list[ServedModel]:
    models = []
    for file in sorted(_registry(settings).glob("*.json")):
        try:
            model = ServedModel.model_validate_json(file.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if _alive(model.pid):
            model.rss_bytes = _rss(model.pid)
        else:
            model.state = "dead"
        models.append(model)
    return models


def get_model(settings: Settings, name: str) -> ServedModel:
    for model in list_models(settings):
        if model.name == name:
            return model
    raise InputError(f"No model named {name!r} is served by the embedded engine.", "List them with `model-serving serve list`, or register one.")


def stop_model(settings: Settings, name: str) -> ServedModel:
    model = get_model(settings, name)
    if model.state == "running":
        os.kill(model.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(model.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(model.pid):
            os.kill(model.pid, signal.SIGKILL)
    _record_path(settings, name).unlink(missing_ok=True)
    model.state = "dead"
    return model


def _stop_tokens(info: GGUFInfo) -> list[str]:
    return [t for t in dict.fromkeys([info.eot_token, info.eos_token]) if t]


def start_model(settings: Settings, gguf_path: str | Path, name: str, *, ctx_size: int = 2048, parallel: int = 4,
                threads: int | None = None, port: int | None = None, replace: bool = False,
                progress: Progress | None = None) -> ServedModel:
    """Start a llama.cpp server process for one GGUF and wait until it answers /health."""
    progress = progress or Progress()
    check_name(name)
    path = confine(gguf_path, settings.roots, what="GGUF path")
    info = inspect_gguf(path, ctx_size=ctx_size, parallel=parallel)
    if not 1 <= parallel <= 64:
        raise InputError(f"parallel={parallel} is out of range.", "Use 1 to 64 parallel slots.")
    if not 64 <= ctx_size <= 1 << 20:
        raise InputError(f"ctx_size={ctx_size} is out of range.", "Use 64 to 1048576 tokens.")
    if info.context_length and ctx_size // parallel > info.context_length:
        raise InputError(f"Each of {parallel} slots would get {ctx_size // parallel} tokens, more than the model's trained {info.context_length}.",
                         f"Use ctx_size <= {info.context_length * parallel}.")
    existing = [m for m in list_models(settings) if m.name == name]
    if existing and existing[0].state == "running":
        if not replace:
            raise InputError(f"A model named {name!r} is already served at {existing[0].base_url}.", "Stop it first (`model-serving serve stop NAME`) or pass --replace.")
        stop_model(settings, name)
    if port is None:
        port = free_port()
    elif not _port_free(port):
        raise InputError(f"Port {port} on 127.0.0.1 is already in use.", "Choose another --port, or leave it out to pick a free one.")
    threads = threads or os.cpu_count() or 2
    log_path = _registry(settings) / f"{name.replace(':', '_')}.log"
    argv = python_argv("model_serving.serve.embedded.worker", "--model", path, "--alias", name, "--port", str(port),
                       "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--threads", str(threads))
    progress.update(0.05, f"starting llama.cpp server for {name} on 127.0.0.1:{port}")
    with log_path.open("wb") as log:
        # Its own process group, the scrubbed environment; it dies with us while it starts, then outlives us like a daemon.
        proc = spawn(argv, stdout=log, text=False)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            progress.check()
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise ServingError(f"The llama.cpp server for {name} exited during start-up (exit code {proc.returncode}).",
                                   "Read its log below; a corrupt GGUF or too little memory are the usual causes.", detail=tail)
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServingError(f"The llama.cpp server for {name} did not become healthy within {START_TIMEOUT_S:.0f} s.", "Read the log at " + str(log_path))
            progress.update(None, "loading the model")
            time.sleep(0.2)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    model = ServedModel(name=name, gguf_path=str(path), base_url=base_url, port=port, pid=proc.pid, ctx_size=ctx_size, parallel=parallel,
                        threads=threads, started_at=datetime.now(UTC).isoformat(timespec="seconds"), log_path=str(log_path),
                        file_type=info.file_type, has_chat_template=info.chat_template is not None, stop_tokens=_stop_tokens(info),
                        rss_bytes=_rss(proc.pid))
    record = _record_path(settings, name)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(model.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, record)
    progress.update(1.0, f"{name} is served at {base_url}")
    return model


# ---------------------------------------------------------------- probe

PROBE_MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]


def probe_model(settings: Settings, name: str, *, max_tokens: int = 96, messages: list[dict[str, Any]] | None = None) -> ProbeResult:
    """Ask one question; the model must answer, stop on its own, and see the prompt its template defines."""
    model = get_model(settings, name)
    if model.state != "running":
        raise ServingError(f"The engine process for {name} is not running.", f"Register it again: model-serving register {model.gguf_path} --name {name}")
    messages = messages or PROBE_MESSAGES
    problems: list[str] = []
    info = inspect_gguf(Path(model.gguf_path))
    started = time.perf_counter()
    with httpx.Client(base_url=model.base_url, timeout=120) as client:
        rendered = client.post("/apply-template", json={"messages": messages}).json().get("prompt")
        template_matches = None
        expected_tokens = None
        if info.chat_template and rendered is not None:
            try:
                ours = render_chat(info.chat_template, messages, add_generation_prompt=True, bos_token=info.bos_token or "", eos_token=info.eos_token or "")
                template_matches = ours == rendered
                if not template_matches:
                    problems.append("The server formats the chat differently from the GGUF's own chat template.")
            except Exception as exc:  # noqa: BLE001 - a template we cannot render is reported, not fatal
                problems.append(f"The chat template could not be rendered here: {exc}")
        if rendered is not None:
            tokens = client.post("/tokenize", json={"content": rendered, "add_special": True, "parse_special": True}).json().get("tokens", [])
            expected_tokens = len(tokens)
        reply = client.post("/v1/chat/completions", json={"model": name, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    if reply.status_code != 200:
        raise ServingError(f"The served model {name} answered HTTP {reply.status_code} to a chat request.", "Read the engine log at " + model.log_path, detail=reply.text[:500])
    body = reply.json()
    choice = body["choices"][0]
    answer = choice["message"].get("content") or ""
    usage = body.get("usage", {})
    finish = choice.get("finish_reason")
    if not answer.strip():
        problems.append("The model returned an empty answer.")
    if finish != "stop":
        problems.append(f"The model did not stop by itself within {max_tokens} tokens (finish_reason={finish}): check the EOS/EOT tokens and the chat template.")
    for stop in model.stop_tokens:
        if stop in answer:
            problems.append(f"The stop token {stop!r} leaked into the answer text.")
    if expected_tokens is not None and usage.get("prompt_tokens") not in (None, expected_tokens):
        problems.append(f"The server counted {usage.get('prompt_tokens')} prompt tokens, the template gives {expected_tokens}: the prompt was changed or truncated.")
    return ProbeResult(ok=not problems, prompt=messages[-1]["content"], answer=answer, finish_reason=finish,
                       completion_tokens=usage.get("completion_tokens", 0), prompt_tokens=usage.get("prompt_tokens", 0),
                       expected_prompt_tokens=expected_tokens, template_matches=template_matches, rendered_prompt=rendered,
                       seconds=round(time.perf_counter() - started, 3), problems=problems)


def register_embedded(settings: Settings, gguf_path: str | Path, name: str, *, ctx_size: int = 2048, parallel: int = 4,
                      threads: int | None = None, port: int | None = None, replace: bool = False,
                      progress: Progress | None = None) -> tuple[ServedModel, ProbeResult]:
    """Serve a GGUF under a name and prove it: the probe must pass, or the model is stopped again."""
    progress = progress or Progress()
    model = start_model(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, threads=threads, port=port,
                        replace=replace, progress=progress.span(0.0, 0.8))
    progress.update(0.85, "probing: one chat that must answer and stop")
    probe = probe_model(settings, name)
    if not probe.ok:
        stop_model(settings, name)
        raise VerificationFailed(f"{name} was served but failed its probe: " + " ".join(probe.problems),
                                 "Check the GGUF with `model-serving inspect` (chat template, EOS token); re-export from the checkpoint if they are missing.",
                                 detail=f"answer: {probe.answer[:300]!r}")
    progress.update(1.0, f"{name} answers and stops")
    return model, probe
