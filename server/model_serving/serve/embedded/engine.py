"""The embedded engine: llama.cpp's natively built server, one supervised process per model, on 127.0.0.1.

Its record lives in the registry (serve/registry.py) like every engine's; its process is started, waited for and
stopped by the process layer (serve/processes.py). The probe lives in `llamacpp_probe.py`, adapters in `lora.py`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from model_serving.checkpoint.inspect import GGUFInfo, inspect_gguf
from model_serving.checkpoint.template_check import engine_template
from model_serving.errors import InputError, VerificationFailed
from model_serving.jobs import Progress
from model_serving.serve import processes, registry
from model_serving.serve.embedded import native
from model_serving.serve.embedded.llamacpp_probe import probe_model
from model_serving.serve.embedded.lora import lora_argv, parse_lora, probe_adapters, same_as_base
from model_serving.serve.engine_base import RecordedEngine
from model_serving.serve.engine_protocol import StartOptions
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.registry import ServedModel, check_name, get_model, list_models, stop_model
from model_serving.settings import Settings
from model_serving.util.paths import confine
from model_serving.util.process import kill_group, python_argv

START_TIMEOUT_S = 180.0  # loading a large GGUF from a cold disk

__all__ = ["ServedModel", "check_name", "get_model", "gguf_file", "list_models", "register_embedded", "require_native", "start_model",
           "stop_model"]


def _stop_tokens(info: GGUFInfo) -> list[str]:
    return [t for t in dict.fromkeys([info.eot_token, info.eos_token]) if t]


def gguf_file(settings: Settings, gguf_path: str | Path) -> Path:
    """The confined path of a GGUF file; a directory is refused, naming the GGUFs it holds."""
    path = confine(gguf_path, settings.roots, what="GGUF path")
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.gguf"))[:5]
        inside = f"; it holds {', '.join(found)}" if found else ", and it holds no .gguf file"
        raise InputError(f"{path} is a directory, not a GGUF file{inside}.",
                         f"Pass the .gguf file itself (e.g. {path / (found[0] if found else 'model.gguf')}); to serve a checkpoint folder, "
                         "use `model-serving deploy` (it converts it) or --engine vllm.")
    return path


def checked_gguf(settings: Settings, gguf_path: str | Path, name: str, ctx_size: int, parallel: int) -> tuple[Path, GGUFInfo]:
    """The confined GGUF and its header, after the name and the context/slot numbers are checked."""
    check_name(name)
    path = gguf_file(settings, gguf_path)
    info = inspect_gguf(path, ctx_size=ctx_size, parallel=parallel)
    if not 1 <= parallel <= 64:
        raise InputError(f"parallel={parallel} is out of range.", "Use 1 to 64 parallel slots.")
    if not 64 <= ctx_size <= 1 << 20:
        raise InputError(f"ctx_size={ctx_size} is out of range.", "Use 64 to 1048576 tokens.")
    if info.context_length and ctx_size // parallel > info.context_length:
        raise InputError(f"Each of {parallel} slots would get {ctx_size // parallel} tokens, more than the model's trained {info.context_length}.",
                         f"Use ctx_size <= {info.context_length * parallel}.")
    return path, info


require_native = native.require  # the name engine starts and their tests know


@dataclass(frozen=True)
class Use:
    """How the engine serves the model: with a template file replacing the GGUF's, or for completions only."""

    template: Path | None = None
    completions: bool = False


def _argv(settings: Settings, path: Path, name: str, port: int, ctx_size: int, parallel: int, threads: int,
          adapters: list[registry.ServedAdapter], template: Path | None = None) -> tuple[list[str], str]:
    """The engine's argv and which build serves it: llama-server itself, or (adapters) the worker running the name front
    in front of llama-server as its child. `template`: a Jinja file replacing the GGUF's chat template."""
    build = require_native(settings)
    if not adapters:  # no parent-death for a binary: the health wait kills it if the start fails or is cancelled
        return native.server_argv(build, path, alias=name, port=port, ctx_size=ctx_size, parallel=parallel, threads=threads,
                                  chat_template=template), build.describe
    argv = python_argv("model_serving.serve.embedded.worker", "--model", path, "--alias", name, "--port", str(port),
                       "--ctx-size", str(ctx_size), "--parallel", str(parallel), "--threads", str(threads),
                       *(["--chat-template-file", str(template)] if template is not None else []),
                       *lora_argv(adapters, processes.free_port(), build.server))
    return argv, f"{build.describe}; the LoRA front runs in its worker"


def start_model(settings: Settings, gguf_path: str | Path, name: str, *, ctx_size: int = 2048, parallel: int = 4,
                threads: int | None = None, port: int | None = None, replace: bool = False,
                progress: Progress | None = None, start_timeout_s: float = START_TIMEOUT_S, replica: int | None = None,
                lora: list[str] | None = None, chat_template: str | Path | None = None, completions: bool = False) -> ServedModel:
    """Start a llama.cpp server process for one GGUF and wait until it answers /health.

    With `lora` (NAME=ADAPTER.gguf items) the same process serves each adapter under its name (serve/embedded/lora.py).
    The name is claimed for the whole start (registry.claim): a second start of it at once is refused.

    A `replica` (serve/replicas) gets a free port and its own log and is not recorded: its router's record holds it
    (and its start holds the claim). `chat_template` (a Jinja file under the roots) replaces the GGUF's template;
    `completions` serves a model without one for /v1/completions; without either, a GGUF with no usable template is
    refused before the engine starts.
    """
    progress = progress or Progress()
    path, info = checked_gguf(settings, gguf_path, name, ctx_size, parallel)
    use = Use(template=engine_template(settings.roots, path.name, info.chat_template, chat_template, completions), completions=completions)
    adapters = parse_lora(settings, lora, name, info) if lora else []
    if replica is not None:
        model = _start(settings, path, info, name, adapters, ctx_size, parallel, threads, processes.free_port(), progress,
                       start_timeout_s, replica, use)
    else:
        with registry.claim(settings, name):
            port = registry.make_room(settings, name, port, replace)
            model = _start(settings, path, info, name, adapters, ctx_size, parallel, threads, port, progress, start_timeout_s, None, use)
            registry.save(settings, model)
    progress.update(1.0, f"{name} is served at {model.base_url}")
    return model


def _start(settings: Settings, path: Path, info: GGUFInfo, name: str, adapters: list[registry.ServedAdapter], ctx_size: int,
           parallel: int, threads: int | None, port: int, progress: Progress, start_timeout_s: float, replica: int | None,
           use: Use | None = None) -> ServedModel:
    use = use or Use()
    threads = threads or os.cpu_count() or 2
    log_path = registry.log_path(settings, name) if replica is None else registry.replica_log_path(settings, name, replica)
    argv, build = _argv(settings, path, name, port, ctx_size, parallel, threads, adapters, use.template)
    progress.update(0.05, f"starting llama.cpp server for {name} on 127.0.0.1:{port}")
    # Its own process group, the scrubbed environment; it dies with us while it starts, then outlives us like a daemon.
    proc = processes.launch(argv, log_path, env=native.env())
    base_url = f"http://127.0.0.1:{port}"
    processes.wait_healthy(proc, name, base_url, log_path, progress, timeout_s=start_timeout_s)
    model = ServedModel(name=name, source=str(path), base_url=base_url, port=port, pid=proc.pid, ctx_size=ctx_size, parallel=parallel,
                        threads=threads, started_at=datetime.now(UTC).isoformat(timespec="seconds"), log_path=str(log_path),
                        file_type=info.file_type, has_chat_template=info.chat_template is not None or use.template is not None,
                        stop_tokens=_stop_tokens(info), rss_bytes=processes.rss(proc.pid), adapters=adapters, engine_build=build,
                        chat_template_file=str(use.template) if use.template else None, completions_only=use.completions)
    if adapters:
        _probe_adapters(proc, model, progress)
    return model


def _probe_adapters(proc: subprocess.Popen, model: ServedModel, progress: Progress) -> None:
    """Every adapter must answer differently from the base, or the engine is stopped again."""
    progress.update(0.9, f"probing {len(model.adapters)} adapter(s) against the base")
    try:
        probe_adapters(model)
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    if same := same_as_base(model.adapters):
        kill_group(proc)
        proc.wait()
        raise VerificationFailed(f"The adapter(s) {', '.join(same)} answer exactly as the base {model.name} (answer and log-probabilities).",
                                 "Check that the adapter was trained (peft starts lora_B at zero) and converted from that training's output.")


def register_embedded(settings: Settings, gguf_path: str | Path, name: str, *, ctx_size: int = 2048, parallel: int = 4,
                      threads: int | None = None, port: int | None = None, replace: bool = False,
                      progress: Progress | None = None, chat_template: str | Path | None = None,
                      completions: bool = False) -> tuple[ServedModel, ProbeResult]:
    """Serve a GGUF under a name and prove it: the probe must pass, or the model is stopped again."""
    progress = progress or Progress()
    model = start_model(settings, gguf_path, name, ctx_size=ctx_size, parallel=parallel, threads=threads, port=port,
                        replace=replace, progress=progress.span(0.0, 0.8), chat_template=chat_template, completions=completions)
    progress.update(0.85, "probing: one completion that must answer" if completions else "probing: one chat that must answer and stop")
    probe = registry.proven(settings, name, probe_model, "served", "Check the GGUF with `model-serving inspect` (chat template, EOS token); "
                            "re-export from the checkpoint if they are missing.")
    progress.update(1.0, f"{name} answers and stops")
    return model, probe


class LlamaCppEngine(RecordedEngine):
    """llama.cpp's natively built server, one process per model (with adapters: behind the worker's name front)."""

    name = "embedded"
    description = "llama.cpp (native build): a GGUF, one process per model, LoRA adapters by name"

    def argv(self, settings: Settings, options: StartOptions, port: int) -> list[str]:
        path, info = checked_gguf(settings, options.source, options.name, options.ctx_size, options.parallel)
        adapters = parse_lora(settings, options.lora, options.name, info) if options.lora else []
        threads = options.threads or os.cpu_count() or 2
        template = engine_template(settings.roots, path.name, info.chat_template, options.chat_template, options.completions)
        return _argv(settings, path, options.name, port, options.ctx_size, options.parallel, threads, adapters, template)[0]

    def start(self, settings: Settings, options: StartOptions, progress: Progress) -> ServedModel:
        return start_model(settings, options.source, options.name, ctx_size=options.ctx_size, parallel=options.parallel,
                           threads=options.threads, port=options.port, replace=options.replace, lora=options.lora or None,
                           progress=progress, chat_template=options.chat_template, completions=options.completions)

    def probe(self, settings: Settings, name: str) -> ProbeResult:
        return probe_model(settings, name)
