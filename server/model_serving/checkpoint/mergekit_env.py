"""mergekit's own Python environment: a managed venv under the state directory's engines folder.

mergekit pins its own torch, transformers, peft and datasets ranges and runs as a separate process (`mergekit-yaml`),
so it never shares our venv. `install` creates the venv in resumable steps (each recorded in install.json; pip skips
what is there), pins the mergekit version and the CPU torch already on this machine (any other torch request pulls a
multi-GB CUDA build), and ends with a check that imports mergekit in that interpreter. `find` reads the record, so a
merge's preflight answers without importing anything.
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

MERGEKIT_VERSION = "0.1.5"  # LGPL-3.0-only; run as a child process, never imported into our process
TORCH_CPU = "torch==2.13.0"
CHECK = "import sys, importlib.metadata as m, mergekit.merge; print(m.version('mergekit')); print(sys.executable)"
INSTALL_HINT = "Run `model-serving engines install mergekit` (minutes of pip, once; resumable)."


class MergekitStep(BaseModel):
    step: str
    state: Literal["done", "failed", "skipped"]
    detail: str = ""


class MergekitEnvironment(BaseModel):
    """Where mergekit runs: its venv's interpreter and `mergekit-yaml`, its version, and how the install went."""

    installed: bool
    python: str | None = None
    mergekit_yaml: str | None = None
    version: str | None = None
    checked_at: str | None = None
    steps: list[MergekitStep] = Field(default_factory=list)
    error: str | None = Field(None, description="why the install or its check failed")
    next_step: str | None = None


def home(settings: Settings) -> Path:
    return settings.state_dir / "engines" / "mergekit"


def _record_path(settings: Settings) -> Path:
    return home(settings) / "install.json"


def save(settings: Settings, env: MergekitEnvironment) -> MergekitEnvironment:
    home(settings).mkdir(parents=True, exist_ok=True)
    write_text_atomic(_record_path(settings), env.model_dump_json(indent=2))
    return env


def find(settings: Settings) -> MergekitEnvironment:
    """The recorded install, or one that says it is missing and how to install it; never imports mergekit."""
    try:
        env = MergekitEnvironment.model_validate_json(_record_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return MergekitEnvironment(installed=False, error=f"no install recorded under {home(settings)}", next_step=INSTALL_HINT)
    if env.installed and not (env.mergekit_yaml and Path(env.mergekit_yaml).is_file()):
        return env.model_copy(update={"installed": False, "error": f"{env.mergekit_yaml} is gone", "next_step": INSTALL_HINT})
    return env


def require(settings: Settings) -> MergekitEnvironment:
    env = find(settings)
    if not env.installed or not env.mergekit_yaml:
        raise InputError(f"mergekit is not installed: {env.error or 'no interpreter recorded'}.", env.next_step or INSTALL_HINT)
    return env


def check_python(python: str, *, timeout_s: float = 300.0) -> tuple[str, str]:
    """(mergekit version, interpreter) from importing mergekit in `python`; ServingError with its output if that fails."""
    return import_check(python, CHECK, "mergekit", INSTALL_HINT, timeout_s=timeout_s)


def install(settings: Settings, progress: Progress | None = None) -> MergekitEnvironment:
    """Create (or resume) the managed venv with the pinned mergekit and the CPU torch, then check it."""
    progress = progress or Progress()
    venv = home(settings) / "venv"
    python = venv / "bin" / "python"
    env = MergekitEnvironment(installed=False, python=str(python))
    try:
        if not python.exists():
            progress.update(0.02, f"creating {venv}")
            venv.parent.mkdir(parents=True, exist_ok=True)
            install_step([sys.executable, "-m", "venv", str(venv)], progress, "creating the venv")
            env.steps.append(MergekitStep(step="venv", state="done", detail=str(venv)))
        else:
            env.steps.append(MergekitStep(step="venv", state="skipped", detail="already there"))
        progress.update(0.1, f"mergekit {MERGEKIT_VERSION} and {TORCH_CPU} (CPU build)")
        done = install_step([str(python), "-m", "pip", "install", "-q", f"mergekit=={MERGEKIT_VERSION}", TORCH_CPU], progress, "packages")
        env.steps.append(MergekitStep(step="packages", state="done", detail=done[-300:]))
        save(settings, env)
        progress.update(0.9, "checking: import mergekit")
        env.version, env.python = check_python(str(python))
    except ServingError as exc:
        env.steps.append(MergekitStep(step="failed", state="failed", detail=exc.detail[-500:]))
        env.error, env.next_step = exc.cause, exc.next_step
        save(settings, env)
        raise
    env.installed, env.mergekit_yaml = True, str(venv / "bin" / "mergekit-yaml")
    env.checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    env.steps.append(MergekitStep(step="check", state="done", detail=f"mergekit {env.version}"))
    progress.update(1.0, f"mergekit {env.version} in {env.python}")
    return save(settings, env)
