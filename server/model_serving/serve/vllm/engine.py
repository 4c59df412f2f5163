"""The vLLM engine: a Hugging Face checkpoint served by vLLM's OpenAI server, supervised on the process layer like every engine.

vLLM runs in its own environment (env.py) under launcher.py, on 127.0.0.1, and is recorded in the registry
(serve/registry.py) with engine "vllm" and its checkpoint folder as `source`, so `serve list`, `serve stop`, `status` and bench see it like any served model. It serves
the safetensors checkpoint: vLLM's GGUF loading is a separate, CUDA-only plugin. LoRA adapters are loaded at start
(`--lora-modules NAME=DIR`) and picked per request by the OpenAI `model` field.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict, Unpack

from model_serving.checkpoint.inspect import chat_template as chat_template_text
from model_serving.checkpoint.inspect import inspect_checkpoint
from model_serving.checkpoint.lora import preflight
from model_serving.checkpoint.template_check import engine_template
from model_serving.errors import InputError
from model_serving.jobs import Progress
from model_serving.serve import processes, registry
from model_serving.serve.engine_base import RecordedEngine
from model_serving.serve.engine_protocol import StartOptions
from model_serving.serve.probe_checks import ProbeResult
from model_serving.serve.registry import ServedModel, check_name
from model_serving.serve.vllm import env as vllm_env
from model_serving.serve.vllm.formats import check_servable
from model_serving.serve.vllm.vllm_probe import checkpoint_features, probe_vllm
from model_serving.settings import Settings
from model_serving.util.paths import confine

LAUNCHER = Path(__file__).with_name("launcher.py")
START_TIMEOUT_S = 900.0  # 35 s eager on a quiet 2-core machine; 460 s measured on one loaded 12-fold
KV_CACHE_GIB = 2  # VLLM_CPU_KVCACHE_SPACE: enough for a small model's few sequences on a small machine
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts


def checked_checkpoint(settings: Settings, path: str | Path) -> Path:
    """A confined HF checkpoint folder; a GGUF is refused with the two ways that work."""
    folder = confine(path, settings.roots, what="checkpoint folder")
    if folder.is_file() and (folder.suffix == ".gguf" or folder.read_bytes()[:4] == b"GGUF"):
        raise InputError(f"{folder.name} is a GGUF file; the vLLM engine serves Hugging Face checkpoints (its GGUF loader is a CUDA-only plugin).",
                         "Pass the checkpoint folder (config.json + *.safetensors) it came from, or serve the GGUF on the embedded engine (--engine embedded).")
    if not folder.is_dir() or not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise InputError(f"{folder} is not a Hugging Face checkpoint folder (config.json and *.safetensors).",
                         "Pass the folder a checkpoint was saved to (save_pretrained), e.g. one `deploy --plan` names.")
    return folder


def parse_loras(settings: Settings, items: list[str], base: Path) -> dict[str, tuple[Path, int]]:
    """NAME=DIR items as {name: (adapter folder, rank)}; each adapter must fit the served checkpoint (checkpoint/lora.py's checks)."""
    adapters: dict[str, tuple[Path, int]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not raw:
            raise InputError(f"lora {item!r} is not NAME=DIR.", "Pass each adapter as NAME=ADAPTER_DIR, e.g. --lora support=./adapters/support.")
        check_name(name)
        if name in adapters:
            raise InputError(f"The adapter name {name!r} is given twice.", "Give each adapter its own name.")
        folder = confine(raw, settings.roots, what="LoRA adapter folder")
        try:
            details, *_ = preflight(settings, folder, str(base))
        except InputError as exc:
            raise InputError(f"LoRA {name} does not fit the served model {base.name}: {exc.cause}",
                             f"Serve it on the base it was trained on ({exc.next_step})") from None
        adapters[name] = (folder, details.rank)
    return adapters


def _cores(threads: int | None) -> tuple[int, str]:
    """How many cores vLLM binds its OpenMP threads to, and the VLLM_CPU_OMP_THREADS_BIND value."""
    cores = sorted(os.sched_getaffinity(0))[: threads or None]
    contiguous = cores == list(range(cores[0], cores[-1] + 1))
    return len(cores), f"{cores[0]}-{cores[-1]}" if contiguous else ",".join(map(str, cores))


def vllm_argv(python: str, folder: Path, name: str, port: int, *, max_model_len: int, max_num_seqs: int,
              adapters: dict[str, tuple[Path, int]], chat_template: Path | None = None) -> list[str]:
    argv = [python, "-P", str(LAUNCHER), str(port), "--model", str(folder), "--served-model-name", name, "--host", "127.0.0.1",
            "--port", str(port), "--max-model-len", str(max_model_len), "--max-num-seqs", str(max_num_seqs), "--enforce-eager",
            *checkpoint_features(folder, chat_template).vllm_argv()]
    if chat_template is not None:  # replaces the checkpoint's template for every chat request
        argv += ["--chat-template", str(chat_template)]
    if adapters:
        rank = next(r for r in LORA_RANKS if r >= max(rank for _, rank in adapters.values()))
        argv += ["--enable-lora", "--max-loras", str(len(adapters)), "--max-lora-rank", str(rank),
                 "--lora-modules", *(f"{n}={p}" for n, (p, _) in adapters.items())]
    return argv


def _tmpdir(settings: Settings) -> Path:
    """vLLM's TMPDIR: under the state directory, unless that is too long for the unix sockets vLLM binds there
    (TMPDIR/<uuid> must fit sockaddr_un's 107 bytes); then a private folder in the system's temp directory."""
    tmp = vllm_env.home(settings) / "tmp"
    if len(str(tmp)) + 40 > 100:
        tmp = Path(tempfile.gettempdir()) / f"model-serving-vllm-{os.getuid()}"
    tmp.mkdir(mode=0o700, exist_ok=True)
    return tmp


def _child_env(settings: Settings, bind: str) -> dict[str, str | None]:
    tmp = _tmpdir(settings)
    return {"VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB), "VLLM_CPU_OMP_THREADS_BIND": bind, "TMPDIR": str(tmp),
            "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONPATH": None, "VIRTUAL_ENV": None}


def start_vllm(settings: Settings, checkpoint: str | Path, name: str, *, lora: list[str] | None = None, ctx_size: int = 2048,
               parallel: int = 4, threads: int | None = None, port: int | None = None, replace: bool = False,
               progress: Progress | None = None, start_timeout_s: float = START_TIMEOUT_S, chat_template: str | Path | None = None,
               completions: bool = False) -> ServedModel:
    """Start vLLM on a checkpoint under `name` (adapters under their own names) and wait until it answers /health.

    `chat_template` (a Jinja file) replaces the checkpoint's; `completions` serves one without a template for /v1/completions."""
    progress = progress or Progress()
    check_name(name)
    folder = checked_checkpoint(settings, checkpoint)
    check_servable(settings, folder)  # FP8 where no FP8 GPU serves it: refused before vLLM starts
    template = engine_template(settings.roots, folder.name, chat_template_text(folder)[0], chat_template, completions)
    adapters = parse_loras(settings, lora or [], folder)
    info = inspect_checkpoint(folder)
    if info.context_length and ctx_size > info.context_length:
        raise InputError(f"ctx_size {ctx_size} is longer than the {info.context_length} tokens {folder.name} was trained for.",
                         f"Use ctx_size <= {info.context_length}.")
    python = vllm_env.require(settings).python
    assert python is not None
    with registry.claim(settings, name):
        port = registry.make_room(settings, name, port, replace)
        n_cores, bind = _cores(threads)
        log_path = registry.log_path(settings, name)
        argv = vllm_argv(python, folder, name, port, max_model_len=ctx_size, max_num_seqs=parallel, adapters=adapters, chat_template=template)
        progress.update(0.05, f"starting vLLM for {name} on 127.0.0.1:{port}")
        proc = processes.launch(argv, log_path, env=_child_env(settings, bind))
        base_url = f"http://127.0.0.1:{port}"
        processes.wait_healthy(proc, name, base_url, log_path, progress, timeout_s=start_timeout_s, what="vLLM", poll_s=1.0,
                               hint="too little memory or an unsupported architecture are the usual causes")
        model = ServedModel(name=name, source=str(folder), base_url=base_url, port=port, pid=proc.pid, ctx_size=ctx_size,
                            parallel=parallel, threads=n_cores, started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            log_path=str(log_path), file_type=info.dtype, has_chat_template=info.has_chat_template or template is not None,
                            engine="vllm", chat_template_file=str(template) if template else None, completions_only=completions,
                            adapters=[registry.ServedAdapter(name=n, source=str(p)) for n, (p, _) in sorted(adapters.items())],
                            rss_bytes=processes.rss(proc.pid))
        registry.save(settings, model)
    progress.update(1.0, f"{name} is served by vLLM at {base_url}")
    return model


class VllmStartOptions(TypedDict, total=False):
    """start_vllm's options that serve_vllm passes through."""

    lora: list[str] | None
    ctx_size: int
    parallel: int
    threads: int | None
    port: int | None
    replace: bool
    start_timeout_s: float
    chat_template: str | Path | None
    completions: bool


def serve_vllm(settings: Settings, checkpoint: str | Path, name: str, *, progress: Progress | None = None,
               **options: Unpack[VllmStartOptions]) -> tuple[ServedModel, ProbeResult]:
    """Start vLLM and prove it: the probe (template, answer, stop) must pass, or the model is stopped again."""
    progress = progress or Progress()
    model = start_vllm(settings, checkpoint, name, progress=progress.span(0.0, 0.85), **options)
    progress.update(0.9, "probing: the template, one chat that must answer and stop")
    probe = registry.proven(settings, name, probe_vllm, "served by vLLM",
                            "Check the checkpoint's chat template and generation_config.json (eos_token_id) with `model-serving inspect`.")
    progress.update(1.0, f"{name} answers and stops")
    return model, probe


class VllmEngine(RecordedEngine):
    """vLLM's OpenAI server in its own environment, on a Hugging Face checkpoint folder."""

    name = "vllm"
    description = "vLLM: a Hugging Face checkpoint folder, in vLLM's own environment (`model-serving engine install vllm`)"

    def argv(self, settings: Settings, options: StartOptions, port: int) -> list[str]:
        folder = checked_checkpoint(settings, options.source)
        python = vllm_env.require(settings).python
        assert python is not None
        template = engine_template(settings.roots, folder.name, chat_template_text(folder)[0], options.chat_template, options.completions)
        return vllm_argv(python, folder, options.name, port, max_model_len=options.ctx_size, max_num_seqs=options.parallel,
                         adapters=parse_loras(settings, options.lora, folder), chat_template=template)

    def start(self, settings: Settings, options: StartOptions, progress: Progress) -> ServedModel:
        """Start and probe: a vLLM start has always proven its chat (the checkpoint's template is the usual failure)."""
        return serve_vllm(settings, options.source, options.name, lora=options.lora, ctx_size=options.ctx_size, parallel=options.parallel,
                          threads=options.threads, port=options.port, replace=options.replace, progress=progress,
                          chat_template=options.chat_template, completions=options.completions)[0]

    def probe(self, settings: Settings, name: str) -> ProbeResult:
        return probe_vllm(settings, name)
