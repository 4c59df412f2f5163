"""The embedded engine: llama.cpp's server, one supervised process per model, on 127.0.0.1.

The registry (`registry.py`) keeps one JSON record per model under the state directory, so the
CLI, the MCP server and a later session all see the same served models. A record whose process
died is reported as such. The probe lives in `probe.py`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from model_serving.checkpoint.inspect import GGUFInfo, inspect_gguf
from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.serve.embedded import native, registry
from model_serving.serve.embedded.lora import lora_argv, parse_lora, probe_adapters, same_as_base
from model_serving.serve.embedded.probe import probe_model
from model_serving.serve.embedded.registry import ServedModel, check_name, get_model, list_models
from model_serving.serve.gateway import preset as gateway_preset
from model_serving.serve.probe import ProbeResult
from model_serving.settings import Settings
from model_serving.util.paths import confine
from model_serving.util.process import python_argv, spawn

START_TIMEOUT_S = 180.0  # loading a large GGUF from a cold disk
HEALTH_POLL_TIMEOUT_S = 2.0
STOP_GRACE_S = 15.0

__all__ = ["ServedModel", "check_name", "free_port", "get_model", "list_models", "register_embedded", "start_model", "stop_model", "wait_healthy"]


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


def terminate(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM one of our engine (or router) processes, then SIGKILL after `grace_s`."""
    if not registry.alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while registry.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if registry.alive(pid):
        os.kill(pid, signal.SIGKILL)


def stop_model(settings: Settings, name: str, *, grace_s: float = STOP_GRACE_S) -> ServedModel:
    """SIGTERM, then SIGKILL after `grace_s`; the record goes either way. A router goes first, then its replicas."""
    model = get_model(settings, name)
    for served in [model, *model.replicas]:
        if served.state == "running":
            terminate(served.pid, grace_s)
    registry.remove(settings, name)
    gateway_preset.sync(settings, stop=terminate)  # the one endpoint stops listing it (serve/gateway)
    model.state = "dead"
    return model


def _stop_tokens(info: GGUFInfo) -> list[str]:
    return [t for t in dict.fromkeys([info.eot_token, info.eos_token]) if t]


def _checked_gguf(settings: Settings, gguf_path: str | Path, name: str, ctx_size: int, parallel: int) -> tuple[Path, GGUFInfo]:
    """The confined GGUF and its header, after the name and the context/slot numbers are checked."""
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
    return path, info


def _make_room(settings: Settings, name: str, port: int | None, replace: bool) -> int:
    """Stop a running model of the same name when allowed; return a free port on 127.0.0.1."""
    existing = [m for m in list_models(settings) if m.name == name]
    if existing and existing[0].state == "running":
        if not replace:
            raise InputError(f"A model named {name!r} is already served at {existing[0].base_url}.", "Stop it first (`model-serving serve stop NAME`) or pass --replace.")
        stop_model(settings, name)
    if port is None:
        return free_port()
    if not _port_free(port):
        raise InputError(f"Port {port} on 127.0.0.1 is already in use.", "Choose another --port, or leave it out to pick a free one.")
    return port


def wait_healthy(proc: subprocess.Popen, name: str, base_url: str, log_path: Path, progress: Progress, *,
                 timeout_s: float = START_TIMEOUT_S, poll_timeout_s: float = HEALTH_POLL_TIMEOUT_S, what: str = "llama.cpp server",
                 hint: str = "a corrupt GGUF or too little memory are the usual causes") -> None:
    """Return once `base_url` answers /health with 200; kill `proc` and raise if it exits, hangs or is cancelled."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            progress.check()
            if proc.poll() is not None:
                raise ServingError(f"The {what} for {name} exited during start-up (exit code {proc.returncode}).",
                                   f"Read its log below; {hint}.",
                                   detail=log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{base_url}/health", timeout=poll_timeout_s).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet, or loading: /health answers 503 or nothing
            if time.monotonic() > deadline:
                raise ServingError(f"The {what} for {name} did not become healthy within {timeout_s:.0f} s.", f"Read the log at {log_path}")
            progress.update(None, "loading the model")
            time.sleep(0.2)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def start_model(settings: Settings, gguf_path: str | Path, name: str, *, ctx_size: int = 2048, parallel: int = 4,
                threads: int | None = None, port: int | None = None, replace: bool = False,
                progress: Progress | None = None, start_timeout_s: float = START_TIMEOUT_S, replica: int | None = None,
                lora: list[str] | None = None) -> ServedModel:
    """Start a llama.cpp server process for one GGUF and wait until it answers /health.

    With `lora` (NAME=ADAPTER.gguf items) the same process serves each adapter under its name (serve/embedded/lora.py).

    A `replica` (serve/router) gets a free port and its own log and is not recorded: its router's record holds it.
    """
    progress = progress or Progress()
    path, info = _checked_gguf(settings, gguf_path, name, ctx_size, parallel)
    adapters = parse_lora(settings, lora, name, info) if lora else []
    port = _make_room(settings, name, port, replace) if replica is None else free_port()
    threads = threads or os.cpu_count() or 2
    log_path = registry.log_path(settings, name) if replica is None else registry.replica_log_path(settings, name, replica)
    build = native.find(settings)
    if build.kind == "native" and not adapters:  # no parent-death for a binary: wait_healthy kills it if the start fails or is cancelled
        argv = native.server_argv(build, path, alias=name, port=port, ctx_size=ctx_size, parallel=parallel, threads=threads)
    else:  # adapters: the worker runs the name front, and the native llama-server as its child where there is one
        argv = python_argv("model_serving.serve.embedded.worker", "--model", path, "--alias", name, "--port", str(port),
                           "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--threads", str(threads),
                           *lora_argv(adapters, free_port(), build.server if build.kind == "native" else None))
        build = native.Build(build.kind, build.server, f"{build.describe}; the LoRA front runs in its worker") if adapters else build
    progress.update(0.05, f"starting llama.cpp server for {name} on 127.0.0.1:{port}")
    with log_path.open("wb") as log:
        # Its own process group, the scrubbed environment; it dies with us while it starts, then outlives us like a daemon.
        # The OpenMP settings for either build: the wheel's worker (and the native server it may run) link libgomp too.
        proc = spawn(argv, stdout=log, text=False, env=native.env())
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, name, base_url, log_path, progress, timeout_s=start_timeout_s)
    model = ServedModel(name=name, gguf_path=str(path), base_url=base_url, port=port, pid=proc.pid, ctx_size=ctx_size, parallel=parallel,
                        threads=threads, started_at=datetime.now(UTC).isoformat(timespec="seconds"), log_path=str(log_path),
                        file_type=info.file_type, has_chat_template=info.chat_template is not None, stop_tokens=_stop_tokens(info),
                        rss_bytes=registry.rss(proc.pid), adapters=adapters, engine_build=build.describe)
    if adapters:
        _probe_adapters(proc, model, progress)
    if replica is None:
        registry.save(settings, model)
    progress.update(1.0, f"{name} is served at {base_url}")
    return model


def _probe_adapters(proc: subprocess.Popen, model: ServedModel, progress: Progress) -> None:
    """Every adapter must answer differently from the base, or the engine is stopped again."""
    progress.update(0.9, f"probing {len(model.adapters)} adapter(s) against the base")
    try:
        probe_adapters(model)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if same := same_as_base(model.adapters):
        proc.kill()
        proc.wait()
        raise VerificationFailed(f"The adapter(s) {', '.join(same)} answer exactly as the base {model.name} (answer and log-probabilities).",
                                 "Check that the adapter was trained (peft starts lora_B at zero) and converted from that training's output.")


def register_embedded(settings: Settings, gguf_path: str | Path, name: str, *, ctx_size: int = 2048, parallel: int = 4,
                      threads: int | None = None, port: int | None = None, replace: bool = False,
                      progress: Progress | None = None) -> tuple[ServedModel, ProbeResult]:
    """Serve a GGUF under a name and prove it: the probe must pass, or the model is stopped again."""
    progress = progress or Progress()
    model = start_model(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, threads=threads, port=port,
                        replace=replace, progress=progress.span(0.0, 0.8))
    progress.update(0.85, "probing: one chat that must answer and stop")
    probe = proven(settings, name, probe_model, "served", "Check the GGUF with `model-serving inspect` (chat template, EOS token); "
                   "re-export from the checkpoint if they are missing.")
    progress.update(1.0, f"{name} answers and stops")
    return model, probe


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
