"""Tools that live in a venv of their own (vLLM, mergekit): their pins clash with ours, so we install them apart, record
the interpreter, and check it by importing the tool in a child with a minimal environment (no tokens reach it)."""

from __future__ import annotations

import os
import subprocess

from model_serving.errors import ServingError
from model_serving.jobs import Progress, run_process

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
