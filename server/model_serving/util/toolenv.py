"""Tools that live in a venv of their own (vLLM, mergekit, llm-compressor): their pins clash with ours, so we install
them apart, record the interpreter, and check it by importing the tool in a child with a minimal environment (no tokens
reach it).

`ToolVenv` is such a venv under `<state>/engines/<folder>` for a tool that needs only its pinned packages: the install
in resumable steps recorded in `install.json` (pip skips what is there), the import check, and `find`, which reads the
record so a preflight answers without importing anything. A tool's module keeps only its pins and its record's class.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from model_serving.errors import InputError, ServingError
from model_serving.jobs import Progress, run_process
from model_serving.settings import Settings
from model_serving.util.paths import write_text_atomic

_CHECK_ENV = ("PATH", "HOME", "LANG", "TMPDIR")


def import_check(python: str, check: str, module: str, hint: str, *, timeout_s: float = 300.0, why: str = "") -> tuple[str, str]:
    """(version, interpreter) from running `check` (it prints both, last) in `python`; ServingError with its output if not.

    `why` is added to the failure when the output mentions torch (the usual cause: a CUDA-only wheel beside a CPU torch)."""
    try:
        done = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if k in _CHECK_ENV})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServingError(f"{python} could not be run to import {module} ({type(exc).__name__}).", hint) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or len(lines) < 2:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        extra = f" ({why})" if why and "torch" in tail else ""
        raise ServingError(f"`import {module}` fails in {python}{extra}.", hint, detail=tail)
    return lines[-2].strip(), lines[-1].strip()


def install_step(argv: list[str], progress: Progress, what: str) -> str:
    """Run one install command as a cancellable child; its last lines, or ServingError with them when it fails."""
    code, tail = run_process(argv, progress, env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                             on_line=lambda line: progress.update(None, f"{what}: {line.strip()[:120]}")
                             if line.strip() and not line.startswith("WARNING: Location") else None)
    lines = [x for x in tail.splitlines() if not x.startswith("WARNING: Location")]
    if code != 0:
        raise ServingError(f"{what} failed (exit code {code}).", "Read the output below; run the install again to resume.",
                           detail="\n".join(lines[-15:]))
    return "\n".join(lines[-3:])


class ToolStep(BaseModel):
    step: str
    state: Literal["done", "failed", "skipped"]
    detail: str = ""


class ToolEnvironment(BaseModel):
    """Where a tool runs: its venv's interpreter, its version, and how the install went. Each tool subclasses it (the
    results render it by its class name)."""

    installed: bool
    python: str | None = None
    version: str | None = None
    checked_at: str | None = None
    steps: list[ToolStep] = Field(default_factory=list)
    error: str | None = Field(None, description="why the install or its check failed")
    next_step: str | None = None

    def program(self) -> str | None:
        """The file a run of the tool needs: the interpreter (a tool run by its own script says which)."""
        return self.python

    def finish(self, venv: Path) -> None:
        """What a finished install records beside the interpreter (a tool run by its own script: that script)."""


Env = TypeVar("Env", bound=ToolEnvironment)


@dataclass(frozen=True)
class ToolVenv(Generic[Env]):
    """One tool's own venv under `<state>/engines/<folder>`, its pinned packages, its import check and its record."""

    folder: str
    label: str  # the tool's name in messages
    module: str  # what the check imports
    packages: tuple[str, ...]  # pip requirements: the pinned tool and the CPU torch already on this machine
    check: str  # Python that prints the tool's version, then sys.executable
    hint: str  # how to install it: every refusal's next step
    record: type[Env]

    def home(self, settings: Settings) -> Path:
        return settings.state_dir / "engines" / self.folder

    def save(self, settings: Settings, env: Env) -> Env:
        self.home(settings).mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.home(settings) / "install.json", env.model_dump_json(indent=2))
        return env

    def find(self, settings: Settings) -> Env:
        """The recorded install, or one that says it is missing and how to install it; never imports the tool."""
        try:
            env = self.record.model_validate_json((self.home(settings) / "install.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return self.record(installed=False, error=f"no install recorded under {self.home(settings)}", next_step=self.hint)
        program = env.program()
        if env.installed and not (program and Path(program).is_file()):
            return env.model_copy(update={"installed": False, "error": f"{program} is gone", "next_step": self.hint})
        return env

    def require(self, settings: Settings) -> Env:
        env = self.find(settings)
        if not env.installed or not env.program():
            raise InputError(f"{self.label} is not installed: {env.error or 'no interpreter recorded'}.", env.next_step or self.hint)
        return env

    def check_python(self, python: str, *, timeout_s: float = 300.0) -> tuple[str, str]:
        """(tool version, interpreter) from importing the tool in `python`; ServingError with its output if that fails."""
        return import_check(python, self.check, self.module, self.hint, timeout_s=timeout_s)

    def install(self, settings: Settings, progress: Progress | None = None) -> Env:
        """Create (or resume) the venv with the pinned packages, then check that the tool imports there."""
        progress = progress or Progress()
        venv = self.home(settings) / "venv"
        python = venv / "bin" / "python"
        env = self.record(installed=False, python=str(python))
        try:
            if not python.exists():
                progress.update(0.02, f"creating {venv}")
                venv.parent.mkdir(parents=True, exist_ok=True)
                install_step([sys.executable, "-m", "venv", str(venv)], progress, "creating the venv")
                env.steps.append(ToolStep(step="venv", state="done", detail=str(venv)))
            else:
                env.steps.append(ToolStep(step="venv", state="skipped", detail="already there"))
            progress.update(0.1, f"{' and '.join(self.packages)} (CPU build)")
            done = install_step([str(python), "-m", "pip", "install", "-q", *self.packages], progress, "packages")
            env.steps.append(ToolStep(step="packages", state="done", detail=done[-300:]))
            self.save(settings, env)
            progress.update(0.9, f"checking: import {self.module}")
            env.version, env.python = self.check_python(str(python))
        except ServingError as exc:
            env.steps.append(ToolStep(step="failed", state="failed", detail=exc.detail[-500:]))
            env.error, env.next_step = exc.cause, exc.next_step
            self.save(settings, env)
            raise
        env.installed, env.checked_at = True, datetime.now(UTC).isoformat(timespec="seconds")
        env.finish(venv)
        env.steps.append(ToolStep(step="check", state="done", detail=f"{self.module} {env.version}"))
        progress.update(1.0, f"{self.module} {env.version} in {env.python}")
        return self.save(settings, env)
